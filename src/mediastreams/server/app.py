"""The server as a Starlette app: every HTTP request goes to the one router.

``serve --backend uvicorn`` runs it; it can also be mounted in your own app, whose lifespan
then connects the shared state (``redis_url``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from ..connections import end_request_deadline
from .config import ServerConfig
from .instance import Instance
from .routes import Reply, Request, Router, client_of, peer_ip
from .streams import run_stream

__all__ = ["create_app"]


def create_app(config: ServerConfig) -> Starlette:
    """The server as a Starlette app: serve it with uvicorn, or mount it in yours."""
    instance = Instance(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await instance.start()
        try:
            yield
        finally:
            await instance.close()

    return app_for(Router(instance), lifespan=lifespan)


def app_for(router: Router, *, lifespan: object = None) -> Starlette:
    """The Starlette app that answers with ``router``."""
    config = router.config
    instance = router.instance

    async def http(request: StarletteRequest) -> Response:
        body = b""
        if request.method == "POST":
            try:
                # Bounded here too for apps that mount this one without the guard in front.
                async with asyncio.timeout(config.limits.header_timeout_s):
                    read = await _read_body(request, router.max_body_bytes(request.url.path))
            except TimeoutError:
                return _plain(Reply(408, "text/plain", b"request body too slow\n"))
            if read is None:
                return _plain(Reply(413, "text/plain", b"request too large\n"))
            body = read
        end_request_deadline()
        reply = await router.answer(
            Request(
                method=request.method,
                path=request.url.path,
                query=request.url.query,
                headers=request.headers.items(),
                scheme=request.url.scheme,
                client=client_of(request.client),
                peer=peer_ip(request.client),
                body=body,
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
            peer=peer_ip(websocket.client),
        )
        if router.upgrade(request) is not None:
            await websocket.close(1008)  # before accept: the server answers HTTP 403
            return
        await websocket.accept()
        with router.streams.counting():
            transport = StarletteTransport(websocket)
            await run_stream(config, transport, client=client, instance=instance)

    return Starlette(
        routes=[
            WebSocketRoute(config.stream_path, media_stream),
            Route("/{path:path}", http, methods=["GET", "HEAD", "POST"]),
        ],
        lifespan=lifespan,  # type: ignore[arg-type]
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
