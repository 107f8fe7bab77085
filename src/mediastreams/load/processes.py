"""A load run over one process or several, and the one report they make.

With ``processes=1`` the calls run in this process. With more, each share runs in a worker
process of its own (``python -m mediastreams.load``): the workers start, prepare, say they
are ready, and are given one epoch, so the ramp is the same as in one process. Each worker
writes its counters every second and its stats at the end as JSON lines on its stdout;
the parent adds them up (:meth:`~mediastreams.load.stats.Stats.merge`).

Ctrl-C (SIGINT) or SIGTERM stops the run: no more calls start, each call gets a short
drain and hangs up, and the report still comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from .config import LoadConfig
from .report import LoadReport
from .run import ProcessRun
from .stats import Second, Stats

__all__ = ["WorkerFailed", "run_load", "run_load_async"]

_READY_TIMEOUT_S = 120.0  # for a worker to import and prepare, on a loaded machine
_EPOCH_LEAD_S = 0.2  # the epoch is this far after the last worker said it was ready
# A worker's stats are one JSON line, with a row for every second of the run and a start
# time for every call: megabytes for a long run.
_LINE_LIMIT = 1 << 30

SecondObserver = Callable[[Second], None]


class WorkerFailed(RuntimeError):
    """A worker process ended without its stats (it crashed, or was killed)."""


def run_load(config: LoadConfig, on_second: SecondObserver | None = None) -> LoadReport:
    """Run ``config`` and return its report (see :func:`run_load_async`)."""
    return asyncio.run(run_load_async(config, on_second))


async def run_load_async(config: LoadConfig, on_second: SecondObserver | None = None) -> LoadReport:
    """Place the calls of ``config``, over its processes, and return the merged report.

    Args:
        config: the run.
        on_second: called every second with the counters of the whole run (cumulative).

    Raises:
        ValueError: the config is wrong (see :meth:`LoadConfig.check`).
        WorkerFailed: a worker process ended without its stats.
    """
    config.check()
    if config.processes == 1:
        run = ProcessRun(config, on_second=on_second)
        with _stopping_on_signals(run.stop) as stopped:
            stats = await run.run()
        return LoadReport(config, stats, interrupted=bool(stopped))
    return await _run_workers(config, on_second)


@contextlib.contextmanager
def _stopping_on_signals(stop: Callable[[], None]) -> Iterator[list[int]]:
    """SIGINT and SIGTERM call ``stop`` (once each); the list gets each signal received."""
    loop = asyncio.get_running_loop()
    received: list[int] = []
    installed = []

    def handler(signum: int) -> None:
        received.append(signum)
        stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, handler, signum)
            installed.append(signum)
        except (RuntimeError, ValueError, NotImplementedError):  # not the main thread
            pass
    try:
        yield received
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.last: Second | None = None
        self.stats: Stats | None = None

    async def line(self) -> dict[str, Any] | None:
        assert self.process.stdout is not None
        raw = await self.process.stdout.readline()
        return json.loads(raw) if raw else None


async def _run_workers(config: LoadConfig, on_second: SecondObserver | None) -> LoadReport:
    workers = [await _start(config, i) for i in range(config.processes)]
    stopped: list[int] = []
    try:
        async with asyncio.timeout(_READY_TIMEOUT_S):
            for worker in workers:
                if await worker.line() != {"ready": True}:
                    raise WorkerFailed(f"worker {worker.process.pid} did not start")
        epoch_ns = time.time_ns() + int(_EPOCH_LEAD_S * 1e9)
        for worker in workers:
            assert worker.process.stdin is not None
            worker.process.stdin.write(f"{epoch_ns}\n".encode())
            await worker.process.stdin.drain()

        def stop() -> None:
            for worker in workers:
                if worker.process.returncode is None:
                    worker.process.send_signal(signal.SIGTERM)

        with _stopping_on_signals(stop) as stopped:
            await asyncio.gather(*(_follow(w, workers, on_second) for w in workers))
    finally:
        for worker in workers:
            if worker.process.returncode is None:
                worker.process.kill()
            await worker.process.wait()
    merged: Stats | None = None
    for worker in workers:
        if worker.stats is None:
            raise WorkerFailed(
                f"worker {worker.process.pid} ended (exit {worker.process.returncode}) "
                "without its stats"
            )
        if merged is None:
            merged = worker.stats
        else:
            merged.merge(worker.stats)
    assert merged is not None
    return LoadReport(config, merged, interrupted=bool(stopped))


async def _start(config: LoadConfig, process: int) -> _Worker:
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "mediastreams.load", str(process)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=_LINE_LIMIT,
    )
    # The config (with the auth token) goes through stdin, not the command line that any
    # user of the machine can read.
    assert child.stdin is not None
    child.stdin.write(json.dumps(config.to_dict()).encode() + b"\n")
    await child.stdin.drain()
    return _Worker(child)


async def _follow(
    worker: _Worker, workers: list[_Worker], on_second: SecondObserver | None
) -> None:
    """Read a worker's lines until its stats; pass each second's sums on."""
    while (line := await worker.line()) is not None:
        if "second" in line:
            worker.last = Second(**line["second"])
            if on_second is not None and all(
                w.last is not None and w.last.second >= worker.last.second
                for w in workers
                if w.stats is None
            ):
                rows = [w.last for w in workers if w.last is not None]
                on_second(Second.total(worker.last.second, rows))
        elif "stats" in line:
            worker.stats = Stats.from_dict(line["stats"])


def worker_main(argv: list[str]) -> int:
    """A worker: ``python -m mediastreams.load PROCESS``, started by the parent, which writes
    the config (JSON) and then the epoch on its stdin, a line each."""
    line = sys.stdin.readline() if len(argv) == 1 and argv[0].isdigit() else ""
    if not line.strip():
        sys.exit("this is a worker of `mediastreams load --processes`: run that instead")
    process = int(argv[0])
    config = LoadConfig.from_dict(json.loads(line))

    def emit(data: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def ready() -> int:
            emit({"ready": True})
            epoch = await loop.run_in_executor(None, sys.stdin.readline)
            if not epoch.strip():
                raise SystemExit(0)  # the parent went away before the start
            return int(epoch)

        run = ProcessRun(
            config, process, on_second=lambda row: emit({"second": dataclasses.asdict(row)})
        )
        with _stopping_on_signals(run.stop):
            stats = await run.run(ready)
        emit({"stats": stats.to_dict()})

    # Ctrl-C in a terminal reaches every process of the group; until the run handles it (as
    # the parent's SIGTERM), a worker ignores it rather than die with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(main())
    return 0
