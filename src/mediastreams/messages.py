"""One typed, frozen class per Media Streams frame, and the functions that read and write them.

Twilio sends the app ``connected``, ``start``, ``media``, ``dtmf``, ``mark`` and ``stop``; the
app sends Twilio ``media``, ``mark`` and ``clear``
(https://www.twilio.com/docs/voice/media-streams/websocket-messages). :class:`Media` and
:class:`Mark` serve both directions: the fields only Twilio sends (counters, track) are
``None`` in what the app sends.

Wire encodings are decoded once, here: the base64 payload becomes ``bytes`` of mu-law, the
numeric strings (``sequenceNumber``, ``chunk``, ``timestamp``) become ``int``, and keys become
snake_case. :func:`serialize` writes exactly Twilio's wire form back.

Valid frames take a fast path (a typed msgspec decode). A frame that fails it is read again
by :mod:`mediastreams.diagnostics`, which says what is wrong with Twilio's error code and a
hint, so the cost of good error messages is paid only by bad frames.
"""

from __future__ import annotations

import binascii
import functools
import json
import secrets
from collections.abc import Callable
from typing import Any, Literal, TypeAlias

import msgspec

from .exceptions import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DTMF",
    "AppMessage",
    "Clear",
    "Connected",
    "Mark",
    "Media",
    "MediaFormat",
    "Message",
    "Sender",
    "Start",
    "Stop",
    "TwilioMessage",
    "UnknownMessage",
    "new_sid",
    "parse",
    "serialize",
]

Sender: TypeAlias = Literal["twilio", "app"]
"""Who sent a frame: Twilio (to the app) or the app (to Twilio)."""


class Connected(msgspec.Struct, frozen=True, kw_only=True):
    """The first frame Twilio sends once the WebSocket is open."""

    protocol: str = "Call"
    version: str = "1.0.0"


class MediaFormat(msgspec.Struct, frozen=True, kw_only=True):
    """The audio format of the stream; always mu-law, 8000 Hz, mono on Twilio."""

    encoding: str = "audio/x-mulaw"
    sample_rate: int = 8000
    channels: int = 1


class Start(msgspec.Struct, frozen=True, kw_only=True):
    """Twilio's second frame: who is calling and how the audio is encoded.

    ``stream_sid`` is what every frame the app sends must carry. SIDs are opaque strings
    here: Twilio's docs show ``MZ`` + 32 hex digits, but a real capture used a UUID.
    """

    stream_sid: str
    account_sid: str
    call_sid: str
    tracks: tuple[str, ...] = ("inbound",)
    custom_parameters: dict[str, str] = msgspec.field(default_factory=dict)
    media_format: MediaFormat = MediaFormat()
    sequence_number: int = 1


class Media(msgspec.Struct, frozen=True, kw_only=True):
    """Audio: headerless mu-law at 8000 Hz, mono.

    From Twilio, ``track``, ``chunk`` (from 1), ``timestamp`` (milliseconds since the stream
    started) and ``sequence_number`` are set. From the app, they are ``None``: Twilio's
    outbound ``media`` has only ``streamSid`` and ``media.payload``.
    """

    stream_sid: str
    payload: bytes
    track: str | None = None
    chunk: int | None = None
    timestamp: int | None = None
    sequence_number: int | None = None


class DTMF(msgspec.Struct, frozen=True, kw_only=True):
    """A key the caller pressed."""

    stream_sid: str
    digit: str
    sequence_number: int
    track: str = "inbound_track"


class Mark(msgspec.Struct, frozen=True, kw_only=True):
    """A named point in the outbound audio.

    The app sends one after some ``media``; Twilio sends it back (with a ``sequence_number``)
    once the audio before it has played, or at once when a ``clear`` discards that audio.
    """

    stream_sid: str
    name: str
    sequence_number: int | None = None


class Stop(msgspec.Struct, frozen=True, kw_only=True):
    """Twilio's last frame: the stream has stopped (hang-up, or the call moved on)."""

    stream_sid: str
    account_sid: str
    call_sid: str
    sequence_number: int


