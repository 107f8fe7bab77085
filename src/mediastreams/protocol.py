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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from .containers import container_format
from .diagnostics import Violation, diagnose_binary
from .exceptions import LocalProtocolError, RemoteProtocolError
from .messages import (
    DTMF,
    AppMessage,
    Clear,
    Connected,
    FileInPayload,
    Mark,
    Media,
    MediaFormat,
    Sender,
    Start,
    Stop,
    TwilioMessage,
    UnknownMessage,
    media_frame_prefix,
    new_sid,
    parse,
    serialize,
)

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

SAMPLE_RATE = 8000
BYTES_PER_MS = SAMPLE_RATE // 1000  # mu-law: one byte per sample
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


@dataclass(frozen=True, slots=True)
class Received(Generic[M]):
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


@dataclass(frozen=True, slots=True)
class AfterStop(Received[AppMessage]):
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
        self.start: Start | None = None
        self._outgoing: list[str] = []
        self._pending_marks: deque[str] = deque()
        self._media_prefix = ""

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
        self._advance(message, text if isinstance(text, str) else None)
        return message  # type: ignore[return-value]

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
            self._media_prefix = media_frame_prefix(message.stream_sid)
            self.state = STREAMING
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
        self._outgoing.append(
            self._media_prefix + binascii.b2a_base64(payload, newline=False).decode() + '"}}'
        )

    def send_mark(self, name: str) -> None:
        """Queue a ``mark``; Twilio echoes it once the audio sent before it has played."""
        self._check_can_send()
        if not isinstance(name, str) or not name:
            raise LocalProtocolError(
                _violation("app", "bad-mark", "a mark needs a non-empty name", "", None)
            )
        self._outgoing.append(serialize(Mark(stream_sid=self.stream_sid, name=name)))
        self._pending_marks.append(name)

    def send_clear(self) -> None:
        """Queue a ``clear``: Twilio drops buffered audio and echoes the pending marks."""
        self._check_can_send()
        self._outgoing.append(serialize(Clear(stream_sid=self.stream_sid)))

    def close(self) -> None:
        """The app ends the stream (it will close the socket): nothing more is sent."""
        self.state = STOPPED

    def data_to_send(self) -> list[str]:
        """The text frames queued since the last call, in order."""
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


