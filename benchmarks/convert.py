"""Conversion to mu-law/8000: realtime factor (seconds of audio per CPU second), one core.

- A 60 s 44.1 kHz stereo MP3 (written here with soundfile's libsndfile/LAME) through
  ``to_mulaw``: decode at the native rate, mix down, soxr HQ to 8 kHz, encode. Baseline, same
  run: the short cut many integrations take, miniaudio's own converter to 8 kHz mono (which
  aliases, -9 dB at 5 kHz) plus ``audioop.lin2ulaw``.
- A 24 kHz mono 16-bit PCM stream (TTS-like) fed as 20-100 ms chunks through
  ``MulawEncoder.push``. Baseline, same run: ``audioop.ratecv`` (no anti-alias filter) with its
  state plus ``audioop.lin2ulaw`` per chunk.

Run: ``uv run python -m benchmarks.convert`` (soundfile comes with the dev dependencies).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from types import ModuleType

import miniaudio
import numpy as np

from mediastreams.audio import AudioFormat, MulawEncoder, to_mulaw

from benchmarks.harness import Row, audioop_or_none, cpu_time_call, print_table

SECONDS = 60
MP3_RATE = 44100
TTS_RATE = 24000


def _music(rate: int, channels: int) -> np.ndarray:  # type: ignore[type-arg]
    """Tones, a sweep and a little noise: something an MP3 encoder has to work on."""
    rng = np.random.default_rng(1)
    t = np.arange(SECONDS * rate) / rate
    columns = []
    for channel in range(channels):
        signal = 0.2 * np.sin(2 * np.pi * (220 + 110 * channel) * t)
        signal += 0.2 * np.sin(2 * np.pi * (300 * t + 40 * t**2))
        signal += 0.02 * rng.standard_normal(t.size)
        columns.append(signal)
    return np.stack(columns, axis=1)


def _mp3() -> bytes | None:
    try:
        import soundfile
    except ImportError:
        return None
    if "MP3" not in soundfile.available_formats():
        return None
    frames = _music(MP3_RATE, 2).astype(np.float32)
    buffer = io.BytesIO()
    # Written in blocks: libsndfile's encoders can crash on one very large write.
    with soundfile.SoundFile(buffer, "w", MP3_RATE, 2, format="MP3") as file:
        for start in range(0, len(frames), 8192):
            file.write(frames[start : start + 8192])
    return buffer.getvalue()


def _naive_mp3(audioop: ModuleType) -> Callable[[bytes], bytes]:
    def convert(data: bytes) -> bytes:
        sound = miniaudio.decode(
            data, output_format=miniaudio.SampleFormat.SIGNED16, nchannels=1, sample_rate=8000
        )
        return audioop.lin2ulaw(sound.samples.tobytes(), 2)  # type: ignore[no-any-return]

    return convert


def _chunks(pcm: bytes) -> list[bytes]:
    """20-100 ms chunks, as TTS services send them."""
    rng = np.random.default_rng(2)
    chunks, start = [], 0
    while start < len(pcm):
        size = int(rng.integers(20, 101)) * TTS_RATE // 1000 * 2
        chunks.append(pcm[start : start + size])
        start += size
    return chunks


def _stream(chunks: list[bytes]) -> int:
    encoder = MulawEncoder(AudioFormat(TTS_RATE))
    produced = sum(len(encoder.push(chunk)) for chunk in chunks)
    return produced + len(encoder.flush())


def _ratecv_stream(audioop: ModuleType, chunks: list[bytes]) -> int:
    state, produced = None, 0
    for chunk in chunks:
        converted, state = audioop.ratecv(chunk, 2, 1, TTS_RATE, 8000, state)
        produced += len(audioop.lin2ulaw(converted, 2))
    return produced


def main() -> list[Row]:
    audioop = audioop_or_none()
    rows = []
    mp3 = _mp3()
    if mp3 is None:
        print("MP3: skipped, no MP3 encoder (install soundfile with its bundled libsndfile)")
    else:
        cpu = cpu_time_call(lambda: to_mulaw(mp3))
        base = cpu_time_call(lambda: _naive_mp3(audioop)(mp3)) if audioop else None
        rows.append(
            Row(
                f"{SECONDS} s 44.1 kHz stereo MP3 -> mu-law/8000",
                SECONDS / cpu,
                base and SECONDS / base,
                "x RT",
                "miniaudio's resampler + audioop",
                "higher",
                ">= 500x RT",
            )
        )
    pcm = (_music(TTS_RATE, 1)[:, 0] * 32767).astype("<i2").tobytes()
    chunks = _chunks(pcm)
    cpu = cpu_time_call(lambda: _stream(chunks))
    base = cpu_time_call(lambda: _ratecv_stream(audioop, chunks)) if audioop else None
    rows.append(
        Row(
            f"24 kHz mono PCM stream, {len(chunks)} chunks of 20-100 ms",
            SECONDS / cpu,
            base and SECONDS / base,
            "x RT",
            "audioop.ratecv + lin2ulaw",
            "higher",
            ">= 2,000x RT",
        )
    )
    frame_chunks = [pcm[i : i + TTS_RATE // 50 * 2] for i in range(0, len(pcm), TTS_RATE // 50 * 2)]
    cpu = cpu_time_call(lambda: _stream(frame_chunks))
    base = cpu_time_call(lambda: _ratecv_stream(audioop, frame_chunks)) if audioop else None
    rows.append(
        Row(
            "24 kHz mono PCM stream, 20 ms chunks only",
            SECONDS / cpu,
            base and SECONDS / base,
            "x RT",
            "audioop.ratecv + lin2ulaw",
            "higher",
        )
    )
    print_table("Realtime factor to mu-law/8000, seconds of audio per CPU second", rows)
    return rows


if __name__ == "__main__":
    main()
