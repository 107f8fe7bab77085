"""The fuzz targets: one input in, the library's documented outcome out, or a failure.

A target raises :class:`Failure` when the library answered with something it documents but
should not have (two paths of ``parse`` disagreeing, an app frame read as an unknown message);
any exception that is neither that nor the target's documented error type is a crash too.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mediastreams.exceptions import RemoteProtocolError, TwiMLError
from mediastreams.inspection import inspect_trace
from mediastreams.limits import DEFAULT_LIMITS
from mediastreams.messages import Clear, Mark, Media, UnknownMessage, parse
from mediastreams.protocol import AppProtocol, Received, TwilioProtocol
from mediastreams.schemas import TWILIO_SCHEMAS
from mediastreams.tally import Tally
from mediastreams.trace import read_trace
from mediastreams.twiml import Connect, Start, Stop, StreamVerb, check_stream, parse_twiml

__all__ = ["FRAME_LIMIT_BYTES", "TARGETS", "Failure", "Target"]

FRAME_LIMIT_BYTES = DEFAULT_LIMITS.max_frame_bytes
"""Inputs longer than this are not timed: a server refuses such a frame before reading it."""

MZ = "MZ0123456789abcdef0123456789abcdef"


class Failure(AssertionError):
    """The library answered within its documented types but broke one of its promises."""


@dataclass(frozen=True)
class Target:
    """A function of one input, and the exception types it may raise.

    ``units`` says how many units of work an input is, for the 10 ms bound: one frame or
    document, or a trace's lines (a trace is a file of any length, read line by line).
    """

    name: str
    run: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...]
    kind: str  # "frame", "twiml" or "trace": which mutations and seeds fit it
    units: Callable[[bytes], int] = lambda data: 1


def _as_text(data: bytes) -> str | None:
    # Raw lone surrogates are kept (a str from Python code can hold them; a WebSocket's cannot).
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None


def _parse(data: bytes, sender: str) -> str:
    # As text when the bytes are UTF-8 (every other input), else as the bytes themselves.
    text = _as_text(data) if len(data) % 2 == 0 else None
    try:
        message = parse(data if text is None else text, sender=sender)  # type: ignore[arg-type]
    except RemoteProtocolError as error:
        if error.violation.kind == "invalid-frame":
            raise Failure("the fast path refused what the diagnostics accept") from error
        return error.violation.kind
    if sender == "app" and not isinstance(message, Media | Mark | Clear):
        raise Failure(f"parse(sender='app') returned {type(message).__name__}")
    if isinstance(message, UnknownMessage) and message.event in TWILIO_SCHEMAS:
        raise Failure(f"a known event ({message.event}) read as UnknownMessage")
    return type(message).__name__


def parse_twilio(data: bytes) -> str:
    """``parse(frame, sender="twilio")``, as text or as bytes."""
    return _parse(data, "twilio")


def parse_app(data: bytes) -> str:
    """``parse(frame, sender="app")``, as text or as bytes."""
    return _parse(data, "app")


def _frame(data: bytes) -> str | bytes:
    # A text frame when the bytes are UTF-8 (what a WebSocket delivers as text), else binary.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _start_twilio_side() -> tuple[TwilioProtocol, list[str]]:
    twilio = TwilioProtocol(stream_sid=MZ)
    twilio.send_connected()
    twilio.send_start()
    return twilio, twilio.data_to_send()


def receive_app_side(data: bytes) -> str:
    """The app's side reads ``connected``, ``start``, then the fuzzed frame from Twilio."""
    _, opening = _start_twilio_side()
    app = AppProtocol()
    tally = Tally()
    for text in opening:
        tally.read("twilio", text, app.receive(text))
    frame = _frame(data)
    received = app.receive(frame)
    tally.read("twilio", frame, received)
    json.dumps(tally.to_dict(), allow_nan=False)
    return _outcome(received)


def receive_twilio_side(data: bytes) -> str:
    """Twilio's side, after ``start``, reads the fuzzed frame from the app and plays on."""
    twilio, _ = _start_twilio_side()
    twilio.receive('{"event":"mark","streamSid":"' + MZ + '","mark":{"name":"m"}}')
    frame = _frame(data)
    received = twilio.receive(frame)
    Tally().read("app", frame, received)
    twilio.play(160)
    twilio.data_to_send()
    return _outcome(received)


def _outcome(received: Received[Any]) -> str:
    # An ignored frame says why, unless it crossed the stop (which is not a mistake).
    if received.message is None and type(received) is Received and not received.violations:
        raise Failure("a frame ignored with no violation to say why")
    kinds = " ".join(v.kind for v in received.violations)
    return f"{type(received.message).__name__} {kinds}"


def twiml(data: bytes) -> str:
    """``parse_twiml`` (only ``TwiMLError``), then the ``<Stream>`` checks on what it read."""
    response = parse_twiml(data)
    problems = []
    for verb in response.verbs:
        if isinstance(verb, Connect | Start | Stop) and verb.stream is not None:
            problems += check_stream(verb.stream, _VERB_NAMES[type(verb)])
    return " ".join(type(verb).__name__ for verb in response.verbs) + f" {len(problems)}"


_VERB_NAMES: dict[type, StreamVerb] = {Connect: "Connect", Start: "Start", Stop: "Stop"}


def trace(data: bytes) -> str:
    """``read_trace`` + ``inspect_trace`` over the input as a trace, and its JSON report."""
    lines = io.StringIO(data.decode("utf-8", "replace"), newline=None)
    result = inspect_trace(read_trace(lines))
    json.dumps(result.to_dict(), allow_nan=False)
    return " ".join(sorted({f.violation.kind for f in result.findings}))


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target("parse-twilio", parse_twilio, (RemoteProtocolError,), "frame"),
        Target("parse-app", parse_app, (RemoteProtocolError,), "frame"),
        Target("receive-app-side", receive_app_side, (), "frame"),
        Target("receive-twilio-side", receive_twilio_side, (), "frame"),
        Target("twiml", twiml, (TwiMLError,), "twiml"),
        Target("trace", trace, (), "trace", units=lambda data: max(1, data.count(b"\n") + 1)),
    )
}
"""Every target, by name."""
