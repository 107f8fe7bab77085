"""The emulator's two clocks: real time, and virtual time for in-process calls.

Both are an asyncio event loop's ``time()``. The call runner paces its 20 ms frames with
``asyncio.sleep`` on absolute deadlines, so it never asks which clock it runs on.

In **virtual time** the loop's clock stands still while anything is ready to run, and jumps to
the next timer the moment every task is waiting: a one-minute call whose app answers at once
takes as long as the work it does, not a minute. The app's own ``asyncio.sleep`` calls are
virtual too, so an app that paces its audio at real-time speed is measured as it would run.

Work in the loop's executor (``asyncio.to_thread``, ``loop.run_in_executor``) is waited for
with the clock stopped, like any other work: its results come in order, but the real time it
took is not on the clock, so a reply that waited 500 ms on a thread comes at once. What
virtual time cannot see at all is other work outside the loop: threads of their own (anyio's
worker threads, behind Starlette's ``run_in_threadpool``) or a real socket. The loop picks up
their results, but jumps ahead meanwhile whenever a timer is due, so to that work time runs
fast. Nor can it see a callback that blocks the loop: real time passes while the virtual
clock stands still.

Nor can it change the wall clock: an app that paces itself by ``time.monotonic()`` while it
sleeps with ``asyncio.sleep`` (pipecat does) sees its sleeps last no wall time at all, and
falls behind or runs ahead of the call.

The loop notices all five as they happen and keeps them as :class:`TimeDoubt` records: a
thread alive that is neither the loop's nor its executor's (:class:`ForeignThread`), or a file
descriptor the loop did not open waited on (:class:`ForeignSocket`), at the moment the clock
jumps; a loop iteration that ran for more than :data:`BLOCKED_MS` of real time
(:class:`BlockedLoop`), or an executor job that did (:class:`ExecutorWork`); and a read of
``time.monotonic``, ``time.perf_counter`` or ``time.time`` (or their ``_ns`` forms) from the
loop's thread by code that is neither the standard library nor mediastreams
(:class:`WallClockRead`). They are recorded while a call's streams run (:func:`watch_time`):
what happens before, the emulator's own setup included, is not the call's. :func:`clock_note`
says in one sentence what was seen.

The module's seams: the doubts and their sentence (:class:`TimeDoubt` to :func:`clock_note`);
the virtual loop and its selector (:class:`VirtualEventLoop`, :func:`run_in_loop`); watching a
call (:func:`watch_time`, :func:`time_doubts`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import selectors
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any, ClassVar, Literal, TypeAlias, TypeVar, TypeVarTuple

from .wallclock import WallClockWatch, caller_outside

__all__ = [
    "BLOCKED_MS",
    "BlockedLoop",
    "ClockName",
    "ExecutorWork",
    "ForeignSocket",
    "ForeignThread",
    "TimeDoubt",
    "VirtualEventLoop",
    "WallClockRead",
    "clock_note",
    "run_in_loop",
    "time_doubts",
    "watch_time",
]

ClockName: TypeAlias = Literal["real", "virtual"]
"""``"real"``: wall-clock time. ``"virtual"``: time jumps whenever everything waits."""

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


BLOCKED_MS = 200
"""A loop iteration (or an executor job) that runs longer than this in real time held up the
call: in real time, the frames due meanwhile would have been late (or the app's answer would
have come that much later)."""

_EXECUTOR_THREADS = "mediastreams-virtual-executor"


@dataclass
class TimeDoubt:
    """Something that ran in real time beside virtual time, which may make the figures wrong.

    One of :class:`BlockedLoop`, :class:`ExecutorWork`, :class:`ForeignThread`,
    :class:`ForeignSocket` and :class:`WallClockRead`.

    Attributes:
        detail: what it was: the thread's name, the socket's address, the time blocked, the
            clock read and where.
        first_s: the loop's (virtual) time when it was first seen.
        last_s: the loop's time when it was last seen.
        count: how many times it was seen.
        cause: ``"blocked"``, ``"executor"``, ``"thread"``, ``"socket"`` or ``"wall-clock"``
            (one per class).
    """

    detail: str
    first_s: float
    last_s: float
    count: int = 1
    cause: ClassVar[str] = ""
    _wording: ClassVar[str] = "{details}"  # the clause of the note, with the first details

    @classmethod
    def reason(cls, doubts: list[TimeDoubt]) -> str:
        """Why ``doubts`` (all of this class) put virtual time in doubt, as a clause."""
        return cls._wording.format(details=", ".join(d.detail for d in doubts[:3]))


@dataclass
class BlockedLoop(TimeDoubt):
    """A callback held the loop for :attr:`blocked_ms` of real time while virtual time stood."""

    blocked_ms: float = 0.0
    cause: ClassVar[str] = "blocked"

    @classmethod
    def reason(cls, doubts: list[TimeDoubt]) -> str:
        longest = max(doubts, key=lambda d: d.blocked_ms if isinstance(d, BlockedLoop) else 0)
        assert isinstance(longest, BlockedLoop)
        return (
            f"a callback blocked the event loop {len(doubts)} time(s), for up to "
            f"{longest.blocked_ms:,.0f} ms of real time (at {longest.first_s:.2f} s) while "
            "virtual time stood still"
        )


@dataclass
class ExecutorWork(TimeDoubt):
    """Work handed to the loop's executor (``asyncio.to_thread``) ran for more than
    :data:`BLOCKED_MS` of real time while virtual time stood still: one per function."""

    longest_ms: float = 0.0
    cause: ClassVar[str] = "executor"

    @classmethod
    def reason(cls, doubts: list[TimeDoubt]) -> str:
        jobs = sum(d.count for d in doubts)
        longest = max(doubts, key=lambda d: d.longest_ms if isinstance(d, ExecutorWork) else 0)
        assert isinstance(longest, ExecutorWork)
        where = ", ".join(d.detail for d in doubts[:3])
        return (
            f"work handed to a thread of the loop's executor ({where}) took up to "
            f"{longest.longest_ms:,.0f} ms of real time ({jobs} job(s) over {BLOCKED_MS} ms, "
            f"the longest at {longest.first_s:.2f} s) while virtual time stood still: what "
            "the app did after it came that much too early"
        )


@dataclass
class ForeignThread(TimeDoubt):
    """A thread of the app's own was alive while the clock jumped."""

    cause: ClassVar[str] = "thread"
    _wording: ClassVar[str] = (
        "thread(s) of the app's own ({details}) ran while virtual time jumped ahead"
    )


