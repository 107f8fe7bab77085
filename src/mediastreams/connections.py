"""Admission on a listening socket: every connection counted, bounded and timed, on any backend.

A server on a public address gets sockets from anyone. :class:`ConnectionGuard` sits between
asyncio's accept and a backend's own protocol (uvicorn's, websockets', picows') and gives all
three the same rules (``Limits``):

- at most ``max_connections`` open connections; past that a new one is answered
  ``HTTP 503`` at once and closed, with one log line a second at most, never a traceback per
  accept. The default leaves a quarter of the process's file limit free
  (:func:`max_connections_for`), so the accept loop does not run out of descriptors, which
  in asyncio logs a traceback per attempt;
- the HTTP phase of a connection (its request head, a webhook's body, everything before it
  becomes a WebSocket) gets ``header_timeout_s``, then the socket is dropped: a client that
  sends one byte a second (slowloris), or nothing at all, holds no descriptor for long.

It holds no framework import: each backend puts its protocol behind a
:class:`GuardedProtocol` (or :class:`GuardedBufferedProtocol`), or calls
:meth:`ConnectionGuard.admit` and :meth:`ConnectionGuard.release` from its own connection
class, and says when a request head that starts a WebSocket arrived
(:meth:`ConnectionGuard.request_received`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from asyncio import constants as asyncio_constants
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast

from .limits import Limits
from .security import loggable

__all__ = [
    "ConnectionGuard",
    "GuardedBufferedProtocol",
    "GuardedProtocol",
    "Throttle",
    "end_request_deadline",
    "max_connections_for",
    "peer_of",
]

logger = logging.getLogger("mediastreams.server")

#: Descriptors kept free below the file limit when ``Limits.max_connections`` is ``None``:
#: a quarter of the limit, and at least this many (stdio, the event loop, log files, the
#: handlers' own files and sockets).
MIN_FREE_DESCRIPTORS = 32

# A refused client gets its 503 and a moment to read it; closing at once, with its request
# still unread, would reset the socket before the answer reached it.
_LINGER_S = 1.0
_REFUSAL_BODY = b"server busy: too many connections, try again\n"
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n\r\n" + _REFUSAL_BODY
)
_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# After a failed accept() asyncio pauses the listener this long, with one timer per failed
# attempt; each timer touches the listening socket when it fires.
_ACCEPT_RETRY_S = asyncio_constants.ACCEPT_RETRY_DELAY + 0.1
# How often ConnectionGuard.released() looks again: it runs once, as a server stops.
_RELEASE_POLL_S = 0.01


def max_connections_for(limits: Limits) -> int:
    """The connection cap for ``limits``: its ``max_connections``, or one from the file limit.

    Unset, it is the soft ``RLIMIT_NOFILE`` less a quarter of it (and less
    :data:`MIN_FREE_DESCRIPTORS` at least): 768 under the common 1,024, 96 under 128.
    """
    if limits.max_connections is not None:
        return limits.max_connections
    try:
        import resource
    except ImportError:  # not on POSIX: assume the common default
        soft = 1024
    else:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft > 1 << 20:
            soft = 1 << 20
    return max(1, soft - max(MIN_FREE_DESCRIPTORS, soft // 4))


def peer_of(transport: asyncio.BaseTransport | None) -> str:
    """``host:port`` of the far end of a transport, for log lines (``?`` if unknown)."""
    address = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return loggable(f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}")
    return loggable(address) if address else "?"


class Throttle:
    """A log line that is written at most once per interval, however often it happens.

    The first occurrence is logged at once; later ones within the interval are counted and
    reported in one line when the interval ends.

    Args:
        log: writes one line, given the message and how many occurrences it stands for.
        interval_s: the least time between two lines.
        clock: seconds from an arbitrary origin.
    """

    def __init__(
        self,
        log: Callable[[str, int], None],
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._interval_s = interval_s
        self._clock = clock
        self._last_at = -float("inf")
        self._suppressed = 0
        self._message = ""
        self._flush: asyncio.TimerHandle | None = None

    def __call__(self, message: str) -> None:
        """Note one occurrence, described by ``message`` (the latest description is used)."""
        now = self._clock()
        self._message = message
        if now - self._last_at >= self._interval_s and self._flush is None:
            # Occurrences counted without a loop to report them are told now.
            count, self._suppressed = self._suppressed + 1, 0
            self._last_at = now
            self._log(message, count)
            return
        self._suppressed += 1
        if self._flush is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop: reported with the next line instead
                return
            delay = max(0.0, self._last_at + self._interval_s - now)
            self._flush = loop.call_later(delay, self._emit_suppressed)

    def _emit_suppressed(self) -> None:
        self._flush = None
        if self._suppressed:
            count, self._suppressed = self._suppressed, 0
            self._last_at = self._clock()
            self._log(self._message, count)


class ConnectionGuard:
    """Counts, caps and times the connections of one listening socket.

    Args:
        limits: ``max_connections`` and ``header_timeout_s`` are used.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.max_connections = max_connections_for(limits)
        # A refused client lingers up to _LINGER_S; past this many lingering, refusals are
        # cut at once (no 503), so a flood cannot turn refusals into held descriptors.
        self.max_lingering = max(4, min(64, self.max_connections // 8))
        # Each open connection, with the deadline of its HTTP phase (None once a WebSocket).
        self._open: dict[asyncio.BaseTransport, asyncio.TimerHandle | None] = {}
        self._lingering = 0
        #: The connection whose bytes a wrapped buffered protocol is handing to the backend
        #: right now, during its HTTP phase: picows calls its request router from there,
        #: without telling which connection the request came on.
        self.reading: asyncio.BaseTransport | None = None
        self._refused = Throttle(self._log_refused)
        self._timed_out = Throttle(self._log_timed_out)
        self._accept_failed = Throttle(self._log_accept_failed)
        self._accept_failed_at = -float("inf")

    @property
    def open_connections(self) -> int:
        """How many connections are open (HTTP and WebSocket)."""
        return len(self._open)

    # --- what backends call ---------------------------------------------------------------

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """Count a new connection and start its header deadline, or refuse it.

        A refused connection is taken over: it is answered ``503`` and closed, and the
        backend must not touch it again.

        Returns:
            Whether the backend may go on with the connection.
        """
        if transport in self._open:
            return True
        if len(self._open) >= self.max_connections:
            self._refuse(transport)
            return False
        loop = asyncio.get_running_loop()
        self._open[transport] = loop.call_later(
            self.limits.header_timeout_s, self._expire, transport
        )
        return True

    def request_received(self, transport: asyncio.BaseTransport | None) -> None:
        """The request head arrived and the connection becomes a WebSocket: no header deadline.

        Call it where the backend starts the WebSocket handshake; from there the backend's
        own handshake timeout applies. A plain HTTP request keeps its deadline until it ends.
        """
        deadline = self._open.get(transport) if transport is not None else None
        if deadline is not None:
            deadline.cancel()
            self._open[transport] = None  # type: ignore[index]

    def release(self, transport: asyncio.BaseTransport | None) -> None:
        """The connection is gone: its slot is free."""
        deadline = self._open.pop(transport, None) if transport is not None else None
        if deadline is not None:
            deadline.cancel()

    async def released(
        self, transports: Iterable[asyncio.BaseTransport], max_wait_s: float
    ) -> None:
        """Wait (at most ``max_wait_s``) until each of ``transports`` is gone (released).

        A backend whose close returns before the close frame is written (picows flushes in
        the background) waits here before it stops, so that a stream that ended a moment
        before the server stops still sends its close frame.
        """
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + max_wait_s
        waiting = [transport for transport in transports if transport in self._open]
        while waiting and loop.time() < give_up_at:
            await asyncio.sleep(_RELEASE_POLL_S)
            waiting = [transport for transport in waiting if transport in self._open]

    @contextmanager
    def quiet_accept_errors(self) -> Iterator[None]:
        """While inside, out-of-descriptor errors of asyncio's accept loop are one line a second.

        asyncio logs each failed ``accept()`` with a traceback, many times a second while the
        process is out of descriptors. Other errors go to the loop's previous handler.
        """
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            error = context.get("exception")
            if (
                isinstance(error, OSError)
                and error.errno in _OUT_OF_DESCRIPTORS
                and "socket" in context
            ):
                self._accept_failed_at = loop.time()
                self._accept_failed(error.strerror or str(error))
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)
        try:
            yield
        finally:
            loop.set_exception_handler(previous)

    async def settle(self, max_wait_s: float = 5.0) -> None:
        """Before the listening socket closes: wait out asyncio's accept retries, if any.

        Each failed ``accept()`` leaves a timer that touches the listening socket a second
        later; firing after the socket closed, each would log a traceback. This waits (at
        most ``max_wait_s``) until the last failure is that old; it returns at once if no
        accept failed lately.
        """
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + max_wait_s
        while True:
            wait_s = min(self._accept_failed_at + _ACCEPT_RETRY_S, give_up_at) - loop.time()
            if wait_s <= 0:
                return
            await asyncio.sleep(wait_s)

    # --- inside -----------------------------------------------------------------------------

    def _refuse(self, transport: asyncio.BaseTransport) -> None:
        self._refused(f"{len(self._open)} open")
        # The refusal takes the connection over, so the backend never hears of it.
        refusal = _Refusal(self, answer=self._lingering < self.max_lingering)
        transport.set_protocol(refusal)
        refusal.connection_made(transport)

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        if self._open.get(transport) is None:
            return
        self._open[transport] = None
        self._timed_out(peer_of(transport))
        transport.abort()  # type: ignore[attr-defined]

    def _log_refused(self, message: str, count: int) -> None:
        logger.warning(
            "refused %d connection%s with HTTP 503: %s, the most this server takes "
            "(--max-connections, Limits.max_connections: %d)",
            count,
            "" if count == 1 else "s",
            message,
            self.max_connections,
        )

    def _log_timed_out(self, message: str, count: int) -> None:
        more = f" and {count - 1} more" if count > 1 else ""
        logger.info(
            "closed the connection from %s%s: no complete request within %g s "
            "(Limits.header_timeout_s)",
            message,
            more,
            self.limits.header_timeout_s,
        )

    def _log_accept_failed(self, message: str, count: int) -> None:
        logger.warning(
            "accept() failed %d time%s: %s; lower --max-connections (now %d) or raise the "
            "file limit (ulimit -n)",
            count,
            "" if count == 1 else "s",
            message,
            self.max_connections,
        )


# The connection whose bytes a GuardedProtocol(track_requests=True) is handing to its backend:
# tasks the backend starts from there (an ASGI app's) inherit it.
_READING: ContextVar[tuple[ConnectionGuard, asyncio.BaseTransport] | None] = ContextVar(
    "mediastreams_reading", default=None
)


def end_request_deadline() -> None:
    """The request this task answers is fully read: its header deadline no longer applies.

    An answer that takes long by design (a play waited for) would otherwise be cut at
    ``header_timeout_s``. Does nothing outside a guarded connection.
    """
    reading = _READING.get()
    if reading is not None:
        guard, transport = reading
        guard.request_received(transport)


class _Guarded:
    """What both guarded protocols share: the connection's start and end pass the guard.

    The backend's end-of-file and flow-control methods are bound once, so the event loop
    calls them with no hop through this object.
    """

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol | asyncio.BufferedProtocol):
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.BaseTransport | None = None
        self.eof_received = inner.eof_received
        self.pause_writing = inner.pause_writing
        self.resume_writing = inner.resume_writing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._guard.admit(transport):
            self._transport = transport
            self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.release(self._transport)
        if self._transport is not None:
            self._inner.connection_lost(exc)


