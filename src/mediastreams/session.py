"""The asyncio session an app uses on one Media Stream: events in, paced audio out.

A :class:`MediaStream` runs over any :class:`Transport` (a WebSocket seen through an adapter
from :mod:`mediastreams.adapters`) and drives :class:`~mediastreams.protocol.AppProtocol`::

    async with MediaStream(transport) as stream:  # waits for `connected` and `start`
        greeting = stream.play("hello.wav")       # returns at once
        async for event in stream:                # Media, DTMF, Mark, Stop, UnknownMessage
            if isinstance(event, DTMF):
                stream.clear()                    # barge-in: the greeting stops now
        print(greeting.outcome, greeting.played_ms)

What "played" means and how audio is paced: see :mod:`mediastreams.pacing`.

The I/O boundary is here, in the reader and writer tasks: a frame Twilio's side should not
have sent is logged (once per kind and stream, as Twilio logs 31951 once) and ignored; a frame
over ``max_frame_bytes``, a lost socket, a silent peer, a peer that does not read, and any
exception in a task of the session end the stream. Every bound comes from one
:class:`~mediastreams.limits.Limits`. Nothing is left running after the end: every play and
mark handle resolves, every iterator finishes, every task is awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import warnings
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine
from pathlib import PurePath
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from .diagnostics import local_violation
from .exceptions import (
    LocalProtocolError,
    ProtocolError,
    StreamClosed,
    StreamTimeout,
)
from .limits import DEFAULT_LIMITS, Limits
from .messages import DTMF, Mark, Media, Start, Stop, TwilioMessage, UnknownMessage
from .pacing import (
    BYTES_PER_MS,
    DEFAULT_FRAME_MS,
    DEFAULT_LEAD_MS,
    DEFAULT_MARK_INTERVAL_MS,
    MARK_PREFIX,
    MarkHandle,
    Outcome,
    Pacer,
    PlayHandle,
    _Play,
)
from .protocol import STREAMING, AppProtocol

if TYPE_CHECKING:
    from .audio import MulawDecoder

__all__ = [
    "CLOSE_INTERNAL_ERROR",
    "DEFAULT_FRAME_MS",
    "DEFAULT_LEAD_MS",
    "DEFAULT_MARK_INTERVAL_MS",
    "DEFAULT_START_TIMEOUT_MS",
    "MAX_CLOSE_REASON_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_GAP_FILL_MS",
    "AudioInput",
    "Event",
    "MarkHandle",
    "MediaStream",
    "Outcome",
    "Pacer",
    "PlayHandle",
    "Transport",
    "close_reason",
]

logger = logging.getLogger("mediastreams.session")

SILENCE = b"\xff"  # mu-law silence is 0xFF, not 0x00

DEFAULT_START_TIMEOUT_MS = round(DEFAULT_LIMITS.start_timeout_s * 1000)
"""The default of ``Limits.start_timeout_s``, in milliseconds."""
MAX_FRAME_BYTES = DEFAULT_LIMITS.max_frame_bytes
"""The default of ``Limits.max_frame_bytes``: Twilio's largest frame (``start``) is well under
2 KiB."""

MAX_GAP_FILL_MS = 60_000
"""A gap in inbound timestamps is filled with at most this much silence."""

Event: TypeAlias = Media | DTMF | Mark | Stop | UnknownMessage
"""What ``async for event in stream`` yields."""

# RFC 6455 section 7.4.1 (https://www.rfc-editor.org/rfc/rfc6455#section-7.4.1).
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # a message that violates policy (no `start` in time, a refused token)
CLOSE_TOO_BIG = 1009  # a message too big to process
CLOSE_INTERNAL_ERROR = 1011
"""An unexpected condition: the app or the session failed, or the peer went silent or stopped
reading (python-websockets closes a connection whose pings go unanswered with 1011 too)."""

MAX_CLOSE_REASON_BYTES = 123
"""RFC 6455 section 5.5: a control frame's payload is at most 125 bytes, 2 of them the code."""

