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

The module's seams, one reader's worth each: the frame classes; reading (:func:`parse`, its
fast path and the wire structs of :mod:`mediastreams.wireshapes` turned into frames); writing
(:func:`serialize` and the hot-path helpers that build outbound frames). Reading and writing
share only the frame classes, so they can stand in two modules if either grows.
"""

from __future__ import annotations

import binascii
import functools
import json
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import msgspec

from .containers import container_format
from .exceptions import LocalProtocolError, RemoteProtocolError
from .wireformat import Sender
from .wireshapes import (
    _APP_DECODER,
    _APP_WIRES,
    _MEMBERS,
    _TWILIO_DECODER,
    _AppClearWire,
    _AppMarkWire,
    _AppMediaWire,
    _ConnectedWire,
    _DTMFWire,
    _MarkWire,
    _MediaWire,
    _StartWire,
    _StopWire,
)

if TYPE_CHECKING:
    from .diagnostics import Violation

__all__ = [
    "DTMF",
    "AppMessage",
    "Clear",
    "Connected",
    "FileInPayload",
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


# Messages that can hold no reference cycle (all but Start and UnknownMessage, which hold
# dicts) stay out of the garbage collector's tracking (gc=False): cheaper to allocate.


class Connected(msgspec.Struct, frozen=True, kw_only=True, gc=False):
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


class Media(msgspec.Struct, frozen=True, kw_only=True, gc=False):
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


class DTMF(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A key the caller pressed."""

    stream_sid: str
    digit: str
    sequence_number: int
    track: str = "inbound_track"


