"""The WebSocket as the session sees it: the adapter interface, close codes, close reasons.

:class:`Transport` is what an adapter (:mod:`mediastreams.adapters`) wraps a library's
WebSocket in, and :class:`PushTransport` what an adapter of a callback library (picows) can
offer besides, so that frames go from the socket to the app with no task between;
:func:`close_reason` is how a failure is told to the peer. They are also importable from
:mod:`mediastreams.session`, where they are documented.

Part of :mod:`mediastreams.session`: what that module exports is public, the rest of this
module may change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

__all__ = [
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_TOO_BIG",
    "MAX_CLOSE_REASON_BYTES",
    "PushTransport",
    "Receiver",
    "Transport",
    "close_reason",
    "close_transport",
    "push_transport",
]

logger = logging.getLogger("mediastreams.session")

# RFC 6455 section 7.4.1 (https://www.rfc-editor.org/rfc/rfc6455#section-7.4.1).
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # a message that violates policy (no `start` in time, a refused token)
CLOSE_TOO_BIG = 1009  # a message too big to process
CLOSE_INTERNAL_ERROR = 1011
"""An unexpected condition: the app or the session failed, or the peer went silent or stopped
reading (python-websockets closes a connection whose pings go unanswered with 1011 too)."""

MAX_CLOSE_REASON_BYTES = 123
"""RFC 6455 section 5.5: a control frame's payload is at most 125 bytes, 2 of them the code."""


class Transport(Protocol):
    """What the session needs from a WebSocket: the adapter interface.

    Adapters in :mod:`mediastreams.adapters` wrap Starlette, ``websockets``, aiohttp and
    picows connections in this shape; :class:`~mediastreams.adapters.memory.MemoryTransport`
    is an in-memory one for tests.
    """

    async def receive(self) -> str | bytes | None:
        """The next frame (``str`` for text, ``bytes`` for binary), ``None`` once closed."""
        ...

    async def send(self, text: str) -> None:
        """Send one text frame. Raises :class:`StreamClosed` when the socket is gone."""
        ...

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close the socket; safe to call more than once or after the peer closed."""
        ...


Receiver = Callable[[str | bytes | None], None]
"""Takes each frame a :class:`PushTransport` pushes (``None`` once the socket closed)."""


class PushTransport(Transport, Protocol):
    """A :class:`Transport` that can also hand frames over as they arrive and write at once.

    Libraries built on callbacks (picows) call the adapter for each frame and write without
    waiting; through these two methods the session reads and writes in those callbacks, with
    no task woken per frame. The session still reads with :meth:`Transport.receive` until
    Twilio's ``start``, and waits in :meth:`Transport.send` while the peer reads too slowly.
    """

    def set_receiver(self, receiver: Receiver | None) -> None:
        """From now on, push each frame to ``receiver``, in order, from the library's callback.

        Frames already received and not yet read go first, before this returns; ``None`` as
        the frame means the socket closed (pushed once). ``receive()`` is not called after
        this. ``None`` as the receiver stops the pushing.
        """
        ...

    def send_now(self, data: bytes) -> bool:
        """Write one text frame, given as its UTF-8 bytes, if the socket can take it now.

        Returns:
            ``True`` when written; ``False``, having written nothing, while ``send()`` would
            wait for the peer to read.

        Raises:
            StreamClosed: the socket is gone.
        """
        ...


def push_transport(transport: Transport) -> PushTransport | None:
    """``transport`` if its class implements :class:`PushTransport`, else ``None``.

    The class is asked, not the object: a wrapper that forwards unknown attributes to the
    transport it wraps (to count frames, say) must see every frame, so it is read from.
    """
    kind = type(transport)
    if callable(getattr(kind, "set_receiver", None)) and callable(getattr(kind, "send_now", None)):
        return transport  # type: ignore[return-value]
    return None


def close_reason(error: BaseException) -> str:
    """The close reason for a failure: ``"RuntimeError: boom"``, cut to fit a close frame.

    The reason goes to the peer, so it carries the exception's type and message only; the
    traceback stays in the log. It is cut at a character boundary to at most
    :data:`MAX_CLOSE_REASON_BYTES` bytes of UTF-8, ending with ``"..."`` when cut.
    """
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    data = text.encode("utf-8", "replace")
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return data.decode("utf-8")
    return data[: MAX_CLOSE_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


async def close_transport(
    transport: Transport, code: int, reason: str, timeout_s: float, log_extra: Mapping[str, str]
) -> None:
    """Close ``transport``, waiting at most ``timeout_s``; never raises.

    The I/O boundary: the stream has ended either way. A close that times out or fails is
    logged (on ``mediastreams.session``), and the socket is left to the server to drop.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await transport.close(code, reason)
    except TimeoutError:
        logger.warning(
            "the close handshake took over %g s; left to the server", timeout_s, extra=log_extra
        )
    except Exception:
        logger.exception("closing the WebSocket failed", extra=log_extra)