@dataclass
class ForeignSocket(TimeDoubt):
    """The loop waited on a file descriptor it did not open while the clock jumped."""

    cause: ClassVar[str] = "socket"
    _wording: ClassVar[str] = "the app waited on {details} while virtual time jumped ahead"


@dataclass
class WallClockRead(TimeDoubt):
    """The app read the wall clock (``time.monotonic()``...) during the call: one per place."""

    cause: ClassVar[str] = "wall-clock"

    @classmethod
    def reason(cls, doubts: list[TimeDoubt]) -> str:
        reads = sum(d.count for d in doubts)
        busiest = sorted(doubts, key=lambda d: -d.count)[:5]
        where = ", ".join(f"{d.detail} x{d.count}" for d in busiest)
        return (
            f"the app read the wall clock {reads:,} time(s) during the call ({where}): code "
            "that paces or waits by the wall clock while it sleeps with asyncio runs at the "
            "wrong speed in virtual time"
        )


_KINDS: tuple[type[TimeDoubt], ...] = (
    BlockedLoop,
    ExecutorWork,
    ForeignThread,
    ForeignSocket,
    WallClockRead,
)


def clock_note(doubts: list[TimeDoubt]) -> str:
    """One note for a report: why virtual time may not hold for this app, and what to do."""
    reasons = []
    for kind in _KINDS:
        same = [d for d in doubts if type(d) is kind]
        if same:
            reasons.append(kind.reason(same))
    return (
        "virtual time may be wrong for this app, and the timing figures with it: "
        + "; ".join(reasons)
        + ". Place the call in real time (--clock real, or clock='real')"
    )


