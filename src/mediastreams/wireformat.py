"""The format of a Media Streams WebSocket, as constants: mu-law at 8000 Hz in 20 ms frames.

Twilio sends and plays one audio format only: raw mu-law (G.711), 8000 Hz, mono, one byte
per sample, no file header; its ``media`` frames carry 20 ms each
(https://www.twilio.com/docs/voice/media-streams/websocket-messages#media-message). This
module is the one definition of those numbers, of mu-law's silence, and of who sends a frame.

It imports nothing but :mod:`typing`, so the protocol, the session, the audio package and the
emulator all share it without pulling numpy (or anything else) in.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

__all__ = [
    "BYTES_PER_MS",
    "FRAME_BYTES",
    "FRAME_MS",
    "SAMPLE_RATE",
    "SENDERS",
    "SILENCE_BYTE",
    "SILENCE_FRAME",
    "Sender",
]

SAMPLE_RATE: Final = 8000
"""The only sample rate Twilio sends and plays (Hz)."""
BYTES_PER_MS: Final = SAMPLE_RATE // 1000
"""Bytes of mu-law/8000 in one millisecond: one byte per sample, 8 samples a millisecond."""
FRAME_MS: Final = 20
"""The audio in one of Twilio's ``media`` frames (ms)."""
FRAME_BYTES: Final = FRAME_MS * BYTES_PER_MS
"""Bytes of mu-law/8000 in one 20 ms frame (160)."""

SILENCE_BYTE: Final = 0xFF
"""Mu-law code of digital silence (PCM 0). ``0x00`` is a full-scale negative sample: a buzz."""
SILENCE_FRAME: Final = bytes([SILENCE_BYTE]) * FRAME_BYTES
"""One 20 ms frame of mu-law silence."""

Sender: TypeAlias = Literal["twilio", "app"]
"""Who sent a frame: Twilio (to the app) or the app (to Twilio)."""
SENDERS: Final[tuple[Sender, ...]] = ("twilio", "app")
"""Both senders, Twilio first."""
