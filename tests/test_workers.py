"""``serve --workers 2``: two real processes on one port. Both take calls, a signal stops
both, a worker that dies is replaced while the other's calls go on, a crash loop stops all,
and ``/metrics`` on either answers for both. Loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fake_twilio import TwilioClient
from fleet import Supervisor, supervisor
from waiting import DEADLINE_S, await_for, wait_for

pytestmark = pytest.mark.anyio

APP = """
import os, pathlib

from mediastreams.server import echo_handler

if os.environ.get("CRASH_WORKERS") and os.environ.get("MEDIASTREAMS_WORKERS"):
    os._exit(3)  # a worker that cannot start: every restart fails the same way

OUT = pathlib.Path(os.environ["WORKERS_OUT"])


async def handler(stream):
    record = OUT / f"{stream.call_sid}.tmp"
    record.write_text(str(os.getpid()))
    record.rename(record.with_suffix(".pid"))  # whole, or not there
    await echo_handler(stream)
"""
MAX_CALLS = 200  # placed to find a call on each worker; the kernel spreads them at random


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "workerapp.py").write_text(APP)
    (tmp_path / "out").mkdir()
    monkeypatch.setenv("WORKERS_OUT", str(tmp_path / "out"))
    return tmp_path


def two_workers(sup: Supervisor) -> list[int]:
    """The two workers' pids, once both listen on the port."""
    wait_for(lambda: len(sup.workers()) == 2 and sup.listeners() == 2, "two workers listening")
    return sorted(sup.workers())


class Calls:
    """Calls to the workers' port, each held open until closed or the block ends."""

    def __init__(self, port: int, out: Path, stack: contextlib.AsyncExitStack) -> None:
        self.url = f"ws://127.0.0.1:{port}/media-stream"
        self.out = out
        self.stack = stack
        self.placed = 0

    async def place(self) -> tuple[TwilioClient, int]:
        """A call, once its handler runs: the client, and the pid of the worker holding it."""
        self.placed += 1
        call_sid = f"CA{self.placed:032d}"
        twilio = await self.stack.enter_async_context(TwilioClient(self.url, call_sid=call_sid))
        await twilio.open()
        record = self.out / f"{call_sid}.pid"
        await await_for(record.exists, f"the handler of call {call_sid}")
        return twilio, int(record.read_text())

    async def one_on_each(self, pids: list[int]) -> dict[int, TwilioClient]:
        """Place calls until each of ``pids`` holds one; hang up the others."""
        held: dict[int, TwilioClient] = {}
        while set(held) != set(pids):
            assert self.placed < MAX_CALLS, f"no call reached every worker: {held}"
            twilio, pid = await self.place()
            if pid in held or pid not in pids:
                await hang_up(twilio)
            else:
                held[pid] = twilio
        return held


@contextlib.asynccontextmanager
async def calls(sup: Supervisor, app_dir: Path) -> AsyncIterator[Calls]:
    async with contextlib.AsyncExitStack() as stack:
        yield Calls(sup.port, app_dir / "out", stack)


async def hang_up(twilio: TwilioClient) -> None:
    twilio.protocol.send_stop()
    await twilio.flush()
    await asyncio.wait_for(twilio.closed.wait(), 10)


async def alive(twilio: TwilioClient) -> bool:
    twilio.protocol.send_media(b"\x05" * 160)
    await twilio.flush()
    with contextlib.suppress(TimeoutError):
        await twilio.run_until(lambda: b"\x05" in twilio.heard, timeout_s=10)
    return b"\x05" in twilio.heard and not twilio.closed.is_set()


def exit_code(sup: Supervisor, deadline_s: float = 30.0) -> int:
    give_up = time.monotonic() + deadline_s
    while sup.process.poll() is None:
        assert time.monotonic() < give_up, f"the supervisor did not exit: {sup.text()}"
        time.sleep(0.05)
    return sup.process.returncode