class Clear(msgspec.Struct, frozen=True, kw_only=True):
    """The app asks Twilio to drop every buffered outbound frame (barge-in)."""

    stream_sid: str


class UnknownMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A frame from Twilio with an ``event`` this version does not know; kept, not fatal."""

    event: str
    data: dict[str, Any]
    text: str


TwilioMessage: TypeAlias = Connected | Start | Media | DTMF | Mark | Stop | UnknownMessage
"""What Twilio sends the app."""
AppMessage: TypeAlias = Media | Mark | Clear
"""What the app sends Twilio."""
Message: TypeAlias = Connected | Start | Media | DTMF | Mark | Stop | Clear | UnknownMessage


# --- wire shapes for the fast path -------------------------------------------------------
# Frames from Twilio may grow fields over time, so unknown keys are tolerated there; frames
# from the app are held to the documented shape, since Twilio logs 31951 for an "extra field"
# (https://www.twilio.com/docs/api/errors/31951).


class _MediaFormatWire(msgspec.Struct, rename="camel"):
    encoding: str
    sample_rate: int
    channels: int


class _StartBodyWire(msgspec.Struct, rename="camel"):
    stream_sid: str
    account_sid: str
    call_sid: str
    tracks: list[str]
    media_format: _MediaFormatWire
    custom_parameters: dict[str, str] = {}


class _ConnectedWire(msgspec.Struct, tag_field="event", tag="connected"):
    protocol: str
    version: str


class _StartWire(msgspec.Struct, tag_field="event", tag="start", rename="camel"):
    sequence_number: str
    stream_sid: str
    start: _StartBodyWire


class _MediaBodyWire(msgspec.Struct):
    track: str
    chunk: str
    timestamp: str
    payload: bytes


class _MediaWire(msgspec.Struct, tag_field="event", tag="media", rename="camel"):
    sequence_number: str
    stream_sid: str
    media: _MediaBodyWire


class _DTMFBodyWire(msgspec.Struct):
    track: str
    digit: str


class _DTMFWire(msgspec.Struct, tag_field="event", tag="dtmf", rename="camel"):
    sequence_number: str
    stream_sid: str
    dtmf: _DTMFBodyWire


class _MarkBodyWire(msgspec.Struct):
    name: str


class _MarkWire(msgspec.Struct, tag_field="event", tag="mark", rename="camel"):
    sequence_number: str
    stream_sid: str
    mark: _MarkBodyWire


class _AppMarkBodyWire(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class _StopBodyWire(msgspec.Struct, rename="camel"):
    account_sid: str
    call_sid: str


class _StopWire(msgspec.Struct, tag_field="event", tag="stop", rename="camel"):
    sequence_number: str
    stream_sid: str
    stop: _StopBodyWire


class _AppMediaBodyWire(msgspec.Struct, forbid_unknown_fields=True):
    payload: bytes


class _AppMediaWire(
    msgspec.Struct, tag_field="event", tag="media", rename="camel", forbid_unknown_fields=True
):
    stream_sid: str
    media: _AppMediaBodyWire


class _AppMarkWire(
    msgspec.Struct, tag_field="event", tag="mark", rename="camel", forbid_unknown_fields=True
):
    stream_sid: str
    mark: _AppMarkBodyWire


class _AppClearWire(
    msgspec.Struct, tag_field="event", tag="clear", rename="camel", forbid_unknown_fields=True
):
    stream_sid: str


_TWILIO_DECODER = msgspec.json.Decoder(
    _ConnectedWire | _StartWire | _MediaWire | _DTMFWire | _MarkWire | _StopWire
)
_APP_DECODER = msgspec.json.Decoder(_AppMediaWire | _AppMarkWire | _AppClearWire)


def _counter(text: str) -> int:
    # Twilio's counters are decimal strings ("1", "52"); int() alone would also take " 5" or "5_0".
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def _from_twilio_wire(wire: Any) -> TwilioMessage:
    if type(wire) is not _ConnectedWire and not wire.stream_sid:
        raise ValueError("empty streamSid")
    if type(wire) is _MediaWire:
        body = wire.media
        if not body.payload:
            raise ValueError("empty payload")
        return Media(
            stream_sid=wire.stream_sid,
            payload=body.payload,
            track=body.track,
            chunk=_counter(body.chunk),
            timestamp=_counter(body.timestamp),
            sequence_number=_counter(wire.sequence_number),
        )
    if type(wire) is _MarkWire:
        return Mark(
            stream_sid=wire.stream_sid,
            name=wire.mark.name,
            sequence_number=_counter(wire.sequence_number),
        )
    if type(wire) is _DTMFWire:
        return DTMF(
            stream_sid=wire.stream_sid,
            digit=wire.dtmf.digit,
            track=wire.dtmf.track,
            sequence_number=_counter(wire.sequence_number),
        )
    if type(wire) is _StartWire:
        return _start_from_wire(wire)
    if type(wire) is _StopWire:
        return Stop(
            stream_sid=wire.stream_sid,
            account_sid=wire.stop.account_sid,
            call_sid=wire.stop.call_sid,
            sequence_number=_counter(wire.sequence_number),
        )
    assert type(wire) is _ConnectedWire
    return Connected(protocol=wire.protocol, version=wire.version)


def _start_from_wire(wire: _StartWire) -> Start:
    body = wire.start
    if body.stream_sid != wire.stream_sid:
        raise ValueError("start.streamSid differs from streamSid")
    fmt = body.media_format
    return Start(
        stream_sid=wire.stream_sid,
        account_sid=body.account_sid,
        call_sid=body.call_sid,
        tracks=tuple(body.tracks),
        custom_parameters=body.custom_parameters,
        media_format=MediaFormat(
            encoding=fmt.encoding, sample_rate=fmt.sample_rate, channels=fmt.channels
        ),
        sequence_number=_counter(wire.sequence_number),
    )


def _from_app_wire(wire: Any) -> AppMessage:
    if not wire.stream_sid:
        raise ValueError("empty streamSid")
    if type(wire) is _AppMediaWire:
        payload = wire.media.payload
        if not payload or _looks_like_container(payload):
            raise ValueError("payload is empty or a file")
        return Media(stream_sid=wire.stream_sid, payload=payload)
    if type(wire) is _AppMarkWire:
        return Mark(stream_sid=wire.stream_sid, name=wire.mark.name)
    assert type(wire) is _AppClearWire
    return Clear(stream_sid=wire.stream_sid)


def _looks_like_container(payload: bytes) -> bool:
    # Cheap pre-check on the first byte; the full signature check is in diagnostics.
    if payload[0] not in _CONTAINER_FIRST_BYTES:
        return False
    from .diagnostics import container_format

    return container_format(payload) is not None


_CONTAINER_FIRST_BYTES = frozenset(b"RIOf\xff")


def parse(text: str | bytes, *, sender: Sender = "twilio") -> Message:
    """Read one frame.

    Args:
        text: the frame as received, JSON text.
        sender: who sent it. Frames from Twilio may carry fields this version does not know
            (they are ignored) and unknown events (they become :class:`UnknownMessage`);
            frames from the app are held to Twilio's documented shape.

    Returns:
        The message, with its payload decoded to mu-law bytes and its counters to ``int``.

    Raises:
        RemoteProtocolError: the frame is not a valid Media Streams frame; its ``violation``
            carries Twilio's error code (31951 and friends) and a hint.
    """
    try:
        if sender == "twilio":
            return _from_twilio_wire(_TWILIO_DECODER.decode(text))
        return _from_app_wire(_APP_DECODER.decode(text))
    except (msgspec.DecodeError, ValueError, TypeError):
        pass
    # Slow path: say exactly what is wrong, or accept what the fast path is too strict for.
    from .diagnostics import diagnose_text

    violations = diagnose_text(text, sender=sender)
    if violations:
        raise RemoteProtocolError(violations[0])
    # Only an unknown event from Twilio passes the diagnostics after failing the fast path:
    # the two paths accept the same frames otherwise (tests/test_messages.py checks it).
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    data = json.loads(text)
    return UnknownMessage(event=data["event"], data=data, text=text)


def new_sid(prefix: Literal["MZ", "CA", "AC"]) -> str:
    """A fresh SID in Twilio's form: the two-letter prefix and 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


