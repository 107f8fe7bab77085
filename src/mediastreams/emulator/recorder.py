"""What the caller heard, and what the caller said, on one 8 kHz timeline.

Every 20 ms tick adds one frame to each side: the caller's own audio, and the playout (the
app's audio as Twilio played it, mu-law silence where nothing was left to play). Audio before
the stream (``<Say>``, ``<Play>``, ``<Pause>`` in the TwiML) goes on the heard side.
"""

from __future__ import annotations

import numpy as np

from ..audio import SILENCE_BYTE, mulaw, wav_bytes
from ..protocol import BYTES_PER_MS

__all__ = ["Recorder"]

_SILENCE = SILENCE_BYTE


class Recorder:
    """Collects both sides of the call as mu-law/8000."""

    def __init__(self) -> None:
        self._heard = bytearray()
        self._caller = bytearray()

    def add_prelude(self, heard: bytes) -> None:
        """Audio the caller heard before the stream started; the caller was silent."""
        self._heard += heard
        self._caller += bytes([_SILENCE]) * len(heard)

    def add(self, caller: bytes, played: bytes) -> None:
        """One tick: the caller's frame and what was played (padded with silence)."""
        self._caller += caller
        self._heard += played
        if len(played) < len(caller):
            self._heard += bytes([_SILENCE]) * (len(caller) - len(played))

    @property
    def heard_mulaw(self) -> bytes:
        """Everything the caller heard, as mu-law/8000."""
        return bytes(self._heard)

    @property
    def caller_mulaw(self) -> bytes:
        """Everything the caller said, as mu-law/8000."""
        return bytes(self._caller)

    @property
    def duration_ms(self) -> int:
        """Length of the recording."""
        return len(self._heard) // BYTES_PER_MS

    def heard_wav(self) -> bytes:
        """What the caller heard, as a 16-bit PCM WAV file (mono, 8000 Hz)."""
        return wav_bytes(mulaw.decode(self.heard_mulaw), encoding="pcm")

    def stereo_wav(self) -> bytes:
        """The caller on the left, the app's audio as played on the right (16-bit PCM)."""
        left = np.frombuffer(mulaw.decode(self.caller_mulaw), dtype="<i2")
        right = np.frombuffer(mulaw.decode(self.heard_mulaw), dtype="<i2")
        both = np.column_stack((left, right)).astype("<i2")
        return wav_bytes(both.tobytes(), encoding="pcm", channels=2)
