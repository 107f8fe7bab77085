"""Resampling with soxr HQ: the anti-alias filter, the passband, and streaming by chunks."""

from __future__ import annotations

import numpy as np
import pytest

from audiogen import level_db, to_int16, tone
from mediastreams.audio.resample import Resampler, resample_int16, to_mono_int16
from mediastreams.audio.samples import AudioFormat

SOURCE_RATES = [11025, 16000, 22050, 24000, 32000, 44100, 48000]


def trimmed(signal: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    """Drop the outer 10 %: the filter's run-in and run-out are not steady state."""
    edge = len(signal) // 10
    return signal[edge:-edge].astype(np.float64) / 32768


@pytest.mark.parametrize("rate", SOURCE_RATES)
def test_5khz_is_gone_at_8khz(rate: int) -> None:
    if rate <= 10000:
        pytest.skip("no 5 kHz below 10 kHz")
    source = tone(5000, rate, 1.0)
    result = resample_int16(to_int16(source), rate, 8000)
    assert level_db(trimmed(result)) - level_db(source) <= -60


@pytest.mark.parametrize("rate", SOURCE_RATES)
def test_1khz_passes_within_half_a_db(rate: int) -> None:
    source = tone(1000, rate, 1.0)
    result = resample_int16(to_int16(source), rate, 8000)
    assert len(result) == 8000
    assert abs(level_db(trimmed(result)) - level_db(source)) <= 0.5


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_upsampling_8khz_keeps_the_tone(rate: int) -> None:
    result = trimmed(resample_int16(to_int16(tone(1000, 8000, 1.0)), 8000, rate))
    spectrum = np.abs(np.fft.rfft(result))
    peak_hz = np.argmax(spectrum) * rate / len(result)
    assert abs(peak_hz - 1000) < 2
    assert abs(level_db(result) - level_db(tone(1000, 8000, 1.0))) <= 0.5


@pytest.mark.parametrize("chunk_ms", [7, 20, 100])
def test_streaming_matches_one_call_with_no_clicks(chunk_ms: int) -> None:
    rate = 24000
    source = to_int16(tone(440, rate, 1.0) + tone(2500, rate, 1.0, 0.2))
    whole = resample_int16(source, rate, 8000)
    resampler = Resampler(rate, 8000)
    step = rate * chunk_ms // 1000
    parts = [resampler.process(source[i : i + step]) for i in range(0, len(source), step)]
    streamed = np.concatenate([*parts, resampler.flush()])
    assert len(streamed) == len(whole) == 8000
    # No clicks: the stream and the one-shot output agree sample by sample.
    assert np.max(np.abs(streamed.astype(np.int32) - whole)) <= 2


def test_equal_rates_pass_through() -> None:
    samples = to_int16(tone(440, 8000, 0.1))
    assert resample_int16(samples, 8000, 8000) is samples
    resampler = Resampler(8000, 8000)
    assert resampler.process(samples) is samples
    assert resampler.flush().size == 0


def test_process_bytes_mixes_down_first() -> None:
    stereo = np.stack([to_int16(tone(1000, 16000, 0.5))] * 2, axis=1)
    resampler = Resampler(16000, 8000)
    result = resampler.process_bytes(stereo.tobytes(), AudioFormat(16000, 2, 2))
    result = np.concatenate([result, resampler.flush()])
    assert len(result) == 4000
    mono = to_mono_int16(stereo.tobytes(), AudioFormat(16000, 2, 2))
    assert np.array_equal(mono, stereo[:, 0])


def test_bad_rates() -> None:
    with pytest.raises(ValueError, match="positive"):
        Resampler(0, 8000)
    with pytest.raises(ValueError, match="positive"):
        resample_int16(np.zeros(4, np.int16), 8000, -1)
