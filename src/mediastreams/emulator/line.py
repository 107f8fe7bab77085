"""The line: what every stream of one call shares.

Twilio runs one call: the caller on one end, and on the other whatever the TwiML and the app
make the caller hear. :class:`Line` owns that: the clock (one 20 ms tick for every stream,
from the call's first ``start``), the caller's script (run once per call), the audio the
caller hears (TwiML ``<Say>``/``<Play>``/``<Pause>``, or the bidirectional stream's playout),
the recording, and the streams: it opens them, ticks them, stops them and sends their
``statusCallback`` events. The TwiML interpreter
(:mod:`~mediastreams.emulator.interpreter`) and the REST stand-in
(:mod:`~mediastreams.emulator.rest`) act on the call through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..audio import SILENCE_BYTE
from ..audio.frames import FRAME_BYTES, FRAME_MS, MULAW_SAMPLE_RATE
from ..diagnostics import Violation
from ..exceptions import ConnectFailed
from ..protocol import BYTES_PER_MS
from ..trace import TraceWriter
from .call import StreamRun
from .clock import watch_time
from .loudness import is_audible
from .recorder import Recorder
from .script import Caller
from .streams import EndedBy, FrameObserver, StreamPlan, StreamSummary, TickObserver
from .talkback import Talkback
from .transport import AppConnection
from .webhook import NO_CODE, StreamEvents, TwilioRequests

if TYPE_CHECKING:  # report.py imports rest.py, which imports this module
    from .report import CallReport

__all__ = ["MAX_FORKED_TRACKS", "Line", "Opener"]

Opener = Callable[[StreamPlan], Awaitable[AppConnection]]
"""Opens the WebSocket for a stream, as Twilio does (raises ``ConnectFailed``)."""

MAX_FORKED_TRACKS = 4
"""https://www.twilio.com/docs/voice/twiml/stream: "There are a maximum of 4 forked streams
allowed per call. Each track, inbound or outbound, is a forked stream." (protocol.md §2.1)"""

_SILENCE_FRAME = bytes([SILENCE_BYTE]) * FRAME_BYTES


