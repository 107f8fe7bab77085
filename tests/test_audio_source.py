"""Any source to mu-law/8000: every format against a reference conversion, streams, inbound."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from audiogen import aligned_correlation, chirp, decoded_mulaw, encoded, level_db, to_int16, tone
from mediastreams.audio import (
    MULAW_8K,
    AudioFormat,
    MulawDecoder,
    MulawEncoder,
    convert,
    mulaw,
    mulaw_to_pcm,
    stream_to_mulaw,
    to_mulaw,
    wav_bytes,
)
from mediastreams.exceptions import (
    AudioError,
    EmptyAudio,
    TruncatedAudio,
    UnknownAudioFormat,
    UnsupportedAudio,
)

RATE = 44100
SECONDS = 1.5


def stereo_signal(rate: int = RATE) -> np.ndarray:  # type: ignore[type-arg]
    """Two different channels, so a wrong mix-down would show."""
    return np.stack([chirp(rate, SECONDS, 0.5), chirp(rate, SECONDS, 0.3)], axis=1)


def reference(signal: np.ndarray, rate: int) -> np.ndarray:  # type: ignore[type-arg]
    """What the conversion should sound like: mean of channels, resampled by soxr VHQ."""
    mono = signal.reshape(len(signal), -1).mean(axis=1)
    return np.asarray(soxr.resample(mono, rate, 8000, quality="VHQ"), dtype=np.float64)


def assert_matches_reference(payload: bytes, signal: np.ndarray, rate: int) -> None:  # type: ignore[type-arg]
    expected = reference(signal, rate)
    produced = decoded_mulaw(payload)
    assert abs(len(produced) - len(expected)) < 8000 * 0.1  # MP3 adds encoder padding
    assert aligned_correlation(produced, expected) >= 0.99
    assert abs(level_db(produced) - level_db(expected)) < 1.0


FILE_FORMATS = [
    ("WAV", "PCM_U8"),
    ("WAV", "PCM_16"),
    ("WAV", "PCM_24"),
    ("WAV", "PCM_32"),
    ("WAV", "FLOAT"),
    ("WAV", "DOUBLE"),
    ("WAV", "ULAW"),
    ("WAV", "ALAW"),
    ("WAVEX", "PCM_24"),
    ("MP3", "MPEG_LAYER_III"),
    ("FLAC", "PCM_16"),
    ("FLAC", "PCM_24"),
    ("OGG", "VORBIS"),
]


@pytest.mark.parametrize(("container", "subtype"), FILE_FORMATS)
def test_files_match_a_reference_conversion(container: str, subtype: str, tmp_path: Path) -> None:
    signal = stereo_signal()
    path = tmp_path / f"input.{container.lower()}"
    path.write_bytes(encoded(signal, RATE, container, subtype))
    result = convert(path)
    assert result.reencoded
    assert result.input_format.sample_rate == RATE
    assert result.input_format.channels == 2
    assert_matches_reference(result.mulaw, signal, RATE)
    assert to_mulaw(path.read_bytes()) == result.mulaw  # the same bytes, sniffed


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 48000])
def test_raw_pcm_with_a_declared_format(rate: int) -> None:
    signal = chirp(rate, SECONDS)
    payload = to_mulaw(to_int16(signal).tobytes(), format=AudioFormat(rate))
    assert_matches_reference(payload, signal, rate)


def test_numpy_arrays() -> None:
    signal = stereo_signal(24000)
    as_float = to_mulaw(signal.astype(np.float32), sample_rate=24000)
    assert_matches_reference(as_float, signal, 24000)
    as_int16 = to_mulaw(to_int16(signal), sample_rate=24000)
    assert_matches_reference(as_int16, signal, 24000)
    big_endian = to_int16(signal).astype(">i2")
    assert to_mulaw(big_endian, sample_rate=24000) == as_int16


def test_mulaw_8k_wav_has_its_header_stripped_not_reencoded() -> None:
    payload = bytes(np.random.default_rng(3).integers(0, 256, 8001, dtype=np.uint8))
    result = convert(wav_bytes(payload))
    assert result.mulaw == payload
    assert not result.reencoded
    assert result.container == "WAV"
    assert result.input_format == MULAW_8K


def test_raw_mulaw_file_passes_unchanged(tmp_path: Path) -> None:
    payload = mulaw.encode(to_int16(tone(1000, 8000, 0.5)).tobytes())
    (tmp_path / "prompt.ulaw").write_bytes(payload)
    assert to_mulaw(tmp_path / "prompt.ulaw") == payload
    assert to_mulaw(str(tmp_path / "prompt.ulaw")) == payload
    assert to_mulaw(payload, format=MULAW_8K) == payload


def test_a_header_is_never_sent_as_audio() -> None:
    pcm = to_int16(chirp(16000, 0.5)).tobytes()
    file = wav_bytes(pcm, encoding="pcm", sample_rate=16000)
    # Even when declared as mu-law, a WAV header is read, not played.
    assert to_mulaw(file, format=MULAW_8K) == to_mulaw(pcm, format=AudioFormat(16000))


def test_undeclared_raw_bytes_are_refused() -> None:
    with pytest.raises(UnknownAudioFormat, match="declare the format"):
        to_mulaw(b"\x01\x02" * 400)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: to_mulaw(b""), EmptyAudio, "is empty"),
        (lambda: to_mulaw(b"", format=MULAW_8K), EmptyAudio, "is empty"),
        (lambda: to_mulaw("no/such.raw", format=MULAW_8K), AudioError, "such.raw: cannot read"),
        (lambda: to_mulaw(b"\x00" * 3, format=AudioFormat(8000)), TruncatedAudio, "whole number"),
        (lambda: to_mulaw(np.zeros(10)), UnknownAudioFormat, "needs its sample_rate"),
        (lambda: to_mulaw(np.zeros(0), sample_rate=8000), UnsupportedAudio, "non-empty"),
        (lambda: to_mulaw(np.zeros(9, np.uint16), sample_rate=8000), UnsupportedAudio, "uint16"),
        (lambda: to_mulaw(np.zeros((2, 2, 2)), sample_rate=8000), UnsupportedAudio, "shape"),
    ],
)
def test_bad_sources(call, error: type[AudioError], message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message):
        call()


def test_not_a_source() -> None:
    with pytest.raises(TypeError, match="not an audio source"):
        to_mulaw(42)  # type: ignore[arg-type]


def test_progress_is_reported_to_the_end() -> None:
    calls: list[tuple[float, float]] = []
    signal = chirp(48000, 12.0)
    convert(
        to_int16(signal),
        sample_rate=48000,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert len(calls) >= 2
    assert calls[-1] == (12000.0, 12000.0)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def split_randomly(data: bytes, seed: int) -> list[bytes]:
    """Cut ``data`` at arbitrary places, also inside samples, as network reads do."""
    rng = np.random.default_rng(seed)
    cuts = sorted(set(rng.integers(0, len(data), size=len(data) // 700).tolist()))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1), st.sampled_from([16000, 22050, 24000]))
def test_streaming_matches_the_whole_conversion(seed: int, rate: int) -> None:
    pcm = to_int16(chirp(rate, 0.7)).tobytes()
    encoder = MulawEncoder(AudioFormat(rate))
    streamed = b"".join(encoder.push(chunk) for chunk in split_randomly(pcm, seed))
    streamed += encoder.flush()
    whole = to_mulaw(pcm, format=AudioFormat(rate))
    assert len(streamed) == len(whole)
    difference = np.abs(decoded_mulaw(streamed) - decoded_mulaw(whole))
    # No clicks at chunk borders: at most one mu-law step apart (a 1-LSB difference before
    # encoding can flip a code at a decision boundary), and almost always identical.
    assert difference.max() <= 1024 / 32768
    assert np.count_nonzero(difference) <= len(difference) // 100


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.anyio
async def test_stream_to_mulaw_reads_a_wav_header_at_the_start() -> None:
    signal = chirp(24000, 1.0)
    pcm = to_int16(signal).tobytes()
    stream = wav_bytes(pcm, encoding="pcm", sample_rate=24000)
    # The TTS header, sent in 7-byte pieces, is read and never played.
    out = [chunk async for chunk in stream_to_mulaw(chunks_of(stream, 7), None)]
    assert all(out)
    assert_matches_reference(b"".join(out), signal, 24000)


@pytest.mark.anyio
async def test_stream_to_mulaw_declared_stereo_float() -> None:
    signal = np.stack([chirp(48000, 1.0), chirp(48000, 1.0)], axis=1)
    data = signal.astype("<f4").tobytes()
    fmt = AudioFormat(48000, 4, 2, "float")
    out = b"".join([chunk async for chunk in stream_to_mulaw(chunks_of(data, 4801), fmt)])
    assert_matches_reference(out, signal, 48000)


def test_stream_errors() -> None:
    with pytest.raises(TruncatedAudio, match="mid-sample"):
        encoder = MulawEncoder(AudioFormat(16000))
        encoder.push(b"\x00" * 101)
        encoder.flush()
    with pytest.raises(UnknownAudioFormat, match="no declared format"):
        MulawEncoder(None).push(b"\x00" * 100)
    with pytest.raises(TruncatedAudio, match="inside its WAV header"):
        encoder = MulawEncoder(None)
        encoder.push(b"RIFF")
        encoder.flush()
    with pytest.raises(UnsupportedAudio, match="MP3 stream"):
        MulawEncoder(AudioFormat(16000)).push(b"ID3\x04" + b"\x00" * 20)


def test_stream_of_mulaw_8k_passes_through() -> None:
    encoder = MulawEncoder(MULAW_8K)
    assert encoder.push(b"\x01\x02\x03" * 5) == b"\x01\x02\x03" * 5
    assert encoder.push(b"\x04") == b"\x04"
    assert encoder.flush() == b""


def test_a_stream_shorter_than_a_header_is_still_converted() -> None:
    encoder = MulawEncoder(MULAW_8K)
    assert encoder.push(b"RIF") == b""  # could be the start of a WAV header: wait
    assert encoder.flush() == b"RIF"


def test_quiet_mulaw_stream_that_looks_like_an_mpeg_header() -> None:
    quiet = b"\xff\xfe\x70\x7e" + b"\xfe\xff\x7f" * 300
    encoder = MulawEncoder(MULAW_8K)
    out = b"".join(encoder.push(quiet[i : i + 160]) for i in range(0, len(quiet), 160))
    assert out + encoder.flush() == quiet


def test_a_bare_mp3_stream_is_refused_not_played() -> None:
    mp3 = encoded(chirp(24000, 0.5), 24000, "MP3", "MPEG_LAYER_III")
    assert not mp3.startswith(b"ID3")
    encoder = MulawEncoder(AudioFormat(24000))
    with pytest.raises(UnsupportedAudio, match="MP3 stream"):
        for start in range(0, len(mp3), 100):
            encoder.push(mp3[start : start + 100])


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_inbound_mulaw_to_pcm(rate: int) -> None:
    signal = tone(1000, 8000, 1.0)
    payload = mulaw.encode(to_int16(signal).tobytes())
    decoder = MulawDecoder(rate)
    pcm = b"".join(decoder.decode(payload[i : i + 160]) for i in range(0, len(payload), 160))
    pcm += decoder.flush()
    samples = np.frombuffer(pcm, "<i2").astype(np.float64) / 32768
    assert len(samples) == rate
    assert pcm == mulaw_to_pcm(payload, rate) or rate != 8000
    trimmed = samples[rate // 10 : -rate // 10]
    assert abs(level_db(trimmed) - level_db(signal)) < 0.5
    peak_hz = np.argmax(np.abs(np.fft.rfft(trimmed))) * rate / len(trimmed)
    assert abs(peak_hz - 1000) < 2
