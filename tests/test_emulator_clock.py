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

from mediastreams.emulator.clock import TimeDoubt, VirtualEventLoop, run_in_loop, time_doubts


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


def doubts_of(main: Any) -> list[TimeDoubt]:
    """Run ``main(loop)`` in virtual time; what the loop noticed ran beside it."""

    async def run() -> list[TimeDoubt]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualEventLoop)
        await main(loop)
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
        await asyncio.sleep(5)
        time.sleep(0.25)
        await asyncio.sleep(5)
        return time_doubts(0, 4), time_doubts(4, 10)

    before, after = run_in_loop(run)
    assert [d for d in before if d.blocked_ms >= 250] == []
    assert [d.first_s for d in after if d.blocked_ms >= 250] == [5]
    assert time_doubts(0, 10) == []  # outside a virtual loop: nothing to doubt
