"""Plain HTTP in front of a WebSocket library: POST bodies and async answers on any backend.

python-websockets and picows parse only ``GET`` requests without a body, and picows asks
its router synchronously, so neither could answer Twilio's default ``POST`` webhook nor wait
on Redis. :class:`HTTPFront` reads each connection's request head first: a WebSocket upgrade
on the stream path (signature checked by the one router) is handed, bytes and all, to the
library's own protocol; anything else is read in full (within the body bound of its path),
answered by the router in a task, and closed (one request per connection, as on uvicorn).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import cast

from ..connections import ConnectionGuard, GuardedBufferedProtocol, GuardedProtocol, peer_of
from .routes import Reply, Request, Router

__all__ = ["HTTPFront", "front_factory"]

logger = logging.getLogger("mediastreams.server")

_MAX_HEAD_BYTES = 16 * 1024  # as h11's default
_MAX_HEADERS = 128


class HTTPFront(asyncio.Protocol):
    """The first protocol of a connection: routes it before a WebSocket library sees it.

    Args:
        guard: admits, times and releases the connection.
        router: answers plain requests and decides on upgrades.
        backend: makes the WebSocket library's protocol for an accepted upgrade.
        tasks: where the tasks that answer requests are kept (so shutdown can end them).
    """

    def __init__(
        self,
        guard: ConnectionGuard,
        router: Router,
        backend: Callable[[], asyncio.BaseProtocol],
        tasks: set[asyncio.Task[None]],
    ) -> None:
        self._guard = guard
        self._router = router
        self._backend = backend
        self._tasks = tasks
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._request: Request | None = None
        self._body_bytes = 0
        self._done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._guard.admit(transport):
            self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._guard.release(self._transport)

    def data_received(self, data: bytes) -> None:
        if self._done or self._transport is None:
            return
        self._buffer += data
        if self._request is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_HEAD_BYTES:
                    self._send(Reply(431, "text/plain", b"request head too large\n"))
                return
            self._head(bytes(self._buffer[:end]), end + 4)
            if self._done:
                return
        if self._request is not None and len(self._buffer) >= self._body_bytes:
            self._answer(self._request, bytes(self._buffer[: self._body_bytes]))

    def eof_received(self) -> bool:
        return False

    def _head(self, head: bytes, body_at: int) -> None:
        assert self._transport is not None
        request = _parse_head(head, self._transport)
        if request is None:
            self._send(Reply(400, "text/plain", b"malformed request\n"))
            return
        upgrade = "websocket" in ",".join(request.header("Upgrade")).lower()
        if request.path == self._router.config.stream_path:
            if not upgrade or request.method != "GET":
                self._send(Reply(426, "text/plain", b"a WebSocket upgrade is expected\n"))
                return
            ws_request = Request(
                "GET",
                request.path,
                request.query,
                request.headers,
                "ws",
                request.client,
                request.peer,
            )
            reply = self._router.upgrade(ws_request)
            if reply is not None:
                self._send(reply)
            else:
                self._hand_over()
            return
        if request.header("Transfer-Encoding"):
            self._send(Reply(501, "text/plain", b"send a Content-Length, not chunks\n"))
            return
        try:
            length = int((request.header("Content-Length") or ["0"])[0])
        except ValueError:
            length = -1
        if length < 0:
            self._send(Reply(400, "text/plain", b"bad Content-Length\n"))
            return
        if length > self._router.max_body_bytes(request.path):
            self._send(Reply(413, "text/plain", b"request too large\n"))
            return
        del self._buffer[:body_at]
        self._request, self._body_bytes = request, length

    def _hand_over(self) -> None:
        """Give the connection, and the bytes read so far, to the WebSocket library."""
        transport = self._transport
        assert transport is not None
        self._done = True
        inner = self._backend()
        wrapped: asyncio.BaseProtocol
        if isinstance(inner, asyncio.BufferedProtocol):
            wrapped = GuardedBufferedProtocol(self._guard, inner)
        else:
            wrapped = GuardedProtocol(self._guard, cast(asyncio.Protocol, inner))
        transport.set_protocol(wrapped)
        wrapped.connection_made(transport)
        data = memoryview(bytes(self._buffer))
        self._buffer.clear()
        if isinstance(wrapped, asyncio.BufferedProtocol):
            while data and not transport.is_closing():
                buffer = memoryview(wrapped.get_buffer(len(data)))
                n = min(len(buffer), len(data))
                buffer[:n] = data[:n]
                wrapped.buffer_updated(n)
                data = data[n:]
        else:
            wrapped.data_received(bytes(data))

    def _answer(self, request: Request, body: bytes) -> None:
        assert self._transport is not None
        self._done = True
        self._transport.pause_reading()
        # The request is in: its answer may take longer than the header deadline (a play
        # waited for), so the deadline ends here.
        self._guard.request_received(self._transport)
        full = Request(
            request.method,
            request.path,
            request.query,
            request.headers,
            request.scheme,
            request.client,
            request.peer,
            body,
        )
        task = asyncio.get_running_loop().create_task(self._reply(full))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply(self, request: Request) -> None:
        try:
            reply = await self._router.answer(request)
        except Exception:
            logger.exception("failed to answer %s %s", request.method, request.path[:100])
            reply = Reply(500, "text/plain", b"internal error\n")
        self._send(reply or Reply(404, "text/plain", b"not found\n"))

    def _send(self, reply: Reply) -> None:
        self._done = True
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        head = (
            f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}\r\n"
            f"Content-Type: {reply.content_type}\r\n"
            f"Content-Length: {len(reply.body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        transport.write(head.encode("latin-1") + reply.body)
        transport.close()


def _parse_head(head: bytes, transport: asyncio.BaseTransport) -> Request | None:
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        return None
    if not version.startswith("HTTP/1.") or not target.startswith("/") or len(lines) > _MAX_HEADERS:
        return None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None
        headers.append((name, value.strip()))
    path, _, query = target.partition("?")
    address = transport.get_extra_info("peername")
    peer = str(address[0]) if isinstance(address, tuple) and address else None
    return Request(method, path, query, headers, "http", peer_of(transport), peer)


def front_factory(
    guard: ConnectionGuard,
    router: Router,
    backend: Callable[[], asyncio.BaseProtocol],
    tasks: set[asyncio.Task[None]],
) -> Callable[[], asyncio.Protocol]:
    """A protocol factory for ``loop.create_server`` that puts :class:`HTTPFront` first."""

    def make() -> asyncio.Protocol:
        return HTTPFront(guard, router, backend, tasks)

    return make
