"""TwiML for Media Streams: build ``<Connect><Stream>`` documents, and parse TwiML back.

Building refuses what Twilio would refuse (a non-``wss`` URL, a bad ``track``, an oversized
``<Parameter>``...) with a :class:`~mediastreams.exceptions.TwiMLError` that names Twilio's
error code and says how to fix it. The common case is one call::

    from mediastreams import twiml

    xml = twiml.connect_stream("wss://abc.example/media-stream", parameters={"tenant": "acme"})

Any other document is a sequence of verbs given to :func:`render_twiml`::

    xml = twiml.render_twiml(
        twiml.Say("Connecting you."),
        twiml.Connect(twiml.Stream("wss://abc.example/media-stream")),
    )

:func:`parse_twiml` reads a document into the same dataclasses without judging the
``<Stream>`` rules, so that a caller (the emulator) can report them;
:func:`check_stream_url` and :func:`check_stream` are those rules, in one place.

Reference: https://www.twilio.com/docs/voice/twiml/stream and
https://www.twilio.com/docs/voice/twiml/connect
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

from .exceptions import TwiMLError

__all__ = [
    "LOOPBACK_HOSTS",
    "PARAMETER_MAX_CHARS",
    "TRACKS",
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
    "TwiMLProblem",
    "UnknownVerb",
    "Verb",
    "check_stream",
    "check_stream_url",
    "connect_stream",
    "is_relative_url",
    "parse_twiml",
    "render_twiml",
    "resolve_stream_url",
]

# https://www.twilio.com/docs/voice/twiml/stream#attributes-track
TRACKS = ("inbound_track", "outbound_track", "both_tracks")

# https://www.twilio.com/docs/voice/twiml/stream#custom-parameters: "each name plus value
# must be under 500 characters", so 500 itself is refused.
PARAMETER_MAX_CHARS = 500

#: Hosts a plain ``ws://`` URL may point at when ``allow_insecure_loopback=True``.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_METHODS = ("GET", "POST")
# https://www.w3.org/TR/xml/#charsets: no escape exists for other characters.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'

StreamVerb: TypeAlias = Literal["Connect", "Start", "Stop"]


# --- the document model ---------------------------------------------------------------------


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


# --- the rules ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TwiMLProblem:
    """One reason Twilio would refuse (or mishandle) a ``<Stream>``.

    Attributes:
        code: Twilio's error code (31922, 31923, 31941), or ``None`` where Twilio has none.
        message: what is wrong.
        hint: how to fix it.
    """

    code: int | None
    message: str
    hint: str

    def describe(self) -> str:
        """The problem as one line: ``"31922: message. hint"``."""
        prefix = f"{self.code}: " if self.code is not None else ""
        return f"{prefix}{self.message}. {self.hint}"


def check_stream_url(url: str, *, allow_insecure_loopback: bool = False) -> list[TwiMLProblem]:
    """Check a ``<Stream url>`` against Twilio's rules.

    Args:
        url: the URL as it would be written in the TwiML.
        allow_insecure_loopback: accept ``ws://`` to 127.0.0.1, localhost or ::1, for a
            local run against the emulator; Twilio itself never accepts it.

    Returns:
        The problems found, most fundamental first; empty if the URL is fine.
    """
    if not url or any(c.isspace() or ord(c) < 0x20 for c in url):
        return [_malformed(url, "it is empty or holds whitespace or control characters")]
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError as error:
        return [_malformed(url, str(error))]
    problems = []
    if parts.scheme or parts.netloc:
        if not parts.scheme or not parts.netloc:
            return [_malformed(url, "it names a scheme or a host but not both")]
        if not _scheme_allowed(parts, allow_insecure_loopback):
            problems.append(_bad_scheme(parts, allow_insecure_loopback))
    # else: https://www.twilio.com/docs/voice/twiml/stream#attributes-url allows a relative
    # URL: it is resolved against the URL of the document (see resolve_stream_url).
    if "?" in url:
        # https://www.twilio.com/docs/voice/twiml/stream#attributes-url: query strings are
        # not supported, and Twilio strips them from the upgrade request.
        problems.append(
            TwiMLProblem(
                None,
                # The query itself is not echoed: people put secrets there.
                "the stream URL has a query string, which Twilio strips from the WebSocket upgrade",
                "Pass values as <Parameter> instead; they arrive in start.customParameters",
            )
        )
    if "#" in url:
        problems.append(
            TwiMLProblem(
                None,
                "the stream URL has a fragment (#...), which is never sent to the server",
                "Remove it; pass values as <Parameter> instead",
            )
        )
    return problems


def resolve_stream_url(url: str, document_url: str) -> str:
    """The URL Twilio connects to for a ``<Stream url>`` in the document at ``document_url``.

    An absolute URL is kept. A relative one is resolved against the document's URL, and its
    scheme mapped as a WebSocket URL's: ``https`` to ``wss``, ``http`` to ``ws``.
    https://www.twilio.com/docs/voice/twiml/stream#attributes-url documents relative URLs;
    the mapping is the usual one and an assumption: Twilio does not document it.

    Args:
        url: the ``url`` attribute as written.
        document_url: the URL the TwiML was fetched from.
    """
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        return url
    resolved = urlsplit(urljoin(document_url, url))
    scheme = {"https": "wss", "http": "ws"}.get(resolved.scheme, resolved.scheme)
    return urlunsplit(resolved._replace(scheme=scheme))


def is_relative_url(url: str) -> bool:
    """Whether ``url`` is a relative reference (no scheme and no host), such as ``/stream``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(url) and not parts.scheme and not parts.netloc