class _PendingMark:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class TwilioProtocol:
    """Twilio's side of a Media Stream, with its playout buffer.

    Args:
        stream_sid, call_sid, account_sid: the SIDs to announce; fresh ones in Twilio's form
            (``MZ``/``CA``/``AC`` + 32 hex digits) by default.
        custom_parameters: what ``<Parameter>`` elements would put in ``start``.
        first_timestamp_ms: the ``timestamp`` of the first inbound media frame; Twilio's is
            not zero (52 in a real capture).
        max_buffered_ms: outbound audio past this is discarded, with warning 31931 once.
    """

    def __init__(
        self,
        *,
        stream_sid: str | None = None,
        call_sid: str | None = None,
        account_sid: str | None = None,
        custom_parameters: Mapping[str, str] | None = None,
        tracks: Iterable[str] = ("inbound",),
        first_timestamp_ms: int = 20,
        max_buffered_ms: int = MAX_BUFFERED_MS,
    ) -> None:
        self.state = CONNECTING
        self.start = Start(
            stream_sid=stream_sid or new_sid("MZ"),
            account_sid=account_sid or new_sid("AC"),
            call_sid=call_sid or new_sid("CA"),
            tracks=tuple(tracks),
            custom_parameters=dict(custom_parameters or {}),
            media_format=MediaFormat(),
        )
        # Filled by receive_text() only, for code written before receive(): bounded.
        self.warnings: list[Violation] = []
        self._outgoing: list[str] = []
        self._sequence = 0
        self._chunk = 0
        self._next_timestamp_ms = first_timestamp_ms
        self._buffer: deque[bytes | _PendingMark] = deque()
        self._buffered_bytes = 0
        self._max_buffered_bytes = max_buffered_ms * BYTES_PER_MS
        self._overflowed = False
        self.marks_echoed = 0
        self.marks_echoed_by_clear = 0

    @property
    def stream_sid(self) -> str:
        """The SID this side announces and expects back."""
        return self.start.stream_sid

    @property
    def buffered_bytes(self) -> int:
        """Outbound audio waiting to be played, in bytes (8 per millisecond)."""
        return self._buffered_bytes

    @property
    def buffered_ms(self) -> float:
        """Outbound audio waiting to be played, in milliseconds."""
        return self._buffered_bytes / BYTES_PER_MS

    @property
    def pending_marks(self) -> tuple[str, ...]:
        """Names of the marks in the playout buffer, oldest first."""
        return tuple(e.name for e in self._buffer if isinstance(e, _PendingMark))

    # --- what Twilio sends -----------------------------------------------------------------

    def send_connected(self) -> None:
        """Queue ``connected``, Twilio's first frame."""
        self._require(CONNECTING, "connected")
        self._outgoing.append(serialize(Connected()))
        self.state = CONNECTED

    def send_start(self) -> None:
        """Queue ``start`` (sequence number 1)."""
        self._require(CONNECTED, "start")
        self.start = Start(
            stream_sid=self.start.stream_sid,
            account_sid=self.start.account_sid,
            call_sid=self.start.call_sid,
            tracks=self.start.tracks,
            custom_parameters=self.start.custom_parameters,
            media_format=self.start.media_format,
            sequence_number=self._next_sequence(),
        )
        self._outgoing.append(serialize(self.start))
        self.state = STREAMING

    def send_media(self, payload: bytes, *, timestamp_ms: int | None = None) -> None:
        """Queue one inbound ``media`` frame (the caller's audio, normally 160 bytes = 20 ms).

        ``timestamp_ms`` defaults to the previous frame's plus its duration.
        """
        self._require(STREAMING, "media")
        if not payload:
            raise LocalProtocolError(
                _violation("twilio", "empty-payload", "empty media payload", "", None)
            )
        self._chunk += 1
        timestamp = self._next_timestamp_ms if timestamp_ms is None else timestamp_ms
        self._next_timestamp_ms = timestamp + len(payload) // BYTES_PER_MS
        self._outgoing.append(
            serialize(
                Media(
                    stream_sid=self.stream_sid,
                    payload=payload,
                    track="inbound",
                    chunk=self._chunk,
                    timestamp=timestamp,
                    sequence_number=self._next_sequence(),
                )
            )
        )

    def send_dtmf(self, digit: str) -> None:
        """Queue a ``dtmf`` frame: the caller pressed ``digit`` (0-9, *, #, A-D)."""
        self._require(STREAMING, "dtmf")
        if len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise LocalProtocolError(
                _violation("twilio", "bad-digit", f"{digit!r} is not a DTMF key", "", None)
            )
        frame = DTMF(stream_sid=self.stream_sid, digit=digit, sequence_number=self._next_sequence())
        self._outgoing.append(serialize(frame))

    def send_stop(self) -> None:
        """Queue ``stop``: the call has ended. Nothing follows it."""
        self._require(STREAMING, "stop")
        stop = Stop(
            stream_sid=self.stream_sid,
            account_sid=self.start.account_sid,
            call_sid=self.start.call_sid,
            sequence_number=self._next_sequence(),
        )
        self._outgoing.append(serialize(stop))
        self.state = STOPPED

    def close(self) -> None:
        """The socket is gone: the stream ends without a ``stop``."""
        self.state = STOPPED

    def data_to_send(self) -> list[str]:
        """The text frames queued since the last call, in order."""
        frames, self._outgoing = self._outgoing, []
        return frames

    def _next_sequence(self) -> int:
        # One counter over every frame Twilio sends except `connected`: start is 1, then media,
        # mark echoes, dtmf and stop share it (a real capture shows echoes between media).
        self._sequence += 1
        return self._sequence

    def _require(self, state: State, event: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(
                _violation(
                    "twilio",
                    "out-of-order",
                    f"cannot send {event} in state {self.state.value}",
                    "Twilio sends connected, then start, then media/dtmf/mark, then stop.",
                    None,
                )
            )

    # --- what the app sends ----------------------------------------------------------------

    def receive(self, frame: str | bytes) -> Received[AppMessage]:
        """Read one WebSocket frame from the app (``str`` for text, ``bytes`` for binary) and
        act on it as Twilio would.

        ``media`` joins the playout buffer, ``mark`` waits in it (or is echoed at once when the
        buffer is empty), ``clear`` empties it and echoes every pending mark.

        Never raises for what the app sends. A frame Twilio would ignore with a warning (31950,
        31951, 31924) comes back with ``message`` ``None`` and its violation, and nothing
        changes. A payload with a file header is still played (as Twilio would, as noise), and
        audio past 10 minutes of buffer is discarded (31931): the message comes back with those
        violations. A frame that arrives after ``stop`` comes back as :class:`AfterStop`.
        """
        if not isinstance(frame, str):
            return Received(None, tuple(diagnose_binary(frame, sender="app")))
        return self._accept(frame)

    def receive_text(self, text: str | bytes) -> AppMessage:
        """Read one text frame from the app; :meth:`receive` that raises.

        Raises:
            RemoteProtocolError: the frame is one Twilio would ignore, or came after ``stop``
                (kind ``"after-stop"``); nothing changes. Warnings about a frame that was still
                acted on are added to :attr:`warnings` (at most 100 are kept).
        """
        received = self._accept(text)
        if isinstance(received, AfterStop):
            raise RemoteProtocolError(self._after_stop(received, text))
        if received.message is None:
            raise RemoteProtocolError(received.violations[0])
        if received.violations and len(self.warnings) < _MAX_KEPT_WARNINGS:
            self.warnings.extend(received.violations)
        return received.message

    def receive_bytes(self, data: bytes) -> None:
        """A binary frame from the app: Twilio ignores it.

        Raises:
            RemoteProtocolError: always (31950).
        """
        raise RemoteProtocolError(diagnose_binary(data, sender="app")[0])

    def _accept(self, text: str | bytes) -> Received[AppMessage]:
        warnings: tuple[Violation, ...] = ()
        try:
            message: AppMessage = parse(text, sender="app")  # type: ignore[assignment]
        except FileInPayload as error:
            # Twilio would play these bytes as mu-law: keep them, and the warning.
            message, warnings = error.media, (error.violation,)
        except RemoteProtocolError as error:
            return Received(None, (error.violation,))
        if self.state is not STREAMING:
            if self.state is STOPPED:
                return AfterStop(None, dropped=message)
            return Received(None, (self._too_early(message, text),))
        if message.stream_sid != self.stream_sid:
            return Received(None, (self._wrong_sid(message, text),))
        echoes: tuple[str, ...] = ()
        if type(message) is Media:
            overflow = self._queue_audio(message.payload)
            if overflow is not None:
                warnings += (overflow,)
        elif type(message) is Mark:
            echoes = self._queue_mark(message.name)
        else:
            echoes = self._clear()
        return Received(message, warnings, echoes)

    def _too_early(self, message: AppMessage, text: str | bytes) -> Violation:
        return _violation(
            "app",
            "too-early",
            f"{_event_name(message)} before start",
            "Wait for start: it carries the streamSid.",
            _text(text),
        )

    def _after_stop(self, received: AfterStop, text: str | bytes) -> Violation:
        return _violation(
            "app",
            "after-stop",
            f"{_event_name(received.dropped)} after the stream stopped",
            "Stop sending once stop arrives.",
            _text(text),
        )

    def _wrong_sid(self, message: AppMessage, text: str | bytes) -> Violation:
        return _violation(
            "app",
            "wrong-stream-sid",
            f"streamSid {message.stream_sid[:64]!r} is not this stream's ({self.stream_sid})",
            "Send the streamSid from the start frame of this WebSocket.",
            _text(text),
        )

    def _queue_audio(self, payload: bytes) -> Violation | None:
        if self._buffered_bytes + len(payload) > self._max_buffered_bytes:
            return self._overflow()
        self._buffer.append(payload)
        self._buffered_bytes += len(payload)
        return None

    def _overflow(self) -> Violation | None:
        # https://www.twilio.com/docs/api/errors/31931: once per stream.
        if self._overflowed:
            return None
        self._overflowed = True
        return Violation(
            31931,
            kind="buffer-overflow",
            sender="app",
            message="more than 10 minutes of audio buffered; new media is discarded",
            hint="Pace the audio: keep at most a few seconds ahead of what marks confirm.",
        )

    def _queue_mark(self, name: str) -> tuple[str, ...]:
        # https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-mark-message:
        # echoed when the audio before it has played; at once when nothing is buffered.
        if self._buffered_bytes == 0 and not self._buffer:
            self._echo(name)
            return (name,)
        self._buffer.append(_PendingMark(name))
        return ()

    def _clear(self) -> tuple[str, ...]:
        # https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-clear-message:
        # drop the audio, then send back every mark still pending, in order.
        pending = tuple(e.name for e in self._buffer if isinstance(e, _PendingMark))
        self._buffer.clear()
        self._buffered_bytes = 0
        for name in pending:
            self._echo(name)
        self.marks_echoed_by_clear += len(pending)
        return pending

    def _echo(self, name: str) -> None:
        mark = Mark(stream_sid=self.stream_sid, name=name, sequence_number=self._next_sequence())
        self._outgoing.append(serialize(mark))
        self.marks_echoed += 1

    # --- playout ---------------------------------------------------------------------------

    def play(self, n_bytes: int) -> bytes:
        """Play up to ``n_bytes`` of buffered audio; echo the marks it passes.

        Returns the audio played, shorter than ``n_bytes`` when the buffer ran out (the
        caller hears silence for the rest). A mark right after the played audio is echoed
        now, since everything before it has played.
        """
        played = bytearray()
        self._echo_marks_at_head()
        while len(played) < n_bytes and self._buffer:
            head = self._buffer[0]
            assert isinstance(head, bytes)
            take = n_bytes - len(played)
            if len(head) <= take:
                played += head
                self._buffer.popleft()
            else:
                played += head[:take]
                self._buffer[0] = head[take:]
            self._echo_marks_at_head()
        self._buffered_bytes -= len(played)
        return bytes(played)

    def _echo_marks_at_head(self) -> None:
        while self._buffer and isinstance(self._buffer[0], _PendingMark):
            self._echo(self._buffer.popleft().name)  # type: ignore[union-attr]


def _text(text: str | bytes) -> str:
    return text if isinstance(text, str) else text.decode("utf-8", "replace")


_MAX_KEPT_WARNINGS = 100
