"""Virtual time: the clock jumps when every task waits; real time is the ordinary loop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mediastreams.emulator.clock import VirtualEventLoop, run_in_loop


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