_DEPRECATED_OPTIONS = {
    "start_timeout_ms": ("start_timeout_s", 1 / 1000),
    "max_frame_bytes": ("max_frame_bytes", 1),
    "max_queued_media": ("max_queued_frames", 1),
}


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


# --- event fan-out ---------------------------------------------------------------------------


class _EventQueue:
    """One consumer's events, bounded in count and bytes; the oldest media goes first.

    Media and other events wait in two queues, each item with its arrival number, so taking
    the next event and dropping the oldest media are both O(1) while the order holds.
    """

    def __init__(self, accepts: Callable[[Event], bool], limits: Limits) -> None:
        self.accepts = accepts
        self._max_events = limits.max_queued_frames
        self._max_bytes = limits.max_queued_bytes
        self._media: deque[tuple[int, Event, int]] = deque()
        self._others: deque[tuple[int, Event, int]] = deque()
        self._count = itertools.count()
        self._bytes = 0
        self._ended = False
        self._waiter: asyncio.Future[None] | None = None
        self.dropped_media = 0
        self.dropped_events = 0

    def push(self, event: Event, size: int) -> bool:
        """Queue an event that arrived as a ``size``-byte frame.

        Returns:
            Whether this was the first time the queue had to drop something.
        """
        if self._ended:
            return False
        dropped = self.dropped_media + self.dropped_events
        queue = self._media if type(event) is Media else self._others
        queue.append((next(self._count), event, size))
        self._bytes += size
        while len(self._media) + len(self._others) > self._max_events or (
            self._bytes > self._max_bytes and len(self._media) + len(self._others) > 1
        ):
            # A reader that falls behind loses old audio first and keeps every key press and
            # mark; only a backlog of nothing but control events (no Twilio sends that) loses
            # those too.
            if self._media:
                self._bytes -= self._media.popleft()[2]
                self.dropped_media += 1
            else:
                self._bytes -= self._others.popleft()[2]
                self.dropped_events += 1
        self._wake()
        return not dropped and self.dropped_media + self.dropped_events > 0

    def end(self) -> None:
        """No more events: the consumer gets what is queued, then the end."""
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Event | None:
        """The next event, or ``None`` at the end (and for every call after it)."""
        while not self._media and not self._others:
            if self._ended:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        media, others = self._media, self._others
        queue = media if not others or (media and media[0][0] < others[0][0]) else others
        _, event, size = queue.popleft()
        self._bytes -= size
        return event


# --- audio sources ---------------------------------------------------------------------------
# mediastreams.audio (numpy, soxr, miniaudio) is imported only when a play or audio() needs
# it, so a session that sends mu-law bytes never pays for it.

AudioInput: TypeAlias = Any
"""A path, bytes, a numpy array or an async iterable of chunks; see :meth:`MediaStream.play`."""


def _has_file_header(data: bytes) -> bool:
    from .diagnostics import container_format

    return bool(data) and container_format(data) is not None


