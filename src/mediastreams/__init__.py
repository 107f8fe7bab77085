"""mediastreams: Twilio Programmable Voice bidirectional Media Streams, right by construction.

Only what is listed in ``__all__`` (and documented) is public. Submodules with their own
``__all__`` (``messages``, ``protocol``, ``diagnostics``, ``session``, ``audio``, ``twiml``,
``security``, ``trace``, ``server``, ``adapters``)
are public too.
"""

from __future__ import annotations

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

__all__ = [
    "DTMF",
    "AppProtocol",
    "AudioError",
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
    "serialize",
]
