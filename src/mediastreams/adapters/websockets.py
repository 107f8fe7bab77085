"""The session over a connection of the ``websockets`` library's asyncio server.

Example::

    from websockets.asyncio.server import serve
    from mediastreams.adapters.websockets import open_stream

    async def handler(connection: ServerConnection) -> None:
        async with open_stream(connection) as stream:
            ...

    async with serve(handler, "127.0.0.1", 5050, max_size=64 * 1024) as server:
        await server.serve_forever()
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

from ..exceptions import StreamClosed
from ..session import MediaStream

__all__ = ["WebsocketsTransport", "open_stream"]


class WebsocketsTransport:
    """A ``websockets`` asyncio connection as a :class:`~mediastreams.session.Transport`."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    async def receive(self) -> str | bytes | None:
        """The next frame; ``None`` once the socket closed."""
        try:
            return await self.connection.recv()
        except ConnectionClosed:
            return None

    async def send(self, text: str) -> None:
        """Send a text frame.

        Raises:
            StreamClosed: the socket is gone.
        """
        try:
            await self.connection.send(text)
        except ConnectionClosed as error:
            raise StreamClosed("the WebSocket closed while sending") from error

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket (nothing happens if it is already closed)."""
        await self.connection.close(code, reason)


@contextlib.asynccontextmanager
async def open_stream(connection: Connection, **options: Any) -> AsyncIterator[MediaStream]:
    """Wait for Twilio's ``start`` on the connection and yield the open stream.

    Args:
        connection: the handler's ``ServerConnection``.
        options: :class:`~mediastreams.session.MediaStream` options (``limits``,
            ``lead_ms``...).

    An exception out of the ``async with`` block closes the socket with 1011 and the error
    as the reason, then goes on to the server, which logs it.
    """
    async with MediaStream(WebsocketsTransport(connection), **options) as stream:
        yield stream