class Line:
    """One call's shared clock, caller, audio, recording and streams.

    Args:
        script: what the caller does (a script, or a live caller); its time 0 is the
            call's first ``start``.
        recorder: what the caller heard and said.
        report: where findings and notes go.
        opener: opens a stream's WebSocket.
        requests: the HTTP requests to the app (status callbacks).
        call_sid, account_sid: the call's SIDs.
        max_duration_ms: the caller hangs up at this time whatever the script says.
        trace, on_frame: given to the call's first bidirectional stream.
        on_tick: called after every tick with what the caller said and heard.
    """

    def __init__(
        self,
        script: Caller,
        recorder: Recorder,
        report: CallReport,
        opener: Opener,
        requests: TwilioRequests,
        *,
        call_sid: str,
        account_sid: str,
        max_duration_ms: int,
        trace: TraceWriter | None = None,
        on_frame: FrameObserver | None = None,
        on_tick: TickObserver | None = None,
    ) -> None:
        self.script = script
        self.recorder = recorder
        self.report = report
        self.requests = requests
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.talkback = Talkback()
        """The app's talk-back, over every bidirectional stream of the call (one at a time)."""
        self.streams: list[StreamSummary] = []
        """Every stream of the call, in the order they were asked for."""
        self.end_requested = asyncio.Event()
        self.ended_by: EndedBy | None = None
        self.now_ms = 0
        """The call's time: milliseconds since its first ``start``, at the tick under way."""
        self.t0: float | None = None
        self._opener = opener
        self._max_duration_ms = max_duration_ms
        self._trace = trace
        self._on_frame = on_frame
        self._on_tick = on_tick
        self._loop = asyncio.get_running_loop()
        self._talking: StreamRun | None = None
        self._forks: list[StreamRun] = []
        self._opening: dict[str, asyncio.Task[StreamRun | None]] = {}
        self._abandoned: dict[str, EndedBy] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._events = StreamEvents(requests, account_sid, call_sid, on_failure=self._finding)
        self._first_start = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None
        self._audio = bytearray()
        self._audio_played: asyncio.Future[None] | None = None
        self._lost_digits = False
        self._unwatch_clock: Callable[[], None] | None = None

    # --- what the caller hears from the TwiML -----------------------------------------------

    async def play(self, audio: bytes) -> None:
        """The caller hears ``audio`` (mu-law/8000); returns once it has played.

        Before the call's first stream nobody but the caller hears it: it takes its time and
        is recorded. Once streams run it goes out on the tick, in the outbound track of
        one-way streams. A cancelled play (the TwiML was replaced, the call ended) stops.
        """
        if self.t0 is None:
            audio = await self._play_before_streams(audio)
        if audio:
            await self._play_on_ticks(audio)

    async def _play_before_streams(self, audio: bytes) -> bytes:
        """Play until done or until a stream starts; returns what is left to play."""
        began = self._loop.time()
        heard = len(audio)
        try:
            async with asyncio.timeout(len(audio) / MULAW_SAMPLE_RATE):
                await self._first_start.wait()
            assert self.t0 is not None
            heard = min(heard, round((self.t0 - began) * MULAW_SAMPLE_RATE))
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            heard = min(heard, round((self._loop.time() - began) * MULAW_SAMPLE_RATE))
            raise
        finally:
            self.recorder.add_prelude(audio[:heard])
            self.report.prelude_ms += heard // BYTES_PER_MS
        return audio[heard:]

    async def _play_on_ticks(self, audio: bytes) -> None:
        self._audio += audio
        self._audio_played = played = self._loop.create_future()
        try:
            await played
        except asyncio.CancelledError:
            self._audio.clear()
            raise

    def _take_audio(self) -> bytes:
        if not self._audio:
            return _SILENCE_FRAME
        chunk = bytes(self._audio[:FRAME_BYTES])
        del self._audio[:FRAME_BYTES]
        played = self._audio_played
        if not self._audio and played is not None and not played.done():
            # The last of it plays in this tick: the next verb's audio follows seamlessly.
            played.set_result(None)
        if len(chunk) < FRAME_BYTES:
            chunk += _SILENCE_FRAME[len(chunk) :]
        return chunk

    # --- streams ---------------------------------------------------------------------------

    @property
    def talking(self) -> StreamRun | None:
        """The bidirectional stream running now, if any."""
        return self._talking

    def find(self, key: str) -> StreamSummary | None:
        """The running stream with this SID or name, if any."""
        for summary in self.streams:
            if summary.running and key in (summary.stream_sid, summary.name):
                return summary
        return None

    async def connect_stream(self, plan: StreamPlan) -> StreamRun | None:
        """Open a bidirectional stream (``<Connect><Stream>``); ``None`` if it failed."""
        opening = self._open_in_background(plan)
        if opening is None:
            return None
        # Shielded: if the TwiML is interrupted meanwhile, the stream still opens and is
        # then stopped with the others, as Twilio would stop it.
        return await asyncio.shield(opening)

    def start_stream(self, plan: StreamPlan) -> StreamSummary | None:
        """Start a one-way stream (``<Start><Stream>``, REST) without waiting for it to open.

        Returns:
            Its summary, or ``None`` when it is not started: the call is ending, or Twilio
            would refuse it (a name in use, too many forked tracks; that is reported).
        """
        if self._open_in_background(plan) is None:
            return None
        return self.streams[-1]

    def _open_in_background(self, plan: StreamPlan) -> asyncio.Task[StreamRun | None] | None:
        if self.end_requested.is_set():
            return None
        summary = plan.summary()
        refusal = self._refusal(plan)
        self.streams.append(summary)
        if refusal is not None:
            summary.ended_by, summary.error = "refused", refusal.message
            self._finding(refusal)
            return None
        task = asyncio.create_task(self._open(plan, summary))
        self._opening[plan.stream_sid] = task
        task.add_done_callback(lambda _: self._opening.pop(plan.stream_sid, None))
        return task

    def _refusal(self, plan: StreamPlan) -> Violation | None:
        running = [s for s in self.streams if s.running]
        if plan.name is not None and any(s.name == plan.name for s in running):
            # https://www.twilio.com/docs/voice/twiml/stream#attributes-name: "unique per Call"
            return _refused(
                "stream-name-taken",
                f"a stream named {plan.name!r} is already running in this call",
                "Give each stream of a call its own name.",
            )
        forked = sum(len(s.tracks) for s in running if not s.bidirectional)
        if not plan.bidirectional and forked + len(plan.tracks) > MAX_FORKED_TRACKS:
            return _refused(
                "stream-limit",
                f"{forked} forked tracks already run and this stream asks for "
                f"{len(plan.tracks)} more: Twilio allows {MAX_FORKED_TRACKS} per call, each "
                "track (inbound or outbound) counting as one",
                "Stop a one-way stream first (<Stop><Stream name>), or stream fewer tracks.",
            )
        return None

    async def _open(self, plan: StreamPlan, summary: StreamSummary) -> StreamRun | None:
        try:
            transport = await self._opener(plan)
        except ConnectFailed as failed:
            summary.ended_by, summary.error = "failed", failed.violation.message
            self._finding(failed.violation)
            self._events.send(plan, "stream-error", failed.violation)
            return None
        first_talker = plan.bidirectional and not any(
            s.bidirectional and s.started_ms is not None for s in self.streams
        )
        leg = StreamRun(
            transport,
            plan,
            call_sid=self.call_sid,
            account_sid=self.account_sid,
            tally=self.report.tally,
            talkback=self.talkback if plan.bidirectional else None,
            trace=self._trace if first_talker else None,
            on_frame=self._on_frame if first_talker else None,
            summary=summary,
        )
        sent = await leg.open(self.t0)
        if self.t0 is None:
            self.t0 = sent
            # In virtual time, what puts the figures in doubt counts from now on.
            self._unwatch_clock = watch_time()
            self._first_start.set()
            self._ticker = asyncio.create_task(self._run_ticks())
            self._ticker.add_done_callback(self._ticker_done)
        if plan.bidirectional:
            self._talking = leg
        else:
            self._forks.append(leg)
        # After connected and start have gone out (protocol.md §7; the order is unconfirmed).
        self._events.send(plan, "stream-started")
        if plan.stream_sid in self._abandoned:  # the TwiML moved on while it opened
            self._stop(leg, self._abandoned.pop(plan.stream_sid))
        return leg

    def stop_stream(self, key: str, ended_by: EndedBy) -> StreamSummary | None:
        """Stop the running one-way stream with this SID or name: ``stop``, then close.

        The stream stops in the background, as Twilio goes on meanwhile (with the next verb,
        or by answering the REST request).

        Returns:
            Its summary, or ``None`` when no one-way stream of that SID or name runs.
        """
        summary = self.find(key)
        if summary is None or summary.bidirectional:
            return None
        self._spawn(self._stop_when_open(summary, ended_by))
        return summary

    async def _stop_when_open(self, summary: StreamSummary, ended_by: EndedBy) -> None:
        opening = self._opening.get(summary.stream_sid)
        if opening is not None:
            await asyncio.shield(opening)
        leg = next((f for f in self._forks if f.summary is summary), None)
        if leg is not None:
            self._stop(leg, ended_by)

    def stop_talking(self, ended_by: EndedBy) -> None:
        """End the bidirectional stream from Twilio's side (a REST redirect), in the
        background; one still opening is stopped once open."""
        if self._talking is not None:
            self._stop(self._talking, ended_by)
        for summary in self.streams:
            if summary.bidirectional and summary.stream_sid in self._opening:
                self._abandoned[summary.stream_sid] = ended_by

    def _stop(self, leg: StreamRun, ended_by: EndedBy) -> None:
        self._remove(leg)
        self._spawn(self._hang_up(leg, self.now_ms, ended_by))

    async def _hang_up(self, leg: StreamRun, now_ms: int, ended_by: EndedBy) -> None:
        await leg.hang_up(now_ms, ended_by)
        await self._after(leg)

    def _legs(self) -> list[StreamRun]:
        return [*([self._talking] if self._talking is not None else []), *self._forks]

    def _remove(self, leg: StreamRun) -> None:
        if leg is self._talking:
            self._talking = None
        elif leg in self._forks:
            self._forks.remove(leg)

    async def _after(self, leg: StreamRun) -> None:
        await leg.finish()
        if leg.close_error is not None:
            self._events.send(leg.plan, "stream-error", leg.close_error)
        else:
            self._events.send(leg.plan, "stream-stopped")

    # --- the tick --------------------------------------------------------------------------

    async def _run_ticks(self) -> None:
        assert self.t0 is not None
        tick = 0
        last_busy_ms = 0  # the end of the last tick in which the caller heard the app
        heard = False  # whether the caller heard the app in the last tick (not yet, at first)
        while True:
            now_ms = tick * FRAME_MS
            self.now_ms = now_ms
            delay = self.t0 + now_ms / 1000 - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._reap(now_ms):
                await asyncio.sleep(0)  # let the TwiML go on, or end the call, first
            if self.end_requested.is_set():
                return
            frame, digits, hang_up = self.script.tick(
                now_ms, quiet_ms=now_ms - last_busy_ms, app_spoke=heard
            )
            if hang_up or now_ms >= self._max_duration_ms:
                self.request_end("caller")
                return
            heard = self._tick(frame, digits, now_ms)
            if heard:
                last_busy_ms = now_ms + FRAME_MS
            if self._talking is not None:
                await self._talking.flush()
            for fork in self._forks:
                await fork.flush()
            tick += 1

    def _tick(self, frame: bytes, digits: str, now_ms: int) -> bool:
        """One tick of every stream; whether the caller heard something audible."""
        talking = self._talking
        if talking is not None:
            heard = talking.tick(frame, digits, now_ms)
            ticks = self.talkback.audible_ticks_ms
            audible = bool(ticks) and ticks[-1] == now_ms
            if self._forks and len(heard) < FRAME_BYTES:
                heard += _SILENCE_FRAME[len(heard) :]
        else:
            heard = self._take_audio()
            audible = is_audible(heard)
            if digits:
                self._digits_lost(digits, now_ms)
        for fork in self._forks:
            fork.copy(frame, heard, now_ms)
        self.recorder.add(frame, heard)
        if self._on_tick is not None:
            self._on_tick(now_ms, frame, heard.ljust(FRAME_BYTES, _SILENCE_FRAME[:1]))
        return audible

    def _reap(self, now_ms: int) -> bool:
        """Streams whose app closed the socket since the last tick: they end now."""
        talking = self._talking
        if not self._forks and (talking is None or talking.transport.closed is None):
            return False  # the usual tick: nothing to look at
        closed = [leg for leg in self._legs() if leg.check_closed(now_ms)]
        for leg in closed:
            self._remove(leg)
            self._spawn(self._after(leg))
        return bool(closed)

    def _digits_lost(self, digits: str, now_ms: int) -> None:
        if not self._lost_digits:
            self._lost_digits = True
            self.report.notes.append(
                f"the caller pressed {digits!r} at {now_ms} ms with no bidirectional stream "
                "open: one-way streams carry no DTMF, so no stream got it"
            )

    async def limit_duration(self) -> None:
        """Hang up at the maximum duration even if no stream ever starts (the tick does it
        once one has)."""
        await asyncio.sleep(self._max_duration_ms / 1000)
        if self.t0 is None:
            self.request_end("caller")

    def _ticker_done(self, ticker: asyncio.Task[None]) -> None:
        if not ticker.cancelled() and ticker.exception() is not None:
            self.request_end("error")  # close() raises the error

    # --- the end ---------------------------------------------------------------------------

    def request_end(self, ended_by: EndedBy) -> None:
        """The call is to end (the first reason given is the one reported)."""
        if self.ended_by is None:
            self.ended_by = ended_by
        self.end_requested.set()

    async def close(self, *, cancel_opening: bool = False) -> None:
        """End the call: every stream gets ``stop`` and its socket closes; then tidy up.

        Args:
            cancel_opening: give up on streams still connecting (Ctrl-C) instead of waiting
                for them to open and stopping them.

        Raises:
            Exception: whatever broke the tick, if anything did.
        """
        self.request_end("twiml")
        ended_by = "twiml" if self.ended_by == "app" else self.ended_by or "twiml"
        opening = list(self._opening.values())
        if cancel_opening:
            for task in opening:
                task.cancel()
        if opening:
            await asyncio.wait(opening)
        ticker = self._ticker
        if ticker is not None and not ticker.done():
            ticker.cancel()
            await asyncio.wait({ticker})
        self._stop_watching_clock()
        self._reap(self.now_ms)  # sockets the app closed since the last tick
        for leg in self._legs():
            self._stop(leg, ended_by)
        while self._background:
            await asyncio.gather(*self._background)
            # A finished task leaves the set from its done callback, which needs a turn of the
            # loop; since Python 3.12, gather() over finished tasks returns without one, and
            # this loop would spin for ever.
            await asyncio.sleep(0)
        await self._events.wait()
        self.script.finish()
        self.talkback.duration_ms = self.now_ms if self.t0 is not None else 0
        for task in (*opening, *([ticker] if ticker is not None else [])):
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def abort(self) -> None:
        """Cancelled without hanging up: stop the tick and close every socket."""
        for task in list(self._opening.values()):
            task.cancel()
        if self._ticker is not None:
            self._ticker.cancel()
        self._stop_watching_clock()
        for leg in self._legs():
            await leg.transport.close()
        for task in list(self._background):
            task.cancel()

    def _stop_watching_clock(self) -> None:
        unwatch, self._unwatch_clock = self._unwatch_clock, None
        if unwatch is not None:
            unwatch()

    # --- reports and events ----------------------------------------------------------------

    def call_ms(self) -> float:
        """The call's time now, in milliseconds since its first ``start`` (0 before)."""
        return 0.0 if self.t0 is None else (self._loop.time() - self.t0) * 1000

    def _finding(self, violation: Violation) -> None:
        self.report.tally.found(violation)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _refused(kind: str, message: str, hint: str) -> Violation:
    return Violation(NO_CODE, kind=kind, sender="app", message=message, hint=hint, path="Stream")
