"""Both ends of a Media Stream as state machines that never touch a socket.

:class:`AppProtocol` is the app's side (the WebSocket server): text frames from Twilio go in
through :meth:`~AppProtocol.receive_text` and come out as typed messages; ``send_media``,
``send_mark`` and ``send_clear`` queue text frames that :meth:`~AppProtocol.data_to_send`
hands to whatever carries them.

:class:`TwilioProtocol` is Twilio's side: it sends ``connected``, ``start``, ``media``,
``dtmf`` and ``stop`` with Twilio's counters, receives the app's frames, keeps the outbound
audio in a playout buffer, echoes marks once the audio before them has played (at once if
nothing is buffered), and on ``clear`` drops the buffer and echoes every pending mark. Time is
an input: :meth:`~TwilioProtocol.play` plays a number of bytes of audio, so the same machine
runs in real or virtual time.

Errors follow h11: :class:`~mediastreams.exceptions.LocalProtocolError` when the caller breaks
the protocol, :class:`~mediastreams.exceptions.RemoteProtocolError` when the peer does. A
remote error leaves the state as it was: the frame is ignored, as Twilio ignores an invalid
frame (https://www.twilio.com/docs/api/errors/31951).
"""

from __future__ import annotations

import binascii
import enum
from collections import deque
from typing import TYPE_CHECKING, Generic, TypeVar

import msgspec

from .containers import container_format
from .diagnostics import Violation, diagnose_binary
from .exceptions import LocalProtocolError, RemoteProtocolError
from .messages import (
    AppMessage,
    Clear,
    Connected,
    Mark,
    Media,
    Sender,
    Start,
    Stop,
    TwilioMessage,
    UnknownMessage,
    json_string,
    media_frame_prefix,
    parse,
    serialize,
)

# The emulator's modules import it from here; its one definition is wireformat's.
from .wireformat import BYTES_PER_MS as BYTES_PER_MS

__all__ = [
    "CONNECTED",
    "CONNECTING",
    "MAX_BUFFERED_MS",
    "STOPPED",
    "STREAMING",
    "AfterStop",
    "AppProtocol",
    "Received",
    "State",
    "TwilioProtocol",
]

MAX_BUFFERED_MS = 10 * 60 * 1000
"""Twilio discards new media past 10 minutes of buffered audio (warning 31931)."""


class State(enum.Enum):
    """Where a stream is. Both sides go through the same states."""

    CONNECTING = "connecting"  # socket open, no frame yet
    CONNECTED = "connected"  # `connected` seen, waiting for `start`
    STREAMING = "streaming"  # `start` seen: media flows both ways
    STOPPED = "stopped"  # `stop` seen, or the stream was closed


CONNECTING = State.CONNECTING
CONNECTED = State.CONNECTED
STREAMING = State.STREAMING
STOPPED = State.STOPPED


def _violation(sender: Sender, kind: str, message: str, hint: str, frame: str | None) -> Violation:
    return Violation(31951, kind=kind, sender=sender, message=message, hint=hint, frame=frame)


M = TypeVar("M", TwilioMessage, AppMessage)


class Received(msgspec.Struct, Generic[M], frozen=True, gc=False):
    """What one frame carried, as ``receive()`` read it.

    Attributes:
        message: the message read and acted on, or ``None`` when the frame was ignored (as
            Twilio ignores an invalid frame: https://www.twilio.com/docs/api/errors/31951).
        violations: every mistake the frame carried. When ``message`` is ``None`` the first
            is why it was ignored; otherwise they are warnings about a frame still acted on
            (a payload with a file header is played anyway; audio past 10 minutes of buffer
            is discarded with 31931).
        echoes: names of the marks this frame made Twilio's side echo at once (a ``clear``
            echoes every pending mark; a ``mark`` into an empty buffer echoes itself).
    """

    message: M | None
    violations: tuple[Violation, ...] = ()
    echoes: tuple[str, ...] = ()

    @property
    def ignored(self) -> bool:
        """The frame changed nothing: it was refused (see :attr:`violations`) or dropped."""
        return self.message is None


class AfterStop(Received[AppMessage], frozen=True, gc=False):
    """An app frame that arrived after Twilio's ``stop``: dropped, and not a mistake.

    Twilio closes the socket right after ``stop``, so what the app sent before it learnt of
    the hang-up crosses the ``stop`` on the wire and is dropped with the socket. ``message``
    is ``None``; the frame is counted, not reported.

    Attributes:
        dropped: what the frame would have been.
    """

    dropped: AppMessage | None = None


