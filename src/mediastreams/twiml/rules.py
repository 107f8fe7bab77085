"""Twilio's rules for a ``<Stream>``, in one place: what it refuses, with its error code.

:func:`check_stream_url` and :func:`check_stream` list every problem as a
:class:`TwiMLProblem` (Twilio's code, what is wrong, how to fix it); :func:`check_verb` runs
them over a verb. Building refuses a document with any (:func:`~mediastreams.twiml.render_twiml`);
the emulator reports them as Twilio would.

Reference: https://www.twilio.com/docs/voice/twiml/stream and
https://www.twilio.com/docs/voice/twiml/connect
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

from .verbs import Connect, Parameter, Redirect, Start, Stop, Stream, StreamVerb, Verb

__all__ = [
    "LOOPBACK_HOSTS",
    "PARAMETER_MAX_CHARS",
    "TRACKS",
    "TwiMLProblem",
    "check_stream",
    "check_stream_url",
    "check_verb",
    "is_relative_url",
    "resolve_stream_url",
]

# https://www.twilio.com/docs/voice/twiml/stream#attributes-track
TRACKS = ("inbound_track", "outbound_track", "both_tracks")

# https://www.twilio.com/docs/voice/twiml/stream#custom-parameters: "each name plus value
# must be under 500 characters", so 500 itself is refused.
PARAMETER_MAX_CHARS = 500

#: Hosts a plain ``ws://`` URL may point at when ``allow_insecure_loopback=True``.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_METHODS = ("GET", "POST")  # what TwiML's method attributes take


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


def check_verb(verb: Verb, *, allow_insecure_loopback: bool = False) -> list[TwiMLProblem]:
    """Check one verb: the ``<Stream>`` of a ``<Connect>``, ``<Start>`` or ``<Stop>``, and
    the ``method`` of a ``<Connect>`` or ``<Redirect>``; other verbs have no rules here.

    Args:
        verb: the verb to check.
        allow_insecure_loopback: as for :func:`check_stream_url`.

    Returns:
        The problems found; empty if Twilio would accept the verb.
    """
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
