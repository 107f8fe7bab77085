"""The TwiML document model: one frozen dataclass per verb and noun a stream call uses.

:func:`~mediastreams.twiml.render_twiml` writes these, :func:`~mediastreams.twiml.parse_twiml`
reads them back, and :mod:`mediastreams.twiml.rules` judges them; a verb or noun not modelled
here is kept as an :class:`UnknownVerb`, as written.

Reference: https://www.twilio.com/docs/voice/twiml
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

__all__ = [
    "Connect",
    "Hangup",
    "Parameter",
    "Pause",
    "Play",
    "Redirect",
    "Response",
    "Say",
    "Start",
    "Stop",
    "Stream",
    "StreamVerb",
    "UnknownVerb",
    "Verb",
]

StreamVerb: TypeAlias = Literal["Connect", "Start", "Stop"]
"""The verbs a ``<Stream>`` sits in."""


@dataclass(frozen=True, slots=True)
class Parameter:
    """A ``<Parameter name value/>``: it arrives in ``start.customParameters``."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class UnknownVerb:
    """A verb or noun this module does not model (``<Dial>``, ``<Room>``...), kept as written.

    Attributes:
        name: the element's tag, such as ``"Dial"``.
        attributes: its attributes, as written.
        text: its text content, stripped (``""`` if none).
        children: its child elements, in order.
    """

    name: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    text: str = ""
    children: tuple[UnknownVerb, ...] = ()


@dataclass(frozen=True, slots=True)
class Stream:
    """A ``<Stream>`` noun, inside ``<Connect>``, ``<Start>`` or ``<Stop>``.

    Attributes:
        url: the ``wss://`` URL Twilio opens the WebSocket to, with no query string, or a
            URL relative to the document's (see :func:`resolve_stream_url`).
        name: a name unique within the call; ``<Stop><Stream name>`` needs it.
        track: ``inbound_track`` (the only value ``<Connect>`` takes), ``outbound_track``
            or ``both_tracks``; ``None`` leaves Twilio's default, ``inbound_track``.
        status_callback: a URL (absolute, or relative to the document's) Twilio sends
            ``stream-started``/``-stopped``/``-error`` events to.
        status_callback_method: ``"GET"`` or ``"POST"`` (Twilio's default).
        parameters: ``<Parameter>`` children, in order.
        extra: other attributes (``connectorName``...), written as given.
    """

    url: str | None = None
    name: str | None = None
    track: str | None = None
    status_callback: str | None = None
    status_callback_method: str | None = None
    parameters: tuple[Parameter, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Connect:
    """``<Connect>``: a bidirectional stream that blocks until the WebSocket closes.

    Attributes:
        stream: the ``<Stream>`` noun.
        action: a URL Twilio requests when ``<Connect>`` ends; without one, the document
            continues with the next verb.
        method: ``"GET"`` or ``"POST"`` (Twilio's default) for ``action``.
        others: other nouns (``<Room>``, ``<ConversationRelay>``, a second ``<Stream>``...).
        extra: other attributes, written as given.
    """

    stream: Stream | None = None
    action: str | None = None
    method: str | None = None
    others: tuple[UnknownVerb, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Start:
    """``<Start>``: a unidirectional stream that does not block; the next verb runs at once."""

    stream: Stream | None = None
    others: tuple[UnknownVerb, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stop:
    """``<Stop>``: stops the unidirectional stream named by ``stream.name``."""

    stream: Stream | None = None
    others: tuple[UnknownVerb, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Say:
    """``<Say>``: text spoken to the caller, ``loop`` times (0 means until the call ends)."""

    text: str
    voice: str | None = None
    language: str | None = None
    loop: int | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pause:
    """``<Pause>``: silence for ``length_seconds`` (Twilio's default is 1)."""

    length_seconds: int | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Play:
    """``<Play>``: an audio file played to the caller, ``loop`` times."""

    url: str
    loop: int | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hangup:
    """``<Hangup>``: ends the call."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """``<Redirect>``: continues with the TwiML at ``url``."""

    url: str
    method: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


Verb: TypeAlias = Connect | Start | Stop | Say | Pause | Play | Hangup | Redirect | UnknownVerb


@dataclass(frozen=True, slots=True)
class Response:
    """A parsed ``<Response>``: its verbs in document order."""

    verbs: tuple[Verb, ...] = ()
