"""Building TwiML: verbs to a ``<Response>`` document, checked against Twilio's rules first.

Reference: https://www.twilio.com/docs/voice/twiml/stream and
https://www.twilio.com/docs/voice/twiml/connect
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping

from ..exceptions import TwiMLError
from .rules import check_verb
from .verbs import (
    Connect,
    Hangup,
    Parameter,
    Pause,
    Play,
    Redirect,
    Say,
    Start,
    Stop,
    Stream,
    UnknownVerb,
    Verb,
)

__all__ = ["connect_stream", "render_twiml"]

# https://www.w3.org/TR/xml/#charsets: no escape exists for these characters (what the spec
# allows is tab, newline, carriage return, U+0020-U+D7FF, U+E000-U+FFFD and U+10000 up).
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


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
        for problem in check_verb(verb, allow_insecure_loopback=allow_insecure_loopback)
    ]
    if problems:
        raise TwiMLError("; ".join(problem.describe() for problem in problems))
    root = ET.Element("Response")
    root.extend([_element(verb) for verb in verbs])
    return _XML_DECLARATION + ET.tostring(root, encoding="unicode")


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
