"""The websockets backend: python-websockets' asyncio server behind the connection guard."""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from ..adapters.websockets import WebsocketsTransport
from .base import BackendServer
from .http import front_factory
from .routes import Reply, client_of
from .streams import run_stream

__all__ = ["WebsocketsServer"]


class WebsocketsServer(BackendServer):
    """python-websockets' server behind :class:`~.http.HTTPFront`, which answers plain HTTP
    (GET and POST) through the router and hands it only the accepted upgrades."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event | None, drain: asyncio.Event | None) -> None:
        limits = self.config.limits
        async with ws_serve(
            self._handler,
            sock=self.sock,
            process_request=self._process_request,
            open_timeout=limits.handshake_timeout_s,
            ping_interval=limits.ping_interval_s,
            ping_timeout=limits.ping_timeout_s,
            close_timeout=limits.close_timeout_s,
            max_size=limits.max_frame_bytes,
            start_serving=False,
        ) as server:
            # The front reads each request first; websockets' own factory makes the
            # connection of an accepted upgrade.
            inner = server.server._protocol_factory  # type: ignore[attr-defined]
            server.server._protocol_factory = front_factory(  # type: ignore[attr-defined]
                self.guard, self.router, inner, self._tasks
            )
            await server.start_serving()
            try:
                await self.instance.run_until(stop, drain)
                await self.guard.settle()
            finally:
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
            server.close(close_connections=True)
            await server.wait_closed()

    def _process_request(
        self, connection: ServerConnection, request: WsRequest
    ) -> WsResponse | None:
        # The front checked the upgrade with the router before handing the connection over.
        self.guard.request_received(connection.transport)
        return None

    async def _handler(self, connection: ServerConnection) -> None:
        with self.streams.counting():
            transport = WebsocketsTransport(connection)
            client = client_of(connection.remote_address)
            await run_stream(self.config, transport, client=client, instance=self.instance)


def _response(reply: Reply) -> WsResponse:
    headers = Headers(
        [
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
            ("Connection", "close"),  # websockets closes after an HTTP answer: say so
        ]
    )
    return WsResponse(reply.status, HTTPStatus(reply.status).phrase, headers, reply.body)
