"""The asyncio session an app uses on one Media Stream: events in, paced audio out.

A :class:`MediaStream` runs over any :class:`Transport` (a WebSocket seen through an adapter
from :mod:`mediastreams.adapters`) and drives :class:`~mediastreams.protocol.AppProtocol`::

    async with MediaStream(transport) as stream:  # waits for `connected` and `start`
        greeting = stream.play("hello.wav")       # returns at once
        async for event in stream:                # Media, DTMF, Mark, Stop, UnknownMessage
            if isinstance(event, DTMF):
                stream.clear()                    # barge-in: the greeting stops now
        print(greeting.outcome, greeting.played_ms)

What "played" means: Twilio echoes a ``mark`` once the audio sent before it has played, and
also when a ``clear`` discards that audio
(https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-mark-message).
The session places its own marks in every play at least each ``mark_interval_ms``, remembers
which were pending when it sent a ``clear``, and counts as played only the echoes of marks
that no ``clear`` overtook. ``played_ms`` is therefore exact to the mark interval.

Pacing: audio goes out in frames of ``frame_ms`` and at most ``lead_ms`` ahead of what the
echoes confirm; an echo frees room for the next frames, so the send rate follows Twilio's
playout clock with no sleep per frame and no burst of a whole file.

The I/O boundary is here, in the reader and writer tasks: a frame Twilio's side should not
have sent is logged (once per kind and stream, as Twilio logs 31951 once) and ignored; a frame
over ``max_frame_bytes`` or a lost socket ends the stream. Nothing is left running after the
end: every play and mark handle resolves, every iterator finishes, every task is awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from .diagnostics import local_violation
from .exceptions import (
    LocalProtocolError,
    ProtocolError,
    StreamClosed,
    StreamTimeout,
)
from .messages import DTMF, Mark, Media, Start, Stop, TwilioMessage, UnknownMessage
from .protocol import STREAMING, AppProtocol

if TYPE_CHECKING:
    from .audio import MulawDecoder

__all__ = [
    "DEFAULT_FRAME_MS",
    "DEFAULT_LEAD_MS",
    "DEFAULT_MARK_INTERVAL_MS",
    "DEFAULT_START_TIMEOUT_MS",
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
]

logger = logging.getLogger("mediastreams.session")

BYTES_PER_MS = 8  # mu-law 8000 Hz: one byte per sample
SILENCE = b"\xff"  # mu-law silence is 0xFF, not 0x00

DEFAULT_FRAME_MS = 20
DEFAULT_LEAD_MS = 1000
DEFAULT_MARK_INTERVAL_MS = 200
DEFAULT_START_TIMEOUT_MS = 5000
MAX_FRAME_BYTES = 64 * 1024
"""Frames above this end the stream: Twilio's largest (``start``) is well under 2 KiB."""

MAX_GAP_FILL_MS = 60_000
"""A gap in inbound timestamps is filled with at most this much silence."""

_MARK_PREFIX = "_ms:"  # the session's own marks; user mark names may not start with it

Event: TypeAlias = Media | DTMF | Mark | Stop | UnknownMessage
"""What ``async for event in stream`` yields."""

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # RFC 6455 7.4.1: a message that violates policy (no `start` in time)
CLOSE_TOO_BIG = 1009  # RFC 6455 7.4.1: a message too big to process


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


class Outcome(enum.Enum):
    """How a play (or a mark) ended."""

    PENDING = "pending"  # not resolved yet
    PLAYED = "played"  # Twilio echoed the final mark: the caller heard it all
    INTERRUPTED = "interrupted"  # a clear discarded it (barge-in)
    ENDED = "ended"  # the stream ended first (stop, close or a dropped socket)
    FAILED = "failed"  # the audio source raised; see PlayHandle.error


class _Handle:
    """An awaitable result that resolves once; awaiting it returns the handle itself."""

    def __init__(self) -> None:
        self.outcome = Outcome.PENDING
        self._done = asyncio.get_running_loop().create_future()

    def done(self) -> bool:
        """Whether the outcome is known."""
        return self.outcome is not Outcome.PENDING

    def _resolve(self, outcome: Outcome) -> None:
        if self.outcome is Outcome.PENDING:
            self.outcome = outcome
            self._done.set_result(None)

    async def wait(self) -> Outcome:
        """Wait for the outcome and return it (never raises)."""
        await asyncio.shield(self._done)
        return self.outcome


