"""mediastreams: Twilio Programmable Voice bidirectional Media Streams, right by construction.

Only what is listed in ``__all__`` (and documented) is public. Submodules with their own
``__all__`` (``messages``, ``protocol``, ``diagnostics``, ``session``, ``audio``, ``twiml``,
``security``, ``trace``, ``server``, ``adapters``)
are public too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .diagnostics import Violation
    from .emulator import CallReport, CallResult, place_call
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

# Every name is loaded on first use: the command line (`mediastreams --help`) and a program
# that needs only the exceptions or the messages do not pay for msgspec, asyncio, numpy or
# httpx (the emulator) up front. The module each name comes from:
_SOURCES: dict[str, str] = {
    "Violation": "diagnostics",
    **dict.fromkeys(("CallReport", "CallResult", "place_call"), "emulator"),
    **dict.fromkeys(
        (
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
        ),
        "exceptions",
    ),
    **dict.fromkeys(
        (
            "DTMF",
            "Clear",
            "Connected",
            "Mark",
            "Media",
            "MediaFormat",
            "Start",
            "Stop",
            "UnknownMessage",
            "parse",
            "serialize",
        ),
        "messages",
    ),
    **dict.fromkeys(("AppProtocol", "TwilioProtocol"), "protocol"),
    **dict.fromkeys(("MarkHandle", "MediaStream", "Outcome", "PlayHandle"), "session"),
}
# Public submodules, reachable as attributes once `import mediastreams` ran, as they were
# when this module imported them eagerly.
_SUBMODULES = frozenset(
    {"adapters", "audio", "diagnostics", "emulator", "exceptions", "messages", "protocol"}
    | {"security", "server", "session", "trace", "twiml", "wireformat"}
)


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is not None:
        value = getattr(importlib.import_module(f".{source}", __name__), name)
        globals()[name] = value  # found directly from now on
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'mediastreams' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SOURCES, *_SUBMODULES})


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