def check_stream(
    stream: Stream, verb: StreamVerb, *, allow_insecure_loopback: bool = False
) -> list[TwiMLProblem]:
    """Check a ``<Stream>`` inside ``<Connect>``, ``<Start>`` or ``<Stop>``.

    Args:
        stream: the stream to check.
        verb: the verb it sits in.
        allow_insecure_loopback: as for :func:`check_stream_url`.

    Returns:
        The problems found; empty if Twilio would accept the stream.
    """
    problems: list[TwiMLProblem] = []
    if verb == "Stop":
        if not stream.name:
            problems.append(
                TwiMLProblem(
                    None,
                    "<Stop><Stream> has no name",
                    "Give the <Start><Stream> a name and stop it with <Stop><Stream name=...>",
                )
            )
        return problems
    if stream.url is None:
        if "connectorName" not in stream.extra:
            problems.append(_malformed("", "<Stream> has no url attribute"))
    else:
        problems += check_stream_url(stream.url, allow_insecure_loopback=allow_insecure_loopback)
    problems += _check_track(stream.track, verb)
    problems += _check_status_callback(stream)
    problems += _check_parameters(stream.parameters)
    return problems


def _malformed(url: str, why: str) -> TwiMLProblem:
    # https://www.twilio.com/docs/api/errors/31923 (Malformed URL)
    return TwiMLProblem(
        31923,
        f"malformed stream URL {url.partition('?')[0]!r}: {why}",
        "Write a URL such as wss://abc.example/media-stream, or a path such as /media-stream",
    )


def _scheme_allowed(parts: SplitResult, allow_insecure_loopback: bool) -> bool:
    # https://www.twilio.com/docs/voice/twiml/stream#attributes-url: wss only
    if parts.scheme == "wss":
        return True
    return parts.scheme == "ws" and allow_insecure_loopback and parts.hostname in LOOPBACK_HOSTS


def _bad_scheme(parts: SplitResult, allow_insecure_loopback: bool) -> TwiMLProblem:
    # https://www.twilio.com/docs/api/errors/31922 (URL Schema Not Supported)
    if parts.scheme == "ws" and parts.hostname in LOOPBACK_HOSTS:
        hint = "Use wss://, or pass allow_insecure_loopback=True for a local run"
    elif parts.scheme == "ws" and allow_insecure_loopback:
        hint = f"ws:// is allowed only to {', '.join(sorted(LOOPBACK_HOSTS))}; use wss://"
    else:
        hint = "Use wss:// (https:// becomes wss://); Twilio connects over TLS only"
    return TwiMLProblem(31922, f"stream URL scheme {parts.scheme!r} is not wss", hint)


def _check_track(track: str | None, verb: StreamVerb) -> list[TwiMLProblem]:
    # https://www.twilio.com/docs/api/errors/31941 (Invalid Track configuration)
    if track is None:
        return []
    if verb == "Connect" and track != "inbound_track":
        return [
            TwiMLProblem(
                31941,
                f"track={track!r} on <Connect><Stream>",
                "A bidirectional stream carries inbound_track only: drop the track attribute,"
                " or use <Start><Stream> for a one-way copy of other tracks",
            )
        ]
    if track not in TRACKS:
        return [
            TwiMLProblem(
                31941,
                f"track={track!r} is not a stream track",
                f"Use one of {', '.join(TRACKS)}",
            )
        ]
    return []


