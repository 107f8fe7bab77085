"""``serve --workers N``: N processes on one port, one per core, stopped together.

Each worker is the same ``mediastreams serve`` command, run by the supervisor with
``MEDIASTREAMS_WORKERS`` set; it binds the port with ``SO_REUSEPORT``, so the kernel spreads
new connections over the workers (Linux). Secrets (the auth and control tokens, the Redis
URL) reach the workers through their environment, never their command line. SIGTERM to the
supervisor drains every worker; a second one, or Ctrl-C, stops them at once. A worker that
dies is replaced (its calls are lost, the others' go on); a crash loop stops them all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import click

from ..server import ServerConfig, bind
from .failure import CommandFailed

__all__ = ["RESTARTS_PER_WINDOW", "RESTART_WINDOW_S", "run_workers"]

logger = logging.getLogger("mediastreams.workers")

# Options given to workers through their environment: they would show in `ps` otherwise.
_SECRET_OPTIONS = {
    "auth_token": "TWILIO_AUTH_TOKEN",
    "control_token": "MEDIASTREAMS_CONTROL_TOKEN",
    "redis_url": "MEDIASTREAMS_REDIS",
}


def run_workers(
    ctx: click.Context,
    host: str,
    port: int,
    workers: int,
    config: ServerConfig,
    *,
    banner: Callable[[int], None],
) -> int:
    """Run ``workers`` copies of this ``serve`` command on one port, restarting any that dies.

    ``banner(port)`` prints the start-up line once the port is known.

    Returns:
        0 once the workers stopped on a signal; the worst exit code of a worker otherwise.
    """

    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        raise CommandFailed(
            "--workers needs SO_REUSEPORT as Linux has it (the kernel spreads connections); "
            "here run one serve per port behind your load balancer"
        )
    if port and _listening(host, port):
        # SO_REUSEPORT would let these workers join another server's port, sharing its calls.
        raise CommandFailed(
            f"cannot listen on {host}:{port}: a server already listens there; choose another --port"
        )
    try:
        # Bound, not listening: it holds the port (and picks it for --port 0) for the
        # workers; the kernel hands connections to listening sockets only.
        holder = bind(host, port, reuse_port=True, listen=False)
    except OSError as error:
        raise CommandFailed(
            f"cannot listen on {host}:{port}: {error.strerror or error}; choose another --port"
        ) from None
    port = holder.getsockname()[1]
    env = {**os.environ, "MEDIASTREAMS_WORKERS": str(workers)}
    metrics_dir = None
    if config.metrics:
        metrics_dir = tempfile.mkdtemp(prefix="mediastreams-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    argv = [
        sys.executable,
        "-m",
        "mediastreams",
        "serve",
        *_arguments(ctx, env),
        "--port",
        str(port),
    ]
    supervisor = _Supervisor(lambda: subprocess.Popen(argv, env=env), workers, metrics_dir)
    try:
        # From the banner on, a Ctrl-C or a SIGTERM stops the workers, however early it comes.
        with supervisor.forwarding_signals():
            banner(port)
            # The holder stays bound, so the port stays ours while workers start and restart.
            supervisor.start()
            return supervisor.run()
    finally:
        holder.close()
        supervisor.kill()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _listening(host: str, port: int) -> bool:
    """Whether a server accepts connections on ``host:port`` (a wildcard: on loopback)."""
    target = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    try:
        with socket.create_connection((target, port), timeout=1.0):
            return True
    except OSError:
        return False


# A worker that dies is restarted, unless workers die this often: then it is a crash loop
# (a bug on every call, a resource gone), and the supervisor stops them all and fails.
RESTARTS_PER_WINDOW = 5
RESTART_WINDOW_S = 60.0
_POLL_S = 0.1
_EXIT_BAD_INPUT = 2  # a worker refused its options: every restart would too
_FORWARDED = (signal.SIGTERM, signal.SIGINT)


class _Supervisor:
    """Keeps ``count`` workers running until a signal, forwarding SIGTERM and SIGINT.

    A worker that exits on its own (a crash, ``kill -9``, the OOM killer) loses its calls;
    the others' calls go on, and a new worker takes its place on the port. Restarts beyond
    :data:`RESTARTS_PER_WINDOW` in :data:`RESTART_WINDOW_S`, or a worker that refused its
    options (exit code 2), stop every worker (draining, as SIGTERM does) and fail.
    """

    def __init__(
        self,
        spawn: Callable[[], subprocess.Popen[bytes]],
        count: int,
        metrics_dir: str | None,
    ) -> None:
        self._spawn = spawn
        self._count = count
        self._metrics_dir = metrics_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self._stopping: int | None = None  # the signal the workers were sent
        self._failed: int | None = None  # the exit code that made the supervisor give up
        self._restarts: list[float] = []

    @contextlib.contextmanager
    def forwarding_signals(self) -> Iterator[None]:
        """While inside, SIGTERM and SIGINT go to the workers (and stop the supervisor)."""
        previous = {s: signal.signal(s, self._forward) for s in _FORWARDED}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def start(self) -> None:
        self.processes = []
        for _ in range(self._count):
            self.processes.append(self._start_one())

    def run(self) -> int:
        """Supervise until every worker exited after a signal; the exit code."""
        while True:
            for index, process in enumerate(self.processes):
                code = process.poll()
                if code is not None and self._stopping is None:
                    self._died(index, process, code)
            if self._stopping is not None and all(p.poll() is not None for p in self.processes):
                break
            time.sleep(_POLL_S)
        if self._failed is not None:
            return self._failed
        codes = [p.returncode for p in self.processes]
        failed = [code for code in codes if code not in (0, -signal.SIGINT)]
        return max(failed, key=abs) if failed else 0

    def kill(self) -> None:
        """Kill the workers still running (the supervisor itself is failing)."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = signum
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signum)

    def _died(self, index: int, process: subprocess.Popen[bytes], code: int) -> None:
        what = f"worker {index + 1} (pid {process.pid}) {_exit_text(code)}"
        if self._metrics_dir is not None:
            from prometheus_client import multiprocess

            # Its live-calls gauge no longer counts; its counters stay in the sums.
            multiprocess.mark_process_dead(process.pid, self._metrics_dir)  # type: ignore[no-untyped-call]
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_S]
        if code == _EXIT_BAD_INPUT or len(self._restarts) >= RESTARTS_PER_WINDOW:
            why = (
                "it refused its options"
                if code == _EXIT_BAD_INPUT
                else f"{len(self._restarts) + 1} workers died within {RESTART_WINDOW_S:g} s"
            )
            logger.error("%s; %s: stopping every worker", what, why)
            self._failed = code if code > 0 else 1
            self._forward(signal.SIGTERM, None)
            return
        self._restarts.append(now)
        logger.error(
            "%s: its calls are lost, the other workers' go on; starting a new worker", what
        )
        self.processes[index] = self._start_one()

    def _start_one(self) -> subprocess.Popen[bytes]:
        """A new worker, which takes SIGTERM and SIGINT only once its handlers are in place.

        The signals are blocked while it is spawned, so it starts with them blocked (a blocked
        signal stays blocked across exec): one sent while it imports waits, instead of killing
        it with a traceback; ``serve`` unblocks them once it handles them. A signal that came
        to the supervisor meanwhile is passed on to it.
        """
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        try:
            process = self._spawn()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # the supervisor's own come now
        if self._stopping is not None:
            process.send_signal(self._stopping)
        return process


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _arguments(ctx: click.Context, env: dict[str, str]) -> list[str]:
    """The command's options as given, for the workers (secrets into ``env``)."""
    arguments: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in (None, "workers", "port"):
            continue
        value: Any = ctx.params.get(param.name)
        if value is None or value == param.default or value is False or value == ():
            continue
        if param.name in _SECRET_OPTIONS:
            env[_SECRET_OPTIONS[param.name]] = str(value)
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            arguments.append(flag)
        elif param.multiple:
            for item in value:
                arguments += [flag, str(item)]
        else:
            arguments += [flag, str(value)]
    return arguments
