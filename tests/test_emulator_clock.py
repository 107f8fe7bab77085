"""Virtual time: the clock jumps when every task waits; real time is the ordinary loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
import time
from typing import Any

import anyio.to_thread
import pytest

from mediastreams.emulator.clock import (
    ExecutorWork,
    TimeDoubt,
    VirtualEventLoop,
    clock_note,
    run_in_loop,
    time_doubts,
)


def test_an_hour_of_sleep_takes_no_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(3600)
        return loop.time()

    assert run_in_loop(main, clock="virtual") == 3600  # (a real hour would never get here)


def test_timers_fire_in_order_at_their_virtual_times() -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, float]] = []

        async def at(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            seen.append((name, loop.time()))

        await asyncio.gather(at("b", 0.04), at("a", 0.02), at("c", 1.5))
        return seen

    assert run_in_loop(main) == [("a", 0.02), ("b", 0.04), ("c", 1.5)]


def test_work_in_a_thread_is_awaited_for_real_when_no_timer_is_due() -> None:
    async def main() -> str:
        return await asyncio.to_thread(lambda: time.sleep(0.05) or "done")

    assert run_in_loop(main) == "done"


def test_real_clock_uses_an_ordinary_loop() -> None:
    async def main() -> bool:
        return isinstance(asyncio.get_running_loop(), VirtualEventLoop)

    assert run_in_loop(main, clock="real") is False
    assert run_in_loop(main, clock="virtual") is True


@pytest.mark.anyio
async def test_from_a_running_loop_the_call_runs_in_a_worker_thread() -> None:
    async def main() -> str:
        return threading.current_thread().name

    assert run_in_loop(main).startswith("mediastreams-call")


def test_time_stands_still_while_an_executor_thread_works() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        ticker = asyncio.create_task(asyncio.sleep(3600))  # a timer is always due
        started = loop.time()
        await asyncio.to_thread(time.sleep, 0.05)
        elapsed = loop.time() - started
        ticker.cancel()
        return elapsed, loop.time()

    elapsed, _ = run_in_loop(main)
    assert elapsed == 0


def doubts_of(main: Any, *, watch: bool = True) -> list[TimeDoubt]:
    """Run ``main(loop)`` in virtual time, watched as a call's streams are; what the loop
    noticed ran beside it."""

    async def run() -> list[TimeDoubt]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualEventLoop)
        unwatch = loop.watch() if watch else lambda: None
        await main(loop)
        unwatch()
        return loop.time_doubts()

    return run_in_loop(run)


def test_a_thread_of_the_apps_own_is_noticed_when_time_jumps() -> None:
    done = threading.Event()
    thread = threading.Thread(target=done.wait, name="slow-work")

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        thread.start()
        await asyncio.sleep(1)  # the clock jumps while the thread works
        await asyncio.sleep(1)
        done.set()
        thread.join()

    doubts = [d for d in doubts_of(main) if d.cause != "blocked"]
    assert [(d.cause, d.detail, d.first_s, d.last_s) for d in doubts] == [
        ("thread", "'slow-work'", 0, 1)
    ]


def test_anyio_worker_threads_are_noticed() -> None:
    async def main(loop: asyncio.AbstractEventLoop) -> None:
        ticker = asyncio.create_task(asyncio.sleep(3600))  # a timer is always due
        await anyio.to_thread.run_sync(time.sleep, 0.1)
        ticker.cancel()

    doubts = [d for d in doubts_of(main) if d.cause != "blocked"]
    assert [d.cause for d in doubts] == ["thread"]
    assert "AnyIO worker thread" in doubts[0].detail


def test_the_loops_own_executor_is_no_doubt() -> None:
    async def main(loop: asyncio.AbstractEventLoop) -> None:
        ticker = asyncio.create_task(asyncio.sleep(3600))
        await asyncio.to_thread(time.sleep, 0.05)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            await loop.run_in_executor(pool, time.sleep, 0.05)
            await asyncio.sleep(1)  # the clock jumps with the pool's thread idle
        ticker.cancel()

    # (A loop iteration held up by a busy machine would be a "blocked" doubt: not looked at.)
    assert [d for d in doubts_of(main) if d.cause != "blocked"] == []


def test_slow_work_in_the_loops_executor_is_noticed_once_per_function() -> None:
    # The clock stands still while the executor works: a job of 300 ms of real time makes
    # what the app does after it come 300 ms too early. (Quick jobs are no doubt: above.)
    async def main(loop: asyncio.AbstractEventLoop) -> None:
        ticker = asyncio.create_task(asyncio.sleep(3600))
        await asyncio.sleep(2)
        await asyncio.to_thread(time.sleep, 0.3)
        await loop.run_in_executor(None, time.sleep, 0.25)
        ticker.cancel()

    (doubt,) = [d for d in doubts_of(main) if d.cause != "blocked"]
    assert isinstance(doubt, ExecutorWork)
    assert (doubt.cause, doubt.detail, doubt.count, doubt.first_s) == (
        "executor",
        "time.sleep",
        2,
        2,
    )
    assert doubt.longest_ms >= 300
    note = clock_note([doubt])
    assert "executor (time.sleep) took up to" in note and "2 job(s) over 200 ms" in note


def test_a_callback_that_blocks_the_loop_is_noticed() -> None:
    async def main(loop: asyncio.AbstractEventLoop) -> None:
        await asyncio.sleep(2)
        time.sleep(0.3)  # a blocking call in a coroutine: virtual time stands still
        await asyncio.sleep(1)

    (doubt,) = [d for d in doubts_of(main) if d.blocked_ms >= 300]
    assert doubt.cause == "blocked" and doubt.first_s == 2


def test_a_real_socket_waited_on_while_time_jumps_is_noticed() -> None:
    left, right = socket.socketpair()

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        left.setblocking(False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loop.sock_recv(left, 1), timeout=1.0)

    try:
        (doubt,) = [d for d in doubts_of(main) if d.cause != "blocked"]
    finally:
        left.close()
        right.close()
    assert doubt.cause == "socket" and doubt.first_s == 0


def test_sleeping_and_timers_alone_raise_no_doubt() -> None:
    async def main(loop: asyncio.AbstractEventLoop) -> None:
        await asyncio.gather(*(asyncio.sleep(n / 10) for n in range(50)))

    assert [d for d in doubts_of(main) if d.cause != "blocked"] == []


def test_doubts_are_kept_by_the_loop_time_they_were_seen() -> None:
    async def run() -> tuple[list[TimeDoubt], list[TimeDoubt]]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualEventLoop)
        loop.watch()
        await asyncio.sleep(5)
        time.sleep(0.25)
        await asyncio.sleep(5)
        return time_doubts(0, 4), time_doubts(4, 10)

    before, after = run_in_loop(run)
    assert [d for d in before if d.blocked_ms >= 250] == []
    assert [d.first_s for d in after if d.blocked_ms >= 250] == [5]
    assert time_doubts(0, 10) == []  # outside a virtual loop: nothing to doubt


# --- apps that read the wall clock --------------------------------------------------------

CHUNK_MS = 40
AUDIO_MS = 2000
CHUNK = b"\x10\x90" * (CHUNK_MS * 4)  # loud mu-law, 8 bytes a millisecond


def wall_paced_app(clock: Any = None, *, in_thread: bool = False) -> Any:
    """An app that paces 2 s of audio by the wall clock (``time.monotonic()``, or ``clock``)
    and sleeps with asyncio, as pipecat's output transport does (``_write_audio_sleep``)."""
    from emulator_apps import media, stream_app

    async def now_s() -> float:
        if in_thread:  # in the loop's executor: another thread reads the clock
            return await asyncio.get_running_loop().run_in_executor(None, time.monotonic)
        return float(clock()) if clock is not None else time.monotonic()

    async def talk(websocket: Any, start: dict[str, Any]) -> None:
        next_s = await now_s()
        for _ in range(AUDIO_MS // CHUNK_MS):
            await websocket.send_text(media(start["streamSid"], CHUNK))
            next_s += CHUNK_MS / 1000
            await asyncio.sleep(max(0.0, next_s - await now_s()))

    return stream_app(talk)


WALL_CLOCK_NOTE = "read the wall clock"


def test_an_app_that_paces_by_the_wall_clock_gets_the_note() -> None:
    from mediastreams.emulator import Hangup, place_call

    clocks = {name: getattr(time, name) for name in ("monotonic", "perf_counter", "time")}
    virtual = place_call(wall_paced_app(), [Hangup(at_ms=3000)]).report
    # The app's sleeps take no wall time, so its pacing goes wrong: far less than the 2 s it
    # sends in real time, and the report says why.
    assert virtual.audio_received_ms < AUDIO_MS / 2, virtual.audio_received_ms
    (note,) = [n for n in virtual.notes if "virtual time may be wrong" in n]
    assert WALL_CLOCK_NOTE in note and "time.monotonic()" in note and "(now_s)" in note
    assert "--clock real" in note
    # The clocks are the time module's own again once the call is over.
    assert {name: getattr(time, name) for name in clocks} == clocks
    real = place_call(wall_paced_app(), [Hangup(at_ms=3000)], clock="real").report
    assert real.audio_received_ms == AUDIO_MS and not any(WALL_CLOCK_NOTE in n for n in real.notes)


@pytest.mark.parametrize("name", ["perf_counter", "time", "monotonic_ns", "perf_counter_ns"])
def test_each_clock_is_watched(name: str) -> None:
    from mediastreams.emulator import Hangup, place_call

    scale = 1e-9 if name.endswith("_ns") else 1.0
    app = wall_paced_app(lambda: getattr(time, name)() * scale)
    report = place_call(app, [Hangup(at_ms=1000)]).report
    assert any(f"time.{name}()" in n for n in report.notes), report.notes


def test_reads_from_other_threads_and_before_the_call_are_not_counted() -> None:
    from mediastreams.emulator import Hangup, place_call

    # The same pacing, but the clock is read in the loop's executor: not the loop's thread.
    report = place_call(wall_paced_app(in_thread=True), [Hangup(at_ms=2000)]).report
    assert not any(WALL_CLOCK_NOTE in n for n in report.notes), report.notes

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        time.monotonic()  # no call's streams run: nothing watches
        time.sleep(0.3)  # nor is a blocked loop recorded
        await asyncio.sleep(1)

    assert doubts_of(main, watch=False) == []
    assert [d.cause for d in doubts_of(main)] == ["wall-clock", "blocked"]


def test_no_note_for_the_projects_own_server() -> None:
    from mediastreams.emulator import Audio, WaitForQuiet, place_call
    from mediastreams.server import ServerConfig, create_app, echo_handler, play_handler

    hello = b"\x10\x90" * 4000
    for handler in (echo_handler, play_handler(hello, hangup_after_play=True)):
        app = create_app(ServerConfig(handler=handler))
        result = place_call(
            app, [Audio(hello, raw_mulaw=True), WaitForQuiet()], webhook_path="/incoming-call"
        )
        assert result.ok and result.report.audio_received_ms > 0
        assert result.report.notes == [], result.report.notes


def test_a_read_from_generated_code_is_its_callers() -> None:
    # A dataclass made during the call takes the wrapped clock as its default factory: the
    # read comes from the dataclass's generated __init__, and belongs to who built it.
    from dataclasses import dataclass, field

    from emulator_apps import stream_app
    from mediastreams.emulator import Hangup, place_call

    async def stamps(websocket: Any, start: dict[str, Any]) -> None:
        @dataclass
        class Stamp:
            at: float = field(default_factory=time.time)

        for _ in range(3):
            Stamp()
            await asyncio.sleep(0.1)

    report = place_call(stream_app(stamps), [Hangup(at_ms=1000)]).report
    (note,) = [n for n in report.notes if WALL_CLOCK_NOTE in n]
    assert "time.time() in " in note and "(stamps) x3" in note and "<string>" not in note
