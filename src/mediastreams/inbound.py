"""The inbound half of a session: frames read from the socket, checked, fanned out to readers.

:class:`Inbound` runs the session's reader task, the I/O boundary for inbound frames: each
frame goes through :class:`~mediastreams.protocol.AppProtocol`; one Twilio's side should not
have sent is logged (once per kind and stream, as Twilio logs 31951 once) and ignored; the end
of the socket, or a frame over ``max_frame_bytes``, ends the stream.

A stream's events go to every reader: the stream's own iterator (``async for event in
stream``) and each :meth:`~mediastreams.session.MediaStream.audio` iterator, each with its
own bounded queue, so a slow reader loses its own oldest media and nobody else's. Key presses
are the exception, by design: while a :meth:`~mediastreams.session.MediaStream.collect_digits`
waits, every ``DTMF`` goes to it alone, so the digits of a PIN never come round again as menu
keys in the main loop (:meth:`Inbound.publish` says the rule exactly).

Part of :mod:`mediastreams.session`: what that module exports is public, the rest of this
module may change.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, TypeAlias

from .exceptions import ProtocolError
from .limits import Limits
from .messages import DTMF, Mark, Media, Stop, TwilioMessage, UnknownMessage
from .pacing import BYTES_PER_MS
from .protocol import AppProtocol
from .websocket import CLOSE_NORMAL, CLOSE_TOO_BIG

if TYPE_CHECKING:
    from .audio import MulawDecoder

__all__ = ["MAX_GAP_FILL_MS", "SILENCE", "Event", "EventQueue", "Inbound"]

logger = logging.getLogger("mediastreams.session")

SILENCE = b"\xff"  # mu-law silence is 0xFF, not 0x00

MAX_GAP_FILL_MS = 60_000
"""A gap in inbound timestamps is filled with at most this much silence."""

Event: TypeAlias = Media | DTMF | Mark | Stop | UnknownMessage
"""What ``async for event in stream`` yields."""


class EventQueue:
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


class _DigitCollector:
    """One waiting :meth:`Inbound.collect_digits`: takes keys until it has what it asked."""

    __slots__ = ("count", "digits", "done", "finish_on")

    def __init__(self, count: int, finish_on: str | None) -> None:
        self.count = count
        self.finish_on = finish_on
        self.digits = ""
        self.done = asyncio.get_running_loop().create_future()

    def take(self, digit: str) -> bool:
        """Add a key press; returns whether the collector has finished."""
        if self.finish_on and digit in self.finish_on:
            return self._finish()
        self.digits += digit
        return len(self.digits) >= self.count and self._finish()

    def _finish(self) -> bool:
        if not self.done.done():
            self.done.set_result(None)
        return True


class Inbound:
    """One stream's frames in: the reader task, and every reader of its events.

    Args:
        receive: reads the next frame from the socket (``None`` once closed).
        protocol: the stream's protocol, which checks every frame.
        limits: the largest frame, and the bounds of each reader's queue.
        log_extra: the stream's log fields (its SIDs once it started), read when logging.
        on_echo: told of each mark echo; returns whether it was the session's own mark
            (which no reader sees).
        on_end: the stream is to end, as ``on_end(reason, close_code)``.
    """

    def __init__(
        self,
        receive: Callable[[], Awaitable[str | bytes | None]],
        protocol: AppProtocol,
        limits: Limits,
        log_extra: Mapping[str, str],
        *,
        on_echo: Callable[[str], bool],
        on_end: Callable[[str, int], None],
    ) -> None:
        self._receive = receive
        self._protocol = protocol
        self._limits = limits
        self._log_extra = log_extra
        self._on_echo = on_echo
        self._on_end = on_end
        self._reported: set[str] = set()
        self.violations: Counter[int] = Counter()  # frames refused, by Twilio error code
        self.events = EventQueue(lambda event: True, limits)  # the stream's own iterator
        self.queues: list[EventQueue] = [self.events]
        self._collectors: deque[_DigitCollector] = deque()
        self._ended = False
        self.frames_in = 0  # the watchdog's view of the peer: counted, not timed, per frame

    # --- frames in ----------------------------------------------------------------------------

    async def run(self) -> None:
        """The reader task: reads, checks and dispatches frames until the stream ends."""
        max_frame_bytes = self._limits.max_frame_bytes
        while not self._ended:
            data = await self._receive()
            self.frames_in += 1
            if data is None:
                self._on_end("dropped", CLOSE_NORMAL)
                break
            if len(data) > max_frame_bytes:
                self._report("too-big", f"a {len(data)}-byte frame (limit {max_frame_bytes})")
                self._on_end("too-big", CLOSE_TOO_BIG)
                break
            message = self.check(data)
            if message is not None:
                self._dispatch(message, len(data))

    def check(self, data: str | bytes) -> TwilioMessage | None:
        """The message a frame carries, or ``None`` for a bad frame (logged, ignored)."""
        try:
            if isinstance(data, bytes):
                self._protocol.receive_bytes(data)  # always raises: Twilio sends text only
            return self._protocol.receive_text(data)
        except ProtocolError as error:
            violation = error.violation
            self.violations[violation.code] += 1
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
            if self._on_echo(message.name):
                return  # the session's own mark: not the app's business
        if kind is Stop:
            self.publish(message, size)  # type: ignore[arg-type]
            self._on_end("stop", CLOSE_NORMAL)
            return
        if kind is Media or kind is DTMF or kind is Mark or kind is UnknownMessage:
            self.publish(message, size)  # type: ignore[arg-type]

    # --- fan-out ------------------------------------------------------------------------------

    def publish(self, event: Event, size: int) -> None:
        """Give an event that arrived as a ``size``-byte frame to its readers.

        While a :meth:`collect_digits` waits, a ``DTMF`` goes to it alone (to the oldest of
        them when several wait), until it has its ``count`` digits or a ``finish_on`` key;
        every other event goes to every reader that accepts it, as when nothing collects.
        """
        collectors = self._collectors
        if collectors and type(event) is DTMF:
            if collectors[0].take(event.digit):
                collectors.popleft()
            return
        for queue in self.queues:
            if queue.accepts(event) and queue.push(event, size):
                self._report_unread(queue)

    def end(self) -> None:
        """The stream ended: the reader task stops; readers get what is queued, then the end."""
        self._ended = True
        for queue in self.queues:
            queue.end()
        for collector in self._collectors:
            collector._finish()
        self._collectors.clear()

    def _report_unread(self, queue: EventQueue) -> None:
        what = "the stream's events" if queue is self.events else "an audio() reader"
        logger.warning(
            "nothing reads %s: dropping the oldest media past %d frames or %d bytes",
            what,
            self._limits.max_queued_frames,
            self._limits.max_queued_bytes,
            extra=self._log_extra,
        )

    async def iterate(self) -> AsyncIterator[Event]:
        """The stream's own events, in order, until the end."""
        while (event := await self.events.get()) is not None:
            yield event

    def audio(self, sample_rate: int) -> AsyncIterator[bytes]:
        """The caller's audio as 16-bit PCM from now on (see :meth:`MediaStream.audio`)."""
        from .audio import MulawDecoder

        decoder = MulawDecoder(sample_rate)
        queue = EventQueue(lambda event: type(event) is Media, self._limits)
        if self._ended:
            queue.end()
        self.queues.append(queue)
        return self._pcm(decoder, queue)

    async def _pcm(self, decoder: MulawDecoder, queue: EventQueue) -> AsyncIterator[bytes]:
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
            self.queues.remove(queue)

    async def collect_digits(
        self, count: int, *, timeout_ms: int | None, finish_on: str | None
    ) -> str:
        """Take the next key presses (see :meth:`MediaStream.collect_digits`)."""
        if self._ended or count <= 0:
            return ""
        collector = _DigitCollector(count, finish_on)
        self._collectors.append(collector)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if timeout_ms is None else timeout_ms / 1000):
                    await asyncio.shield(collector.done)
        finally:
            # Routed digits are in collector.digits already: none is lost at a timeout.
            with contextlib.suppress(ValueError):
                self._collectors.remove(collector)
        return collector.digits
