"""What every backend shares: the listening socket, the guard, the router, and :func:`serve`.

Each backend module (``uvicorn``, ``websockets``, ``picows``) holds one :class:`BackendServer`
subclass that only translates its library's requests to :class:`~.routes.Request` and its
connections to a :class:`~mediastreams.session.Transport`; what to answer is decided by the
one :class:`~.routes.Router`.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
import socket
from abc import ABC, abstractmethod

from ..connections import ConnectionGuard
from .config import BACKENDS, Backend, ServerConfig
from .instance import Instance
from .routes import Router

__all__ = ["CLOSE_INVALID_TEXT", "BackendServer", "bind", "log_invalid_text", "serve"]

logger = logging.getLogger("mediastreams.server")

# RFC 6455 7.4.1: data inconsistent with the message type (text that is not UTF-8).
CLOSE_INVALID_TEXT = 1007


def log_invalid_text(client: str) -> None:
    """The line every backend writes when it closes a socket with 1007."""
    logger.warning("closed the WebSocket from %s with 1007: a text frame is not UTF-8", client)


class BackendServer(ABC):
    """One backend serving one configuration on one listening socket.

    Args:
        instance: the running server.
        sock: a listening socket.
        guard: caps and times its connections.
    """

    def __init__(self, instance: Instance, sock: socket.socket, guard: ConnectionGuard) -> None:
        self.instance = instance
        self.config = instance.config
        self.sock = sock
        self.guard = guard
        self.streams = instance.streams
        self.router = Router(instance)

    @abstractmethod
    async def run(self, stop: asyncio.Event | None, drain: asyncio.Event | None) -> None:
        """Serve until ``stop`` is set, or ``drain`` is set and the calls have ended (see
        :meth:`Instance.run_until`); then close every stream and return."""


def bind(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A listening TCP socket, so a port in use is reported before any server starts.

    Args:
        host: the address to bind (IPv6 if it holds a ``:``).
        port: the port; 0 picks a free one.
        reuse_port: set ``SO_REUSEPORT``, so several processes listen on the port and the
            kernel spreads connections over them (``serve --workers``, Linux).
        listen: start listening; a socket bound and not listening holds the port without
            being handed connections.

    Raises:
        OSError: the address cannot be bound (in use, not local, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


# The class of each backend, imported only when chosen (picows is an optional extra).
_BACKEND_CLASSES: dict[Backend, str] = {
    "uvicorn": "UvicornServer",
    "websockets": "WebsocketsServer",
    "picows": "PicowsServer",
}


async def serve(
    config: ServerConfig,
    sock: socket.socket,
    *,
    backend: Backend = "uvicorn",
    stop: asyncio.Event | None = None,
    drain: asyncio.Event | None = None,
    workers: int = 1,
) -> None:
    """Serve on a bound socket until ``stop`` is set (or, with uvicorn, SIGINT/SIGTERM).

    Setting ``drain`` drains instead (a deploy's SIGTERM): ``/readyz`` answers 503 at once,
    live calls and requests go on, and this returns once they ended, or after
    ``config.drain_timeout_s``, when the streams still open are closed with 1001. ``stop``
    set during a drain ends it at once. On every backend the streams still open at the end
    are closed with 1001 (going away), which Twilio takes as a normal end.

    Every backend applies ``config.limits`` the same way: a connection cap answered with
    HTTP 503, a header deadline for the HTTP phase, the WebSocket handshake timeout, pings,
    the close timeout and the frame size (``docs/security.md``). While it runs, asyncio's
    out-of-descriptor accept errors are logged once a second instead of once per attempt.

    Args:
        config: what the server does.
        sock: a listening socket (see :func:`bind`).
        backend: ``"uvicorn"`` (Starlette), ``"websockets"`` or ``"picows"`` (faster);
            each answers GET and POST webhooks.
        stop: set it to shut down; every stream is closed before this returns.
        drain: set it to drain, then shut down.
        workers: how many processes serve this configuration (``serve --workers``): with
            more than one and no ``redis_url``, no context is kept in memory.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    _warn_if_open_to_all(config, sock)
    guard = ConnectionGuard(config.limits)
    module = importlib.import_module(f"{__package__}.{backend}")
    instance = Instance(config, shared=workers > 1)
    instance.loopback_bind = _is_loopback_socket(sock)
    server: BackendServer = getattr(module, _BACKEND_CLASSES[backend])(instance, sock, guard)
    await instance.start()
    try:
        with guard.quiet_accept_errors():
            await server.run(stop, drain)
    finally:
        await instance.close()


def _is_loopback_socket(sock: socket.socket) -> bool:
    host = sock.getsockname()[0]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # not an IP address: a Unix socket path
        return True


def _warn_if_open_to_all(config: ServerConfig, sock: socket.socket) -> None:
    if config.auth_token:
        return
    host = sock.getsockname()[0]
    if not _is_loopback_socket(sock):
        logger.warning(
            "listening on %s without an auth token: anyone who reaches this address can "
            "start streams; set --auth-token (or TWILIO_AUTH_TOKEN) to check Twilio's "
            "signatures",
            host,
        )
