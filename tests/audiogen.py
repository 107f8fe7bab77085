"""Test audio made on the spot: tones, chirps, noise, and files written with soundfile."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import soundfile

from mediastreams.audio import mulaw


def tone(
    frequency: float, sample_rate: int, seconds: float, amplitude: float = 0.5
) -> npt.NDArray[np.float64]:
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def chirp(
    sample_rate: int, seconds: float = 2.0, amplitude: float = 0.5
) -> npt.NDArray[np.float64]:
    """A 200 Hz -> 3 kHz sweep: inside the telephone band and unambiguous to align."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    f0, f1 = 200.0, 3000.0
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return amplitude * np.sin(phase)


def to_int16(signal: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.rint(signal * 32768), -32768, 32767).astype(np.int16)


def encoded(signal: npt.NDArray[np.float64], sample_rate: int, format: str, subtype: str) -> bytes:
    """``signal`` (samples, or samples x channels) as a file written by libsndfile.

    Written in blocks: libsndfile's Vorbis encoder crashes on one very large write.
    """
    frames = signal.reshape(len(signal), -1).astype(np.float32)
    buffer = io.BytesIO()
    with soundfile.SoundFile(
        buffer, "w", sample_rate, frames.shape[1], format=format, subtype=subtype
    ) as file:
        for start in range(0, len(frames), 8192):
            file.write(frames[start : start + 8192])
    return buffer.getvalue()


def decoded_mulaw(payload: bytes) -> npt.NDArray[np.float64]:
    return mulaw.decode_array(np.frombuffer(payload, np.uint8)).astype(np.float64) / 32768


def aligned_correlation(
    produced: npt.NDArray[np.float64], reference: npt.NDArray[np.float64], max_lag: int = 2000
) -> float:
    """Pearson correlation of two signals after the lag that best aligns them."""
    n = min(len(produced), len(reference)) - max_lag
    best = -1.0
    window = reference[max_lag // 2 : max_lag // 2 + n]
    lags = np.correlate(produced[: n + max_lag], window, mode="valid")
    lag = int(np.argmax(lags))
    segment = produced[lag : lag + n]
    best = float(np.corrcoef(segment, window)[0, 1])
    return best


def level_db(signal: npt.NDArray[np.float64]) -> float:
    rms = float(np.sqrt(np.mean(np.square(signal))))
    return 20 * np.log10(max(rms, 1e-12))
