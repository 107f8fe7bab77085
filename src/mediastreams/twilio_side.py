"""Twilio's side of a Media Stream: what Twilio sends, and what it does with the app's frames.

:class:`TwilioProtocol` sends ``connected``, ``start``, ``media``, ``dtmf`` and ``stop`` with
Twilio's counters, reads the app's frames with :meth:`~TwilioProtocol.receive`, keeps the
outbound audio in a :class:`~mediastreams.playout.Playout` and echoes marks as it plays. It is
importable from :mod:`mediastreams.protocol`, with the app's side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .diagnostics import Violation, diagnose_binary
from .exceptions import LocalProtocolError, RemoteProtocolError
from .messages import (
    DTMF,
    AppMessage,
    Connected,
    FileInPayload,
    Mark,
    Media,
    MediaFormat,
    Start,
    Stop,
    new_sid,
    parse,
    serialize,
)
from .playout import Playout
from .protocol import (
    BYTES_PER_MS,
    CONNECTED,
    CONNECTING,
    MAX_BUFFERED_MS,
    STOPPED,
    STREAMING,
    AfterStop,
    Received,
    State,
    _event_name,
    _text,
    _violation,
)
from .wireformat import FRAME_MS

__all__ = ["TwilioProtocol"]

_MAX_KEPT_WARNINGS = 100


class TwilioProtocol:
    """Twilio's side of a Media Stream, with its playout buffer.

    Args:
        stream_sid, call_sid, account_sid: the SIDs to announce; fresh ones in Twilio's form
            (``MZ``/``CA``/``AC`` + 32 hex digits) by default.
        custom_parameters: what ``<Parameter>`` elements would put in ``start``.
        first_timestamp_ms: the ``timestamp`` of the first inbound media frame; Twilio's is
            not zero (52 in a real capture).
        max_buffered_ms: outbound audio past this is discarded, with warning 31931 once.
        playout: the playout buffer to keep the app's audio and marks in; a
            :class:`~mediastreams.playout.Playout` of ``max_buffered_ms`` by default. A load
            generator passes one that counts bytes instead of keeping them.
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
        playout: Playout | None = None,
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
        # Each track counts its own chunks and time; the sequence number is shared.
        self._chunk = dict.fromkeys(self.start.tracks, 0)
        self._next_timestamp_ms = dict.fromkeys(self.start.tracks, first_timestamp_ms)
        self._playout = playout if playout is not None else Playout(max_buffered_ms * BYTES_PER_MS)
        self._overflowed = False
        self.marks_echoed = 0
        self.marks_echoed_by_clear = 0

    @property
    def stream_sid(self) -> str:
        """The SID this side announces and expects back."""
        return self.start.stream_sid

    @property
    def sequence_number(self) -> int:
        """The ``sequenceNumber`` of the last frame sent (0 before ``start``)."""
        return self._sequence

    @property
    def buffered_bytes(self) -> int:
        """Outbound audio waiting to be played, in bytes (8 per millisecond)."""
        return self._playout.buffered_bytes

    @property
    def buffered_ms(self) -> float:
        """Outbound audio waiting to be played, in milliseconds."""
        return self._playout.buffered_bytes / BYTES_PER_MS

    @property
    def pending_marks(self) -> tuple[str, ...]:
        """Names of the marks in the playout buffer, oldest first."""
        return self._playout.pending_marks

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

    def send_media(
        self, payload: bytes, *, timestamp_ms: int | None = None, track: str = "inbound"
    ) -> None:
        """Queue one ``media`` frame (normally 160 bytes = 20 ms) of one of the stream's tracks.

        ``track`` is ``"inbound"`` (the caller's audio) or, on a one-way stream that asked
        for it, ``"outbound"`` (what the caller hears). ``timestamp_ms`` defaults to the
        track's previous frame's plus its duration.
        """
        self._require(STREAMING, "media")
        if not payload:
            raise LocalProtocolError(
                _violation("twilio", "empty-payload", "empty media payload", "", None)
            )
        if track not in self._chunk:
            raise LocalProtocolError(
                _violation("twilio", "unknown-track", f"this stream has no {track} track", "", None)
            )
        self._chunk[track] += 1
        timestamp = self._next_timestamp_ms[track] if timestamp_ms is None else timestamp_ms
        self._next_timestamp_ms[track] = timestamp + len(payload) // BYTES_PER_MS
        self._outgoing.append(
            serialize(
                Media(
                    stream_sid=self.stream_sid,
                    payload=payload,
                    track=track,
                    chunk=self._chunk[track],
                    timestamp=timestamp,
                    sequence_number=self._next_sequence(),
                )
            )
        )

    def count_media(self, frames: int, *, frame_ms: int = FRAME_MS, track: str = "inbound") -> None:
        """Count ``frames`` media frames of ``track`` that were written without this object.

        A load generator writes its frames from a prebuilt template, numbered from
        :attr:`sequence_number`; counting them here keeps the frames numbered next (mark
        echoes, ``stop``) after them, with the chunks and timestamps that follow.
        """
        self._require(STREAMING, "media")
        self._sequence += frames
        self._chunk[track] += frames
        self._next_timestamp_ms[track] += frames * frame_ms

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
        if received.message is not None and not received.violations:
            return received.message
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
        if message.stream_sid != self.start.stream_sid:
            return Received(None, (self._wrong_sid(message, text),))
        if type(message) is Media:
            if not self._playout.add_audio(message.payload):
                warnings += self._overflow()
            return Received(message, warnings)
        if type(message) is Mark:
            return Received(message, warnings, self._queue_mark(message.name))
        return Received(message, warnings, self._clear())

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

    def _overflow(self) -> tuple[Violation, ...]:
        # https://www.twilio.com/docs/api/errors/31931: discarded, with the warning once.
        if self._overflowed:
            return ()
        self._overflowed = True
        overflow = Violation(
            31931,
            kind="buffer-overflow",
            sender="app",
            message="more than 10 minutes of audio buffered; new media is discarded",
            hint="Pace the audio: keep at most a few seconds ahead of what marks confirm.",
        )
        return (overflow,)

    def _queue_mark(self, name: str) -> tuple[str, ...]:
        # https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-mark-message:
        # echoed when the audio before it has played; at once when nothing is buffered.
        if self._playout.add_mark(name):
            return ()
        self._echo(name)
        return (name,)

    def _clear(self) -> tuple[str, ...]:
        # https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-clear-message:
        # drop the audio, then send back every mark still pending, in order.
        pending = self._playout.clear()
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
        played, reached = self._playout.play(n_bytes)
        for name in reached:
            self._echo(name)
        return played