@pytest.mark.parametrize("to_group", [False, True])
async def test_both_workers_take_calls_and_sigterm_drains_both(
    app_dir: Path, to_group: bool
) -> None:
    with supervisor(["--app", "workerapp:handler", "--workers", "2"], app_dir) as sup:
        pids = two_workers(sup)
        async with calls(sup, app_dir) as placed:
            held = await placed.one_on_each(pids)
            if to_group:
                # As systemd stops a service: every process gets SIGTERM, and the workers
                # get the supervisor's too. That is one SIGTERM: they drain, not stop.
                os.killpg(sup.process.pid, signal.SIGTERM)
            else:
                sup.process.send_signal(signal.SIGTERM)
            # Both drain: their calls go on while the supervisor waits for them.
            for twilio in held.values():
                assert await alive(twilio)
            assert sup.process.poll() is None
            for twilio in held.values():
                await hang_up(twilio)
            assert exit_code(sup) == 0
    log = sup.text()
    assert log.count("draining: /readyz answers 503") == 2, log
    assert log.count("drain: no live call left") == 2, log


async def test_a_dead_worker_is_replaced_and_the_others_calls_go_on(app_dir: Path) -> None:
    args = ["--app", "workerapp:handler", "--workers", "2", "--metrics"]
    with supervisor(args, app_dir) as sup:
        pids = two_workers(sup)
        async with calls(sup, app_dir) as placed:
            held = await placed.one_on_each(pids)
            doomed, kept = pids
            os.kill(doomed, signal.SIGKILL)
            await asyncio.wait_for(held[doomed].closed.wait(), 10)
            wait_for(lambda: doomed not in sup.workers(), "the supervisor to reap the dead worker")
            two_workers(sup)
            (new,) = set(sup.workers()) - {kept}
            assert await alive(held[kept])  # the other worker's call never noticed
            # The new worker takes calls on the same port.
            more = await placed.one_on_each([kept, new])
            # Three calls live: the kept one and one more on each worker. The dead worker's
            # call is no longer counted (it would make four).
            live = [held[kept], *more.values()]
            await await_for(lambda: _live_calls(sup, live), "/metrics to count 3 live calls")
            sup.process.send_signal(signal.SIGINT)  # Ctrl-C: both stop at once
            assert exit_code(sup) == 0
            assert held[kept].closed.is_set() or await _closes(held[kept])
        assert held[kept].ws.close_code == 1001
    log = sup.text()
    assert f"(pid {doomed}) was killed by SIGKILL: its calls are lost" in log, log
    assert "starting a new worker" in log


async def _live_calls(sup: Supervisor, calls: list[TwilioClient]) -> bool:
    """Whether /metrics counts ``calls`` as live (kept from their idle timeout meanwhile)."""
    for twilio in calls:
        twilio.protocol.send_media(b"\xff" * 160)
        await twilio.flush()
    async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
        text = (await client.get(f"{sup.url}/metrics")).text
    live = [line for line in text.splitlines() if line.startswith("mediastreams_calls_live ")]
    return bool(live) and float(live[0].split()[-1]) == len(calls)


async def _closes(twilio: TwilioClient) -> bool:
    await asyncio.wait_for(twilio.closed.wait(), 10)
    return True


async def test_metrics_of_two_workers_come_from_either(app_dir: Path) -> None:
    args = ["--app", "workerapp:handler", "--workers", "2", "--metrics"]
    with supervisor(args, app_dir) as sup:
        pids = two_workers(sup)
        async with calls(sup, app_dir) as placed:
            held = await placed.one_on_each(pids)
            for twilio in held.values():
                await hang_up(twilio)
        records = list((app_dir / "out").glob("*.pid"))
        by_worker = {pid: sum(int(r.read_text()) == pid for r in records) for pid in pids}
        assert all(by_worker.values()), by_worker
        # Each worker saw only some of the calls; every answer counts them all.
        async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
            for _ in range(10):  # new connections, spread over both workers
                reply = await client.get(f"{sup.url}/metrics", headers={"Connection": "close"})
                assert reply.status_code == 200
                started = [
                    line
                    for line in reply.text.splitlines()
                    if line.startswith("mediastreams_calls_started_total")
                ]
                assert started and float(started[0].split()[-1]) == len(records), started


def test_a_crash_loop_stops_every_worker_and_fails(app_dir: Path) -> None:
    sup = Supervisor(
        ["--app", "workerapp:handler", "--workers", "2"], app_dir, env={"CRASH_WORKERS": "1"}
    )
    try:
        assert exit_code(sup, deadline_s=120) == 3
    finally:
        sup.stop()
    log = sup.text()
    assert "exited with code 3" in log and "stopping every worker" in log, log
