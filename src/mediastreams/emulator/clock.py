"""The emulator's two clocks: real time, and virtual time for in-process calls.

Both are an asyncio event loop's ``time()``. The call runner paces its 20 ms frames with
``asyncio.sleep`` on absolute deadlines, so it never asks which clock it runs on.

In **virtual time** the loop's clock stands still while anything is ready to run, and jumps to
the next timer the moment every task is waiting: a one-minute call whose app answers at once
takes as long as the work it does, not a minute. The app's own ``asyncio.sleep`` calls are
virtual too, so an app that paces its audio at real-time speed is measured as it would run.

Work in the loop's executor (``asyncio.to_thread``, ``loop.run_in_executor``) is waited for
with the clock stopped, like any other work. What virtual time cannot see is other work
outside the loop: threads of their own (anyio's worker threads, behind Starlette's
``run_in_threadpool``) or a real socket. The loop picks up their results, but jumps ahead
meanwhile whenever a timer is due, so to that work time runs fast.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import selectors
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Literal, TypeAlias, TypeVar, TypeVarTuple

__all__ = ["ClockName", "VirtualEventLoop", "run_in_loop"]

ClockName: TypeAlias = Literal["real", "virtual"]
"""``"real"``: wall-clock time. ``"virtual"``: time jumps whenever everything waits."""

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class _VirtualSelector(selectors.BaseSelector):
    """A selector that turns a wait into a jump of the virtual clock."""

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self.now = 0.0
        self.outside_work = 0  # executor jobs under way: time waits for them

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._real.select(0)
        if events:
            return events
        if timeout is None or self.outside_work:
            # No timer at all, or a thread at work: wait for it for real, time standing still.
            return self._real.select(timeout)
        # Everything waits for a timer: let the time pass at once.
        self.now += timeout
        return []

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose clock jumps to the next timer whenever every task waits.

    Example::

        with asyncio.Runner(loop_factory=VirtualEventLoop) as runner:
            runner.run(asyncio.sleep(3600))  # returns at once; loop.time() moved by an hour
    """

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)
        # A timer is due when its time is within the clock's resolution; time never jitters.
        self._clock_resolution = 1e-9

    def time(self) -> float:
        """Seconds of virtual time since the loop was made."""
        return self._virtual.now

    def run_in_executor(
        self,
        executor: concurrent.futures.Executor | None,
        func: Callable[[*Ts], T],
        *args: *Ts,
    ) -> asyncio.Future[T]:
        """Run ``func`` in a thread; virtual time stands still until it is done."""
        future = super().run_in_executor(executor, func, *args)
        self._virtual.outside_work += 1
        future.add_done_callback(self._outside_work_done)
        return future

    def _outside_work_done(self, _: object) -> None:
        self._virtual.outside_work -= 1

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Wait for the executor's threads for real: a timeout would pass at once here."""
        await super().shutdown_default_executor()


def run_in_loop(main: Callable[[], Coroutine[Any, Any, T]], *, clock: ClockName = "virtual") -> T:
    """Run ``main()`` to completion in a fresh event loop on the given clock.

    From code that already runs an event loop in this thread (an async test), the new loop
    runs in a worker thread, and this call blocks until it is done.
    """
    factory: Callable[[], asyncio.AbstractEventLoop] | None = (
        VirtualEventLoop if clock == "virtual" else None
    )

    def run() -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main())

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mediastreams-call") as pool:
        return pool.submit(run).result()
