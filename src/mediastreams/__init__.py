"""mediastreams: Twilio Programmable Voice bidirectional Media Streams, right by construction.

Only what is listed in ``__all__`` (and documented) is public. Submodules with their own
``__all__`` (``messages``, ``protocol``, ``diagnostics``, ``session``, ``audio``, ``twiml``,
``security``, ``trace``, ``server``, ``adapters``)
are public too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .diagnostics import Violation
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
from .messages import (
    DTMF,
    Clear,
    Connected,
    Mark,
    Media,
    MediaFormat,
    Start,
    Stop,
    UnknownMessage,
    parse,
    serialize,
)
from .protocol import AppProtocol, TwilioProtocol
from .session import MarkHandle, MediaStream, Outcome, PlayHandle

if TYPE_CHECKING:
    from .emulator import CallReport, CallResult, place_call

# The emulator pulls in numpy, httpx and the audio stack: load it on first use only, so that
# importing mediastreams for its messages or session stays quick.
_LAZY = {"CallReport", "CallResult", "place_call"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import emulator

        return getattr(emulator, name)
    raise AttributeError(f"module 'mediastreams' has no attribute {name!r}")


__all__ = [
    "DTMF",
    "AppProtocol",
    "AudioError",
    "CallReport",
    "CallResult",
    "Clear",
    "Connected",
    "EmulatorError",
    "LocalProtocolError",
    "Mark",
    "MarkHandle",
    "Media",
    "MediaFormat",
    "MediaStream",
    "MediaStreamsError",
    "Outcome",
    "PlayHandle",
    "ProtocolError",
    "RemoteProtocolError",
    "SignatureError",
    "Start",
    "Stop",
    "StreamClosed",
    "StreamTimeout",
    "TwiMLError",
    "TwilioProtocol",
    "UnknownMessage",
    "Violation",
    "parse",
    "place_call",
    "serialize",
]