class PlayHandle(_Handle):
    """One queued play; returned by :meth:`MediaStream.play` at once.

    ``await handle`` returns the handle once Twilio confirmed the audio played (the final
    mark was echoed), a ``clear`` interrupted it or the stream ended. It raises the source's
    error if the audio could not be read.

    Attributes:
        id: the play's number in its stream, from 1.
        outcome: :class:`Outcome`; ``PENDING`` until resolved.
        error: what the source raised, when ``outcome`` is ``FAILED``.
    """

    def __init__(self, play_id: int) -> None:
        super().__init__()
        self.id = play_id
        self.error: BaseException | None = None
        self._sent_bytes = 0
        self._played_bytes = 0

    @property
    def sent_ms(self) -> float:
        """Audio sent to Twilio so far, in milliseconds."""
        return self._sent_bytes / BYTES_PER_MS

    @property
    def played_ms(self) -> float:
        """Audio Twilio confirmed as played (by mark echoes), in milliseconds."""
        return self._played_bytes / BYTES_PER_MS

    def _fail(self, error: BaseException) -> None:
        if self.outcome is Outcome.PENDING:
            self.error = error
            self._resolve(Outcome.FAILED)

    def __await__(self) -> Generator[Any, None, PlayHandle]:
        yield from self.wait().__await__()
        if self.error is not None:
            raise self.error
        return self

    def __repr__(self) -> str:
        return (
            f"<PlayHandle {self.id} {self.outcome.value} sent_ms={self.sent_ms:.0f} "
            f"played_ms={self.played_ms:.0f}>"
        )


