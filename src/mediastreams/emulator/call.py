"""One stream of a call, from Twilio's side: frames out every 20 ms, the app's frames in.

:class:`StreamRun` drives a :class:`~mediastreams.protocol.TwilioProtocol` over a
:class:`~mediastreams.emulator.transport.Transport`. Every tick it sends the caller's frame
(and key presses), plays 20 ms of the app's audio, and echoes the marks that audio passed;
meanwhile it reads the app's frames, checks each one, and notes when things happened for the
report. Time is the event loop's, so the same code runs in real and in virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..diagnostics import Finding, Violation
from ..exceptions import RemoteProtocolError
from ..messages import Clear, Mark, Media, Sender, parse
from ..protocol import TwilioProtocol
from ..trace import TraceWriter
from .recorder import Recorder
from .script import FRAME_BYTES, FRAME_MS, CallerScript, audible_extent, is_audible
from .transport import Transport

FrameObserver = Callable[[float, Sender, "str | bytes"], None]
"""Sees each frame as it goes: seconds since ``start``, who sent it, the frame."""

__all__ = ["CONGESTED_BYTES", "FrameObserver", "StreamRun", "Timeline"]

CONGESTED_BYTES = 100_000
"""Unread bytes (about 6 s of inbound frames) past which the app's side counts as congested."""


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
    """Runs one Media Stream against the app until the caller or the app ends it.

    Args:
        transport: the open WebSocket.
        script: what the caller does.
        custom_parameters: ``<Parameter>`` values for ``start``.
        bidirectional: ``False`` for a ``<Start><Stream>``: the app's audio is not played.
        trace: where to write every frame, if anywhere.
        max_duration_ms: hang up at this point whatever the script says.
        recorder: where to record both sides (one may already hold the TwiML prelude).
        hang_up_on_cancel: when the run is cancelled (Ctrl-C), hang up as the caller would and
            end normally, so the report and the recording are complete up to that point.
        on_frame: called with ``(seconds since start, sender, frame)`` for every frame,
            both ways, as it goes (a live timeline).
    """

    def __init__(
        self,
        transport: Transport,
        script: CallerScript,
        *,
        custom_parameters: Mapping[str, str] | None = None,
        call_sid: str | None = None,
        account_sid: str | None = None,
        bidirectional: bool = True,
        trace: TraceWriter | None = None,
        max_duration_ms: int = 3_600_000,
        recorder: Recorder | None = None,
        hang_up_on_cancel: bool = False,
        on_frame: FrameObserver | None = None,
    ) -> None:
        self.transport = transport
        self._on_frame = on_frame
        self.script = script
        self.protocol = TwilioProtocol(
            call_sid=call_sid, account_sid=account_sid, custom_parameters=custom_parameters
        )
        self.bidirectional = bidirectional
        self.recorder = recorder if recorder is not None else Recorder()
        self.timeline = Timeline()
        self.findings: list[Finding] = []
        self._trace = trace
        self._lines = 0
        self._max_duration_ms = max_duration_ms
        self._held: list[str] = []
        self._outbox: list[str] = []
        self._send_lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._opened_at = self._loop.time()
        self._started_at = self._opened_at
        self._ignored_noted = False
        self._hang_up_on_cancel = hang_up_on_cancel

    # --- the run ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Place the stream: connected, start, then a frame every 20 ms until it ends."""
        self.protocol.send_connected()
        self.protocol.send_start()
        self._started_at = self._loop.time()
        self._queue(self.protocol.data_to_send())
        await self._flush()
        receiver = asyncio.create_task(self._receive_all())
        try:
            await self._tick_until_end()
        finally:
            if self.transport.closed is None:
                await self.transport.close()
            if not receiver.done():
                await self._drain(receiver)
            self.script.finish()
            self.timeline.marks_echoed = self.protocol.marks_echoed
            self.timeline.marks_echoed_by_clear = self.protocol.marks_echoed_by_clear

    async def _drain(self, receiver: asyncio.Task[None]) -> None:
        # After a hang-up the app may still be sending; read until the socket closes.
        try:
            async with asyncio.timeout(2.0):
                await receiver
        except TimeoutError:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver

    async def _tick_until_end(self) -> None:
        tick = 0
        last_busy_ms = 0
        while True:
            now_ms = tick * FRAME_MS
            if not await self._wait_for_tick(now_ms):
                return
            if self.transport.closed is not None:
                self._app_ended(now_ms)
                return
            frame, digits, hang_up = self.script.tick(
                now_ms, quiet_ms=now_ms - last_busy_ms, app_spoke=last_busy_ms == now_ms
            )
            if hang_up or now_ms >= self._max_duration_ms:
                await self._hang_up(now_ms)
                return
            self._tick(frame, digits, now_ms)
            if self.timeline.audible_ticks_ms[-1:] == [now_ms]:
                last_busy_ms = now_ms + FRAME_MS
            await self._flush()
            tick += 1

    def _tick(self, frame: bytes, digits: str, now_ms: int) -> None:
        self._send_held()
        if now_ms == 0:
            self.timeline.started_at_s = self._started_at
        if self._congested():
            self.timeline.inbound_dropped += 1
        else:
            # The frame's place in the stream: frames dropped for 31930 leave a jump.
            self.protocol.send_media(frame, timestamp_ms=FRAME_MS + now_ms)
        for digit in digits:
            self.protocol.send_dtmf(digit)
        self._queue(self.protocol.data_to_send())
        buffered = self.protocol.buffered_bytes
        played = self.protocol.play(FRAME_BYTES) if self.bidirectional else b""
        self._held += self.protocol.data_to_send()
        self.timeline.note_playout(now_ms, buffered, played)
        self.recorder.add(frame, played)

    def _congested(self) -> bool:
        # https://www.twilio.com/docs/api/errors/31930: Twilio drops inbound audio when the
        # app's side of the socket is congested (it does not read fast enough).
        if self.transport.backlog_bytes() < CONGESTED_BYTES:
            return False
        if not self.timeline.inbound_dropped:
            self._found(
                Violation(
                    31930,
                    "inbound-congestion",
                    "app",
                    f"the app left {self.transport.backlog_bytes():,} bytes of frames unread: "
                    "Twilio drops the caller's audio while it catches up",
                    "Read every frame as it comes; move slow work (speech recognition, a model "
                    "call) off the task that reads the socket.",
                ),
                None,
            )
        return True

    async def _hang_up(self, now_ms: int) -> None:
        self._send_held()
        self.protocol.send_stop()
        self._queue(self.protocol.data_to_send())
        await self._flush()
        self.timeline.duration_ms = now_ms
        self.timeline.ended_by = "caller"
        await self.transport.close()

    def _app_ended(self, now_ms: int) -> None:
        # https://www.twilio.com/docs/voice/twiml/connect: when the app closes the socket,
        # the stream ends (no stop is sent) and the TwiML after <Connect> runs.
        self.protocol.close()
        self.timeline.duration_ms = now_ms
        self.timeline.ended_by = "app"
        closed = self.transport.closed
        assert closed is not None
        self.timeline.close_code = closed.code
        if closed.code is None:
            self._found(
                Violation(
                    31903,
                    "connection-dropped",
                    "app",
                    "the app dropped the WebSocket without a close frame"
                    + (f" ({closed.reason})" if closed.reason else ""),
                    "Close the socket cleanly (code 1000) when the call is done; a crashed "
                    "handler ends the call for the caller.",
                ),
                None,
            )
        elif closed.code not in (1000, 1001):
            self._found(
                Violation(
                    31921,
                    "close-error",
                    "app",
                    f"the app closed the WebSocket with code {closed.code}"
                    + (f" ({closed.reason})" if closed.reason else ""),
                    "Close with 1000 (normal closure) when the call is done.",
                ),
                None,
            )

    async def _wait_for_tick(self, now_ms: int) -> bool:
        """Sleep until the tick's deadline; ``False`` when cancelled and hung up instead."""
        delay = self._started_at + now_ms / 1000 - self._loop.time()
        try:
            if delay > 0:
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._hang_up_on_cancel or task is None:
                raise
            task.uncancel()
            await self._hang_up(now_ms)
            self.timeline.ended_by = "interrupted"
            return False
        return True

    # --- frames out ------------------------------------------------------------------------

    def _queue(self, frames: list[str]) -> None:
        self._outbox.extend(frames)

    def _send_held(self) -> None:
        # Mark echoes found while playing a tick belong to its end: they leave with the next
        # tick (or sooner, before any later frame), so their sequence numbers stay in order.
        self._outbox.extend(self._held)
        self._held = []

    async def _flush(self) -> None:
        async with self._send_lock:  # one sender at a time keeps the sequence numbers in order
            frames, self._outbox = self._outbox, []
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
                await self._flush()

    def _receive(self, frame: str | bytes, line: int) -> None:
        now_ms = (self._loop.time() - self._started_at) * 1000
        buffered = self.protocol.buffered_bytes  # what a clear in this frame throws away
        try:
            if isinstance(frame, bytes):
                self.protocol.receive_bytes(frame)
            message = (
                self.protocol.receive_text(frame)
                if self.bidirectional
                else self._one_way(frame, line)
            )
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

    def _one_way(self, frame: str | bytes, line: int) -> Media | Mark | Clear:
        message = parse(frame, sender="app")
        if not self._ignored_noted:
            self._ignored_noted = True
            self._found(
                Violation(
                    31951,
                    "unidirectional-stream",
                    "app",
                    "the app sent frames on a <Start><Stream>, which is one-way: Twilio ignores "
                    "them and the caller hears nothing",
                    "Use <Connect><Stream> for a stream the app talks back on.",
                    frame if isinstance(frame, str) else None,
                ),
                line,
            )
        return message  # type: ignore[return-value]

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