class GuardedProtocol(_Guarded, asyncio.Protocol):
    """A backend's protocol behind a guard, which admits, times and releases the connection.

    Only the connection's start and end pass through here; the backend's own methods take
    the bytes directly.

    Args:
        guard: the listening socket's guard.
        inner: the backend's protocol for this connection.
        track_requests: let the tasks the backend starts while reading call
            :func:`end_request_deadline` (an HTTP protocol; costs a hop per read).
    """

    def __init__(
        self, guard: ConnectionGuard, inner: asyncio.Protocol, *, track_requests: bool = False
    ) -> None:
        super().__init__(guard, inner)
        self._inner: asyncio.Protocol = inner
        # Bound once: the event loop calls the backend with no hop through this object.
        if not track_requests:
            self.data_received = inner.data_received  # type: ignore[method-assign]

    def data_received(self, data: bytes) -> None:
        token = _READING.set((self._guard, self._transport) if self._transport else None)
        try:
            self._inner.data_received(data)
        finally:
            _READING.reset(token)


class GuardedBufferedProtocol(_Guarded, asyncio.BufferedProtocol):
    """:class:`GuardedProtocol` for a protocol that reads into its own buffer (picows).

    While the request head comes in, it tells the guard which connection is being read
    (:attr:`ConnectionGuard.reading`).
    """

    def __init__(self, guard: ConnectionGuard, inner: asyncio.BufferedProtocol) -> None:
        super().__init__(guard, inner)
        self._inner: asyncio.BufferedProtocol = inner
        self.get_buffer = inner.get_buffer  # type: ignore[method-assign]

    def buffer_updated(self, nbytes: int) -> None:
        guard = self._guard
        guard.reading = self._transport
        try:
            self._inner.buffer_updated(nbytes)
        finally:
            guard.reading = None
        if guard._open.get(self._transport) is None:  # type: ignore[arg-type]
            # The head is in (or the connection is gone): bind the backend directly.
            self.buffer_updated = self._inner.buffer_updated  # type: ignore[method-assign]


class _Refusal(asyncio.Protocol):
    """Answers 503 and closes once the client has read it (or after a moment); or, with
    ``answer=False``, drops the connection at once."""

    def __init__(self, guard: ConnectionGuard, *, answer: bool) -> None:
        self._guard = guard
        self._answer = answer
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._received = 0
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        if not self._answer:
            transport.abort()
            return
        self._guard._lingering += 1
        transport.write(_REFUSAL)
        try:
            transport.write_eof()
        except OSError:  # the client has already gone (reset)
            transport.abort()
        self._timer = asyncio.get_running_loop().call_later(_LINGER_S, transport.abort)

    def data_received(self, data: bytes) -> None:
        # The request is read and dropped, so closing sends FIN, not a reset that could
        # discard the 503 on its way.
        self._received += len(data)
        self._tail = (self._tail + data)[-(len(data) + 3) :]
        if b"\r\n\r\n" in self._tail or self._received > 16 * 1024:
            assert self._transport is not None
            self._transport.close()

    def eof_received(self) -> bool:
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._guard._lingering -= 1
            self._timer.cancel()
