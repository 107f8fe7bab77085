"""The uvicorn backend: the Starlette app (:mod:`.app`) behind the connection guard."""

from __future__ import annotations

import asyncio
from typing import Any

from ..connections import ConnectionGuard, GuardedProtocol, peer_of
from ..limits import Limits
from .app import app_for
from .base import CLOSE_INVALID_TEXT, BackendServer, log_invalid_text

__all__ = ["UvicornServer"]


class UvicornServer(BackendServer):
    """Starlette on uvicorn, its HTTP and WebSocket protocols bounded by ``config.limits``."""

    async def run(self, stop: asyncio.Event | None, drain: asyncio.Event | None) -> None:
        import uvicorn

        limits = self.config.limits
        http_protocol, ws_protocol = _uvicorn_protocols(self.guard, limits)
        server = uvicorn.Server(
            uvicorn.Config(
                app_for(self.router),
                log_level="warning",
                access_log=False,
                lifespan="off",
                http=http_protocol,
                ws=ws_protocol,
                ws_max_size=limits.max_frame_bytes,
                ws_ping_interval=limits.ping_interval_s,
                ws_ping_timeout=limits.ping_timeout_s,
                # Forwarded headers count only from --forwarded-allow-ips, on every backend
                # alike: the router reads them, uvicorn does not (it trusts 127.0.0.1 by
                # default).
                proxy_headers=False,
            )
        )
        if stop is None and drain is None:
            await server.serve(sockets=[self.sock])
            return
        # The caller owns the signals (a SIGTERM drains): uvicorn's own handlers, which would
        # shut down at once and close the streams with 1012, are not installed.
        task = asyncio.create_task(server._serve(sockets=[self.sock]))
        waiter = asyncio.create_task(self.instance.run_until(stop, drain))
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():  # uvicorn stopped by itself (its own signal handling)
            waiter.cancel()
            await self.instance.close_streams("going away")
        await self.guard.settle()
        server.should_exit = True
        await task


def _uvicorn_protocols(
    guard: ConnectionGuard, limits: Limits
) -> tuple[type[asyncio.Protocol], type[asyncio.Protocol]]:
    """uvicorn's HTTP protocol behind the guard, and its WebSocket protocol with our limits.

    The WebSocket protocol is uvicorn's ``websockets-sansio``, the fastest of its three.

    uvicorn hands an upgraded connection from its HTTP protocol to its WebSocket protocol
    (``transport.set_protocol``), so the WebSocket protocol is the one that ends the header
    deadline and releases the connection.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    class HTTPProtocol(GuardedProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(guard, AutoHTTPProtocol(*args, **kwargs), track_requests=True)

    class WebSocketProtocol(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.close_timeout = limits.close_timeout_s

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            guard.request_received(transport)
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            guard.release(self.transport)
            super().connection_lost(exc)

        def send_receive_event_to_app(self) -> None:
            # uvicorn logs a traceback for a text frame that is not UTF-8; close it here.
            if self.curr_msg_data_type == "text" and not self.close_sent:
                try:
                    b"".join(self.frames).decode()
                except UnicodeDecodeError:
                    self.frames = []
                    log_invalid_text(peer_of(self.transport))
                    self.conn.send_close(CLOSE_INVALID_TEXT, "text frame is not UTF-8")
                    self.handle_parser_exception()
                    return
            super().send_receive_event_to_app()

    return HTTPProtocol, WebSocketProtocol