class AppProtocol:
    """The app's side of a Media Stream.

    Example::

        protocol = AppProtocol()
        for text in frames_from_twilio:
            message = protocol.receive_text(text)
            if isinstance(message, Start):
                protocol.send_media(greeting_mulaw)
                protocol.send_mark("greeting")
            for frame in protocol.data_to_send():
                websocket.send(frame)
    """

    def __init__(self) -> None:
        self.state = CONNECTING
        self.streaming_sid: str | None = None
        """The stream's SID from ``start`` to ``stop`` (``None`` before and after): a media
        frame with this SID needs no other check then."""
        self.start: Start | None = None
        # Frames to send, as the UTF-8 bytes a socket carries (data_to_send() decodes them).
        self._outgoing: list[bytes] = []
        self._pending_marks: deque[str] = deque()
        self._sid = ""
        self._media_prefix = b""
        self._mark_prefix = b""

    @property
    def stream_sid(self) -> str:
        """The stream's SID, known once ``start`` has arrived."""
        if self.start is None:
            raise LocalProtocolError(
                _violation(
                    "app",
                    "too-early",
                    "the streamSid is not known before Twilio's start frame",
                    "Wait for the Start message before sending.",
                    None,
                )
            )
        return self.start.stream_sid

    @property
    def pending_marks(self) -> tuple[str, ...]:
        """Names of the marks sent and not yet echoed, oldest first."""
        return tuple(self._pending_marks)

    # --- receiving -------------------------------------------------------------------------

    def receive(self, frame: str | bytes) -> Received[TwilioMessage]:
        """Read one WebSocket frame from Twilio (``str`` for text, ``bytes`` for binary).

        Never raises for what Twilio sends: an invalid or out-of-order frame comes back with
        ``message`` ``None`` and its violation, and the state is unchanged.
        """
        if not isinstance(frame, str):
            return Received(None, tuple(diagnose_binary(frame, sender="twilio")))
        try:
            return Received(self.receive_text(frame))
        except RemoteProtocolError as error:
            return Received(None, (error.violation,))

    def receive_text(self, text: str | bytes) -> TwilioMessage:
        """Read one text frame from Twilio and advance the state.

        Raises:
            RemoteProtocolError: the frame is invalid or out of order; the state is unchanged.
        """
        message = parse(text, sender="twilio")
        # The hot path: media while streaming, 50 frames a second; one SID comparison.
        if type(message) is Media and message.stream_sid == self.streaming_sid:
            return message
        return self.receive_parsed(message, text)  # type: ignore[arg-type]  # from Twilio

    def receive_parsed(self, message: TwilioMessage, text: str | bytes) -> TwilioMessage:
        """:meth:`receive_text` for a frame already read with ``parse(text)``: advance the state.

        For a reader that takes a media frame with :attr:`streaming_sid` as it is (the hot
        path) and gives every other frame here.

        Raises:
            RemoteProtocolError: the frame is out of order; the state is unchanged.
        """
        self._advance(message, text if isinstance(text, str) else None)
        return message

    def receive_bytes(self, data: bytes) -> None:
        """A binary frame from Twilio: never valid.

        Raises:
            RemoteProtocolError: always (31950).
        """
        raise RemoteProtocolError(diagnose_binary(data, sender="twilio")[0])

    def _advance(self, message: object, text: str | None) -> None:
        if self.state is STREAMING:
            self._check_streaming(message, text)
        elif self.state is CONNECTING and type(message) is Connected:
            self.state = CONNECTED
        elif self.state is CONNECTED and type(message) is Start:
            self.start = message
            self._sid = message.stream_sid
            self._media_prefix = media_frame_prefix(message.stream_sid).encode()
            self._mark_prefix = (
                '{"event":"mark","streamSid":' + json_string(self._sid) + ',"mark":{"name":'
            ).encode()
            self.state = STREAMING
            self.streaming_sid = self._sid
        else:
            self._out_of_order(message, text)

    def _check_streaming(self, message: object, text: str | None) -> None:
        if type(message) in (Connected, Start):
            self._out_of_order(message, text)
        assert self.start is not None
        sid = getattr(message, "stream_sid", self.start.stream_sid)
        if sid != self.start.stream_sid:
            raise RemoteProtocolError(
                _violation(
                    "twilio",
                    "wrong-stream-sid",
                    f"streamSid {sid} differs from the stream's {self.start.stream_sid}",
                    "One WebSocket carries one stream; its streamSid never changes.",
                    text,
                )
            )
        if type(message) is Mark:
            self._match_echo(message, text)
        elif type(message) is Stop:
            self.state = STOPPED
            self.streaming_sid = None

    def _match_echo(self, mark: Mark, text: str | None) -> None:
        try:
            self._pending_marks.remove(mark.name)
        except ValueError:
            raise RemoteProtocolError(
                _violation(
                    "twilio",
                    "unknown-mark",
                    f"a mark named {mark.name!r} was echoed but never sent",
                    "Twilio echoes only the marks the app sent.",
                    text,
                )
            ) from None

    def _out_of_order(self, message: object, text: str | None) -> None:
        event = _event_name(message)
        where = {
            CONNECTING: "before connected",
            CONNECTED: "before start",
            STREAMING: "a second time",
            STOPPED: "after stop",
        }[self.state]
        raise RemoteProtocolError(
            _violation(
                "twilio",
                "out-of-order",
                f"{event} {where}",
                "Twilio sends connected, then start, then media/dtmf/mark, then stop.",
                text,
            )
        )

    # --- sending ---------------------------------------------------------------------------

    def send_media(self, payload: bytes) -> None:
        """Queue one ``media`` frame of headerless mu-law 8 kHz audio (any length).

        Raises:
            LocalProtocolError: before ``start`` or after ``stop``; an empty payload; a
                payload that starts with a file header (WAV, MP3, Ogg, FLAC).
        """
        self._outgoing.append(self.encode_media(payload))

    def encode_media(self, payload: bytes) -> bytes:
        """One ``media`` frame, as :meth:`send_media` would queue it, returned instead.

        For a caller that writes it at once: it goes out in its place only if nothing is
        waiting in :meth:`encoded_to_send`.

        Raises:
            LocalProtocolError: as :meth:`send_media`.
        """
        if self.state is not STREAMING:
            self._check_can_send()
        if not payload:
            raise LocalProtocolError(
                _violation("app", "empty-payload", "empty media payload", "Send audio.", None)
            )
        # https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-media-message:
        # raw mu-law/8000, no file header. Cheap first-byte test before the full check.
        if payload[0] in _HEADER_FIRST_BYTES and (kind := container_format(payload)):
            raise LocalProtocolError(
                Violation(
                    31924,
                    kind="payload-has-header",
                    sender="app",
                    message=f"the payload starts with a {kind} file header",
                    hint="Convert it with mediastreams.audio to headerless mu-law first.",
                )
            )
        return self._media_prefix + binascii.b2a_base64(payload, newline=False) + b'"}}'

    def send_mark(self, name: str) -> None:
        """Queue a ``mark``; Twilio echoes it once the audio sent before it has played."""
        self._check_can_send()
        if not isinstance(name, str) or not name:
            raise LocalProtocolError(
                _violation("app", "bad-mark", "a mark needs a non-empty name", "", None)
            )
        # The same bytes as serialize(Mark(...)), from a template: a few marks a second.
        self._outgoing.append(self._mark_prefix + json_string(name).encode() + b"}}")
        self._pending_marks.append(name)

    def send_clear(self) -> None:
        """Queue a ``clear``: Twilio drops buffered audio and echoes the pending marks."""
        self._check_can_send()
        self._outgoing.append(serialize(Clear(stream_sid=self.stream_sid)).encode())

    def close(self) -> None:
        """The app ends the stream (it will close the socket): nothing more is sent."""
        self.state = STOPPED
        self.streaming_sid = None

    def data_to_send(self) -> list[str]:
        """The text frames queued since the last call, in order."""
        frames, self._outgoing = self._outgoing, []
        return [frame.decode() for frame in frames]

    def encoded_to_send(self) -> list[bytes]:
        """The same frames as :meth:`data_to_send`, as the UTF-8 bytes of each text frame.

        For a socket that takes bytes: nothing is decoded and encoded again on the way.
        """
        frames, self._outgoing = self._outgoing, []
        return frames

    def _check_can_send(self) -> None:
        if self.state is STREAMING:
            return
        if self.state is STOPPED:
            raise LocalProtocolError(
                _violation(
                    "app",
                    "after-stop",
                    "the stream has stopped",
                    "Nothing can be sent after stop.",
                    None,
                )
            )
        self.stream_sid  # noqa: B018 -- raises the "too early" error


_HEADER_FIRST_BYTES = frozenset(b"RIOf\xff")


def _event_name(message: object) -> str:
    if isinstance(message, UnknownMessage):
        return message.event
    return type(message).__name__.lower()


def _text(text: str | bytes) -> str:
    return text if isinstance(text, str) else text.decode("utf-8", "replace")


if TYPE_CHECKING:
    from .twilio_side import TwilioProtocol
else:

    def __getattr__(name: str) -> object:
        # Twilio's side lives in its own module, which imports this one.
        if name == "TwilioProtocol":
            from .twilio_side import TwilioProtocol

            return TwilioProtocol
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
