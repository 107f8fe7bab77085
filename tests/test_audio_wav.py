"""The WAV reader (every variant) and writer."""

from __future__ import annotations

import io
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from audiogen import encoded, to_int16, tone
from mediastreams.audio import mulaw
from mediastreams.audio.samples import MULAW_8K, AudioFormat
from mediastreams.audio.wav import parse_wav, read_wav_header, wav_bytes, write_wav
from mediastreams.exceptions import (
    EmptyAudio,
    TruncatedAudio,
    UnknownAudioFormat,
    UnsupportedAudio,
)

GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def chunk(chunk_id: bytes, body: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(body)) + body + b"\x00" * (len(body) & 1)


def fmt_body(tag: int, channels: int, rate: int, width: int) -> bytes:
    align = channels * width
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, 8 * width)


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_pcm16_with_odd_list_chunk_before_data() -> None:
    samples = np.arange(-50, 50, dtype="<i2").tobytes()
    data = riff(
        chunk(b"fmt ", fmt_body(1, 1, 16000, 2)),
        chunk(b"LIST", b"INFOISFT\x03\x00\x00\x00ab\x00"),  # odd size: padded
        chunk(b"data", samples),
        chunk(b"id3 ", b"trailing"),
    )
    wav = parse_wav(data)
    assert wav.format == AudioFormat(16000, 2, 1, "pcm")
    assert wav.data == samples


@pytest.mark.parametrize(
    ("subtype", "format"),
    [
        ("PCM_U8", AudioFormat(22050, 1, 2, "pcm")),
        ("PCM_16", AudioFormat(22050, 2, 2, "pcm")),
        ("PCM_24", AudioFormat(22050, 3, 2, "pcm")),
        ("PCM_32", AudioFormat(22050, 4, 2, "pcm")),
        ("FLOAT", AudioFormat(22050, 4, 2, "float")),
        ("DOUBLE", AudioFormat(22050, 8, 2, "float")),
        ("ULAW", AudioFormat(22050, 1, 2, "mulaw")),
        ("ALAW", AudioFormat(22050, 1, 2, "alaw")),
    ],
)
@pytest.mark.parametrize("container", ["WAV", "WAVEX"])
def test_variants_written_by_libsndfile(subtype: str, format: AudioFormat, container: str) -> None:
    signal = np.stack([tone(440, 22050, 0.1), tone(660, 22050, 0.1)], axis=1)
    data = encoded(signal, 22050, container, subtype)
    if container == "WAVEX":
        assert struct.unpack_from("<H", data, 20)[0] == 0xFFFE  # really extensible
    wav = parse_wav(data, "x.wav")
    assert wav.format == format
    assert len(wav.data) == 2205 * format.frame_bytes


def test_extensible_24_bits_in_32_bit_slots_reads_the_container_width() -> None:
    fmt = fmt_body(0xFFFE, 1, 48000, 4) + struct.pack("<HHI", 22, 24, 4) + b"\x01\x00" + GUID_TAIL
    wav = parse_wav(riff(chunk(b"fmt ", fmt), chunk(b"data", b"\x00" * 8)))
    assert wav.format == AudioFormat(48000, 4, 1, "pcm")


def test_mulaw_8k_is_recognised_as_twilios_format() -> None:
    payload = mulaw.encode(to_int16(tone(1000, 8000, 0.2)).tobytes())
    wav = parse_wav(wav_bytes(payload))
    assert wav.format == MULAW_8K
    assert wav.data == payload


def test_streamed_header_with_unknown_size_reads_to_the_end() -> None:
    samples = b"\x01\x00" * 100
    data = riff(chunk(b"fmt ", fmt_body(1, 1, 24000, 2)))
    data += b"data" + struct.pack("<I", 0xFFFFFFFF) + samples + b"\x07"  # stray half sample
    assert parse_wav(data).data == samples


