"""Waiting in a test that holds on any machine: on a condition, never for a fixed time.

A test waits for what it needs (a line printed, a count reached, a socket closed), polling it
until it holds, and fails only past :data:`DEADLINE_S`: a deadline generous enough for a slow
machine whose other core is busy (the suite runs under ``taskset -c 0`` beside a busy loop),
and short enough that a hang still ends the test.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

DEADLINE_S = 30.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at this moment (for a server started in a subprocess)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


DUMP_ON_ABORT = {"PYTHONFAULTHANDLER": "1"}
"""Environment for a Python subprocess: on SIGABRT it writes every thread's stack to stderr."""


def kill_with_stacks(process: subprocess.Popen[Any]) -> None:
    """Kill a subprocess that did not stop in time, after it wrote where each of its threads
    was (if it runs with :data:`DUMP_ON_ABORT`): a hang then says where it hung."""
    process.send_signal(signal.SIGABRT)
    try:
        process.wait(DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for(predicate: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    """Poll until ``predicate()`` holds; fail after ``deadline_s``, naming ``what``."""
    give_up = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(0.05)


async def await_for(
    predicate: Callable[[], object], what: str, deadline_s: float = DEADLINE_S
) -> None:
    """Poll until ``predicate()`` (a value, or a coroutine to await) is true; fail after
    ``deadline_s``, naming ``what``."""
    give_up = time.monotonic() + deadline_s
    while not await _maybe(predicate()):
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        await asyncio.sleep(0.05)


async def _maybe(value: object) -> bool:
    if asyncio.iscoroutine(value):
        value = await value
    return bool(value)
