"""The session over picows, the fastest WebSocket server measured (the ``picows`` extra).

picows calls a listener per connection instead of offering a coroutine to await frames;
:class:`PicowsTransport` is that listener. It is a
:class:`~mediastreams.websocket.PushTransport`: once the stream has started, each frame goes
from picows' callback straight into the session, and the session's frames straight to
picows' send, with no task between (before that, and for code that reads it as a plain
:class:`~mediastreams.websocket.Transport`, it queues frames for ``receive()``). picows
answers only GET requests, so a server on it answers a webhook configured as HTTP GET.

Example::

    from picows import ws_create_server
    from mediastreams.adapters.picows import PicowsTransport

    def listener_factory(request):
        return PicowsTransport(on_connected=lambda transport: spawn(run(transport)))
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from ..connections import peer_of
from ..exceptions import StreamClosed
from ..limits import DEFAULT_LIMITS, Limits
from ..websocket import Receiver

__all__ = ["PicowsTransport"]

_TEXT = WSMsgType.TEXT

logger = logging.getLogger("mediastreams.adapters.picows")


class PicowsTransport(WSListener):
    """A picows connection as a :class:`~mediastreams.session.Transport`.

    picows hands over frames as they arrive and writes at once, so both directions are
    bounded here, by ``limits``:

    - inbound, while frames are queued for ``receive()`` (they are pushed to the session
      once it started, and its own queues are bounded by the same limits): past
      ``max_queued_frames`` frames or ``max_queued_bytes`` bytes waiting for
      the session, the socket stops being read (TCP backpressure, as python-websockets does
      past ``max_queue``) until half of it is taken. Dropping frames instead would lose a
      ``stop`` or a mark echo; a peer that sends faster than the app reads is slowed down,
      and Twilio drops its own audio when the app falls behind
      (https://www.twilio.com/docs/api/errors/31930).
    - outbound: past ``max_outbound_bytes`` unwritten, :meth:`send` waits until the peer
      reads; the session ends the stream if it waits over ``send_timeout_s``.

    Args:
        on_connected: called with this transport once the upgrade is done; start the
            session there.
        limits: the bounds (``max_queued_frames``, ``max_queued_bytes``,
            ``max_outbound_bytes``); give the session the same.
    """

    def __init__(
        self,
        on_connected: Callable[[PicowsTransport], Any] | None = None,
        *,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__()
        self._on_connected = on_connected
        self._limits = limits
        self._transport: WSTransport | None = None
        self._frames: deque[str | bytes | None] = deque()
        self._receiver: Receiver | None = None
        self._queued_bytes = 0
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Event | None = None  # set while the write buffer has room
        self._closed = False
        self.peer = "?"
        """``host:port`` of the far end, once connected (for log lines)."""

    # --- picows callbacks ---------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._transport = transport
        self.peer = peer_of(transport.underlying_transport)
        self._writable = asyncio.Event()
        self._writable.set()
        # pause_writing() comes once this much is unwritten, resume_writing() below a quarter.
        transport.underlying_transport.set_write_buffer_limits(high=self._limits.max_outbound_bytes)
        if self._on_connected is not None:
            self._on_connected(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == _TEXT:
            try:
                text = frame.get_payload_as_utf8_text()
            except UnicodeDecodeError:
                # RFC 6455 7.4.1: 1007, data inconsistent with the message type; the other
                # backends close the same way.
                logger.warning(
                    "closed the WebSocket from %s with 1007: a text frame is not UTF-8", self.peer
                )
                transport.send_close(WSCloseCode.INVALID_TEXT, b"text frame is not UTF-8")
                transport.disconnect()
                return
            receiver = self._receiver
            if receiver is not None:
                receiver(text)
            else:
                self._put(text)
        elif kind == WSMsgType.BINARY:
            self._put(frame.get_payload_as_bytes())
        elif kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._closed = True
        self._put(None)
        if self._writable is not None:
            self._writable.set()  # a send waiting for room finds the socket closed

    def pause_writing(self) -> None:
        if self._writable is not None:
            self._writable.clear()

    def resume_writing(self) -> None:
        if self._writable is not None:
            self._writable.set()

    def _put(self, item: str | bytes | None) -> None:
        if self._receiver is not None:
            self._push(item)
            return
        self._frames.append(item)
        if item is not None:
            self._queued_bytes += len(item)
            if not self._reading_paused and self._over(1):
                self._pause_reading(True)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _over(self, share: float) -> bool:
        limits = self._limits
        return (
            len(self._frames) >= limits.max_queued_frames * share
            or self._queued_bytes >= limits.max_queued_bytes * share
        )

    def _pause_reading(self, pause: bool) -> None:
        if self._transport is None or self._closed:
            return
        self._reading_paused = pause
        underlying = self._transport.underlying_transport
        if pause:
            underlying.pause_reading()
        else:
            underlying.resume_reading()

    def _push(self, item: str | bytes | None) -> None:
        receiver = self._receiver
        assert receiver is not None
        if item is None:
            self._receiver = None  # the end is pushed once
        receiver(item)

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
            return None
        self._queued_bytes -= len(item)
        if self._reading_paused and not self._over(0.5):
            self._pause_reading(False)
        return item

    def set_receiver(self, receiver: Receiver | None) -> None:
        """Push each frame to ``receiver`` from picows' callback (see
        :class:`~mediastreams.websocket.PushTransport`); the frames queued go first."""
        self._receiver = receiver
        while receiver is not None and self._receiver is receiver and self._frames:
            item = self._frames.popleft()
            if item is not None:
                self._queued_bytes -= len(item)
            self._push(item)
        if self._reading_paused:
            self._pause_reading(False)

    def send_now(self, data: bytes) -> bool:
        """Send a text frame's bytes, unless ``max_outbound_bytes`` are still unwritten.

        Raises:
            StreamClosed: the socket is gone.
        """
        if self._closed or self._transport is None:
            raise StreamClosed("the WebSocket is closed")
        writable = self._writable
        if writable is not None and not writable.is_set():
            return False
        self._transport.send(_TEXT, data)
        return True

    async def send(self, text: str) -> None:
        """Send a text frame; waits while ``max_outbound_bytes`` are still unwritten.

        Raises:
            StreamClosed: the socket is gone.
        """
        if self._writable is not None and not self._writable.is_set():
            await self._writable.wait()
        if self._closed or self._transport is None:
            raise StreamClosed("the WebSocket is closed")
        self._transport.send(WSMsgType.TEXT, text.encode())

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket (nothing happens if it is already closed)."""
        if self._closed or self._transport is None:
            return
        self._closed = True
        self._transport.send_close(WSCloseCode(code), reason.encode())
        # A peer that stopped reading would hold a graceful close (a flush first) forever.
        stuck = self._writable is not None and not self._writable.is_set()
        self._transport.disconnect(graceful=not stuck)
        self._put(None)
