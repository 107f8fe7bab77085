"""The server as a Starlette app: every HTTP request goes to the one router.

``serve --backend uvicorn`` runs it; it can also be mounted in your own app.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from .config import ServerConfig
from .routes import Reply, Request, Router, client_of
from .streams import Streams, run_stream

__all__ = ["create_app"]


def create_app(config: ServerConfig) -> Starlette:
    """The server as a Starlette app: serve it with uvicorn, or mount it in yours."""
    return app_for(Router(config, Streams()))


def app_for(router: Router) -> Starlette:
    """The Starlette app that answers with ``router``."""
    config = router.config

    async def http(request: StarletteRequest) -> Response:
        form: list[tuple[str, str]] = []
        if request.method == "POST" and request.url.path == config.incoming_path:
            # Twilio posts application/x-www-form-urlencoded; parsed here, without the
            # python-multipart package that Starlette's request.form() needs.
            try:
                # Bounded here too for apps that mount this one without the guard in front.
                async with asyncio.timeout(config.limits.header_timeout_s):
                    body = await _read_body(request, config.limits.max_webhook_bytes)
            except TimeoutError:
                return _plain(Reply(408, "text/plain", b"request body too slow\n"))
            if body is None:
                return _plain(Reply(413, "text/plain", b"request too large\n"))
            form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        reply = router.answer(
            Request(
                method=request.method,
                path=request.url.path,
                query=request.url.query,
                headers=request.headers.items(),
                scheme=request.url.scheme,
                client=client_of(request.client),
                form=form,
            )
        )
        # Only the stream path is upgraded; a plain request to it is not a WebSocket.
        return _plain(reply or Reply(426, "text/plain", b"a WebSocket upgrade is expected\n"))

    async def media_stream(websocket: WebSocket) -> None:
        from ..adapters.starlette import StarletteTransport

        client = client_of(websocket.client)
        request = Request(
            method="GET",
            path=websocket.url.path,
            query=websocket.url.query,
            headers=websocket.headers.items(),
            scheme=websocket.url.scheme,
            client=client,
        )
        if router.answer(request) is not None:
            await websocket.close(1008)  # before accept: the server answers HTTP 403
            return
        await websocket.accept()
        with router.streams.counting():
            await run_stream(config, StarletteTransport(websocket), client=client)

    return Starlette(
        routes=[
            WebSocketRoute(config.stream_path, media_stream),
            Route("/{path:path}", http, methods=["GET", "HEAD", "POST"]),
        ]
    )


def _plain(reply: Reply) -> Response:
    # One request per connection, as on the other two backends: the header deadline then
    # bounds each request, and a proxy that keeps connections open is told to reconnect
    # rather than have one cut under it.
    return Response(
        reply.body, reply.status, media_type=reply.content_type, headers={"Connection": "close"}
    )


async def _read_body(request: StarletteRequest, max_bytes: int) -> bytes | None:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            return None
    return bytes(body)
