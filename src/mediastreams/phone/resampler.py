"""Resampling live audio in small steps: soxr's quality, about 10 ms of delay.

The project's streaming :class:`~mediastreams.audio.Resampler` (soxr's ``ResampleStream``)
gives its output in blocks: taking 48 kHz to 8 kHz 10 ms at a time, nothing comes out for
150 ms, then 145 ms at once. For files that does not matter; for a conversation it adds
150 ms each way, in bursts. soxr's variable-rate engine is steady, but 30 ms late and less
faithful (a correlation of 0.94 with the exact result on speech).

:class:`LiveResampler` resamples each run of new blocks together with one block of the
audio before it and one after it (:func:`~mediastreams.audio.resample_int16`, soxr HQ, in
one go): a block is one period of both rates (10 ms for 44.1 or 48 kHz and 8 kHz), so the
output lies on the same grid as a resample of the whole signal, and the 10 ms on each side
cover soxr's filter (about 7.5 ms each way), so it matches that resample to within the
int16 noise floor. The delay is one block, plus whatever is still missing to complete one.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ..audio import resample_int16

__all__ = ["MAX_BLOCK_MS", "LiveResampler"]

MAX_BLOCK_MS = 20.0
"""The longest block (one period of both rates) accepted: 20 ms of delay at most."""
_CONTEXT_MS = 10.0  # audio taken on each side of the blocks resampled: soxr HQ's reach


class LiveResampler:
    """Resamples a stream of mono int16 chunks with about one block of delay.

    Args:
        input_rate: the rate of the audio given to :meth:`process`, in Hz.
        output_rate: the rate wanted, in Hz.

    Raises:
        ValueError: a rate is not positive, or the two rates have no common period of
            :data:`MAX_BLOCK_MS` or less (44.1, 48, 16, 22.05, 32, 96 kHz... with 8 kHz do).
    """

    def __init__(self, input_rate: int, output_rate: int) -> None:
        if input_rate <= 0 or output_rate <= 0:
            raise ValueError(f"sample rates must be positive, not {input_rate} -> {output_rate}")
        common = math.gcd(input_rate, output_rate)
        block_ms = 1000 / common
        if block_ms > MAX_BLOCK_MS:
            raise ValueError(
                f"{input_rate} Hz -> {output_rate} Hz: the rates share no period of "
                f"{MAX_BLOCK_MS:g} ms or less (use 16, 22.05, 24, 32, 44.1 or 48 kHz)"
            )
        self.input_rate = input_rate
        self.output_rate = output_rate
        self._in_block = input_rate // common
        self._out_block = output_rate // common
        self._context = max(1, math.ceil(_CONTEXT_MS / block_ms))  # blocks on each side
        # Before the start: silence, as a one-go resample of the whole signal pads it.
        self._pending = np.zeros(self._context * self._in_block, dtype=np.int16)

    def process(self, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """The next chunk in; the output that is ready (possibly none) out."""
        if self.input_rate == self.output_rate:
            return samples
        pending = np.concatenate((self._pending, samples.astype(np.int16, copy=False)))
        blocks = len(pending) // self._in_block
        ready = blocks - self._context  # blocks up to here have their lookahead
        if ready <= self._context:  # the first context blocks are history: done already
            self._pending = pending
            return np.zeros(0, dtype=np.int16)
        window = pending[: (ready + self._context) * self._in_block]
        out = resample_int16(window, self.input_rate, self.output_rate)
        result = out[self._context * self._out_block : ready * self._out_block]
        self._pending = pending[(ready - self._context) * self._in_block :]
        return np.ascontiguousarray(result, dtype=np.int16)
