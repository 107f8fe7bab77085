"""An in-memory WebSocket pair: the test seam, in the style of httpx's mock transport.

:class:`MemoryTransport` is the app's end, given to a
:class:`~mediastreams.session.MediaStream`; its :attr:`~MemoryTransport.peer` is Twilio's
end, which a test drives by hand or through :class:`~mediastreams.protocol.TwilioProtocol`::

    transport = MemoryTransport()
    twilio = TwilioProtocol()
    twilio.send_connected()
    twilio.send_start()
    transport.peer.send_all(twilio.data_to_send())
    async with MediaStream(transport) as stream:
        ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from ..exceptions import StreamClosed

__all__ = ["MemoryPeer", "MemoryTransport"]


class _Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.closed = False

    def put(self, item: str | bytes | None) -> None:
        if not self.closed:
            self.queue.put_nowait(item)
            self.closed = item is None

    async def get(self) -> str | bytes | None:
        item = await self.queue.get()
        if item is None:
            self.queue.put_nowait(None)  # closed stays closed
        return item


class MemoryTransport:
    """The app's end of an in-memory WebSocket.

    Attributes:
        peer: Twilio's end.
        close_code: the code the app closed with, or ``None`` while open.
    """

    def __init__(self) -> None:
        self._inbox = _Inbox()
        self.peer = MemoryPeer(self)
        self.close_code: int | None = None

    async def receive(self) -> str | bytes | None:
        """The next frame from the peer; ``None`` once either end closed."""
        return await self._inbox.get()

    async def send(self, text: str) -> None:
        """Hand a text frame to the peer.

        Raises:
            StreamClosed: either end has closed.
        """
        if self.close_code is not None or self.peer.dropped:
            raise StreamClosed("the in-memory WebSocket is closed")
        self.peer._inbox.put(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close from the app's side (idempotent)."""
        if self.close_code is None:
            self.close_code = code
            self._inbox.put(None)
            self.peer._inbox.put(None)


class MemoryPeer:
    """Twilio's end of a :class:`MemoryTransport`."""

    def __init__(self, transport: MemoryTransport) -> None:
        self._transport = transport
        self._inbox = _Inbox()
        self.dropped = False

    def send(self, frame: str | bytes) -> None:
        """Send the app a frame (text as ``str``, binary as ``bytes``)."""
        self._transport._inbox.put(frame)

    def send_all(self, frames: Iterable[str | bytes]) -> None:
        """Send the app several frames, in order."""
        for frame in frames:
            self.send(frame)

    async def receive(self) -> str | None:
        """The next text frame from the app; ``None`` once closed."""
        item = await self._inbox.get()
        assert not isinstance(item, bytes)
        return item

    def received(self) -> list[str]:
        """Every frame the app sent that has not been received yet, without waiting."""
        frames = []
        while not self._inbox.queue.empty():
            item = self._inbox.queue.get_nowait()
            if item is None:
                self._inbox.queue.put_nowait(None)
                break
            assert isinstance(item, str)
            frames.append(item)
        return frames

    def drop(self) -> None:
        """The socket drops (no close handshake): both ends see it closed."""
        self.dropped = True
        self._transport._inbox.put(None)
        self._inbox.put(None)

    @property
    def closed(self) -> bool:
        """Whether the app closed its end."""
        return self._transport.close_code is not None
