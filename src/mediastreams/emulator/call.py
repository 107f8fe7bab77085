"""One stream of a call (a leg), from Twilio's side: frames out every 20 ms, the app's in.

:class:`StreamRun` drives a :class:`~mediastreams.protocol.TwilioProtocol` over a
:class:`~mediastreams.emulator.transport.AppConnection`. The call
(:class:`~mediastreams.emulator.line.Line`) ticks every 20 ms for all its streams: on each
tick a bidirectional stream sends the caller's frame (and key presses), plays 20 ms of the
app's audio and echoes the marks that audio passed (:meth:`StreamRun.tick`); a one-way stream
sends copies of the tracks it asked for (:meth:`StreamRun.copy`). Meanwhile each stream reads
the app's frames, checks each one, and notes when things happened for the report. Time is the
event loop's, so the same code runs in real and in virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from ..diagnostics import Finding, Violation
from ..exceptions import RemoteProtocolError
from ..messages import Clear, Mark, Media, Sender, new_sid
from ..protocol import STREAMING, TwilioProtocol
from ..trace import TraceWriter
from .script import FRAME_BYTES, FRAME_MS, audible_extent, is_audible
from .transport import AppConnection

FrameObserver = Callable[[float, Sender, "str | bytes"], None]
"""Sees each frame as it goes: seconds since ``start``, who sent it, the frame."""

__all__ = [
    "CONGESTED_BYTES",
    "TRACKS_BY_ATTRIBUTE",
    "EndedBy",
    "FrameObserver",
    "StreamPlan",
    "StreamRun",
    "StreamSummary",
    "Timeline",
]

EndedBy: TypeAlias = Literal[
    "caller",
    "app",
    "twiml",
    "stop",
    "rest",
    "redirect",
    "interrupted",
    "failed",
    "refused",
    "error",
]
"""What ended a stream, or the call (see :class:`StreamSummary`; ``"error"``: a failure of the
emulator itself, raised after the call)."""

CONGESTED_BYTES = 100_000
"""Unread bytes (about 6 s of inbound frames) past which the app's side counts as congested."""

# https://www.twilio.com/docs/voice/twiml/stream#attributes-track: the attribute, and the
# `tracks` of `start` and the `media.track` values it gives (protocol.md §1.2).
TRACKS_BY_ATTRIBUTE: Mapping[str, tuple[str, ...]] = {
    "inbound_track": ("inbound",),
    "outbound_track": ("outbound",),
    "both_tracks": ("inbound", "outbound"),
}


@dataclass
class StreamPlan:
    """A stream Twilio is to open, from a ``<Stream>`` or a REST ``Streams.json`` create.

    Attributes:
        url: the URL Twilio connects to (absolute, without a query string).
        parameters: ``<Parameter>`` values, for ``start.customParameters``.
        bidirectional: ``<Connect>`` (``True``), or ``<Start>`` and REST (``False``).
        name: the stream's name, unique in the call (``<Stop>`` and REST stop by it).
        tracks: the tracks streamed: ``("inbound",)``, ``("outbound",)`` or both.
        status_callback, status_callback_method: where Twilio reports ``stream-started``,
            ``stream-stopped`` and ``stream-error``.
        stream_sid: the SID the stream will have (a REST create answers with it at once).
    """

    url: str
    parameters: dict[str, str]
    bidirectional: bool = True
    name: str | None = None
    tracks: tuple[str, ...] = ("inbound",)
    status_callback: str | None = None
    status_callback_method: str = "POST"
    stream_sid: str = field(default_factory=lambda: new_sid("MZ"))


