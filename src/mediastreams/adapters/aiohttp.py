"""The session over an aiohttp ``web.WebSocketResponse`` (the ``aiohttp`` extra).

Example::

    from mediastreams.adapters.aiohttp import open_stream

    async def media_stream(request: web.Request) -> web.StreamResponse:
        async with open_stream(request) as stream:
            ...
        return stream.transport.websocket

    app.router.add_get("/media-stream", media_stream)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web

from ..exceptions import StreamClosed
from ..limits import DEFAULT_LIMITS
from ..session import MediaStream

__all__ = ["AiohttpTransport", "open_stream"]


class AiohttpTransport:
    """An aiohttp ``WebSocketResponse`` (prepared) as a :class:`~mediastreams.session.Transport`."""

    def __init__(self, websocket: web.WebSocketResponse) -> None:
        self.websocket = websocket

    async def receive(self) -> str | bytes | None:
        """The next frame; ``None`` once the socket closed (or broke a size limit)."""
        message = await self.websocket.receive()
        if message.type is WSMsgType.TEXT:
            return str(message.data)
        if message.type is WSMsgType.BINARY:
            return bytes(message.data)
        return None  # CLOSE, CLOSING, CLOSED or ERROR (a frame over max_msg_size)

    async def send(self, text: str) -> None:
        """Send a text frame.

        Raises:
            StreamClosed: the socket is gone.
        """
        if self.websocket.closed:
            raise StreamClosed("the WebSocket is closed")
        try:
            await self.websocket.send_str(text)
        except (ConnectionError, RuntimeError) as error:
            raise StreamClosed("the WebSocket closed while sending") from error

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket (nothing happens if it is already closed)."""
        await self.websocket.close(code=code, message=reason.encode())


@contextlib.asynccontextmanager
async def open_stream(request: web.Request, **options: Any) -> AsyncIterator[MediaStream]:
    """Upgrade the request, wait for Twilio's ``start`` and yield the open stream.

    The ``WebSocketResponse`` is ``stream.transport.websocket``; return it from the handler.

    Args:
        request: the handler's request.
        options: :class:`~mediastreams.session.MediaStream` options (``limits``,
            ``lead_ms``...).

    An exception out of the ``async with`` block closes the socket with 1011 and the error
    as the reason, then goes on to aiohttp, which logs it.
    """
    limits = options.get("limits") or DEFAULT_LIMITS
    max_frame_bytes = options.get("max_frame_bytes") or limits.max_frame_bytes
    websocket = web.WebSocketResponse(max_msg_size=max_frame_bytes)
    await websocket.prepare(request)
    async with MediaStream(AiohttpTransport(websocket), **options) as stream:
        yield stream