# --- serialize -----------------------------------------------------------------------------


def _b64(payload: bytes) -> str:
    return binascii.b2a_base64(payload, newline=False).decode("ascii")


def _json_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


@functools.lru_cache(maxsize=1024)
def media_frame_prefix(stream_sid: str) -> str:
    """The fixed start of every outbound ``media`` frame for a stream (a hot-path helper)."""
    return '{"event":"media","streamSid":' + _json_str(stream_sid) + ',"media":{"payload":"'


def serialize(message: Message) -> str:
    """Write a message in exactly Twilio's wire form.

    :class:`Media` and :class:`Mark` with a ``sequence_number`` are written as Twilio sends
    them, without one as the app sends them.

    Raises:
        LocalProtocolError: the message cannot be sent as it is (an empty payload or
            stream SID).
    """
    writer = _WRITERS.get(type(message))
    if writer is None:
        raise TypeError(f"cannot serialize {type(message).__name__}")
    return writer(message)


def _serialize_media(message: Any) -> str:
    if not message.payload:
        _refuse("empty-payload", "a media frame needs a non-empty payload")
    _check_sid(message.stream_sid)
    if message.sequence_number is None:
        return media_frame_prefix(message.stream_sid) + _b64(message.payload) + '"}}'
    media = {
        "track": message.track if message.track is not None else "inbound",
        "chunk": str(message.chunk if message.chunk is not None else 1),
        "timestamp": str(message.timestamp if message.timestamp is not None else 0),
        "payload": _b64(message.payload),
    }
    return _dump("media", message, {"media": media})


