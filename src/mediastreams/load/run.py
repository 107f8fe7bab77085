"""One process of a load run: its share of the calls, started on the ramp, driven by one tick.

The calls of a process share one timer: every 2 ms a tick runs one of ten slots, and each call
in it sends its caller frame and plays 20 ms of the app's audio, so each call is served every
20 ms with no sleep (or task) of its own. The tick measures how late it ran; a tick that runs
late is the generator's lateness, not the app's, and the report says so.

Every second the process's counters become a :class:`~mediastreams.load.stats.Second`, given
to ``on_second`` (the live line, or the parent process) from inside the tick: a slow
``on_second`` makes the ticks late, as any work in this process would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx

from ..messages import new_sid
from .call import CallSetup, LoadCall, Phase
from .caller import caller_audio, stamp
from .config import LoadConfig
from .stats import Second, Stats
from .target import CallFailed, StreamAddress, open_error, stream_for_call

__all__ = ["SLOTS", "TICK_LATE_MS", "ProcessRun"]

SLOTS = 10  # ticks per 20 ms frame: each call belongs to one
TICK_LATE_MS = 10
"""A tick later than this is counted late."""
_OPENING_AT_ONCE = 100  # connections opening at the same time, at most
_STOP_DRAIN_S = 1.0  # on Ctrl-C, the drain each call still gets

SecondObserver = Callable[[Second], None]


class ProcessRun:
    """Place this process's share of a run's calls, and count what happens.

    Args:
        config: the run.
        process: which share (0 to ``config.processes - 1``).
        on_second: called with the counters at the end of every second.
    """

    def __init__(
        self,
        config: LoadConfig,
        process: int = 0,
        on_second: SecondObserver | None = None,
    ) -> None:
        self.config = config
        self.process = process
        self._audio = caller_audio()  # read (and numpy imported) before the epoch
        self._epoch_ns = time.monotonic_ns()
        self._on_second = on_second
        self.stats = Stats()
        self._calls = config.share(process)
        self.stats.counters["calls_planned"] = len(self._calls)
        self._slots: list[list[LoadCall]] = [[] for _ in range(SLOTS)]
        self._next_slot = 0
        self._live: set[LoadCall] = set()
        self._opening = 0
        self._joined = 0  # calls in the tick's slots
        self._placed = False  # every call of the share has been tried
        self._stopping = False
        self._first_end_us: int | None = None
        self._steady: tuple[float, float, int, int] | None = None  # t, cpu, sent, received
        self._address = (
            None if config.webhook else StreamAddress.of(config.target, config.parameters)
        )
        self._account_sid = config.account_sid or new_sid("AC")

    def clock_us(self) -> int:
        """Microseconds since the run's epoch."""
        return (time.monotonic_ns() - self._epoch_ns) // 1000

    def stop(self) -> None:
        """Start no more calls; give each call a short drain, then hang up."""
        self._stopping = True
        now_us = self.clock_us()
        for call in self._live:
            if call.phase is Phase.STREAMING:
                call.end_us = now_us
                call.drain_until_us = now_us + int(_STOP_DRAIN_S * 1e6)

    async def run(self, ready: Callable[[], Awaitable[int]] | None = None) -> Stats:
        """Place the calls, tick until they have all ended, and return the counts.

        Args:
            ready: awaited once everything is prepared; it returns the run's time 0 (as
                ``time.time_ns()``) that every process ramps from. By default, now.
        """
        setup = CallSetup(
            self.stats, self._audio, self.config.turns, self.clock_us, self.config.auth_token
        )
        async with httpx.AsyncClient(timeout=self.config.open_timeout_s) as client:
            wall_ns = await ready() if ready is not None else time.time_ns()
            # The same instant on this process's monotonic clock.
            self._epoch_ns = time.monotonic_ns() + (wall_ns - time.time_ns())
            cpu0, wall0 = time.process_time(), time.monotonic()
            ticker = asyncio.create_task(self._tick())
            try:
                await self._place_all(setup, client)
            finally:
                self._placed = True
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
        self._finish(time.process_time() - cpu0, time.monotonic() - wall0)
        return self.stats

    # --- placing calls -----------------------------------------------------------------

    async def _place_all(self, setup: CallSetup, client: httpx.AsyncClient) -> None:
        opening = asyncio.Semaphore(_OPENING_AT_ONCE)
        tasks = []
        for call in self._calls:
            delay_s = self.config.start_offset_s(call) - self.clock_us() / 1e6
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            if self._stopping:
                break
            await opening.acquire()
            tasks.append(asyncio.create_task(self._place(setup, client, opening)))
        self._placed = True
        await asyncio.gather(*tasks)

    async def _place(
        self, setup: CallSetup, client: httpx.AsyncClient, opening: asyncio.Semaphore
    ) -> None:
        self.stats.starts_s.append(round(self.clock_us() / 1e6, 4))
        self.stats.counters["calls_started"] += 1
        self._opening += 1
        try:
            call = await self._open(setup, client)
        except CallFailed as failed:
            self.stats.failure(failed.violation)
            call = None
        finally:
            self._opening -= 1
            opening.release()
        if call is None:
            return
        self._join(call)
        try:
            await call.ended
        finally:
            self._live.discard(call)
            self._slots[call.slot].remove(call)
            self._joined -= 1

    async def _open(self, setup: CallSetup, client: httpx.AsyncClient) -> LoadCall | None:
        """The call, streaming; ``None`` when it failed and counted its failure itself.

        Raises:
            CallFailed: the webhook or the connection failed (not counted yet).
        """
        config = self.config
        call_sid = new_sid("CA")
        deadline = asyncio.get_running_loop().time() + config.open_timeout_s
        address = self._address
        if address is None:
            address = await stream_for_call(
                client,
                config.target,
                call_sid=call_sid,
                account_sid=self._account_sid,
                auth_token=config.auth_token,
            )
        stream_sid = new_sid("MZ")

        def call_for_connection() -> LoadCall:
            return LoadCall(setup, address, stream_sid, call_sid, self._account_sid)

        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                _, call = await loop.create_connection(
                    call_for_connection,
                    address.host,
                    address.port,
                    ssl=address.ssl_context(),
                    server_hostname=address.host if address.tls else None,
                )
        except (OSError, TimeoutError) as error:
            raise open_error(error, address.url) from None
        self._live.add(call)
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.shield(call.up)
        except TimeoutError:
            call.fail(open_error(TimeoutError(), address.url))
        except CallFailed:
            pass  # the call counted it
        if call.failure is None:
            return call
        await call.ended
        self._live.discard(call)
        return None

    def _join(self, call: LoadCall) -> None:
        config = self.config
        call.begin(int(config.duration_s * 1e6), int(config.drain_s * 1e6))
        if self._stopping:
            self.stop()
        if self._first_end_us is None or call.end_us < self._first_end_us:
            self._first_end_us = call.end_us
        self._joined += 1
        call.slot = self._next_slot
        self._slots[call.slot].append(call)
        self._next_slot = (self._next_slot + 1) % SLOTS

    # --- the tick ----------------------------------------------------------------------

    async def _tick(self) -> None:
        stats = self.stats
        tick_late = stats.histograms["tick_late"]
        counters = stats.counters
        slot_ns = 20_000_000 // SLOTS
        late_us = TICK_LATE_MS * 1000
        start_ns = time.monotonic_ns()
        next_second_ns = self._epoch_ns + 1_000_000_000
        while next_second_ns <= start_ns:
            next_second_ns += 1_000_000_000
        tick = 0
        while True:
            target_ns = start_ns + tick * slot_ns
            now_ns = time.monotonic_ns()
            if target_ns > now_ns:
                await asyncio.sleep((target_ns - now_ns) / 1e9)
                now_ns = time.monotonic_ns()
            elif tick % SLOTS == 0:
                await asyncio.sleep(0)  # behind: let the sockets be read between rounds
            if self._joined:  # the generator's lateness while it serves calls
                lateness_us = (now_ns - target_ns) // 1000
                tick_late.record(lateness_us)
                counters["ticks"] += 1
                if lateness_us > late_us:
                    counters["ticks_late"] += 1
            now_us = (now_ns - self._epoch_ns) // 1000
            stamp_text = stamp(now_us)
            for call in self._slots[tick % SLOTS]:
                call.tick(now_us, stamp_text)
            self._watch_steady(now_us)
            if now_ns >= next_second_ns:
                self._second(round((next_second_ns - self._epoch_ns) / 1e9))
                next_second_ns += 1_000_000_000
            tick += 1

    def _frames(self) -> tuple[int, int]:
        """Caller frames sent and app frames received so far, by every call."""
        counters = self.stats.counters
        live = [c for c in self._live if c.phase is not Phase.ENDED]  # ended: counted already
        sent = counters["frames_sent"] + sum(c.frames_sent for c in live)
        received = counters["media_received"] + sum(c.measures.media_in for c in live)
        return sent, received

    def _watch_steady(self, now_us: int) -> None:
        """The steady window: from every call placed to the first call's drain."""
        if self._steady is None:
            if self._placed and not self._opening and self._live:
                self._steady = (now_us / 1e6, time.process_time(), *self._frames())
        elif not self.stats.steady_s and (
            self._stopping or (self._first_end_us is not None and now_us >= self._first_end_us)
        ):
            t0, cpu0, sent0, received0 = self._steady
            sent, received = self._frames()
            self.stats.steady_s = now_us / 1e6 - t0
            self.stats.steady_cpu_s = time.process_time() - cpu0
            self.stats.steady_frames_sent = sent - sent0
            self.stats.steady_media_received = received - received0

    def _second(self, second: int) -> None:
        stats = self.stats
        sent, received = self._frames()
        row = Second(
            second=second,
            active=sum(
                1 for c in self._live if c.phase is Phase.STREAMING or c.phase is Phase.DRAINING
            ),
            frames_sent=sent,
            media_received=received,
            late_frames=stats.late[20],
            violations=stats.violation_count,
            failed=stats.counters["calls_failed"],
            cpu_s=time.process_time(),
            ticks_late=stats.counters["ticks_late"],
        )
        stats.seconds.append(row)
        if self._on_second is not None:
            self._on_second(row)

    def _finish(self, cpu_s: float, wall_s: float) -> None:
        stats = self.stats
        last = stats.seconds[-1].second if stats.seconds else 0
        self._second(max(last + 1, -(-self.clock_us() // 1_000_000)))  # the last, partial one
        stats.cpu_s, stats.wall_s = cpu_s, wall_s
        if stats.steady_s > 0:
            stats.process_cpu_pct = [round(100 * stats.steady_cpu_s / stats.steady_s, 1)]
        else:
            stats.process_cpu_pct = [round(100 * cpu_s / max(wall_s, 1e-9), 1)]
