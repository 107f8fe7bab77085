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
from .routes import Router
from .streams import Streams

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
        config: what the server does.
        sock: a listening socket.
        guard: caps and times its connections.
    """

    def __init__(self, config: ServerConfig, sock: socket.socket, guard: ConnectionGuard) -> None:
        self.config = config
        self.sock = sock
        self.guard = guard
        self.streams = Streams()
        self.router = Router(config, self.streams)

    @abstractmethod
    async def run(self, stop: asyncio.Event | None) -> None:
        """Serve until ``stop`` is set, then close every stream and return."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket, so a port in use is reported before any server starts.

    Raises:
        OSError: the address cannot be bound (in use, not local, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
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
) -> None:
    """Serve on a bound socket until ``stop`` is set (or, with uvicorn, SIGINT/SIGTERM).

    Every backend applies ``config.limits`` the same way: a connection cap answered with
    HTTP 503, a header deadline for the HTTP phase, the WebSocket handshake timeout, pings,
    the close timeout and the frame size (``docs/security.md``). While it runs, asyncio's
    out-of-descriptor accept errors are logged once a second instead of once per attempt.

    Args:
        config: what the server does.
        sock: a listening socket (see :func:`bind`).
        backend: ``"uvicorn"`` (Starlette; GET and POST webhooks), ``"websockets"`` or
            ``"picows"`` (faster; GET webhooks only).
        stop: set it to shut down; every stream is closed before this returns.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    _warn_if_open_to_all(config, sock)
    guard = ConnectionGuard(config.limits)
    module = importlib.import_module(f"{__package__}.{backend}")
    server: BackendServer = getattr(module, _BACKEND_CLASSES[backend])(config, sock, guard)
    with guard.quiet_accept_errors():
        await server.run(stop)


def _warn_if_open_to_all(config: ServerConfig, sock: socket.socket) -> None:
    if config.auth_token:
        return
    host = sock.getsockname()[0]
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:  # not an IP address: a Unix socket path
        loopback = True
    if not loopback:
        logger.warning(
            "listening on %s without an auth token: anyone who reaches this address can "
            "start streams; set --auth-token (or TWILIO_AUTH_TOKEN) to check Twilio's "
            "signatures",
            host,
        )