def _describe_source(source: Any) -> str:
    if isinstance(source, str | PurePath):
        return str(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return f"{len(source)} bytes"
    if isinstance(source, AsyncIterable):
        return "a stream"
    return type(source).__name__


# --- the session -----------------------------------------------------------------------------


class MediaStream:
    """The app's side of one Media Stream, over a :class:`Transport`.

    Args:
        transport: the WebSocket, through an adapter.
        limits: every bound and deadline of the stream (frame size, inbound queues, the
            start, idle and send timeouts); see :class:`~mediastreams.limits.Limits`.
        frame_ms: outbound frame size (Twilio sends 20 ms frames; any size plays).
        lead_ms: how far sent audio may run ahead of what Twilio confirmed playing.
        mark_interval_ms: a mark goes out at least this often in a play, so ``played_ms``
            is exact to this interval.
        start_timeout_ms: deprecated; use ``limits=Limits(start_timeout_s=...)``.
        max_frame_bytes: deprecated; use ``limits=Limits(max_frame_bytes=...)``.
        max_queued_media: deprecated; use ``limits=Limits(max_queued_frames=...)``.

    Attributes:
        limits: the stream's :class:`~mediastreams.limits.Limits`.
        start: Twilio's ``start`` (SIDs, custom parameters, media format, tracks), once open.
        end_reason: why the stream ended: ``"stop"``, ``"closed"``, ``"dropped"``,
            ``"too-big"``, ``"timeout"`` (no ``start`` in time), ``"idle"`` (no frame after
            ``start`` for ``idle_timeout_s``), ``"send-timeout"`` (the peer did not read for
            ``send_timeout_s``) or ``"error"`` (a task of the session, or the app, raised);
            ``None`` while it runs.
        close_code: the WebSocket close code the stream ended with (1000, 1008, 1009 or
            1011); ``None`` while it runs.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        limits: Limits | None = None,
        frame_ms: int = DEFAULT_FRAME_MS,
        lead_ms: int = DEFAULT_LEAD_MS,
        mark_interval_ms: int = DEFAULT_MARK_INTERVAL_MS,
        start_timeout_ms: int | None = None,
        max_frame_bytes: int | None = None,
        max_queued_media: int | None = None,
    ) -> None:
        self.transport = transport
        self.limits = _with_deprecated(
            limits or DEFAULT_LIMITS,
            start_timeout_ms=start_timeout_ms,
            max_frame_bytes=max_frame_bytes,
            max_queued_media=max_queued_media,
        )
        self.protocol = AppProtocol()
        self.pacer = Pacer(frame_ms=frame_ms, lead_ms=lead_ms, mark_interval_ms=mark_interval_ms)
        self.end_reason: str | None = None
        self.close_code: int | None = None
        self._close_text = ""
        self._events = _EventQueue(lambda event: True, self.limits)
        self._queues: list[_EventQueue] = [self._events]
        self._play_ids = itertools.count(1)
        self._plays: list[PlayHandle] = []  # failed plays, until someone saw the error
        self._tasks: set[asyncio.Task[None]] = set()
        self._feeders: dict[PlayHandle, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._sending = False
        self._ended = asyncio.Event()
        self._closing: asyncio.Task[None] | None = None
        self._reported: set[str] = set()
        self._log_extra: dict[str, str] = {}
        # The watchdog's view of progress: frames in and out, counted, not timed, per frame.
        self._frames_in = 0
        self._frames_out = 0
        self._watchdog: asyncio.TimerHandle | None = None

    # --- opening and closing ------------------------------------------------------------------

    @property
    def start(self) -> Start:
        """Twilio's ``start`` message.

        Raises:
            LocalProtocolError: before :meth:`open` has returned.
        """
        start = self.protocol.start
        if start is None:
            self.protocol.stream_sid  # noqa: B018 -- raises the "too early" error
        assert start is not None
        return start

    @property
    def stream_sid(self) -> str:
        """The stream's SID (from ``start``)."""
        return self.start.stream_sid

    @property
    def call_sid(self) -> str:
        """The call's SID (from ``start``)."""
        return self.start.call_sid

    @property
    def custom_parameters(self) -> dict[str, str]:
        """What the TwiML's ``<Parameter>`` elements set."""
        return self.start.custom_parameters

    @property
    def ended(self) -> bool:
        """Whether the stream has ended."""
        return self.end_reason is not None

    async def open(self) -> MediaStream:
        """Wait for ``connected`` and ``start``, then run the stream.

        Returns:
            The stream itself.

        Raises:
            StreamTimeout: no ``start`` within ``limits.start_timeout_s`` (the socket is
                closed with 1008).
            StreamClosed: the socket closed, sent an oversized frame, or reading it failed
                before ``start``.
        """
        try:
            async with asyncio.timeout(self.limits.start_timeout_s):
                while self.protocol.state is not STREAMING:
                    await self._receive_opening()
        except TimeoutError:
            await self._abort("timeout", CLOSE_POLICY, "no start frame in time")
            raise StreamTimeout(
                f"no start frame within {self.limits.start_timeout_s:g} s; is this a Twilio "
                "<Connect><Stream> WebSocket?"
            ) from None
        except (StreamClosed, asyncio.CancelledError):
            raise
        except Exception as error:
            self._crash(error)
            await self._start_closing()
            raise StreamClosed(f"reading the stream failed before start: {error!r}") from error
        start = self.start
        self._log_extra = {"stream_sid": start.stream_sid, "call_sid": start.call_sid}
        logger.info(
            "stream started: stream %s, call %s",
            start.stream_sid,
            start.call_sid,
            extra=self._log_extra,
        )
        self._spawn(self._guard(self._read))
        self._spawn(self._guard(self._write))
        self._arm_watchdog(asyncio.get_running_loop().time())
        return self

    async def _receive_opening(self) -> None:
        data = await self.transport.receive()
        if data is None:
            await self._abort("dropped", CLOSE_NORMAL)
            raise StreamClosed("the WebSocket closed before Twilio's start frame")
        if len(data) > self.limits.max_frame_bytes:
            await self._abort("too-big", CLOSE_TOO_BIG)
            raise StreamClosed(
                f"a {len(data)}-byte frame before start; the limit is {self.limits.max_frame_bytes}"
            )
        self._receive(data)  # anything but connected/start is logged and ignored

    async def _abort(self, reason: str, code: int, text: str = "") -> None:
        self._end(reason, code, text)
        await self._start_closing()

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """End the stream from the app's side and close the socket.

        Every pending play resolves as ``ENDED``, iterators finish, and the session's tasks
        are awaited. A play that failed and that nobody awaited is logged here, as an error
        naming its source. Safe to call more than once, and after the stream ended by itself
        (the socket then keeps the close code it ended with).

        Args:
            code: the WebSocket close code (1000, or 1008 to refuse the stream).
            reason: the close reason (at most 123 bytes of UTF-8).
        """
        await self._close("closed", code, reason)

    async def fail(self, error: BaseException) -> None:
        """End the stream because the app failed: close code 1011, the error as the reason.

        The reason is :func:`close_reason` of the error (its type and message, never the
        traceback). This does not log the error: whoever caught it does, once. After the
        stream has ended by itself it only awaits the end, like :meth:`close`.
        """
        await self._close("error", CLOSE_INTERNAL_ERROR, close_reason(error))

    async def _close(self, reason: str, code: int, text: str) -> None:
        self._end(reason, code, text)
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)  # their done callbacks may not have run yet
        await self._start_closing()
        self._log_unseen_failures()

    def _start_closing(self) -> asyncio.Task[None]:
        """Close the socket with the code the stream ended with, once, in its own task.

        Its own task, so that cancelling the task that asked (a reader, a handler) does not
        cut the close handshake short; :meth:`close` awaits it.
        """
        if self._closing is None:
            loop = asyncio.get_running_loop()
            self._closing = loop.create_task(self._close_transport())
        return self._closing

    async def _close_transport(self) -> None:
        code = CLOSE_NORMAL if self.close_code is None else self.close_code
        try:
            async with asyncio.timeout(self.limits.close_timeout_s):
                await self.transport.close(code, self._close_text)
        except TimeoutError:
            logger.warning(
                "the close handshake took over %g s; left to the server",
                self.limits.close_timeout_s,
                extra=self._log_extra,
            )
        except Exception:
            # The I/O boundary: the stream has ended either way; say why the socket did not
            # close cleanly, and let the server drop it.
            logger.exception("closing the WebSocket failed", extra=self._log_extra)

    def _log_unseen_failures(self) -> None:
        for handle in self._plays:
            error = handle._unseen_error()
            if error is not None:
                logger.error(
                    "play %d (%s) failed and nothing awaited it: %s",
                    handle.id,
                    handle.source,
                    close_reason(error),
                    extra=self._log_extra,
                )
                handle._error_seen = True
        self._plays.clear()

    async def wait_closed(self) -> None:
        """Wait until the stream has ended, whoever ended it, and its socket is closed."""
        await self._ended.wait()
        assert self._closing is not None
        await asyncio.shield(self._closing)

    async def __aenter__(self) -> MediaStream:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # The error goes on to whoever called (a server logs it, once); the peer learns of it
        # from the 1011 close, as from any server whose handler crashed.
        if isinstance(exc, Exception):
            await self.fail(exc)
        else:
            await self.close()

    def _end(self, reason: str, code: int = CLOSE_NORMAL, text: str = "") -> None:
        if self.end_reason is not None:
            return
        self.end_reason = reason
        self.close_code = code
        self._close_text = text
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.protocol.close()
        self.pacer.end()
        for queue in self._queues:
            queue.end()
        for feeder in self._feeders.values():
            if feeder is not asyncio.current_task():
                feeder.cancel()  # a TTS source may never end by itself
        self._ended.set()
        self._wake.set()  # lets the writer see the end
        self._start_closing()
        if self._log_extra:
            dropped = self._events.dropped_media
            logger.info(
                "stream ended (%s)%s",
                reason,
                f"; {dropped} unread media frames dropped" if dropped else "",
                extra=self._log_extra,
            )

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- failures and deadlines ---------------------------------------------------------------

    async def _guard(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        # A task of the session that raises ends the stream; it never dies alone, leaving the
        # handler waiting on a stream nobody reads.
        try:
            await work()
        except Exception as error:
            self._crash(error)

    def _crash(self, error: BaseException) -> None:
        """Something raised where nothing should: log it, end the stream with 1011."""
        logger.error(
            "the stream failed: %s",
            close_reason(error),
            exc_info=error,
            extra=self._log_extra,
        )
        self._end("error", CLOSE_INTERNAL_ERROR, close_reason(error))
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()

    def _arm_watchdog(self, now: float) -> None:
        # One timer per stream, ticking four times per deadline: a frame costs a counter, not
        # a timer. A deadline fires between 1 and 1.5 times its length after the last frame.
        self._period = min(self.limits.idle_timeout_s, self.limits.send_timeout_s) / 4
        self._frames_in_seen, self._frames_out_seen = self._frames_in, self._frames_out
        self._last_in = self._last_out = now
        self._watchdog = asyncio.get_running_loop().call_at(now + self._period, self._watch)

    def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = self._watchdog.when() if self._watchdog is not None else now
        if now - due > self._period:
            # The loop itself was blocked: frames may be waiting unread. Judge from now on.
            self._last_in = self._last_out = now
        if self._frames_in != self._frames_in_seen:
            self._frames_in_seen, self._last_in = self._frames_in, now
        if not self._sending or self._frames_out != self._frames_out_seen:
            self._frames_out_seen, self._last_out = self._frames_out, now
        limits = self.limits
        if now - self._last_in >= limits.idle_timeout_s:
            # Twilio sends a media frame every 20 ms for the whole call
            # (https://www.twilio.com/docs/voice/media-streams/websocket-messages#media-message):
            # silence this long means the peer is gone.
            self._time_out("idle", f"no frame from the peer for {limits.idle_timeout_s:g} s")
        elif now - self._last_out >= limits.send_timeout_s:
            self._time_out("send-timeout", f"the peer read nothing for {limits.send_timeout_s:g} s")
        else:
            self._watchdog = loop.call_at(now + self._period, self._watch)

    def _time_out(self, reason: str, text: str) -> None:
        logger.warning("%s: ending the stream", text, extra=self._log_extra)
        self._end(reason, CLOSE_INTERNAL_ERROR, text)
        for task in self._tasks:
            task.cancel()  # the reader waits on a silent peer, a sender on a full buffer

    # --- receiving ----------------------------------------------------------------------------

    async def _read(self) -> None:
        # The I/O boundary for inbound frames: bad ones are logged and ignored, the end of the
        # socket (or a frame too big to be Twilio's) ends the stream.
        max_frame_bytes = self.limits.max_frame_bytes
        while self.end_reason is None:
            data = await self.transport.receive()
            self._frames_in += 1
            if data is None:
                self._end("dropped")
                break
            if len(data) > max_frame_bytes:
                self._report("too-big", f"a {len(data)}-byte frame (limit {max_frame_bytes})")
                self._end("too-big", CLOSE_TOO_BIG)
                break
            message = self._receive(data)
            if message is not None:
                self._dispatch(message, len(data))

    def _receive(self, data: str | bytes) -> TwilioMessage | None:
        try:
            if isinstance(data, bytes):
                self.protocol.receive_bytes(data)  # always raises: Twilio sends text only
            return self.protocol.receive_text(data)
        except ProtocolError as error:
            violation = error.violation
            self._report(violation.kind, violation.describe())
            return None

    def _report(self, kind: str, text: str) -> None:
        # Once per kind and stream, as Twilio logs its own 31950/31951 warnings. Kinds are a
        # fixed set of names, so this set stays small.
        if kind in self._reported:
            return
        self._reported.add(kind)
        logger.warning("ignored a frame from Twilio: %s", text, extra=self._log_extra)

    def _dispatch(self, message: TwilioMessage, size: int) -> None:
        kind = type(message)
        if kind is Mark:
            assert isinstance(message, Mark)
            if self.pacer.owns(message.name):
                self.pacer.on_echo(message.name)
                self._wake.set()  # room for more audio
                return
            self.pacer.on_user_echo(message.name)
        if kind is Stop:
            self._publish(message, size)  # type: ignore[arg-type]
            self._end("stop")
            return
        if kind is Media or kind is DTMF or kind is Mark or kind is UnknownMessage:
            self._publish(message, size)  # type: ignore[arg-type]

    def _publish(self, event: Event, size: int) -> None:
        for queue in self._queues:
            if queue.accepts(event) and queue.push(event, size):
                self._report_unread(queue)

    def _report_unread(self, queue: _EventQueue) -> None:
        what = "the stream's events" if queue is self._events else "an audio() or digits reader"
        logger.warning(
            "nothing reads %s: dropping the oldest media past %d frames or %d bytes",
            what,
            self.limits.max_queued_frames,
            self.limits.max_queued_bytes,
            extra=self._log_extra,
        )

    def _subscribe(self, accepts: Callable[[Event], bool]) -> _EventQueue:
        queue = _EventQueue(accepts, self.limits)
        if self.end_reason is not None:
            queue.end()
        self._queues.append(queue)
        return queue

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    async def events(self) -> AsyncIterator[Event]:
        """Every event from Twilio, in order: ``Media``, ``DTMF``, ``Mark`` (echoes of marks
        sent with :meth:`send_mark`), ``Stop`` (always last when Twilio sends it) and
        ``UnknownMessage``. Ends when the stream ends.

        Events are kept from the moment the stream opens, so none is missed before the first
        iteration; for a slow reader at most ``limits.max_queued_frames`` events and
        ``limits.max_queued_bytes`` bytes are kept, the oldest media dropped first.
        """
        while (event := await self._events.get()) is not None:
            yield event

    def audio(self, sample_rate: int = 8000) -> AsyncIterator[bytes]:
        """The caller's audio as 16-bit little-endian mono PCM at ``sample_rate``.

        A gap in the media timestamps is filled with silence (up to
        :data:`MAX_GAP_FILL_MS`), so speech recognition downstream keeps time with the call.
        The audio is kept from this call on (iterate the result: it buffers until read, within
        the stream's ``limits``, the oldest dropped first); the iterator ends when the stream
        ends.
        """
        from .audio import MulawDecoder

        decoder = MulawDecoder(sample_rate)
        queue = self._subscribe(lambda event: type(event) is Media)
        return self._pcm(decoder, queue)

    async def _pcm(self, decoder: MulawDecoder, queue: _EventQueue) -> AsyncIterator[bytes]:
        expected_ms: int | None = None
        try:
            while (event := await queue.get()) is not None:
                assert isinstance(event, Media)
                payload = event.payload
                if event.timestamp is not None:
                    if expected_ms is not None and event.timestamp > expected_ms:
                        gap_ms = min(event.timestamp - expected_ms, MAX_GAP_FILL_MS)
                        payload = SILENCE * (gap_ms * BYTES_PER_MS) + payload
                    expected_ms = event.timestamp + len(event.payload) // BYTES_PER_MS
                pcm = decoder.decode(payload)
                if pcm:
                    yield pcm
            tail = decoder.flush()
            if tail:
                yield tail
        finally:
            self._queues.remove(queue)

    async def collect_digits(
        self, count: int, *, timeout_ms: int | None = None, finish_on: str | None = None
    ) -> str:
        """Wait for the caller to press ``count`` keys and return them.

        Digits are counted from this call on. Returns early, with what was pressed, when
        ``timeout_ms`` passes, when a key in ``finish_on`` is pressed (it is not included) or
        when the stream ends.
        """
        queue = self._subscribe(lambda event: type(event) is DTMF)
        digits = ""
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if timeout_ms is None else timeout_ms / 1000):
                    while len(digits) < count and (event := await queue.get()) is not None:
                        assert isinstance(event, DTMF)
                        if finish_on and event.digit in finish_on:
                            break
                        digits += event.digit
        finally:
            self._queues.remove(queue)
        return digits

    # --- marks --------------------------------------------------------------------------------

    def send_mark(self, name: str) -> MarkHandle:
        """Queue a ``mark`` behind everything queued so far; await the handle for its echo.

        The mark goes out once the plays queued before it are sent, so its echo says the
        caller heard all of them (``PLAYED``), or that a ``clear`` discarded them
        (``INTERRUPTED``).

        Raises:
            LocalProtocolError: the name is empty or starts with ``"_ms:"`` (reserved for the
                session's own marks).
            StreamClosed: the stream has ended.
        """
        self._check_open()
        if not name or name.startswith(MARK_PREFIX):
            raise LocalProtocolError(
                local_violation(
                    "bad-mark",
                    f"mark names must be non-empty and not start with {MARK_PREFIX!r}",
                    "Pick another name.",
                )
            )
        handle = MarkHandle(name)
        self.pacer.add(handle)
        self._wake.set()
        return handle

    # --- playing ------------------------------------------------------------------------------

    def play(
        self,
        source: AudioInput,
        *,
        format: Any = None,
        sample_rate: int | None = None,
        max_backlog_ms: int | None = None,
    ) -> PlayHandle:
        """Queue audio behind earlier plays and return its handle at once.

        Args:
            source: what to play:

                - ``bytes`` with no file header (and no ``format``): headerless mu-law at
                  8000 Hz, sent as it is;
                - a path, or ``bytes`` of a WAV/MP3/FLAC/Ogg file: converted with
                  :func:`mediastreams.audio.to_mulaw`;
                - a numpy array of samples, with ``sample_rate``;
                - an async iterable of ``bytes`` chunks (a TTS stream): raw samples of
                  ``format``, or a stream starting with a WAV header, or mu-law/8000 when
                  ``format`` is ``None`` and there is no header. Chunks are converted and
                  sent as they arrive.
            format: a :class:`mediastreams.audio.AudioFormat` for raw samples.
            sample_rate: the sample rate of a numpy array.
            max_backlog_ms: for a live source (a relay, an echo): keep at most this much
                audio waiting to be sent and drop the oldest past it (counted in
                ``handle.dropped_ms``), so the caller hears the present rather than a delay
                that grows whenever playout falls behind. ``None`` (the default) keeps all.

        Returns:
            A :class:`PlayHandle`; ``await`` it for the outcome. A play that fails and that
            nothing awaits is logged as an error when the stream is closed.

        Raises:
            StreamClosed: the stream has ended.
            ValueError: ``max_backlog_ms`` is not positive.
        """
        self._check_open()
        if max_backlog_ms is not None and max_backlog_ms <= 0:
            raise ValueError(
                f"max_backlog_ms must be positive (or None to keep all), not {max_backlog_ms}"
            )
        handle = PlayHandle(next(self._play_ids), _describe_source(source))
        play = _Play(handle, max_backlog_ms)
        if isinstance(source, bytes | bytearray | memoryview) and format is None:
            data = bytes(source)
            if not _has_file_header(data):
                play.append(data)
                play.source_done = True
                self.pacer.add(play)
                self._wake.set()
                return handle
        self.pacer.add(play)
        feeder = self._spawn(self._feed(play, source, format, sample_rate))
        self._feeders[handle] = feeder
        feeder.add_done_callback(lambda _: self._feeders.pop(handle, None))
        return handle

    async def _feed(self, play: _Play, source: Any, format: Any, sample_rate: int | None) -> None:
        try:
            if isinstance(source, AsyncIterable):
                async for chunk in _mulaw_chunks(source, format):
                    if play.handle.done():
                        return  # interrupted: stop pulling from the source
                    play.append(chunk)
                    await self._flush()
            else:
                from .audio import to_mulaw

                # In a thread: decoding and resampling a long file takes a while.
                mulaw = await asyncio.to_thread(
                    to_mulaw, source, format=format, sample_rate=sample_rate
                )
                play.append(mulaw)
        except Exception as error:
            # Not swallowed: the error goes to whoever awaits the handle, or to the log when
            # the stream is closed and nothing did.
            play.handle._fail(error)
            self._plays.append(play.handle)
        finally:
            play.source_done = True
            self._wake.set()

    def clear(self) -> list[PlayHandle]:
        """Barge-in: send ``clear`` and interrupt every pending play.

        Twilio drops the audio it holds and echoes the pending marks; those echoes are not
        counted as played. Queued plays are not sent. Safe when nothing is playing (the
        ``clear`` still goes out, dropping any audio sent with the low-level protocol) and
        after the stream ended (it does nothing then).

        Returns:
            The plays interrupted, with ``played_ms`` as far as marks confirmed.
        """
        if self.end_reason is not None:
            return []
        self.protocol.send_clear()
        interrupted = self.pacer.clear()
        for handle in interrupted:
            feeder = self._feeders.get(handle)
            if feeder is not None and feeder is not asyncio.current_task():
                feeder.cancel()  # stop pulling from a TTS stream nobody will hear
        self._wake.set()
        return interrupted

    def _check_open(self) -> None:
        if self.end_reason is not None:
            raise StreamClosed(f"the stream has ended ({self.end_reason})")
        if self.protocol.state is not STREAMING:
            self.protocol.stream_sid  # noqa: B018 -- raises the "too early" error

    # --- sending ------------------------------------------------------------------------------

    async def _write(self) -> None:
        # Sends what synchronous calls (play, send_mark, clear, mark echoes) queued.
        while self.end_reason is None:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        """Send what the pacer allows now, from the calling task.

        One task sends at a time, and it loops until nothing is left, so frames leave in the
        order they were queued; another task finding it busy leaves its frames to it. A
        source feeding audio calls this directly, which saves a task switch per frame. A
        send that fails ends the stream, whichever task it ran in.
        """
        if self._sending:
            return
        self._sending = True
        try:
            while self.end_reason is None:
                self.pacer.pump(self.protocol)
                frames = self.protocol.data_to_send()
                if not frames:
                    break
                for frame in frames:
                    await self.transport.send(frame)
                    self._frames_out += 1
        except StreamClosed:
            self._end("dropped")  # the reader sees the socket gone and finishes
        except Exception as error:
            self._crash(error)
        finally:
            self._sending = False


