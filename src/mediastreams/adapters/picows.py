"""The session over picows, the fastest WebSocket server measured (the ``picows`` extra).

picows calls a listener per connection instead of offering a coroutine to await frames;
:class:`PicowsTransport` is that listener and queues the frames for the session. picows
answers only GET requests, so a server on it answers a webhook configured as HTTP GET.

Example::

    from picows import ws_create_server
    from mediastreams.adapters.picows import PicowsTransport

    def listener_factory(request):
        return PicowsTransport(on_connected=lambda transport: spawn(run(transport)))
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from ..exceptions import StreamClosed

__all__ = ["PicowsTransport"]


class PicowsTransport(WSListener):
    """A picows connection as a :class:`~mediastreams.session.Transport`.

    Args:
        on_connected: called with this transport once the upgrade is done; start the
            session there.
    """

    def __init__(self, on_connected: Callable[[PicowsTransport], Any] | None = None) -> None:
        super().__init__()
        self._on_connected = on_connected
        self._transport: WSTransport | None = None
        self._frames: deque[str | bytes | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    # --- picows callbacks ---------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._transport = transport
        if self._on_connected is not None:
            self._on_connected(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT:
            try:
                self._put(frame.get_payload_as_utf8_text())
            except UnicodeDecodeError:
                self._put(frame.get_payload_as_bytes())  # the session reports it as binary
        elif kind == WSMsgType.BINARY:
            self._put(frame.get_payload_as_bytes())
        elif kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._closed = True
        self._put(None)

    def _put(self, item: str | bytes | None) -> None:
        self._frames.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- Transport ----------------------------------------------------------------------------

    async def receive(self) -> str | bytes | None:
        """The next frame; ``None`` once the socket closed."""
        while not self._frames:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._frames.popleft()
        if item is None:
            self._frames.appendleft(None)
        return item

    async def send(self, text: str) -> None:
        """Send a text frame (picows writes at once; there is nothing to await).

        Raises:
            StreamClosed: the socket is gone.
        """
        if self._closed or self._transport is None:
            raise StreamClosed("the WebSocket is closed")
        self._transport.send(WSMsgType.TEXT, text.encode())

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket (nothing happens if it is already closed)."""
        if self._closed or self._transport is None:
            return
        self._closed = True
        self._transport.send_close(WSCloseCode(code), reason.encode())
        self._transport.disconnect()
        self._put(None)
