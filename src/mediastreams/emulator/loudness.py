"""When mu-law audio counts as speech: the level the caller's and the app's audio is judged by.

A 20 ms frame is speech (voiced) when its RMS level is above about -40 dBFS; a stretch of the
app's audio is audible on the same threshold, and silence the app sends (``0xFF``, or hiss
below the threshold) is not. The script cuts the caller's utterances with
:func:`voiced_frames`; the playout's record (:mod:`mediastreams.emulator.talkback`) marks
audible ticks with :func:`is_audible` and finds where queued audio stops being loud with
:func:`audible_extent`.
"""

from __future__ import annotations

import numpy as np

from ..audio import mulaw
from ..audio.frames import FRAME_BYTES

__all__ = ["audible_extent", "is_audible", "voiced_frames"]

# A frame is speech when its level is above about -40 dBFS (RMS of 16-bit PCM).
_SPEECH_RMS = 328.0


def voiced_frames(mulaw: bytes) -> list[bool]:
    """For each 160-byte frame of ``mulaw`` (whole frames), whether it is speech."""
    if not mulaw:
        return []
    codes = np.frombuffer(mulaw, dtype=np.uint8).reshape(-1, FRAME_BYTES)
    rms = np.sqrt(_SQUARES[codes].mean(axis=1))
    return [bool(v) for v in rms > _SPEECH_RMS]


def is_audible(mulaw: bytes) -> bool:
    """Whether a stretch of mu-law is louder than about -40 dBFS (not silence or hiss)."""
    if not mulaw or not mulaw.translate(None, _QUIET_CODES):
        return False  # empty, or nothing but codes too quiet to matter: no numpy call
    codes = np.frombuffer(mulaw, dtype=np.uint8)
    return bool(_SQUARES.take(codes).sum() > _SPEECH_RMS * _SPEECH_RMS * len(mulaw))


def audible_extent(mulaw: bytes) -> int:
    """How far into ``mulaw`` its last sample above the speech level is (0: none is)."""
    return len(mulaw.rstrip(_QUIET_CODES))


_SQUARES = np.frombuffer(mulaw.decode(bytes(range(256))), dtype="<i2").astype(np.float64) ** 2
# Codes whose sample alone is below the speech level: a frame of only these is quiet.
_QUIET_CODES = bytes(code for code in range(256) if _SQUARES[code] <= _SPEECH_RMS**2)
