"""Test helpers for a fleet on 127.0.0.1: a real redis-server, serve processes, and a
round-robin TCP proxy that sends each new connection to the next instance, so a call's
webhook and its socket land on different instances."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from waiting import DEADLINE_S, DUMP_ON_ABORT, free_port, kill_with_stacks, wait_for


class RedisServer:
    """A redis-server on a free loopback port, with no persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no"]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self._argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._ours_answers, "redis-server to answer")

    def _ours_answers(self) -> bool:
        # Another process may take the free port first: then the answer would be its, and ours
        # exits at once (it cannot bind).
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited {self.process.returncode}: port in use?")
        return self.answers()

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class _Serve:
    """``mediastreams serve ARGS --port 0`` in its own process, its output in a log file.

    ``banner`` is the pattern of the start-up line, its group the port the server took.
    """

    banner = re.compile(r"webhook http://127\.0\.0\.1:(\d+)/")

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        **popen: Any,
    ) -> None:
        self.log = cwd / f"{name}-{len(list(cwd.glob(f'{name}-*.log')))}.log"
        self._out = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mediastreams", "serve", "--port", "0", *args],
            cwd=cwd,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **DUMP_ON_ABORT, **(env or {})},
            **popen,
        )
        self.port = 0
        try:
            # A process's start is the slowest step on a crowded core (imports, compiling
            # without bytecode): three deadlines.
            wait_for(self._started, f"{name} to start", 3 * DEADLINE_S)
        except BaseException as error:
            timed_out = self.process.poll() is None  # else the error has the log already
            self.stop()  # no process left running, and its log closed, for the next tests
            if timed_out and isinstance(error, AssertionError):
                raise AssertionError(f"{error}; its log:\n{self.text()[-4000:]}") from None
            raise
        self.url = f"http://127.0.0.1:{self.port}"

    def _started(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited {self.process.returncode}: {self.text()}")
        found = self.banner.search(self.text())
        if found:
            self.port = int(found.group(1))
        return bool(found)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self) -> int:
        """Ctrl-C, and wait for the exit (a kill past the deadline); the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(DEADLINE_S)
            except subprocess.TimeoutExpired:
                kill_with_stacks(self.process)  # its log says where it hung
        self._out.close()
        return self.process.returncode


class Instance(_Serve):
    """``mediastreams serve`` in its own process, answering ``/healthz``."""

    def __init__(self, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        super().__init__("serve", args, cwd, env)
        try:
            wait_for(self._healthy, "serve to answer /healthz")
        except BaseException:
            self.stop()
            raise

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


class Supervisor(_Serve):
    """``mediastreams serve --workers N`` in its own process, and its workers."""

    banner = re.compile(r"workers on 127\.0\.0\.1:(\d+) ")

    def __init__(self, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.seen: set[int] = set()  # every worker pid seen, to stop strays at the end
        # Its own process group, as a service manager gives it.
        super().__init__("workers", args, cwd, env, start_new_session=True)

    def workers(self) -> list[int]:
        """The pids of the workers running now."""
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return []
        self.seen.update(int(p) for p in children)
        return [int(p) for p in children]

    def listeners(self) -> int:
        """How many sockets listen on the port (one per worker ready to take connections)."""
        wanted = f":{self.port:04X} "
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
        # Fields: sl, local address, remote address, state (0A: LISTEN)...
        return sum(1 for line in lines if wanted in line and line.split()[3] == "0A")

    def stop(self) -> int:
        code = super().stop()
        for pid in self.seen:  # none left, unless the supervisor itself failed
            with contextlib.suppress(OSError):
                if b"mediastreams" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        return code


@contextlib.contextmanager
def supervisor(
    args: Sequence[str], cwd: Path, env: dict[str, str] | None = None
) -> Iterator[Supervisor]:
    started = Supervisor(args, cwd, env)
    try:
        yield started
    finally:
        started.stop()


@contextlib.contextmanager
def instances(specs: Sequence[Sequence[str]], cwd: Path) -> Iterator[list[Instance]]:
    started: list[Instance] = []
    try:
        for args in specs:
            started.append(Instance(args, cwd))
        yield started
    finally:
        for instance in started:
            instance.stop()


@contextlib.asynccontextmanager
async def round_robin(ports: Sequence[int]) -> AsyncIterator[int]:
    """A TCP proxy on 127.0.0.1: each new connection goes to the next port in turn."""
    turn = 0
    pipes: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal turn
        port = ports[turn % len(ports)]
        turn += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        for task in (pipe(reader, up_writer), pipe(up_reader, writer)):
            pipes.add(asyncio.create_task(task))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