@dataclass
class StreamSummary:
    """One stream of the call, as the report lists it.

    Times are milliseconds of the call (since its first stream's ``start``). ``ended_by`` is
    ``None`` while the stream runs, then ``"caller"``, ``"app"`` (it closed the socket),
    ``"twiml"`` (the TwiML ended the call), ``"stop"`` (``<Stop><Stream>``), ``"rest"``,
    ``"redirect"`` (a REST update replaced the TwiML), ``"interrupted"``, ``"failed"``
    (never opened) or ``"refused"`` (over Twilio's limits).
    """

    url: str
    name: str | None
    bidirectional: bool
    tracks: tuple[str, ...]
    stream_sid: str
    started_ms: float | None = None
    ended_ms: float | None = None
    ended_by: EndedBy | None = None
    close_code: int | None = None
    frames_sent: int = 0
    frames_received: int = 0
    error: str | None = None

    @property
    def running(self) -> bool:
        """Opening or open: not ended yet."""
        return self.ended_by is None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as in the report's ``streams``."""
        return {
            "url": self.url,
            "name": self.name,
            "bidirectional": self.bidirectional,
            "tracks": list(self.tracks),
            "stream_sid": self.stream_sid if self.started_ms is not None else None,
            "started_ms": _round(self.started_ms),
            "ended_ms": _round(self.ended_ms),
            "ended_by": self.ended_by,
            "close_code": self.close_code,
            "frames_sent": self.frames_sent,
            "frames_received": self.frames_received,
            "error": self.error,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass
class Timeline:
    """When things happened, in milliseconds since ``start`` was sent."""

    media_ms: list[float] = field(default_factory=list)
    media_bytes: list[int] = field(default_factory=list)
    clears_ms: list[float] = field(default_factory=list)
    # How many media frames had arrived when each clear did.
    clears_after_media: list[int] = field(default_factory=list)
    marks_sent: int = 0
    marks_echoed: int = 0
    marks_echoed_by_clear: int = 0
    # Tick times at which the caller heard the app (something audible played in that tick).
    audible_ticks_ms: list[int] = field(default_factory=list)
    played_bytes: int = 0
    max_buffered_ms: float = 0.0
    discarded_by_clear_ms: float = 0.0
    duration_ms: int = 0
    ended_by: str = "caller"
    close_code: int | None = None
    inbound_dropped: int = 0  # caller frames not sent: the app's side was congested (31930)
    frames_after_stop: int = 0  # app frames that crossed the caller's stop; dropped
    # The playout's busy stretches (app audio queued or playing), run-length encoded:
    # (start_ms, end_ms, played_bytes at the start, played_bytes at the end). The stretch
    # under way is `playout_open`: (start_ms, played_bytes at the start).
    playout_runs: list[tuple[int, int, int, int]] = field(default_factory=list)
    playout_open: tuple[int, int] | None = None
    # The stretches with audible app audio queued or playing, (start_ms, end_ms); and the
    # one under way. A pause inside queued audio is inside; silence the app sends is not.
    audible_runs: list[tuple[int, int]] = field(default_factory=list)
    audible_open: int | None = None
    # Where the queued audio's last loud sample is, counted in bytes that ever entered
    # the playout (played, discarded, or still queued).
    audible_until: int = 0
    discarded_bytes: int = 0
    # For each clear: played_bytes when it came, and the queued bytes it threw away.
    clears_played_bytes: list[int] = field(default_factory=list)
    clears_discarded_bytes: list[int] = field(default_factory=list)
    started_at_s: float | None = None  # the event loop's time when start was sent

    def note_playout(self, now_ms: int, buffered_bytes: int, played: bytes) -> None:
        """One tick of playout: the bytes queued when it began, and the audio it played."""
        if buffered_bytes and self.playout_open is None:
            self.playout_open = (now_ms, self.played_bytes)
        elif not buffered_bytes and self.playout_open is not None:
            start_ms, played_at_start = self.playout_open
            self.playout_runs.append((start_ms, now_ms, played_at_start, self.played_bytes))
            self.playout_open = None
        if self.audible_until > self.played_bytes + self.discarded_bytes:
            if self.audible_open is None:
                self.audible_open = now_ms
        elif self.audible_open is not None:
            self.audible_runs.append((self.audible_open, now_ms))
            self.audible_open = None
        self.played_bytes += len(played)
        if is_audible(played):
            self.audible_ticks_ms.append(now_ms)

    def note_media(
        self, now_ms: float, payload: bytes, buffered_before: int, buffered_after: int
    ) -> None:
        """A ``media`` frame arrived; it was queued unless the buffer was full (31931)."""
        self.media_ms.append(now_ms)
        self.media_bytes.append(len(payload))
        self.max_buffered_ms = max(self.max_buffered_ms, buffered_after / 8)
        loud = audible_extent(payload)
        if loud and buffered_after > buffered_before:
            start = self.played_bytes + self.discarded_bytes + buffered_before
            self.audible_until = max(self.audible_until, start + loud)

    def note_clear(self, now_ms: float, discarded_bytes: int) -> None:
        """A ``clear`` arrived, throwing away ``discarded_bytes`` of queued audio."""
        self.clears_ms.append(now_ms)
        self.clears_after_media.append(len(self.media_ms))
        self.clears_played_bytes.append(self.played_bytes)
        self.clears_discarded_bytes.append(discarded_bytes)
        self.discarded_bytes += discarded_bytes
        self.discarded_by_clear_ms = self.discarded_bytes / 8


class StreamRun:
    """One Media Stream of the call, driven by the call's tick until it ends.

    Args:
        transport: the open WebSocket.
        plan: what to stream (URL, tracks, parameters, one-way or not).
        call_sid, account_sid: the call's SIDs, for ``start`` and ``stop``.
        timeline: where to note the app's frames; the call shares one between its
            bidirectional streams (a one-way stream gets its own).
        trace: where to write every frame, if anywhere.
        on_frame: called with ``(seconds since the call's first start, sender, frame)`` for
            every frame, both ways, as it goes (a live timeline).
        summary: the stream's entry in the call's list of streams (made here if not given).
    """

    def __init__(
        self,
        transport: AppConnection,
        plan: StreamPlan,
        *,
        call_sid: str | None = None,
        account_sid: str | None = None,
        timeline: Timeline | None = None,
        trace: TraceWriter | None = None,
        on_frame: FrameObserver | None = None,
        summary: StreamSummary | None = None,
    ) -> None:
        self.transport = transport
        self.plan = plan
        self.bidirectional = plan.bidirectional
        self.protocol = TwilioProtocol(
            stream_sid=plan.stream_sid,
            call_sid=call_sid,
            account_sid=account_sid,
            custom_parameters=plan.parameters,
            tracks=plan.tracks,
        )
        self.timeline = timeline if timeline is not None else Timeline()
        self.findings: list[Finding] = []
        self.summary = summary or StreamSummary(
            plan.url, plan.name, plan.bidirectional, plan.tracks, plan.stream_sid
        )
        self.close_error: Violation | None = None
        """Why the app's close was abnormal (31903, 31921), if it was."""
        self.ended = asyncio.Event()
        """Set once the stream has ended, whoever ended it."""
        self._on_frame = on_frame
        self._trace = trace
        self._lines = 0
        self._held: list[str] = []
        self._outbox: list[str] = []
        self._send_lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._opened_at = self._loop.time()
        self._started_at = self._opened_at
        self._ignored_noted = False
        self._inbound = "inbound" in plan.tracks
        self._outbound = "outbound" in plan.tracks
        self._receiver: asyncio.Task[None] | None = None
        self._first_tick_ms: int | None = None  # the call's time of this stream's first frame

    # --- the stream ------------------------------------------------------------------------

    async def open(self, origin: float | None) -> float:
        """Send ``connected`` and ``start``, and read the app's frames from now on.

        Args:
            origin: the loop time of the call's first ``start`` (its time 0); ``None`` when
                this is the call's first stream.

        Returns:
            The loop time ``start`` was sent at.
        """
        self.protocol.send_connected()
        self.protocol.send_start()
        sent = self._loop.time()
        self._started_at = sent if origin is None else origin
        self.summary.started_ms = (sent - self._started_at) * 1000
        self._queue(self.protocol.data_to_send())
        await self.flush()
        self._receiver = asyncio.create_task(self._receive_all())
        return sent

    def tick(self, frame: bytes, digits: str, now_ms: int) -> bytes:
        """One 20 ms tick of a bidirectional stream.

        The caller's frame and key presses go out; 20 ms of the app's audio plays.

        Returns:
            The app's audio played (shorter than 20 ms when its buffer ran out).
        """
        self._send_held()
        if self.timeline.started_at_s is None:
            self.timeline.started_at_s = self._started_at
        self._send_inbound(frame, now_ms)
        for digit in digits:
            self.protocol.send_dtmf(digit)
        self._queue(self.protocol.data_to_send())
        buffered = self.protocol.buffered_bytes
        played = self.protocol.play(FRAME_BYTES)
        self._held += self.protocol.data_to_send()
        self.timeline.note_playout(now_ms, buffered, played)
        return played

    def copy(self, inbound: bytes, outbound: bytes, now_ms: int) -> None:
        """One 20 ms tick of a one-way stream: a frame of each track it streams.

        ``inbound`` is what the caller said, ``outbound`` what the caller heard (160 bytes
        each). No DTMF: https://www.twilio.com/docs/voice/media-streams says one-way streams
        carry none.
        """
        if self._inbound:
            self._send_inbound(inbound, now_ms)
        if self._outbound and not self._congested():
            self.protocol.send_media(
                outbound, track="outbound", timestamp_ms=self._timestamp_ms(now_ms)
            )
        self._queue(self.protocol.data_to_send())

    def _send_inbound(self, frame: bytes, now_ms: int) -> None:
        if self._congested():
            self.timeline.inbound_dropped += 1
        else:
            # The frame's place in the stream: frames dropped for 31930 leave a jump.
            self.protocol.send_media(frame, timestamp_ms=self._timestamp_ms(now_ms))

    def _timestamp_ms(self, now_ms: int) -> int:
        """``media.timestamp`` for the call's tick at ``now_ms``: time since this stream's
        first frame, plus the first frame's own 20 ms (Twilio's is never 0)."""
        if self._first_tick_ms is None:
            self._first_tick_ms = now_ms
        return FRAME_MS + now_ms - self._first_tick_ms

    def _congested(self) -> bool:
        # https://www.twilio.com/docs/api/errors/31930: Twilio drops inbound audio when the
        # app's side of the socket is congested (it does not read fast enough).
        if self.transport.backlog_bytes() < CONGESTED_BYTES:
            return False
        if not self.timeline.inbound_dropped:
            self._found(
                Violation(
                    31930,
                    kind="inbound-congestion",
                    sender="app",
                    message=f"the app left {self.transport.backlog_bytes():,} bytes of frames "
                    "unread: Twilio drops the caller's audio while it catches up",
                    hint="Read every frame as it comes; move slow work (speech recognition, a "
                    "model call) off the task that reads the socket.",
                ),
                None,
            )
        return True

    def check_closed(self, now_ms: int) -> bool:
        """Whether the app closed the socket since the last tick (the stream then ends)."""
        if self.summary.ended_by is not None or self.transport.closed is None:
            return False
        self._app_ended(now_ms)
        return True

    async def hang_up(self, now_ms: float, ended_by: EndedBy) -> None:
        """End the stream from Twilio's side: ``stop``, then the socket closes."""
        if self.summary.ended_by is not None:
            return
        self._end(now_ms, ended_by)
        if self.protocol.state is STREAMING:
            self._send_held()
            self.protocol.send_stop()
            self._queue(self.protocol.data_to_send())
            await self.flush()
        await self.transport.close()

    def _end(self, now_ms: float, ended_by: EndedBy) -> None:
        self.summary.ended_by = ended_by
        self.summary.ended_ms = now_ms
        self.ended.set()

    def _app_ended(self, now_ms: int) -> None:
        # https://www.twilio.com/docs/voice/twiml/connect: when the app closes the socket,
        # the stream ends (no stop is sent) and the TwiML after <Connect> runs.
        self.protocol.close()
        self._end(now_ms, "app")
        closed = self.transport.closed
        assert closed is not None
        self.summary.close_code = closed.code
        if self.bidirectional:
            self.timeline.close_code = closed.code
        if closed.code is None:
            self._close_error(
                Violation(
                    31903,
                    kind="connection-dropped",
                    sender="app",
                    message="the app dropped the WebSocket without a close frame"
                    + (f" ({closed.reason})" if closed.reason else ""),
                    hint="Close the socket cleanly (code 1000) when the call is done; a crashed "
                    "handler ends the call for the caller.",
                )
            )
        elif closed.code not in (1000, 1001):
            self._close_error(
                Violation(
                    31921,
                    kind="close-error",
                    sender="app",
                    message=f"the app closed the WebSocket with code {closed.code}"
                    + (f" ({closed.reason})" if closed.reason else ""),
                    hint="Close with 1000 (normal closure) when the call is done.",
                )
            )

    def _close_error(self, violation: Violation) -> None:
        self.close_error = violation
        self._found(violation, None)

    async def finish(self) -> None:
        """After the end: close the socket if still open, read what the app still sends."""
        if self.transport.closed is None:
            await self.transport.close()
        if self._receiver is not None and not self._receiver.done():
            await self._drain(self._receiver)
        if self.bidirectional:
            self.timeline.marks_echoed += self.protocol.marks_echoed
            self.timeline.marks_echoed_by_clear += self.protocol.marks_echoed_by_clear

    async def _drain(self, receiver: asyncio.Task[None]) -> None:
        # After a hang-up the app may still be sending; read until the socket closes.
        try:
            async with asyncio.timeout(2.0):
                await receiver
        except TimeoutError:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver

    # --- frames out ------------------------------------------------------------------------

    def _queue(self, frames: list[str]) -> None:
        self._outbox.extend(frames)

    def _send_held(self) -> None:
        # Mark echoes found while playing a tick belong to its end: they leave with the next
        # tick (or sooner, before any later frame), so their sequence numbers stay in order.
        self._outbox.extend(self._held)
        self._held = []

    async def flush(self) -> None:
        """Send the frames queued so far, in order."""
        async with self._send_lock:  # one sender at a time keeps the sequence numbers in order
            frames, self._outbox = self._outbox, []
            self.summary.frames_sent += len(frames)
            for text in frames:
                self._trace_frame("twilio", text)
                await self.transport.send_text(text)

    def _trace_frame(self, sender: Sender, frame: str | bytes) -> None:
        self._lines += 1
        self._write_trace(sender, frame)
        self._observe(sender, frame)

    def _observe(self, sender: Sender, frame: str | bytes) -> None:
        if self._on_frame is not None:
            self._on_frame(self._loop.time() - self._started_at, sender, frame)

    def _write_trace(
        self, sender: Sender, frame: str | bytes, *, keep_payload: bool = False
    ) -> None:
        if self._trace is not None:
            t = self._loop.time() - self._opened_at
            self._trace.write(t, sender, frame, keep_payload=keep_payload)

    # --- frames in -------------------------------------------------------------------------

    async def _receive_all(self) -> None:
        while True:
            frame = await self.transport.receive()
            if frame is None:
                return
            self.summary.frames_received += 1
            self._lines += 1
            line, found = self._lines, len(self.findings)
            self._receive(frame, line)
            # A violation in the payload itself keeps the payload in the trace as evidence.
            evidence = any("payload" in (f.violation.path or "") for f in self.findings[found:])
            self._write_trace("app", frame, keep_payload=evidence)
            self._observe("app", frame)
            echoes = self.protocol.data_to_send()
            if echoes:
                self._send_held()
                self._queue(echoes)
                await self.flush()

    def _receive(self, frame: str | bytes, line: int) -> None:
        if not self.bidirectional:
            self._one_way(frame, line)
            return
        now_ms = (self._loop.time() - self._started_at) * 1000
        buffered = self.protocol.buffered_bytes  # what a clear in this frame throws away
        try:
            if isinstance(frame, bytes):
                self.protocol.receive_bytes(frame)
            message = self.protocol.receive_text(frame)
        except RemoteProtocolError as error:
            if error.violation.kind == "after-stop":
                # Twilio closes the socket right after its stop: frames the app sent before
                # it learnt of the hang-up cross it on the wire and are dropped, not its fault.
                self.timeline.frames_after_stop += 1
                return
            self._found(error.violation, line)
            return
        finally:
            for warning in self.protocol.warnings:
                self._found(warning, line)
            self.protocol.warnings.clear()
        self._note(message, now_ms, line, buffered)

    def _one_way(self, frame: str | bytes, line: int) -> None:
        if self.summary.ended_by is not None:
            self.timeline.frames_after_stop += 1
            return
        if self._ignored_noted:
            return
        self._ignored_noted = True
        # https://www.twilio.com/docs/api/errors/31924: "If you started a unidirectional
        # Stream with <Start><Stream>, do not send audio or control messages back to Twilio".
        self._found(
            Violation(
                31924,
                kind="unidirectional-stream",
                sender="app",
                message="the app sent a frame on a one-way stream (<Start><Stream>, or one created "
                "over REST): Twilio takes nothing back on it, and the caller hears nothing",
                hint="Send audio, marks and clears only on a <Connect><Stream>; a one-way stream "
                "only receives.",
                frame=frame if isinstance(frame, str) else None,
            ),
            line,
        )

    def _note(self, message: object, now_ms: float, line: int, buffered_bytes: int) -> None:
        timeline = self.timeline
        if isinstance(message, Media):
            timeline.note_media(
                now_ms, message.payload, buffered_bytes, self.protocol.buffered_bytes
            )
        elif isinstance(message, Mark):
            timeline.marks_sent += 1
        elif isinstance(message, Clear):
            timeline.note_clear(now_ms, buffered_bytes)

    def _found(self, violation: Violation, line: int | None) -> None:
        t = round(self._loop.time() - self._opened_at, 6)
        self.findings.append(Finding(violation, line, t))
