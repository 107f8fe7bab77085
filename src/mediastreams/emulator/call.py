"""One stream of a call (a leg), from Twilio's side: frames out every 20 ms, the app's in.

:class:`StreamRun` drives a :class:`~mediastreams.protocol.TwilioProtocol` over a
:class:`~mediastreams.emulator.transport.AppConnection`. The call
(:class:`~mediastreams.emulator.line.Line`) ticks every 20 ms for all its streams: on each
tick a bidirectional stream sends the caller's frame (and key presses), plays 20 ms of the
app's audio and echoes the marks that audio passed (:meth:`StreamRun.tick`); a one-way stream
sends copies of the tracks it asked for (:meth:`StreamRun.copy`). Meanwhile each stream reads
the app's frames, and a bidirectional one reads every frame both ways through a
:class:`~mediastreams.tally.StreamReader` into the call's
:class:`~mediastreams.tally.Tally` (as ``mediastreams inspect`` reads a trace), and notes when
the app's audio came, played and was cleared in the call's
:class:`~mediastreams.emulator.talkback.Talkback`. Time is the event loop's, so the same code
runs in real and in virtual time.

What a stream is (its plan and its line in the report) is :mod:`~mediastreams.emulator.streams`;
this module is the driving of one.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..audio.frames import FRAME_BYTES, FRAME_MS
from ..diagnostics import Violation
from ..messages import AppMessage, Clear, Media, Sender
from ..protocol import STREAMING, Received, TwilioProtocol
from ..tally import StreamReader, Tally
from ..trace import TraceWriter
from .streams import (
    TRACKS_BY_ATTRIBUTE,
    EndedBy,
    FrameObserver,
    StreamPlan,
    StreamSummary,
)
from .talkback import Talkback
from .transport import AppConnection

__all__ = [
    "CONGESTED_BYTES",
    "TRACKS_BY_ATTRIBUTE",
    "EndedBy",
    "FrameObserver",
    "StreamPlan",
    "StreamRun",
    "StreamSummary",
]

CONGESTED_BYTES = 100_000
"""Unread bytes (about 6 s of inbound frames) past which the app's side counts as congested."""


class StreamRun:
    """One Media Stream of the call, driven by the call's tick until it ends.

    Args:
        transport: the open WebSocket.
        plan: what to stream (URL, tracks, parameters, one-way or not).
        call_sid, account_sid: the call's SIDs, for ``start`` and ``stop``.
        tally: where every frame of a bidirectional stream is counted, and every violation
            of any stream; the call shares one between its streams.
        talkback: where a bidirectional stream notes when the app's audio came and played;
            the call shares one between its bidirectional streams (one at a time).
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
        tally: Tally | None = None,
        talkback: Talkback | None = None,
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
        self.tally = tally if tally is not None else Tally()
        self.talkback = talkback if talkback is not None else Talkback()
        # One reader for both ways: the app's frames through Twilio's side, Twilio's through
        # the app's. A one-way stream takes nothing back (31924), so reads nothing.
        self.reader = StreamReader(self.tally, self.protocol) if plan.bidirectional else None
        self.summary = summary or plan.summary()
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
        if self.talkback.started_at_s is None:
            self.talkback.started_at_s = self._started_at
        self._send_inbound(frame, now_ms)
        for digit in digits:
            self.protocol.send_dtmf(digit)
        self._queue(self.protocol.data_to_send())
        buffered = self.protocol.buffered_bytes
        played = self.protocol.play(FRAME_BYTES)
        self._held += self.protocol.data_to_send()
        self.talkback.note_playout(now_ms, buffered, played)
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
            self.talkback.inbound_dropped += 1
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
        if not self.talkback.inbound_dropped:
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
        if self.reader is not None:
            self.reader.from_twilio(frame, line=self._lines, t=self._trace_t())
        self._write_trace(sender, frame)
        self._observe(sender, frame)

    def _trace_t(self) -> float:
        """Seconds since the socket opened, as the trace and the findings give it."""
        return round(self._loop.time() - self._opened_at, 6)

    def _observe(self, sender: Sender, frame: str | bytes) -> None:
        if self._on_frame is not None:
            self._on_frame(self._loop.time() - self._started_at, sender, frame)

    def _write_trace(
        self, sender: Sender, frame: str | bytes, *, keep_payload: bool = False
    ) -> None:
        if self._trace is not None:
            self._trace.write(self._trace_t(), sender, frame, keep_payload=keep_payload)

    # --- frames in -------------------------------------------------------------------------

    async def _receive_all(self) -> None:
        while True:
            frame = await self.transport.receive()
            if frame is None:
                return
            self.summary.frames_received += 1
            self._lines += 1
            evidence = self._receive(frame, self._lines)
            # A violation in the payload itself keeps the payload in the trace as evidence.
            self._write_trace("app", frame, keep_payload=evidence)
            self._observe("app", frame)
            echoes = self.protocol.data_to_send()
            if echoes:
                self._send_held()
                self._queue(echoes)
                await self.flush()

    def _receive(self, frame: str | bytes, line: int) -> bool:
        """Read one app frame; whether a violation is about its payload."""
        if self.reader is None:
            self._one_way(frame, line)
            return False
        now_ms = (self._loop.time() - self._started_at) * 1000
        buffered = self.protocol.buffered_bytes  # what a clear in this frame throws away
        received = self.reader.from_app(frame, line=line, t=self._trace_t())
        self._note(received, now_ms, buffered)
        return any("payload" in (v.path or "") for v in received.violations)

    def _one_way(self, frame: str | bytes, line: int) -> None:
        if self.summary.ended_by is not None or self._ignored_noted:
            return  # crossed the stop on the wire; or already reported once
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

    def _note(self, received: Received[AppMessage], now_ms: float, buffered_bytes: int) -> None:
        """When the app's audio came, and what a clear threw away, for the measures."""
        message = received.message
        if type(message) is Media:
            self.talkback.note_media(
                now_ms, message.payload, buffered_bytes, self.protocol.buffered_bytes
            )
        elif type(message) is Clear:
            self.talkback.note_clear(now_ms, buffered_bytes)

    def _found(self, violation: Violation, line: int | None) -> None:
        self.tally.found(violation, line=line, t=self._trace_t())
