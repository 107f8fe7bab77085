"""``serve --workers N``: N processes on one port, one per core, stopped together.

Each worker is the same ``mediastreams serve`` command, run by the supervisor with
``MEDIASTREAMS_WORKERS`` set; it binds the port with ``SO_REUSEPORT``, so the kernel spreads
new connections over the workers (Linux). Secrets (the auth and control tokens, the Redis
URL) reach the workers through their environment, never their command line. SIGTERM to the
supervisor drains every worker; a second one, or Ctrl-C, stops them at once.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from types import FrameType
from typing import Any

import click

from ..server import ServerConfig

__all__ = ["bind_reuse_port", "run_workers"]

# Options given to workers through their environment: they would show in `ps` otherwise.
_SECRET_OPTIONS = {
    "auth_token": "TWILIO_AUTH_TOKEN",
    "control_token": "MEDIASTREAMS_CONTROL_TOKEN",
    "redis_url": "MEDIASTREAMS_REDIS",
}


def bind_reuse_port(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound with ``SO_REUSEPORT``: several processes may listen on the port.

    Raises:
        OSError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def run_workers(
    ctx: click.Context, host: str, port: int, workers: int, config: ServerConfig
) -> int:
    """Run ``workers`` copies of this ``serve`` command on one port; their worst exit code."""
    from .serve import BadInput

    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        raise BadInput(
            "--workers needs SO_REUSEPORT as Linux has it (the kernel spreads connections); "
            "here run one serve per port behind your load balancer"
        )
    try:
        # Bound, not listening: it holds the port (and picks it for --port 0) while the
        # workers bind theirs; the kernel hands connections to listening sockets only.
        holder = bind_reuse_port(host, port, listen=False)
    except OSError as error:
        raise BadInput(
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
    base = config.public_url or f"http://{host}:{port}"
    click.echo(
        f"mediastreams serve: {workers} workers on {host}:{port} (SO_REUSEPORT), webhook "
        f"{base.rstrip('/')}{config.incoming_path}",
        err=True,
    )
    processes = [subprocess.Popen(argv, env=env) for _ in range(workers)]
    holder.close()
    try:
        return _supervise(processes)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(processes: list[subprocess.Popen[bytes]]) -> int:
    def forward(signum: int, frame: FrameType | None) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        codes = [process.wait() for process in processes]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    failed = [code for code in codes if code not in (0, -signal.SIGINT)]
    return max(failed, key=abs) if failed else 0


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
