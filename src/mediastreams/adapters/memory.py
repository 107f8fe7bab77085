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

:class:`PushMemoryTransport` is the same pair with the app's end a
:class:`~mediastreams.websocket.PushTransport`, as picows' adapter is: what the peer sends
reaches the session in the peer's own call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from ..exceptions import StreamClosed
from ..websocket import Receiver

__all__ = ["MemoryPeer", "MemoryTransport", "PushMemoryTransport"]


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
            self._deliver(None)
            self.peer._inbox.put(None)

    def _deliver(self, item: str | bytes | None) -> None:
        self._inbox.put(item)


class PushMemoryTransport(MemoryTransport):
    """A :class:`MemoryTransport` that pushes frames to the session and writes at once.

    Attributes:
        writable: while ``False``, :meth:`send_now` writes nothing and :meth:`send` waits
            (a peer that does not read); set it back with :meth:`set_writable`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._receiver: Receiver | None = None
        self._pushed_end = False
        self._room = asyncio.Event()
        self._room.set()

    @property
    def writable(self) -> bool:
        return self._room.is_set()

    def set_writable(self, writable: bool) -> None:
        """Let the app's writes through, or hold them as a peer that stopped reading does."""
        if writable:
            self._room.set()
        else:
            self._room.clear()

    def set_receiver(self, receiver: Receiver | None) -> None:
        """Push frames to ``receiver`` from now on, those waiting first."""
        self._receiver = receiver
        queue = self._inbox.queue
        while receiver is not None and self._receiver is receiver and not queue.empty():
            self._push(queue.get_nowait())

    def send_now(self, data: bytes) -> bool:
        """Hand a text frame's bytes to the peer, unless it is not reading."""
        if self.close_code is not None or self.peer.dropped:
            raise StreamClosed("the in-memory WebSocket is closed")
        if not self._room.is_set():
            return False
        self.peer._inbox.put(data.decode())
        return True

    async def send(self, text: str) -> None:
        """Hand a text frame to the peer, once it reads."""
        await self._room.wait()
        await super().send(text)

    def _deliver(self, item: str | bytes | None) -> None:
        if self._receiver is None:
            self._inbox.put(item)
        else:
            self._push(item)

    def _push(self, item: str | bytes | None) -> None:
        if self._pushed_end or self._receiver is None:
            return
        self._pushed_end = item is None
        self._receiver(item)


class MemoryPeer:
    """Twilio's end of a :class:`MemoryTransport`."""

    def __init__(self, transport: MemoryTransport) -> None:
        self._transport = transport
        self._inbox = _Inbox()
        self.dropped = False

    def send(self, frame: str | bytes) -> None:
        """Send the app a frame (text as ``str``, binary as ``bytes``)."""
        self._transport._deliver(frame)

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
        self._transport._deliver(None)
        self._inbox.put(None)

    @property
    def closed(self) -> bool:
        """Whether the app closed its end."""
        return self._transport.close_code is not None
