"""The websockets backend: python-websockets' asyncio server behind the connection guard."""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from ..adapters.websockets import WebsocketsTransport
from .base import BackendServer
from .routes import Reply, Request, client_of
from .streams import run_stream

__all__ = ["WebsocketsServer"]


class WebsocketsServer(BackendServer):
    """python-websockets' server: ``process_request`` asks the router, the rest is a stream."""

    async def run(self, stop: asyncio.Event | None) -> None:
        guard, limits = self.guard, self.config.limits

        class GuardedConnection(ServerConnection):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                if guard.admit(transport):
                    super().connection_made(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                guard.release(self.transport)
                super().connection_lost(exc)

        async with ws_serve(
            self._handler,
            sock=self.sock,
            process_request=self._process_request,
            create_connection=GuardedConnection,
            open_timeout=limits.handshake_timeout_s,
            ping_interval=limits.ping_interval_s,
            ping_timeout=limits.ping_timeout_s,
            close_timeout=limits.close_timeout_s,
            max_size=limits.max_frame_bytes,
        ) as server:
            await (stop or asyncio.Event()).wait()
            await guard.settle()
            server.close(close_connections=True)
            await server.wait_closed()

    def _process_request(
        self, connection: ServerConnection, request: WsRequest
    ) -> WsResponse | None:
        self.guard.request_received(connection.transport)
        path, _, query = request.path.partition("?")
        reply = self.router.answer(
            Request(
                method="GET",
                path=path,
                query=query,
                headers=list(request.headers.raw_items()),
                scheme="ws" if path == self.config.stream_path else "http",
                client=client_of(connection.remote_address),
            )
        )
        return None if reply is None else _response(reply)

    async def _handler(self, connection: ServerConnection) -> None:
        with self.streams.counting():
            transport = WebsocketsTransport(connection)
            await run_stream(self.config, transport, client=client_of(connection.remote_address))


def _response(reply: Reply) -> WsResponse:
    headers = Headers(
        [
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
            ("Connection", "close"),  # websockets closes after an HTTP answer: say so
        ]
    )
    return WsResponse(reply.status, HTTPStatus(reply.status).phrase, headers, reply.body)
