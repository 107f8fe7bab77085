"""The connection guard's parts on their own: the log throttle, the default cap, peers.

The guard in front of real servers is tested in ``test_server_limits.py``.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import pytest

from mediastreams.connections import (
    MIN_FREE_DESCRIPTORS,
    ConnectionGuard,
    Throttle,
    max_connections_for,
    peer_of,
)
from mediastreams.limits import Limits
from waiting import DEADLINE_S


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_logs_once_per_interval_and_counts_the_rest() -> None:
    clock = FakeClock()
    written: list[tuple[str, int]] = []
    throttle = Throttle(lambda message, count: written.append((message, count)), clock=clock)
    for n in range(1000):
        throttle(f"event {n}")
    assert written == [("event 0", 1)]  # no loop to report the rest: they wait for the next
    clock.now += 1.0
    throttle("event 1000")
    assert written == [("event 0", 1), ("event 1000", 1000)]


@pytest.mark.anyio
async def test_throttle_reports_the_rest_when_the_interval_ends() -> None:
    written: list[tuple[str, int]] = []
    throttle = Throttle(lambda message, count: written.append((message, count)), interval_s=0.05)
    for n in range(100):
        throttle(f"event {n}")
    assert written == [("event 0", 1)]
    async with asyncio.timeout(10):
        while len(written) < 2:
            await asyncio.sleep(0.01)
    assert written == [("event 0", 1), ("event 99", 99)]


@pytest.mark.parametrize(("soft", "expected"), [(128, 96), (1024, 768), (65536, 49152), (40, 8)])
def test_the_default_cap_leaves_a_quarter_of_the_file_limit(
    monkeypatch: pytest.MonkeyPatch, soft: int, expected: int
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (soft, soft * 4))
    assert max_connections_for(Limits()) == expected
    assert soft - expected >= MIN_FREE_DESCRIPTORS
    assert max_connections_for(Limits(max_connections=5)) == 5


def test_an_unlimited_file_limit_gives_a_finite_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (resource.RLIM_INFINITY,) * 2)
    assert max_connections_for(Limits()) == (1 << 20) - (1 << 18)


class FakeTransport:
    def __init__(self, peername: Any) -> None:
        self.peername = peername

    def get_extra_info(self, name: str) -> Any:
        return self.peername if name == "peername" else None


@pytest.mark.parametrize(
    ("peername", "shown"),
    [
        (("203.0.113.5", 5060), "203.0.113.5:5060"),
        (("2001:db8::1", 443, 0, 0), "[2001:db8::1]:443"),
        ("/run/app.sock\n", "/run/app.sock\\n"),
        (None, "?"),
    ],
)
def test_peer_of(peername: Any, shown: str) -> None:
    assert peer_of(FakeTransport(peername)) == shown  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_released_waits_until_each_connection_is_gone() -> None:
    guard = ConnectionGuard(Limits(header_timeout_s=3600))
    first, second = asyncio.Transport(), asyncio.Transport()
    assert guard.admit(first) and guard.admit(second)
    waiting = asyncio.create_task(guard.released([first, second], max_wait_s=3600))
    guard.release(first)
    done, _ = await asyncio.wait({waiting}, timeout=0.2)
    assert not done  # the second connection is still open
    guard.release(second)
    await asyncio.wait_for(waiting, DEADLINE_S)
    assert guard.open_connections == 0


@pytest.mark.anyio
async def test_released_gives_up_after_its_wait() -> None:
    guard = ConnectionGuard(Limits(header_timeout_s=3600))
    stuck = asyncio.Transport()
    assert guard.admit(stuck)
    await asyncio.wait_for(guard.released([stuck], max_wait_s=0.05), DEADLINE_S)
    assert guard.open_connections == 1
    guard.release(stuck)