class MarkHandle(_Handle):
    """A mark sent with :meth:`MediaStream.send_mark`; awaiting it returns the handle.

    ``outcome`` is ``PLAYED`` when Twilio echoed it with no ``clear`` in between (the audio
    before it played), ``INTERRUPTED`` when a ``clear`` sent after it caused the echo, and
    ``ENDED`` when the stream ended first.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def __await__(self) -> Generator[Any, None, MarkHandle]:
        yield from self.wait().__await__()
        return self


# --- pacing: a sans-I/O scheduler over AppProtocol -------------------------------------------


class _Play:
    __slots__ = ("buffer", "handle", "last_mark", "offset", "source_done")

    def __init__(self, handle: PlayHandle) -> None:
        self.handle = handle
        self.buffer = bytearray()
        self.offset = 0  # bytes of `buffer` already sent
        self.source_done = False
        self.last_mark = 0  # play bytes at the last mark sent

    @property
    def available(self) -> int:
        return len(self.buffer) - self.offset

    def take(self, n_bytes: int) -> bytes:
        chunk = bytes(self.buffer[self.offset : self.offset + n_bytes])
        self.offset += len(chunk)
        if self.offset >= 1 << 16:  # compact now and then, not per frame
            del self.buffer[: self.offset]
            self.offset = 0
        return chunk


class _MarkPoint:
    __slots__ = ("final", "generation", "play", "play_bytes", "stream_bytes")

    def __init__(self, play: _Play, stream_bytes: int, generation: int, final: bool) -> None:
        self.play = play
        self.play_bytes = play.handle._sent_bytes
        self.stream_bytes = stream_bytes
        self.generation = generation
        self.final = final


class Pacer:
    """Which frames and marks to send now, from what the echoes confirmed; no I/O, no clock.

    Args:
        frame_ms: the size of every outbound frame but a play's last.
        lead_ms: how far the audio sent may run ahead of the audio confirmed.
        mark_interval_ms: a mark goes out at least this often within a play.
    """

    def __init__(
        self,
        *,
        frame_ms: int = DEFAULT_FRAME_MS,
        lead_ms: int = DEFAULT_LEAD_MS,
        mark_interval_ms: int = DEFAULT_MARK_INTERVAL_MS,
    ) -> None:
        if frame_ms <= 0 or mark_interval_ms < frame_ms or lead_ms < mark_interval_ms:
            raise ValueError(
                "need 0 < frame_ms <= mark_interval_ms <= lead_ms, got "
                f"{frame_ms}, {mark_interval_ms}, {lead_ms}"
            )
        self._frame_bytes = frame_ms * BYTES_PER_MS
        self._lead_bytes = lead_ms * BYTES_PER_MS
        self._mark_bytes = mark_interval_ms * BYTES_PER_MS
        # Plays with audio still to send, and user marks to send after them, in order.
        self._queue: deque[_Play | MarkHandle] = deque()
        self._user_marks: dict[str, deque[tuple[MarkHandle, int]]] = {}
        self._unconfirmed: dict[PlayHandle, _Play] = {}  # all sent, final mark not echoed
        self._marks: dict[str, _MarkPoint] = {}
        self._generation = 0  # +1 per clear: marks of an older one were discarded, not played
        self.sent_bytes = 0  # over the whole stream
        self.confirmed_bytes = 0

    @property
    def lead_ms(self) -> float:
        """Audio sent and not yet confirmed, in milliseconds."""
        return (self.sent_bytes - self.confirmed_bytes) / BYTES_PER_MS

    def add(self, item: _Play | MarkHandle) -> None:
        """Queue a play, or a user mark, behind everything queued before."""
        self._queue.append(item)

    def pending(self) -> list[PlayHandle]:
        """Every unresolved play handle, oldest first."""
        queued = [p.handle for p in self._queue if isinstance(p, _Play)]
        return [*(p.handle for p in self._unconfirmed.values()), *queued]

    def _pending_marks(self) -> list[MarkHandle]:
        queued = [m for m in self._queue if isinstance(m, MarkHandle)]
        return [*(h for waiting in self._user_marks.values() for h, _ in waiting), *queued]

    def on_user_echo(self, name: str) -> None:
        """Twilio echoed a mark sent with :meth:`MediaStream.send_mark`."""
        waiting = self._user_marks.get(name)
        if not waiting:
            return
        handle, generation = waiting.popleft()
        if not waiting:
            del self._user_marks[name]
        handle._resolve(Outcome.PLAYED if generation == self._generation else Outcome.INTERRUPTED)

    def pump(self, protocol: AppProtocol) -> None:
        """Queue on ``protocol`` every frame and mark the lead allows now."""
        while self._queue:
            play = self._queue[0]
            if isinstance(play, MarkHandle):
                self._queue.popleft()
                protocol.send_mark(play.name)
                self._user_marks.setdefault(play.name, deque()).append((play, self._generation))
                continue
            if play.handle.done():  # failed while queued
                self._queue.popleft()
                continue
            while self.sent_bytes - self.confirmed_bytes < self._lead_bytes and (
                play.available >= self._frame_bytes or (play.source_done and play.available)
            ):
                self._send_frame(protocol, play)
            if not (play.source_done and play.available == 0):
                return  # waiting for room or for the source
            self._queue.popleft()
            self._finish_sending(protocol, play)

    def _send_frame(self, protocol: AppProtocol, play: _Play) -> None:
        chunk = play.take(self._frame_bytes)
        protocol.send_media(chunk)
        self.sent_bytes += len(chunk)
        play.handle._sent_bytes += len(chunk)
        last = play.source_done and play.available == 0
        if not last and play.handle._sent_bytes - play.last_mark >= self._mark_bytes:
            self._send_mark(protocol, play, final=False)

    def _finish_sending(self, protocol: AppProtocol, play: _Play) -> None:
        if play.handle._sent_bytes == 0:  # an empty source: nothing to confirm
            play.handle._resolve(Outcome.PLAYED)
            return
        self._send_mark(protocol, play, final=True)
        self._unconfirmed[play.handle] = play

    def _send_mark(self, protocol: AppProtocol, play: _Play, *, final: bool) -> None:
        sent = play.handle._sent_bytes
        # Unique per stream (play id + offset), so an echo maps to exactly one point.
        name = f"{_MARK_PREFIX}{play.handle.id}:{sent // BYTES_PER_MS}"
        protocol.send_mark(name)
        play.last_mark = sent
        self._marks[name] = _MarkPoint(play, self.sent_bytes, self._generation, final)

    def owns(self, name: str) -> bool:
        """Whether a mark name is one of the pacer's own."""
        return name.startswith(_MARK_PREFIX)

    def on_echo(self, name: str) -> None:
        """Twilio echoed one of the pacer's marks."""
        point = self._marks.pop(name, None)
        if point is None or point.generation != self._generation:
            return  # echoed by a clear: that audio was discarded, not played
        self.confirmed_bytes = max(self.confirmed_bytes, point.stream_bytes)
        handle = point.play.handle
        handle._played_bytes = max(handle._played_bytes, point.play_bytes)
        if point.final:
            self._unconfirmed.pop(handle, None)
            handle._resolve(Outcome.PLAYED)

    def clear(self) -> list[PlayHandle]:
        """A ``clear`` was sent: every pending play is interrupted; returns them."""
        self._generation += 1
        interrupted = self.pending()
        for mark in self._queue:
            if isinstance(mark, MarkHandle):
                mark._resolve(Outcome.INTERRUPTED)  # never sent; sent ones await their echo
        self._queue.clear()
        self._unconfirmed.clear()
        for handle in interrupted:
            handle._resolve(Outcome.INTERRUPTED)
        self.confirmed_bytes = self.sent_bytes  # Twilio's buffer is empty again
        return interrupted

    def end(self) -> None:
        """The stream ended: resolve every pending play as ``ENDED``."""
        for handle in self.pending():
            handle._resolve(Outcome.ENDED)
        for mark in self._pending_marks():
            mark._resolve(Outcome.ENDED)
        self._user_marks.clear()
        self._queue.clear()
        self._unconfirmed.clear()
        self._marks.clear()


