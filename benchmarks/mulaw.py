"""G.711 mu-law codec against ``audioop`` (still in Python 3.11/3.12, deprecated), same run.

Bulk: 60 s of speech-like (Laplacian) 8 kHz int16; per frame: one 20 ms frame of 160 samples.
Run: ``uv run python -m benchmarks.mulaw``. Without audioop (Python 3.13 with no audioop-lts)
the figures are printed without a baseline.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable

import numpy as np

from mediastreams.audio import mulaw

from benchmarks.harness import Row, audioop_or_none, print_table, time_call

SECONDS = 60
RATE = 8000


def _speech_like() -> bytes:
    rng = np.random.default_rng(0)
    samples = np.clip(rng.laplace(0, 3000, SECONDS * RATE), -32768, 32767)
    return samples.astype("<i2").tobytes()


def _time(fn: Callable[[bytes], bytes], data: bytes) -> float:
    return time_call(lambda: fn(data))


def main() -> list[Row]:
    audioop = audioop_or_none()
    pcm = _speech_like()
    codes = mulaw.encode(pcm)
    frame_pcm, frame_codes = pcm[:320], codes[:160]
    print(f"Python {sys.version.split()[0]}, numpy {np.__version__}; audioop: {bool(audioop)}")

    def baseline(fn: str, data: bytes) -> float | None:
        if audioop is None:
            return None
        method = getattr(audioop, fn)
        return _time(lambda d: method(d, 2), data)  # type: ignore[no-any-return]

    mb = len(pcm) / 1e6
    enc_bulk, dec_bulk = _time(mulaw.encode, pcm), _time(mulaw.decode, codes)
    base_enc_bulk, base_dec_bulk = baseline("lin2ulaw", pcm), baseline("ulaw2lin", codes)
    bulk = [
        Row(
            "encode",
            mb / enc_bulk,
            base_enc_bulk and mb / base_enc_bulk,
            "MB/s",
            "audioop",
            "higher",
            ">= 4x audioop",
        ),
        Row(
            "decode",
            mb / dec_bulk,
            base_dec_bulk and mb / base_dec_bulk,
            "MB/s",
            "audioop",
            "higher",
            ">= 0.5x audioop",
        ),
    ]
    print_table(f"Bulk: {SECONDS} s of 8 kHz int16 ({mb:.2f} MB of PCM), MB/s of PCM", bulk)
    base_enc_frame = baseline("lin2ulaw", frame_pcm)
    base_dec_frame = baseline("ulaw2lin", frame_codes)
    frame = [
        Row(
            "encode",
            1e6 * _time(mulaw.encode, frame_pcm),
            base_enc_frame and 1e6 * base_enc_frame,
            "µs",
            "audioop",
            "lower",
            "<= 4 µs",
        ),
        Row(
            "decode",
            1e6 * _time(mulaw.decode, frame_codes),
            base_dec_frame and 1e6 * base_dec_frame,
            "µs",
            "audioop",
            "lower",
            "<= 2 µs",
        ),
    ]
    print_table("One 20 ms frame (160 samples), µs per call", frame)
    return [
        *(dataclasses.replace(r, name=f"bulk {r.name}") for r in bulk),
        *(dataclasses.replace(r, name=f"20 ms frame {r.name}") for r in frame),
    ]


if __name__ == "__main__":
    main()
