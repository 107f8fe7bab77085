"""The session over a Starlette (or FastAPI) ``WebSocket``.

Example::

    from mediastreams.adapters.starlette import open_stream

    async def media_stream(websocket: WebSocket) -> None:
        async with open_stream(websocket) as stream:
            stream.play("hello.wav")
            async for event in stream:
                ...

    app = Starlette(routes=[WebSocketRoute("/media-stream", media_stream)])
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..exceptions import StreamClosed
from ..session import MediaStream

__all__ = ["StarletteTransport", "open_stream"]

# What Starlette and the ASGI server raise on a socket that is gone.
_GONE = (WebSocketDisconnect, RuntimeError, OSError)


class StarletteTransport:
    """A Starlette ``WebSocket`` (accepted) as a :class:`~mediastreams.session.Transport`."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._closed = False

    async def receive(self) -> str | bytes | None:
        """The next frame; ``None`` once the socket closed."""
        if self._closed:
            return None
        try:
            message = await self.websocket.receive()
        except _GONE:
            message = {"type": "websocket.disconnect"}
        if message["type"] == "websocket.disconnect":
            self._closed = True
            return None
        text = message.get("text")
        if text is not None:
            return str(text)
        return bytes(message.get("bytes") or b"")

    async def send(self, text: str) -> None:
        """Send a text frame.

        Raises:
            StreamClosed: the socket is gone.
        """
        if self._closed:
            raise StreamClosed("the WebSocket is closed")
        try:
            await self.websocket.send_text(text)
        except _GONE as error:
            self._closed = True
            raise StreamClosed("the WebSocket closed while sending") from error

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket (once; nothing happens if it is already gone)."""
        if self._closed and self.websocket.application_state is WebSocketState.DISCONNECTED:
            return
        self._closed = True
        if self.websocket.application_state is WebSocketState.DISCONNECTED:
            return
        with contextlib.suppress(*_GONE):  # the peer may have gone first
            await self.websocket.close(code, reason)


@contextlib.asynccontextmanager
async def open_stream(websocket: WebSocket, **options: Any) -> AsyncIterator[MediaStream]:
    """Accept the WebSocket, wait for Twilio's ``start`` and yield the open stream.

    Args:
        websocket: the endpoint's ``WebSocket``, accepted or not.
        options: :class:`~mediastreams.session.MediaStream` options (``limits``,
            ``lead_ms``...).

    An exception out of the ``async with`` block closes the socket with 1011 and the error
    as the reason, then goes on to the server, which logs it.

    Raises:
        StreamTimeout: no ``start`` in time.
        StreamClosed: the socket closed before ``start``.
    """
    if websocket.application_state is WebSocketState.CONNECTING:
        await websocket.accept()
    async with MediaStream(StarletteTransport(websocket), **options) as stream:
        yield stream