# --- event fan-out ---------------------------------------------------------------------------


class _Subscriber:
    """One consumer's queue of events; ``None`` marks the end."""

    def __init__(self, accepts: Callable[[Event], bool], max_media: int | None = None) -> None:
        self.accepts = accepts
        self._items: deque[Event | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.max_media = max_media
        self._media = 0
        self.dropped_media = 0

    def push(self, item: Event | None) -> None:
        self._items.append(item)
        if type(item) is Media:
            self._media += 1
            if self.max_media is not None and self._media > self.max_media:
                self._drop_oldest_media()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _drop_oldest_media(self) -> None:
        for index, item in enumerate(self._items):
            if type(item) is Media:
                del self._items[index]
                self._media -= 1
                self.dropped_media += 1
                return

    async def get(self) -> Event | None:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if item is None:
            self._items.appendleft(None)  # the end stays the end for every later call
        elif type(item) is Media:
            self._media -= 1
        return item


# --- audio sources ---------------------------------------------------------------------------
# mediastreams.audio (numpy, soxr, miniaudio) is imported only when a play or audio() needs
# it, so a session that sends mu-law bytes never pays for it.

AudioInput: TypeAlias = Any
"""A path, bytes, a numpy array or an async iterable of chunks; see :meth:`MediaStream.play`."""


def _has_file_header(data: bytes) -> bool:
    from .diagnostics import container_format

    return bool(data) and container_format(data) is not None


# --- the session -----------------------------------------------------------------------------


class MediaStream:
    """The app's side of one Media Stream, over a :class:`Transport`.

    Args:
        transport: the WebSocket, through an adapter.
        frame_ms: outbound frame size (Twilio sends 20 ms frames; any size plays).
        lead_ms: how far sent audio may run ahead of what Twilio confirmed playing.
        mark_interval_ms: a mark goes out at least this often in a play, so ``played_ms``
            is exact to this interval.
        start_timeout_ms: how long :meth:`open` waits for ``connected`` and ``start``.
        max_frame_bytes: a larger inbound frame ends the stream (close code 1009).
        max_queued_media: inbound media kept for ``async for event in stream`` while nothing
            reads it; older frames are dropped past this (3000 frames = 60 s).

    Attributes:
        start: Twilio's ``start`` (SIDs, custom parameters, media format, tracks), once open.
        end_reason: why the stream ended: ``"stop"``, ``"closed"``, ``"dropped"``,
            ``"too-big"`` or ``"timeout"``; ``None`` while it runs.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        frame_ms: int = DEFAULT_FRAME_MS,
        lead_ms: int = DEFAULT_LEAD_MS,
        mark_interval_ms: int = DEFAULT_MARK_INTERVAL_MS,
        start_timeout_ms: int = DEFAULT_START_TIMEOUT_MS,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        max_queued_media: int = 3000,
    ) -> None:
        self.transport = transport
        self.protocol = AppProtocol()
        self.pacer = Pacer(frame_ms=frame_ms, lead_ms=lead_ms, mark_interval_ms=mark_interval_ms)
        self.start_timeout_ms = start_timeout_ms
        self.max_frame_bytes = max_frame_bytes
        self.end_reason: str | None = None
        self._events = _Subscriber(lambda event: True, max_queued_media)
        self._subscribers: list[_Subscriber] = [self._events]
        self._play_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._feeders: dict[PlayHandle, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._sending = False
        self._ended = asyncio.Event()
        self._reported: set[str] = set()
        self._log_extra: dict[str, str] = {}

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
            StreamTimeout: no ``start`` within ``start_timeout_ms`` (the socket is closed).
            StreamClosed: the socket closed or sent an oversized frame before ``start``.
        """
        try:
            async with asyncio.timeout(self.start_timeout_ms / 1000):
                while self.protocol.state is not STREAMING:
                    await self._receive_opening()
        except TimeoutError:
            await self._abort("timeout", CLOSE_POLICY)
            raise StreamTimeout(
                f"no start frame within {self.start_timeout_ms} ms; is this a Twilio "
                "<Connect><Stream> WebSocket?"
            ) from None
        start = self.start
        self._log_extra = {"stream_sid": start.stream_sid, "call_sid": start.call_sid}
        logger.info(
            "stream started: stream %s, call %s",
            start.stream_sid,
            start.call_sid,
            extra=self._log_extra,
        )
        self._spawn(self._read())
        self._spawn(self._write())
        return self

    async def _receive_opening(self) -> None:
        data = await self.transport.receive()
        if data is None:
            await self._abort("dropped", CLOSE_NORMAL)
            raise StreamClosed("the WebSocket closed before Twilio's start frame")
        if len(data) > self.max_frame_bytes:
            await self._abort("too-big", CLOSE_TOO_BIG)
            raise StreamClosed(
                f"a {len(data)}-byte frame before start; the limit is {self.max_frame_bytes}"
            )
        self._receive(data)  # anything but connected/start is logged and ignored

    async def _abort(self, reason: str, code: int) -> None:
        self._end(reason)
        await self.transport.close(code)

    async def close(self, code: int = CLOSE_NORMAL) -> None:
        """End the stream from the app's side and close the socket.

        Every pending play resolves as ``ENDED``, iterators finish, and the session's tasks
        are awaited. Safe to call more than once, and after the stream ended by itself.

        Args:
            code: the WebSocket close code (1000, or 1008 to refuse the stream).
        """
        self._end("closed")
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)  # their done callbacks may not have run yet
        await self.transport.close(code)

    async def wait_closed(self) -> None:
        """Wait until the stream has ended, whoever ended it."""
        await self._ended.wait()

    async def __aenter__(self) -> MediaStream:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _end(self, reason: str) -> None:
        if self.end_reason is not None:
            return
        self.end_reason = reason
        self.protocol.close()
        self.pacer.end()
        for subscriber in self._subscribers:
            subscriber.push(None)
        for feeder in self._feeders.values():
            if feeder is not asyncio.current_task():
                feeder.cancel()  # a TTS source may never end by itself
        self._ended.set()
        self._wake.set()  # lets the writer see the end
        if self._log_extra:
            logger.info("stream ended (%s)", reason, extra=self._log_extra)

    def _spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- receiving ----------------------------------------------------------------------------

    async def _read(self) -> None:
        # The I/O boundary for inbound frames: bad ones are logged and ignored, the end of the
        # socket (or a frame too big to be Twilio's) ends the stream.
        while self.end_reason is None:
            data = await self.transport.receive()
            if data is None:
                self._end("dropped")
                break
            if len(data) > self.max_frame_bytes:
                self._report("too-big", f"a {len(data)}-byte frame (limit {self.max_frame_bytes})")
                self._end("too-big")
                await self.transport.close(CLOSE_TOO_BIG)
                break
            message = self._receive(data)
            if message is not None:
                self._dispatch(message)
        await self.transport.close(CLOSE_NORMAL)

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
        # Once per kind and stream, as Twilio logs its own 31950/31951 warnings.
        if kind in self._reported:
            return
        self._reported.add(kind)
        logger.warning("ignored a frame from Twilio: %s", text, extra=self._log_extra)

    def _dispatch(self, message: TwilioMessage) -> None:
        kind = type(message)
        if kind is Mark:
            assert isinstance(message, Mark)
            if self.pacer.owns(message.name):
                self.pacer.on_echo(message.name)
                self._wake.set()  # room for more audio
                return
            self.pacer.on_user_echo(message.name)
        if kind is Stop:
            self._publish(message)  # type: ignore[arg-type]
            self._end("stop")
            return
        if kind is Media or kind is DTMF or kind is Mark or kind is UnknownMessage:
            self._publish(message)  # type: ignore[arg-type]

    def _publish(self, event: Event) -> None:
        for subscriber in self._subscribers:
            if subscriber.accepts(event):
                subscriber.push(event)
        if self._events.dropped_media == 1 and "unread" not in self._reported:
            self._reported.add("unread")
            logger.warning(
                "nothing reads the stream's events: dropping media older than %d frames",
                self._events.max_media,
                extra=self._log_extra,
            )

    def _subscribe(self, accepts: Callable[[Event], bool]) -> _Subscriber:
        subscriber = _Subscriber(accepts)
        if self.end_reason is not None:
            subscriber.push(None)
        self._subscribers.append(subscriber)
        return subscriber

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    async def events(self) -> AsyncIterator[Event]:
        """Every event from Twilio, in order: ``Media``, ``DTMF``, ``Mark`` (echoes of marks
        sent with :meth:`send_mark`), ``Stop`` (always last when Twilio sends it) and
        ``UnknownMessage``. Ends when the stream ends.

        Events are kept from the moment the stream opens, so none is missed before the first
        iteration (at most ``max_queued_media`` media frames are kept for a slow reader).
        """
        while (event := await self._events.get()) is not None:
            yield event

    def audio(self, sample_rate: int = 8000) -> AsyncIterator[bytes]:
        """The caller's audio as 16-bit little-endian mono PCM at ``sample_rate``.

        A gap in the media timestamps is filled with silence (up to
        :data:`MAX_GAP_FILL_MS`), so speech recognition downstream keeps time with the call.
        The audio is kept from this call on (iterate the result: it buffers until read); the
        iterator ends when the stream ends.
        """
        from .audio import MulawDecoder

        decoder = MulawDecoder(sample_rate)
        subscriber = self._subscribe(lambda event: type(event) is Media)
        return self._pcm(decoder, subscriber)

    async def _pcm(self, decoder: MulawDecoder, subscriber: _Subscriber) -> AsyncIterator[bytes]:
        expected_ms: int | None = None
        try:
            while (event := await subscriber.get()) is not None:
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
            self._subscribers.remove(subscriber)

    async def collect_digits(
        self, count: int, *, timeout_ms: int | None = None, finish_on: str | None = None
    ) -> str:
        """Wait for the caller to press ``count`` keys and return them.

        Digits are counted from this call on. Returns early, with what was pressed, when
        ``timeout_ms`` passes, when a key in ``finish_on`` is pressed (it is not included) or
        when the stream ends.
        """
        subscriber = self._subscribe(lambda event: type(event) is DTMF)
        digits = ""
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if timeout_ms is None else timeout_ms / 1000):
                    while len(digits) < count and (event := await subscriber.get()) is not None:
                        assert isinstance(event, DTMF)
                        if finish_on and event.digit in finish_on:
                            break
                        digits += event.digit
        finally:
            self._subscribers.remove(subscriber)
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
        if not name or name.startswith(_MARK_PREFIX):
            raise LocalProtocolError(
                local_violation(
                    "bad-mark",
                    f"mark names must be non-empty and not start with {_MARK_PREFIX!r}",
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

        Returns:
            A :class:`PlayHandle`; ``await`` it for the outcome.

        Raises:
            StreamClosed: the stream has ended.
        """
        self._check_open()
        handle = PlayHandle(next(self._play_ids))
        play = _Play(handle)
        if isinstance(source, (bytes, bytearray, memoryview)) and format is None:
            data = bytes(source)
            if not _has_file_header(data):
                play.buffer += data
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
                    play.buffer += chunk
                    await self._flush()
            else:
                from .audio import to_mulaw

                # In a thread: decoding and resampling a long file takes a while.
                mulaw = await asyncio.to_thread(
                    to_mulaw, source, format=format, sample_rate=sample_rate
                )
                play.buffer += mulaw
        except Exception as error:
            # Not swallowed: the error goes to whoever awaits the handle.
            play.handle._fail(error)
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
        await self.transport.close(CLOSE_NORMAL)

    async def _flush(self) -> None:
        """Send what the pacer allows now, from the calling task.

        One task sends at a time, and it loops until nothing is left, so frames leave in the
        order they were queued; another task finding it busy leaves its frames to it. A
        source feeding audio calls this directly, which saves a task switch per frame.
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
        except StreamClosed:
            self._end("dropped")  # the reader sees the socket gone and finishes
        finally:
            self._sending = False


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