class _VirtualSelector(selectors.BaseSelector):
    """A selector that turns a wait into a jump of the virtual clock."""

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self.now = 0.0
        self.outside_work = 0  # executor jobs under way: time waits for them
        self.watching = 0  # calls whose streams run: only then are doubts recorded
        self.doubts: dict[tuple[type[TimeDoubt], str], TimeDoubt] = {}
        self.loop_ready = False  # until then, what registers is the loop's own (its wake-up pipe)
        self._own_fds: set[int] = set()
        self._foreign_fds = 0
        self.known_threads: set[int | None] = {t.ident for t in threading.enumerate()}
        self._thread_count = threading.active_count()
        self._returned_at = _perf_counter()
        self._wall_reads: dict[tuple[str, CodeType], TimeDoubt] = {}  # by clock and caller

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self._real.register(fileobj, events, data)
        if not self.loop_ready:
            self._own_fds.add(key.fd)
        elif key.fd not in self._own_fds:
            self._foreign_fds += 1
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = self._real.unregister(fileobj)
        if key.fd not in self._own_fds:
            self._foreign_fds -= 1
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # The real time since the last select returned went to running callbacks.
        self._returned_at, called_at = _perf_counter(), self._returned_at
        blocked_ms = (self._returned_at - called_at) * 1000
        if blocked_ms > BLOCKED_MS and self.watching:
            detail = f"{blocked_ms:,.0f} ms at {self.now:.2f} s"
            self.doubts[BlockedLoop, detail] = BlockedLoop(
                detail, self.now, self.now, blocked_ms=blocked_ms
            )
        events = self._real.select(0)
        if events:
            return events
        if timeout is None or self.outside_work:
            # No timer at all, or a thread at work: wait for it for real, time standing still.
            events = self._real.select(timeout)
            self._returned_at = _perf_counter()
        elif timeout > 0:
            # Everything waits for a timer: let the time pass at once. Cheap checks first:
            # a jump happens every tick of a call.
            if self._foreign_fds or threading.active_count() != self._thread_count:
                self._check_outside_work()
            self.now += timeout
        return events

    def mark_running(self) -> None:
        """The loop starts (again): real time from here on is its own."""
        self._returned_at = _perf_counter()

    def _check_outside_work(self) -> None:
        if self._foreign_fds:
            for key in list(self._real.get_map().values()):
                if key.fd not in self._own_fds:
                    self._doubt(ForeignSocket, _describe_fd(key.fileobj, key.fd))
        if threading.active_count() != self._thread_count:
            foreign = [
                thread
                for thread in threading.enumerate()
                if thread.ident not in self.known_threads
                and not thread.name.startswith(_EXECUTOR_THREADS)
            ]
            for thread in foreign:
                self._doubt(ForeignThread, repr(thread.name))
            if not foreign:  # only the executor grew: nothing to look at until the count moves
                self._thread_count = threading.active_count()

    def _doubt(self, kind: type[TimeDoubt], detail: str) -> TimeDoubt | None:
        if not self.watching:
            return None
        found = self.doubts.get((kind, detail))
        if found is None:
            found = self.doubts[kind, detail] = kind(detail, self.now, self.now)
        else:
            found.last_s = self.now
            found.count += 1
        return found

    def executor_job_done(self, name: str, real_ms: float) -> None:
        """An executor job (``name``: what it ran) took ``real_ms`` of real time, during which
        the clock could not move."""
        if real_ms <= BLOCKED_MS:
            return
        doubt = self._doubt(ExecutorWork, name)
        if isinstance(doubt, ExecutorWork):
            doubt.longest_ms = max(doubt.longest_ms, real_ms)

    def wall_clock_read(self, clock: str, frame: FrameType) -> None:
        """``time.<clock>()`` was called from ``frame``, in the loop's thread."""
        if frame.f_code.co_filename.startswith("<string") and frame.f_back is not None:
            # Generated code (a dataclass's __init__ with default_factory=time.time): the
            # read is its caller's.
            frame = frame.f_back
        code = frame.f_code
        known = self._wall_reads.get((clock, code))
        if known is not None:
            known.last_s = self.now
            known.count += 1
            return
        where = caller_outside(code)
        if where is None:  # the standard library's or mediastreams' own: not the app's
            return
        doubt = self._doubt(WallClockRead, f"time.{clock}() {where}")
        if doubt is not None:
            self._wall_reads[clock, code] = doubt

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()


_perf_counter = time.perf_counter  # the real one, even while the app's reads are watched