def _serialize_mark(message: Any) -> str:
    _check_sid(message.stream_sid)
    return _dump("mark", message, {"mark": {"name": message.name}})


def _serialize_clear(message: Any) -> str:
    _check_sid(message.stream_sid)
    return _dump("clear", message, {})


def _serialize_dtmf(message: Any) -> str:
    return _dump("dtmf", message, {"dtmf": {"track": message.track, "digit": message.digit}})


def _serialize_stop(message: Any) -> str:
    body = {"accountSid": message.account_sid, "callSid": message.call_sid}
    return _dump("stop", message, {"stop": body})


def _serialize_start(message: Any) -> str:
    fmt = message.media_format
    body = {
        "accountSid": message.account_sid,
        "streamSid": message.stream_sid,
        "callSid": message.call_sid,
        "tracks": list(message.tracks),
        "mediaFormat": {
            "encoding": fmt.encoding,
            "sampleRate": fmt.sample_rate,
            "channels": fmt.channels,
        },
    }
    # A start frame quoted from a real call with no <Parameter> had no customParameters key,
    # so an empty mapping is left out rather than written as {}.
    if message.custom_parameters:
        body["customParameters"] = dict(message.custom_parameters)
    return _dump("start", message, {"start": body})


def _serialize_connected(message: Any) -> str:
    frame = {"event": "connected", "protocol": message.protocol, "version": message.version}
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def _serialize_unknown(message: Any) -> str:
    return str(message.text)


def _dump(event: str, message: Any, body: dict[str, Any]) -> str:
    frame: dict[str, Any] = {"event": event}
    if getattr(message, "sequence_number", None) is not None:
        frame["sequenceNumber"] = str(message.sequence_number)
    frame["streamSid"] = message.stream_sid
    frame.update(body)
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def _check_sid(stream_sid: str) -> None:
    if not stream_sid:
        _refuse("missing-stream-sid", "the frame has no streamSid")


def _refuse(kind: str, message: str) -> None:
    from .diagnostics import local_violation

    raise LocalProtocolError(local_violation(kind, message))


_WRITERS: dict[type, Callable[[Any], str]] = {
    Media: _serialize_media,
    Mark: _serialize_mark,
    Clear: _serialize_clear,
    DTMF: _serialize_dtmf,
    Stop: _serialize_stop,
    Start: _serialize_start,
    Connected: _serialize_connected,
    UnknownMessage: _serialize_unknown,
}
