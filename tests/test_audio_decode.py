"""Format sniffing and file decoding (WAV by our parser, MP3/FLAC/Ogg by miniaudio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiogen import chirp, encoded
from mediastreams.audio import mulaw, to_mulaw
from mediastreams.audio.decode import decode_bytes, decode_file, mpeg_frame_bytes, sniff
from mediastreams.audio.samples import MULAW_8K, AudioFormat
from mediastreams.audio.wav import wav_bytes
from mediastreams.exceptions import (
    AudioError,
    CorruptedAudio,
    EmptyAudio,
    TruncatedAudio,
    UnknownAudioFormat,
    UnsupportedAudio,
)

COMPRESSED = [
    ("MP3", "MPEG_LAYER_III", "MP3"),
    ("FLAC", "PCM_16", "FLAC"),
    ("OGG", "VORBIS", "Ogg"),
]


@pytest.fixture(scope="module")
def stereo_files() -> dict[str, bytes]:
    signal = np.stack([chirp(44100, 1.0), chirp(44100, 1.0, 0.3)], axis=1)
    return {name: encoded(signal, 44100, fmt, sub) for fmt, sub, name in COMPRESSED}


def test_sniff_signatures(stereo_files: dict[str, bytes]) -> None:
    assert sniff(wav_bytes(b"\xff" * 10)) == "WAV"
    for name, data in stereo_files.items():
        assert sniff(data) == name
    assert sniff(b"ID3\x04\x00" + b"\x00" * 20) == "MP3"
    mp3 = stereo_files["MP3"]
    first = mpeg_frame_bytes(mp3)
    assert first is not None
    assert sniff(mp3[: first + 4]) == "MP3"
    assert sniff(mp3[: first + 3]) is None  # a bare MPEG stream needs two frame headers


def test_one_mpeg_like_header_in_raw_mulaw_is_not_mp3() -> None:
    # Quiet mu-law is made of 0x7x and 0xFx bytes; these four read as an MPEG-1 Layer I header.
    quiet = b"\xff\xfe\x70\x7e" + b"\xfe\xff\x7f" * 200
    assert mpeg_frame_bytes(quiet) is not None
    assert sniff(quiet) is None
    assert to_mulaw(quiet, format=MULAW_8K) == quiet


@pytest.mark.parametrize("data", [b"\xff" * 400, b"\xff\xfe\x7f\x00", b"", b"RIFF", b"\x00" * 99])
def test_mulaw_silence_and_noise_are_not_taken_for_files(data: bytes) -> None:
    assert sniff(data) is None


@pytest.mark.parametrize("name", ["MP3", "FLAC", "Ogg"])
def test_compressed_files_decode_at_their_native_format(
    stereo_files: dict[str, bytes], name: str
) -> None:
    decoded = decode_bytes(stereo_files[name], f"x.{name.lower()}")
    assert decoded.format == AudioFormat(44100, 2, 2, "pcm")
    assert decoded.container == {"Ogg": "Ogg/Vorbis"}.get(name, name)
    assert abs(decoded.duration_ms - 1000) < 60  # MP3 adds encoder padding
    assert "44100 Hz, stereo" in decoded.describe()


@pytest.mark.parametrize("name", ["MP3", "FLAC", "Ogg"])
def test_truncated_compressed_files_are_refused(stereo_files: dict[str, bytes], name: str) -> None:
    data = stereo_files[name]
    with pytest.raises(AudioError, match=rf"^cut\.{name.lower()}: .*truncated") as raised:
        decode_bytes(data[: len(data) // 2], f"cut.{name.lower()}")
    # A cut Ogg stream has lost the last page that gives its length: it reads as damaged.
    assert isinstance(raised.value, (TruncatedAudio, CorruptedAudio))


@pytest.mark.parametrize("name", ["MP3", "FLAC", "Ogg"])
def test_corrupted_compressed_files_are_refused(stereo_files: dict[str, bytes], name: str) -> None:
    data = stereo_files[name]
    garbage = np.random.default_rng(7).integers(0, 256, len(data) - 4, dtype=np.uint8)
    expected = UnknownAudioFormat if name == "MP3" else (CorruptedAudio, TruncatedAudio)
    with pytest.raises(expected, match=r"^bad: .*(decoded|truncated|damaged MP3)"):
        decode_bytes(data[:4] + garbage.tobytes(), "bad")


def test_empty_and_unknown() -> None:
    with pytest.raises(EmptyAudio, match=r"^x\.wav: is empty \(0 bytes\)"):
        decode_bytes(b"", "x.wav")
    with pytest.raises(UnknownAudioFormat, match=r"unknown audio format.*declare the format"):
        decode_bytes(b"hello, this is not audio", "x")


@pytest.mark.parametrize(
    ("head", "what"),
    [
        (b"RIFX\x00\x00\x00\x00WAVE", "big-endian WAV"),
        (b"\x00\x00\x00\x20ftypM4A ", "MP4/M4A"),
        (b"FORM\x00\x00\x00\x00AIFF", "AIFF"),
        (b"OggS\x00\x02" + b"\x00" * 22 + b"OpusHead", "Ogg/Opus"),
    ],
)
def test_unsupported_containers_say_so(head: bytes, what: str) -> None:
    with pytest.raises(UnsupportedAudio, match=what):
        decode_bytes(head + b"\x00" * 64, "in")


def test_decode_file_raw_mulaw_by_suffix(tmp_path: Path) -> None:
    payload = mulaw.encode(np.arange(-800, 800, 2, dtype="<i2").tobytes())
    path = tmp_path / "prompt.ulaw"
    path.write_bytes(payload)
    decoded = decode_file(path)
    assert (decoded.container, decoded.format, decoded.data) == ("raw", MULAW_8K, payload)
    (tmp_path / "empty.raw").write_bytes(b"")
    with pytest.raises(EmptyAudio, match=r"empty\.raw: is empty"):
        decode_file(tmp_path / "empty.raw")


def test_decode_file_sniffs_whatever_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "actually-a-wav.ulaw"
    path.write_bytes(wav_bytes(b"\x01\x02" * 80, encoding="pcm", sample_rate=16000))
    decoded = decode_file(path)
    assert decoded.container == "WAV"
    assert decoded.format == AudioFormat(16000)


def test_decode_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"missing\.mp3: cannot read"):
        decode_file(tmp_path / "missing.mp3")
    (tmp_path / "notes.txt").write_bytes(b"just text")
    with pytest.raises(UnknownAudioFormat, match=r"notes\.txt: unknown audio format"):
        decode_file(tmp_path / "notes.txt")
