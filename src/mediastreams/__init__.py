"""mediastreams: Twilio Programmable Voice bidirectional Media Streams, right by construction.

Only what is listed in ``__all__`` (and documented) is public.
"""

from __future__ import annotations

from .exceptions import (
    AudioError,
    EmulatorError,
    LocalProtocolError,
    MediaStreamsError,
    ProtocolError,
    RemoteProtocolError,
    SignatureError,
    StreamClosed,
    StreamTimeout,
    TwiMLError,
)

__all__ = [
    "AudioError",
    "EmulatorError",
    "LocalProtocolError",
    "MediaStreamsError",
    "ProtocolError",
    "RemoteProtocolError",
    "SignatureError",
    "StreamClosed",
    "StreamTimeout",
    "TwiMLError",
]