def _with_deprecated(limits: Limits, **options: int | None) -> Limits:
    """``limits`` with the values of the deprecated keyword arguments that were given."""
    changes: dict[str, Any] = {}
    for option, value in options.items():
        if value is None:
            continue
        field, scale = _DEPRECATED_OPTIONS[option]
        warnings.warn(
            f"MediaStream({option}=...) is deprecated; pass limits=Limits({field}=...)",
            DeprecationWarning,
            stacklevel=3,
        )
        changes[field] = value * scale
    return dataclasses.replace(limits, **changes) if changes else limits


async def _mulaw_chunks(chunks: AsyncIterable[Any], format: Any) -> AsyncIterator[bytes]:
    """An async stream of chunks as mu-law/8000 chunks."""
    iterator = aiter(chunks)
    try:
        first = bytes(await anext(iterator))
    except StopAsyncIteration:
        return
    if format is None and not first.startswith(b"RIFF"):
        yield first  # mu-law already: passed through with no conversion layer
        async for chunk in iterator:
            yield bytes(chunk)
        return

    async def rest() -> AsyncIterator[bytes]:
        yield first
        async for chunk in iterator:
            yield bytes(chunk)

    from .audio import stream_to_mulaw

    async for chunk in stream_to_mulaw(rest(), format):
        yield chunk