def _check_status_callback(stream: Stream) -> list[TwiMLProblem]:
    problems = []
    method = stream.status_callback_method
    if method is not None and method not in _METHODS:
        # https://www.twilio.com/docs/voice/twiml/stream#attributes-status-callback-method
        problems.append(TwiMLProblem(None, f"statusCallbackMethod={method!r}", "Use GET or POST"))
    callback = stream.status_callback
    if callback is not None and not (_is_absolute_http(callback) or is_relative_url(callback)):
        # https://www.twilio.com/docs/voice/twiml/stream#attributes-status-callback: "a
        # relative or absolute URL"; an absolute one is http(s).
        problems.append(
            TwiMLProblem(
                None,
                f"statusCallback={callback!r} is not an http(s) URL",
                "Write a path such as /stream-events, or the full https:// URL",
            )
        )
    return problems


def _is_absolute_http(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _check_parameters(parameters: Iterable[Parameter]) -> list[TwiMLProblem]:
    problems = []
    seen: set[str] = set()
    for parameter in parameters:
        if not parameter.name:
            problems.append(
                TwiMLProblem(None, "a <Parameter> has no name", "Give every <Parameter> a name")
            )
        elif parameter.name in seen:
            problems.append(
                TwiMLProblem(
                    None,
                    f"<Parameter name={parameter.name!r}> is repeated",
                    "start.customParameters is an object, so only one value would arrive;"
                    " give each parameter its own name",
                )
            )
        seen.add(parameter.name)
        size = len(parameter.name) + len(parameter.value)
        # https://www.twilio.com/docs/voice/twiml/stream#custom-parameters
        if size >= PARAMETER_MAX_CHARS:
            problems.append(
                TwiMLProblem(
                    None,
                    f"<Parameter name={parameter.name[:40]!r}> has {size} characters of name"
                    f" plus value; Twilio requires fewer than {PARAMETER_MAX_CHARS}",
                    "Pass a short key (an id) and look the data up when start arrives",
                )
            )
    return problems


# --- building -------------------------------------------------------------------------------


def connect_stream(
    url: str,
    *,
    parameters: Mapping[str, str] | Iterable[Parameter] = (),
    name: str | None = None,
    status_callback: str | None = None,
    status_callback_method: str | None = None,
    action: str | None = None,
    method: str | None = None,
    allow_insecure_loopback: bool = False,
) -> str:
    """Build ``<Response><Connect><Stream>`` for a bidirectional Media Stream.

    With no ``action``, the call ends when the WebSocket closes, since no verb follows.

    Args:
        url: the ``wss://`` URL of your WebSocket endpoint, with no query string.
        parameters: ``<Parameter>`` names and values, sent back in ``start.customParameters``.
        name: a name for the stream, unique within the call.
        status_callback: a URL for ``stream-started``/``-stopped``/``-error`` events.
        status_callback_method: ``"GET"`` or ``"POST"``.
        action: a URL Twilio requests for more TwiML when the stream ends.
        method: ``"GET"`` or ``"POST"``, for ``action``.
        allow_insecure_loopback: accept ``ws://`` to a loopback host, for a local run.

    Returns:
        The TwiML document, with its XML declaration.

    Raises:
        TwiMLError: Twilio would refuse the document; the message says why and how to fix it.
    """
    if isinstance(parameters, Mapping):
        parameters = [Parameter(key, value) for key, value in parameters.items()]
    stream = Stream(
        url=url,
        name=name,
        status_callback=status_callback,
        status_callback_method=status_callback_method,
        parameters=tuple(parameters),
    )
    connect = Connect(stream, action=action, method=method)
    return render_twiml(connect, allow_insecure_loopback=allow_insecure_loopback)


def render_twiml(*verbs: Verb, allow_insecure_loopback: bool = False) -> str:
    """Write verbs as a ``<Response>`` document, checking every ``<Stream>`` first.

    Args:
        *verbs: the verbs, in order.
        allow_insecure_loopback: accept ``ws://`` stream URLs to a loopback host.

    Returns:
        The TwiML document, with ``<?xml version="1.0" encoding="UTF-8"?>`` as Twilio's
        helper library writes it.

    Raises:
        TwiMLError: Twilio would refuse the document; the message says why and how to fix it.
    """
    problems = [
        problem
        for verb in verbs
        for problem in _check_verb(verb, allow_insecure_loopback=allow_insecure_loopback)
    ]
    if problems:
        raise TwiMLError("; ".join(problem.describe() for problem in problems))
    root = ET.Element("Response")
    root.extend([_element(verb) for verb in verbs])
    return _XML_DECLARATION + ET.tostring(root, encoding="unicode")


def _check_verb(verb: Verb, *, allow_insecure_loopback: bool) -> list[TwiMLProblem]:
    match verb:
        case Connect():
            problems = _check_method(verb.method, "<Connect method>")
            if verb.stream is None and not verb.others:
                problems.append(TwiMLProblem(None, "<Connect> is empty", "Give it a <Stream>"))
            stream_verb: StreamVerb = "Connect"
        case Start():
            problems, stream_verb = [], "Start"
        case Stop():
            problems, stream_verb = [], "Stop"
        case Redirect():
            return _check_method(verb.method, "<Redirect method>")
        case _:
            return []
    if verb.stream is not None:
        problems += check_stream(
            verb.stream, stream_verb, allow_insecure_loopback=allow_insecure_loopback
        )
    return problems


def _check_method(method: str | None, where: str) -> list[TwiMLProblem]:
    if method is None or method in _METHODS:
        return []
    return [TwiMLProblem(None, f"{where}={method!r}", "Use GET or POST")]


def _element(verb: Verb | Stream | Parameter) -> ET.Element:
    attributes: dict[str, str | int | None]
    match verb:
        case Connect():
            attributes = {"action": verb.action, "method": verb.method, **verb.extra}
            return _tag("Connect", attributes, children=(verb.stream, *verb.others))
        case Start() | Stop():
            children = (verb.stream, *verb.others)
            return _tag(type(verb).__name__, verb.extra, children=children)
        case Stream():
            attributes = {
                "url": verb.url,
                "name": verb.name,
                "track": verb.track,
                "statusCallback": verb.status_callback,
                "statusCallbackMethod": verb.status_callback_method,
                **verb.extra,
            }
            return _tag("Stream", attributes, children=verb.parameters)
        case Parameter():
            return _tag("Parameter", {"name": verb.name, "value": verb.value})
        case Say():
            attributes = {"voice": verb.voice, "language": verb.language, "loop": verb.loop}
            return _tag("Say", {**attributes, **verb.extra}, text=verb.text)
        case Pause():
            return _tag("Pause", {"length": verb.length_seconds, **verb.extra})
        case Play():
            return _tag("Play", {"loop": verb.loop, **verb.extra}, text=verb.url)
        case Hangup():
            return _tag("Hangup", {})
        case Redirect():
            return _tag("Redirect", {"method": verb.method, **verb.extra}, text=verb.url)
        case UnknownVerb():
            return _tag(verb.name, verb.attributes, text=verb.text, children=verb.children)


def _tag(
    name: str,
    attributes: Mapping[str, str | int | None],
    *,
    text: str = "",
    children: Iterable[Verb | Stream | Parameter | None] = (),
) -> ET.Element:
    values = {key: str(value) for key, value in attributes.items() if value is not None}
    for value in (name, text, *values, *values.values()):
        if _NOT_XML_CHAR.search(value):
            raise TwiMLError(
                f"<{name}> holds a character XML cannot carry ({value[:40]!r});"
                " remove control characters other than tab and newline"
            )
    element = ET.Element(name, values)
    element.text = text or None
    element.extend([_element(child) for child in children if child is not None])
    return element


# --- parsing --------------------------------------------------------------------------------


def parse_twiml(xml: str | bytes) -> Response:
    """Read a TwiML document into its verbs, in order.

    Only the document's shape is checked here; the ``<Stream>`` rules are left to
    :func:`check_stream`, so that a caller can report every problem, not the first.

    Args:
        xml: the document, as text or as the bytes of an HTTP body.

    Returns:
        The verbs under ``<Response>``.

    Raises:
        TwiMLError: the document is not TwiML: not well-formed XML, a DOCTYPE, a root other
            than ``<Response>``, text outside a verb, or an attribute that is not a number
            where one is required.
    """
    text = xml.decode("utf-8", errors="replace") if isinstance(xml, bytes) else xml
    # TwiML never declares a DOCTYPE; refusing one keeps entity expansion out of reach.
    if "<!DOCTYPE" in text.upper():
        raise TwiMLError("TwiML has no DOCTYPE; this document declares one")
    try:
        root = ET.fromstring(text, parser=ET.XMLParser(target=_ShallowTree()))
    except ET.ParseError as error:
        raise TwiMLError(f"not well-formed XML ({error}); a TwiML document is expected") from None
    except UnicodeError:  # a str holding a lone surrogate, which has no UTF-8 form
        raise TwiMLError("the document is not valid Unicode text") from None
    if root.tag != "Response":
        raise TwiMLError(
            f"the root element is <{root.tag}>, not <Response>: is the URL answering with TwiML?"
        )
    _refuse_text(root)
    return Response(tuple(_verb(element) for element in root))


_MAX_DEPTH = 32  # TwiML nests 4 deep (<Response><Start><Stream><Parameter>)
_MAX_ELEMENTS = 1000  # a call's TwiML is a few verbs; this bounds the time to read one


class _ShallowTree(ET.TreeBuilder):
    # Refuses deep nesting and floods of elements as they are read (the verbs are then read
    # recursively, and in time that grows with the number of elements).
    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._elements = 0

    def start(self, tag: str, attrs: dict[str, str], /) -> ET.Element:
        self._depth += 1
        self._elements += 1
        if self._depth > _MAX_DEPTH:
            raise TwiMLError(f"elements nested more than {_MAX_DEPTH} deep; TwiML nests 4")
        if self._elements > _MAX_ELEMENTS:
            raise TwiMLError(f"more than {_MAX_ELEMENTS} elements; TwiML has a few verbs")
        return super().start(tag, attrs)

    def end(self, tag: str, /) -> ET.Element:
        self._depth -= 1
        return super().end(tag)


def _refuse_text(element: ET.Element) -> None:
    for text in (element.text, *(child.tail for child in element)):
        if text and text.strip():
            raise TwiMLError(
                f"text {text.strip()[:40]!r} directly inside <{element.tag}>; TwiML puts text"
                " only inside verbs such as <Say>"
            )


def _verb(element: ET.Element) -> Verb:
    attributes = dict(element.attrib)
    match element.tag:
        case "Connect":
            stream, others = _stream_and_others(element)
            action, method = attributes.pop("action", None), attributes.pop("method", None)
            return Connect(stream, action, method, others, attributes)
        case "Start":
            return Start(*_stream_and_others(element), attributes)
        case "Stop":
            return Stop(*_stream_and_others(element), attributes)
        case "Say":
            voice, language = attributes.pop("voice", None), attributes.pop("language", None)
            loop = _integer(element, attributes.pop("loop", None), "loop")
            return Say("".join(element.itertext()).strip(), voice, language, loop, attributes)
        case "Pause":
            length = _integer(element, attributes.pop("length", None), "length")
            return Pause(length, attributes)
        case "Play":
            loop = _integer(element, attributes.pop("loop", None), "loop")
            return Play(_text(element), loop, attributes)
        case "Hangup":
            return Hangup()
        case "Redirect":
            return Redirect(_text(element), attributes.pop("method", None), attributes)
    return _unknown(element)


def _stream_and_others(element: ET.Element) -> tuple[Stream | None, tuple[UnknownVerb, ...]]:
    _refuse_text(element)
    stream = None
    others = []
    for child in element:
        if child.tag == "Stream" and stream is None:
            stream = _stream(child)
        else:
            others.append(_unknown(child))
    return stream, tuple(others)


def _stream(element: ET.Element) -> Stream:
    _refuse_text(element)
    attributes = dict(element.attrib)
    parameters = []
    for child in element:
        if child.tag != "Parameter":
            raise TwiMLError(f"<Stream> holds <{child.tag}>; only <Parameter> may go there")
        parameters.append(Parameter(child.get("name", ""), child.get("value", "")))
    return Stream(
        url=attributes.pop("url", None),
        name=attributes.pop("name", None),
        track=attributes.pop("track", None),
        status_callback=attributes.pop("statusCallback", None),
        status_callback_method=attributes.pop("statusCallbackMethod", None),
        parameters=tuple(parameters),
        extra=attributes,
    )


def _unknown(element: ET.Element) -> UnknownVerb:
    children = tuple(_unknown(child) for child in element)
    return UnknownVerb(element.tag, dict(element.attrib), _text(element), children)


def _text(element: ET.Element) -> str:
    return (element.text or "").strip()


def _integer(element: ET.Element, value: str | None, attribute: str) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,9}", value):
        raise TwiMLError(
            f"<{element.tag} {attribute}={value[:20]!r}>: {attribute} must be a whole number"
            " (at most 9 digits)"
        )
    return int(value)