def test_read_wav_header_waits_for_the_data_chunk() -> None:
    data = riff(chunk(b"fmt ", fmt_body(1, 2, 24000, 2)), chunk(b"data", b"\x00" * 8))
    for cut in range(4, data.index(b"data") + 8):
        assert read_wav_header(data[:cut]) is None
    assert read_wav_header(data) == (AudioFormat(24000, 2, 2), data.index(b"data") + 8)


def test_truncated_data_names_the_file() -> None:
    data = riff(chunk(b"fmt ", fmt_body(1, 1, 8000, 2)), chunk(b"data", b"\x00" * 1000))
    with pytest.raises(TruncatedAudio, match=r"^prompt\.wav: .*declares 1000 bytes.*only 500"):
        parse_wav(data[: len(data) - 500], "prompt.wav")


@pytest.mark.parametrize("cut", [12, 20, 30, 44])
def test_cut_inside_the_header(cut: int) -> None:
    data = riff(
        chunk(b"fmt ", fmt_body(1, 1, 8000, 2)), chunk(b"LIST", b"x" * 10), chunk(b"data", b"")
    )
    with pytest.raises(TruncatedAudio, match=r"^a\.wav: "):
        parse_wav(data[:cut], "a.wav")


def test_partial_sample_frame_is_refused() -> None:
    data = riff(chunk(b"fmt ", fmt_body(1, 2, 8000, 2)), chunk(b"data", b"\x00" * 6))
    with pytest.raises(TruncatedAudio, match="not a whole number of 4-byte"):
        parse_wav(data)


def test_empty_data_chunk() -> None:
    data = riff(chunk(b"fmt ", fmt_body(1, 1, 8000, 2)), chunk(b"data", b""))
    with pytest.raises(EmptyAudio, match="holds no audio"):
        parse_wav(data)


def test_unsupported_codec_and_width() -> None:
    adpcm = riff(chunk(b"fmt ", fmt_body(0x0011, 1, 8000, 1)), chunk(b"data", b"\x00"))
    with pytest.raises(UnsupportedAudio, match="codec 0x0011 is not supported"):
        parse_wav(adpcm, "a.wav")
    odd = riff(chunk(b"fmt ", fmt_body(1, 1, 8000, 5)), chunk(b"data", b"\x00" * 5))
    with pytest.raises(UnsupportedAudio, match=r"a\.wav: .*sample width for pcm: 5 bytes"):
        parse_wav(odd, "a.wav")


def test_not_a_wav() -> None:
    with pytest.raises(UnknownAudioFormat, match="not a WAV"):
        parse_wav(b"ID3\x04" + b"\x00" * 40)
    data_first = riff(chunk(b"data", b"\x00\x00"), chunk(b"fmt ", fmt_body(1, 1, 8000, 2)))
    with pytest.raises(UnknownAudioFormat, match="before any fmt"):
        parse_wav(data_first)


def test_write_mulaw_wav_round_trips(tmp_path: Path) -> None:
    payload = bytes(range(255))  # odd length: the data chunk gets a pad byte
    write_wav(tmp_path / "out.wav", payload)
    data = (tmp_path / "out.wav").read_bytes()
    assert len(data) % 2 == 0
    assert parse_wav(data).data == payload
    assert b"fact" in data


def test_write_pcm_wav_reads_back_with_the_stdlib(tmp_path: Path) -> None:
    pcm = to_int16(tone(300, 16000, 0.05)).tobytes()
    buffer = io.BytesIO()
    write_wav(buffer, pcm, encoding="pcm", sample_rate=16000)
    with wave.open(io.BytesIO(buffer.getvalue())) as reader:
        assert (reader.getframerate(), reader.getsampwidth(), reader.getnchannels()) == (
            16000,
            2,
            1,
        )
        assert reader.readframes(reader.getnframes()) == pcm


def test_write_refuses_partial_frames() -> None:
    with pytest.raises(ValueError, match="whole number"):
        wav_bytes(b"\x00" * 3, encoding="pcm")
