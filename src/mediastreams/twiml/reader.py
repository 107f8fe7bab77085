"""Reading TwiML: a document into its verbs, with bounded depth and size.

Only the document's shape is judged here; the ``<Stream>`` rules are
:mod:`mediastreams.twiml.rules`', so that a caller (the emulator) can report every problem.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ..exceptions import TwiMLError
from .verbs import (
    Connect,
    Hangup,
    Parameter,
    Pause,
    Play,
    Redirect,
    Response,
    Say,
    Start,
    Stop,
    Stream,
    UnknownVerb,
    Verb,
)

__all__ = ["parse_twiml"]


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