class Mark(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A named point in the outbound audio.

    The app sends one after some ``media``; Twilio sends it back (with a ``sequence_number``)
    once the audio before it has played, or at once when a ``clear`` discards that audio.
    """

    stream_sid: str
    name: str
    sequence_number: int | None = None


class Stop(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Twilio's last frame: the stream has stopped (hang-up, or the call moved on)."""

    stream_sid: str
    account_sid: str
    call_sid: str
    sequence_number: int


class Clear(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The app asks Twilio to drop every buffered outbound frame (barge-in)."""

    stream_sid: str


class UnknownMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A frame from Twilio with an ``event`` this version does not know; kept, not fatal."""

    event: str
    data: dict[str, Any]
    text: str


class FileInPayload(RemoteProtocolError):
    """An app ``media`` frame whose only fault is a file header in its payload (31924).

    Twilio plays the bytes anyway, as mu-law (the caller hears a click and noise), so the
    frame is still read: :attr:`media` is what it carries.
    """

    def __init__(self, violation: Violation, media: Media) -> None:
        super().__init__(violation)
        self.media = media


TwilioMessage: TypeAlias = Connected | Start | Media | DTMF | Mark | Stop | UnknownMessage
"""What Twilio sends the app."""
AppMessage: TypeAlias = Media | Mark | Clear
"""What the app sends Twilio."""
Message: TypeAlias = Connected | Start | Media | DTMF | Mark | Stop | Clear | UnknownMessage


def _counter(text: str) -> int:
    # Twilio's counters are strings of ASCII digits ("1", "52"): int() alone would also take
    # " 5" or "5_0". isdigit() also takes "٣" (read as 3) and "²": parse() vouches for a frame
    # here only when its counters cannot be other than ASCII, and has the diagnostics check the
    # others.
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def _from_twilio_wire(wire: Any) -> TwilioMessage:
    # A media frame parse() could not vouch for at once (its hot path is in parse()).
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
        if not payload:
            raise ValueError("empty payload")
        return Media(stream_sid=wire.stream_sid, payload=payload)
    if type(wire) is _AppMarkWire:
        return Mark(stream_sid=wire.stream_sid, name=wire.mark.name)
    assert type(wire) is _AppClearWire
    return Clear(stream_sid=wire.stream_sid)


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
        From the app, always a :class:`Media`, :class:`Mark` or :class:`Clear`.

    Raises:
        RemoteProtocolError: the frame is not a valid Media Streams frame; its ``violation``
            carries Twilio's error code (31951 and friends) and a hint. Nothing else is
            raised for any ``str`` or ``bytes``, and the time taken is linear in its length.
    """
    # msgspec keeps the last of two equal keys, so the fast path vouches only for frames with no
    # room for a second copy of one (nor for an unknown key, which may hide one). Media frames,
    # 50 a second each way, are measured: a frame shorter than the compact form of what was read
    # plus the smallest member (`,"":0`) has no such room. The lengths are lower bounds (an
    # escape only lengthens a string, UTF-8 bytes outnumber characters, unpadded base64 is the
    # shortest), so the test is sound for any input. Twilio's counters must be ASCII digits
    # (see _counter): in ASCII text they are, unless written as \u escapes, and each of those
    # adds 5 characters, more than the test lets by. Other frames go through _colons_fit.
    try:
        if sender == "twilio":
            wire: Any = _TWILIO_DECODER.decode(text)
            if type(wire) is _MediaWire:
                body = wire.media
                sid, payload, track = wire.stream_sid, body.payload, body.track
                sequence, chunk, timestamp = wire.sequence_number, body.chunk, body.timestamp
                if (
                    sid
                    and payload
                    and sequence.isdigit()
                    and chunk.isdigit()
                    and timestamp.isdigit()
                    and len(text)
                    < _TWILIO_MEDIA_ROOM
                    + len(sid)
                    + len(track)
                    + len(sequence)
                    + len(chunk)
                    + len(timestamp)
                    + (len(payload) * 4 + 2) // 3
                    and text.isascii()
                ):
                    return Media(
                        stream_sid=sid,
                        payload=payload,
                        track=track,
                        chunk=int(chunk),
                        timestamp=int(timestamp),
                        sequence_number=int(sequence),
                    )
            elif type(wire) is _MarkWire:
                # Mark echoes, a few a second: names may hold colons (the session's own do), so
                # the colon count cannot vouch for them; the length can, as for media. The
                # name's length in characters is a lower bound of its length in the frame.
                sid, name, sequence = wire.stream_sid, wire.mark.name, wire.sequence_number
                if (
                    sid
                    and sequence.isascii()
                    and sequence.isdigit()
                    and len(text) < _TWILIO_MARK_ROOM + len(sid) + len(name) + len(sequence)
                ):
                    return Mark(stream_sid=sid, name=name, sequence_number=int(sequence))
            message: Message = _from_twilio_wire(wire)
        else:
            wire = _APP_DECODER.decode(text)
            if type(wire) is _AppMediaWire:
                sid, payload = wire.stream_sid, wire.media.payload
                if (
                    sid
                    and payload
                    and len(text) < _APP_MEDIA_ROOM + len(sid) + (len(payload) * 4 + 2) // 3
                    # A cheap test of the first byte before the full signature check.
                    and payload[0] not in _CONTAINER_FIRST_BYTES
                ):
                    return Media(stream_sid=sid, payload=payload)
            message = _from_app_wire(wire)
    # ValueError covers a str with a lone surrogate (UnicodeEncodeError); RecursionError,
    # nesting deeper than the interpreter's stack (msgspec skips unknown fields recursively).
    except (msgspec.DecodeError, ValueError, TypeError, RecursionError):
        return _parse_slowly(text, sender, None)
    if _colons_fit(text, wire):
        return _unless_file(message, text)
    return _parse_slowly(text, sender, message)


def _unless_file(message: Message, text: str | bytes) -> Message:
    # https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-media-message:
    # the app sends raw mu-law, no file header. Only the app's media has no sequence number.
    if type(message) is Media and message.sequence_number is None:
        kind = container_format(message.payload)
        if kind is not None:
            from .diagnostics import file_in_payload

            frame = text if isinstance(text, str) else bytes(text).decode("utf-8", "replace")
            raise FileInPayload(file_in_payload(kind, sender="app", frame=frame), message)
    return message


def _colons_fit(text: str | bytes, wire: Any) -> bool:
    # Each key has its colon: a frame with no more colons than its shape has keys has no room
    # for another one. A pass over the text; for frames other than media, or spaced-out media.
    # Twilio's counters must be ASCII digits: in ASCII text with no \u escape, they are.
    members = _MEMBERS.get(type(wire), -1)
    if members < 0:
        return False
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if type(wire) not in _APP_WIRES and not (data.isascii() and b"\\u" not in data):
        return False
    return data.count(b":") <= members


_SMALLEST_MEMBER = len(',"":0')
_TWILIO_MEDIA_ROOM = _SMALLEST_MEMBER + len(
    '{"event":"media","sequenceNumber":"","streamSid":"",'
    '"media":{"track":"","chunk":"","timestamp":"","payload":""}}'
)
_TWILIO_MARK_ROOM = _SMALLEST_MEMBER + len(
    '{"event":"mark","sequenceNumber":"","streamSid":"","mark":{"name":""}}'
)
_APP_MEDIA_ROOM = _SMALLEST_MEMBER + len('{"event":"media","streamSid":"","media":{"payload":""}}')


def _parse_slowly(text: str | bytes, sender: Sender, decoded: Message | None) -> Message:
    # Say exactly what is wrong, or accept what the fast path could not vouch for: a frame
    # that may repeat a key (``decoded`` is then what the fast path read) or an unknown event.
    if not isinstance(text, str | bytes | bytearray | memoryview):
        raise TypeError(f"parse() takes str or bytes, not {type(text).__name__}")
    from .diagnostics import read_frame
    from .schemas import TWILIO_SCHEMAS

    frame, violations = read_frame(text, sender=sender, headers=False)
    if violations:
        raise RemoteProtocolError(violations[0])
    assert frame is not None
    if decoded is not None:
        return _unless_file(decoded, text)
    event = frame["event"]
    if sender == "twilio" and event not in TWILIO_SCHEMAS:
        if not isinstance(text, str):
            text = bytes(text).decode("utf-8")
        return UnknownMessage(event=event, data=frame, text=text)
    # The diagnostics and the fast path disagree: tests/test_messages.py and fuzz/ look for
    # this, and the frame is refused rather than passed on unread.
    raise RemoteProtocolError(_unexplained(text, sender))


def _unexplained(text: str | bytes, sender: Sender) -> Any:
    from .diagnostics import Violation

    frame = text if isinstance(text, str) else bytes(text).decode("utf-8", "replace")
    return Violation(
        31951,
        kind="invalid-frame",
        sender=sender,
        message="the frame does not have the documented shape",
        hint="Compare it with https://www.twilio.com/docs/voice/media-streams/websocket-messages.",
        frame=frame,
    )


def new_sid(prefix: Literal["MZ", "CA", "AC"]) -> str:
    """A fresh SID in Twilio's form: the two-letter prefix and 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


# --- serialize -----------------------------------------------------------------------------


def _b64(payload: bytes) -> str:
    return binascii.b2a_base64(payload, newline=False).decode("ascii")


def json_string(value: str) -> str:
    """``value`` as a JSON string, as :func:`serialize` writes it (a hot-path helper)."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return '"' + value + '"'  # nothing to escape: the pacer's marks, SIDs
    return json.dumps(value, ensure_ascii=False)


@functools.lru_cache(maxsize=1024)
def media_frame_prefix(stream_sid: str) -> str:
    """The fixed start of every outbound ``media`` frame for a stream (a hot-path helper)."""
    return '{"event":"media","streamSid":' + json_string(stream_sid) + ',"media":{"payload":"'


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
