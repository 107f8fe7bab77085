"""Who reads the wall clock while a call runs in virtual time.

In virtual time the loop's clock jumps, the wall clock does not: an app that measures its own
pace with ``time.monotonic()`` but sleeps with ``asyncio.sleep`` (pipecat's output transport
does) sees each sleep take no wall time, and its audio comes out at the wrong speed. Nothing
in the loop can see that, so while a virtual call's streams run, :class:`WallClockWatch`
wraps the ``time`` module's clocks and tells the loop of each read made from its thread.

Only reads by the app count: the direct caller is looked at, once per code object, and reads
from the standard library (``logging`` stamps its records), from mediastreams itself and from
the HTTP client the emulator drives the app's webhooks with (httpx and httpcore time each
request) are left out. Code that captured a clock before the watch began (``from time import
monotonic``) is not seen.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Protocol

__all__ = ["CLOCKS", "WallClockWatch", "caller_outside"]

CLOCKS = ("monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "time", "time_ns")
"""The clocks of the ``time`` module that are watched."""

_get_ident = threading.get_ident


class Reader(Protocol):
    """What a watching loop is told of each read from its thread."""

    def wall_clock_read(self, clock: str, frame: FrameType) -> None:
        """``time.<clock>()`` was called from ``frame``."""


class WallClockWatch:
    """The ``time`` module's clocks, wrapped while at least one thread's loop watches them.

    Process-wide: virtual calls may run in several threads at once (``place_call`` from an
    async test runs its loop in a worker thread). The first watch wraps the clocks, the last
    one to end puts back what was there.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers: dict[int, Reader] = {}  # by thread
        self._watches: dict[int, int] = {}  # by thread: the calls watching (place_calls)
        self._saved: dict[str, Callable[[], float | int]] = {}

    def enter(self, reader: Reader) -> Callable[[], None]:
        """Tell ``reader`` of the reads made from this thread until the function returned
        is called (once for each call to this method)."""
        thread = _get_ident()
        with self._lock:
            if not self._readers:
                self._wrap()
            self._readers[thread] = reader
            self._watches[thread] = self._watches.get(thread, 0) + 1
        left = False

        def leave() -> None:
            nonlocal left
            with self._lock:
                if left:
                    return
                left = True
                self._watches[thread] -= 1
                if not self._watches[thread]:
                    del self._watches[thread], self._readers[thread]
                    if not self._readers:
                        self._unwrap()

        return leave

    def _wrap(self) -> None:
        for name in CLOCKS:
            real = getattr(time, name)
            self._saved[name] = real
            setattr(time, name, self._wrapper(name, real))

    def _unwrap(self) -> None:
        for name, real in self._saved.items():
            setattr(time, name, real)
        self._saved.clear()

    def _wrapper(self, name: str, real: Callable[[], float | int]) -> Callable[[], float | int]:
        readers = self._readers

        def read() -> float | int:
            reader = readers.get(_get_ident())
            if reader is not None:
                reader.wall_clock_read(name, sys._getframe(1))
            return real()

        functools.update_wrapper(read, real)
        return read


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_STDLIB = tuple(
    os.path.abspath(path) + os.sep
    for path in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
)
_SITE = ("site-packages", "dist-packages")
# The HTTP client the emulator calls in-process apps through: it times every request.
_EMULATOR_CLIENTS = tuple(f"{os.sep}{name}{os.sep}" for name in ("httpx", "httpcore"))


@functools.lru_cache(maxsize=4096)
def caller_outside(code: CodeType) -> str | None:
    """Where ``code`` is (``"in pipecat/transports/x.py:12 (f)"``), or ``None`` when it is
    the standard library's, mediastreams' or the emulator's HTTP client's."""
    path = code.co_filename
    if path.startswith("<frozen "):
        return None
    if path.startswith(_PACKAGE):
        return None
    in_site = any(part in path for part in _SITE)
    if path.startswith(_STDLIB) and not in_site:
        return None
    if in_site and any(client in path for client in _EMULATOR_CLIENTS):
        return None
    return f"in {_short(path)}:{code.co_firstlineno} ({code.co_name})"


def _short(path: str) -> str:
    for part in _SITE:
        _, found, tail = path.partition(f"{os.sep}{part}{os.sep}")
        if found:
            return tail
    parts = path.split(os.sep)
    return os.sep.join(parts[-3:])