def _job_name(func: Callable[..., Any]) -> str:
    """What an executor job runs, as ``module.function``."""
    if isinstance(func, functools.partial):
        if isinstance(getattr(func.func, "__self__", None), contextvars.Context) and func.args:
            func = func.args[0]  # asyncio.to_thread runs partial(context.run, func, ...)
        else:
            func = func.func
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def _describe_fd(fileobj: Any, fd: int) -> str:
    if isinstance(fileobj, socket.socket):
        try:
            return f"a socket to {fileobj.getpeername()}"
        except OSError:
            return f"a socket (fd {fd})"
    return f"file descriptor {fd}"


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose clock jumps to the next timer whenever every task waits.

    Example::

        with asyncio.Runner(loop_factory=VirtualEventLoop) as runner:
            runner.run(asyncio.sleep(3600))  # returns at once; loop.time() moved by an hour
    """

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)
        self._virtual.loop_ready = True
        # A timer is due when its time is within the clock's resolution; time never jitters.
        self._clock_resolution = 1e-9
        executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix=_EXECUTOR_THREADS)
        self.set_default_executor(executor)

    def time(self) -> float:
        """Seconds of virtual time since the loop was made."""
        return self._virtual.now

    def run_forever(self) -> None:
        """Run the loop; real time spent while it was not running does not count as blocked."""
        self._virtual.mark_running()
        super().run_forever()

    def run_in_executor(
        self,
        executor: concurrent.futures.Executor | None,
        func: Callable[[*Ts], T],
        *args: *Ts,
    ) -> asyncio.Future[T]:
        """Run ``func`` in a thread; virtual time stands still until it is done."""
        if isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            # The thread that runs it is accounted for: it is not the app's own.
            future = super().run_in_executor(executor, self._accounted, func, *args)
        else:
            future = super().run_in_executor(executor, func, *args)
        self._virtual.outside_work += 1
        done = functools.partial(self._outside_work_done, _job_name(func), _perf_counter())
        future.add_done_callback(done)
        return future

    def _accounted(self, func: Callable[[*Ts], T], *args: *Ts) -> T:
        self._virtual.known_threads.add(threading.get_ident())
        return func(*args)

    def _outside_work_done(self, name: str, started: float, _: object) -> None:
        self._virtual.outside_work -= 1
        self._virtual.executor_job_done(name, (_perf_counter() - started) * 1000)

    def time_doubts(self, since_s: float = 0.0, until_s: float = float("inf")) -> list[TimeDoubt]:
        """What ran in real time beside virtual time between two of the loop's times.

        Each cause and detail once, in the order first seen.
        """
        return [
            doubt
            for doubt in self._virtual.doubts.values()
            if doubt.last_s >= since_s and doubt.first_s < until_s
        ]

    def watch(self) -> Callable[[], None]:
        """Record what puts virtual time in doubt, the app's reads of the wall clock in this
        thread included, until the function returned is called (see :func:`watch_time`).
        Watches nest: calls placed at once each watch their own span."""
        self._virtual.watching += 1
        unwatch_clock = _WATCH.enter(self._virtual)
        left = False

        def leave() -> None:
            nonlocal left
            if not left:
                left = True
                self._virtual.watching -= 1
                unwatch_clock()

        return leave

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


def time_doubts(since_s: float, until_s: float) -> list[TimeDoubt]:
    """:meth:`VirtualEventLoop.time_doubts` of the running loop; none on a real-time loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return []
    return loop.time_doubts(since_s, until_s) if isinstance(loop, VirtualEventLoop) else []


_WATCH = WallClockWatch()


def watch_time() -> Callable[[], None]:
    """While a call's streams run on a virtual loop: record what puts virtual time in doubt.

    Blocked callbacks, threads of the app's own and sockets the loop did not open are recorded
    only while some call watches (what comes before, such as the emulator reading the
    caller's audio files, is not the call's). ``time.monotonic``, ``time.perf_counter``,
    ``time.time`` and their ``_ns`` forms are wrapped meanwhile (process-wide, while any
    virtual call watches) so that each read from this thread by code outside the standard
    library and mediastreams is a :class:`WallClockRead` doubt; reads from other threads cost
    a dictionary lookup and are not counted.

    Returns:
        The function that ends the watch (and restores the clocks once no call watches); on
        a real-time loop, a function that does nothing.
    """
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualEventLoop):
        return _nothing
    return loop.watch()


def _nothing() -> None:
    return None
