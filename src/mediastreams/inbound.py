"""The inbound half of a session: frames read from the socket, checked, fanned out to readers.

:class:`Inbound` takes the stream's inbound frames, the I/O boundary for them: each frame
goes through :meth:`AppProtocol.receive() <mediastreams.protocol.AppProtocol.receive>`, the
one place the reading rule lives; one Twilio's side should not have sent is counted by its
Twilio error code (:attr:`Inbound.violations_by_code`), logged (once per kind and stream, as
Twilio logs 31951 once) and ignored; the end of the socket, or a frame over
``max_frame_bytes``, ends the stream. Frames come either from a reader task that awaits the
transport's ``receive()``, or, on a transport that pushes them
(:class:`~mediastreams.websocket.PushTransport`, picows), straight from its callback into
:meth:`Inbound.on_frame`, with no task between the socket and the app.

A stream's events go to every reader: the stream's own iterator (``async for event in
stream``) and each :meth:`~mediastreams.session.MediaStream.audio` iterator, each with its
own bounded queue, so a slow reader loses its own oldest media and nobody else's. Two
exceptions, by design: while a :meth:`~mediastreams.session.MediaStream.collect_digits`
waits, every ``DTMF`` goes to it alone, so the digits of a PIN never come round again as menu
keys in the main loop; while a media callback is set
(:meth:`~mediastreams.session.MediaStream.on_media`), every ``Media`` goes to it instead of
the stream's own iterator (:meth:`Inbound.publish` says the rules exactly).

Part of :mod:`mediastreams.session`: what that module exports is public, the rest of this
module may change.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeAlias

from .limits import Limits
from .messages import DTMF, Mark, Media, Stop, TwilioMessage, UnknownMessage
from .protocol import AppProtocol
from .websocket import CLOSE_NORMAL, CLOSE_TOO_BIG
from .wireformat import BYTES_PER_MS, SILENCE_BYTE

if TYPE_CHECKING:
    from .audio import MulawDecoder
    from .violations import Violation

__all__ = ["MAX_GAP_FILL_MS", "Event", "EventQueue", "Inbound"]

logger = logging.getLogger("mediastreams.session")


MAX_GAP_FILL_MS = 60_000
"""A gap in inbound timestamps is filled with at most this much silence."""

Event: TypeAlias = Media | DTMF | Mark | Stop | UnknownMessage
"""What ``async for event in stream`` yields."""


class EventQueue:
    """One consumer's events, bounded in count and bytes; the oldest media goes first.

    Media and other events wait in two queues, each item with its arrival number, so taking
    the next event and dropping the oldest media are both O(1) while the order holds.
    """

    def __init__(self, limits: Limits) -> None:
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
        queue = self._media if type(event) is Media else self._others
        queue.append((next(self._count), event, size))
        self._bytes += size
        if self._waiter is not None:
            self._wake()
        if len(self._media) + len(self._others) <= self._max_events and (
            self._bytes <= self._max_bytes
        ):
            return False
        return self._drop()

    def _drop(self) -> bool:
        dropped = self.dropped_media + self.dropped_events
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
    """One stream's frames in: the reader (a task, or the transport's callback), and every
    reader of its events.

    Args:
        receive: reads the next frame from the socket (``None`` once closed).
        protocol: the stream's protocol, which checks every frame.
        limits: the largest frame, and the bounds of each reader's queue.
        log_extra: the stream's log fields (its SIDs once it started), read when logging.
        on_echo: told of each mark echo; returns whether it was the session's own mark
            (which no reader sees).
        on_end: the stream is to end, as ``on_end(reason, close_code)``.
        on_crash: handling a pushed frame raised (the stream ends with 1011).
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
        on_crash: Callable[[BaseException], None],
    ) -> None:
        self._receive = receive
        self._protocol = protocol
        self._limits = limits
        self._max_frame_bytes = limits.max_frame_bytes
        self._log_extra = log_extra
        self._on_echo = on_echo
        self._on_end = on_end
        self._on_crash = on_crash
        self._reported: set[str] = set()
        self._violations: dict[int, int] = {}
        self.violations_by_code: Mapping[int, int] = MappingProxyType(self._violations)
        """Frames ignored, by Twilio error code (``{31951: 2}``); see
        :attr:`mediastreams.session.MediaStream.violations_by_code`."""
        self.events = EventQueue(limits)  # the stream's own iterator
        self._audio_queues: list[EventQueue] = []  # audio() readers: media only
        self._on_media: Callable[[Media], object] | None = None
        self._collectors: deque[_DigitCollector] = deque()
        self._ended = False
        self.frames_in = 0  # the watchdog's view of the peer: counted, not timed, per frame

    # --- frames in ----------------------------------------------------------------------------

    async def run(self) -> None:
        """The reader task, for a transport that is read: frames until the stream ends."""
        on_frame = self.on_frame
        while not self._ended:
            on_frame(await self._receive())

    def on_frame(self, data: str | bytes | None) -> None:
        """Read one frame (``None``: the socket closed): check it, give it to its readers.

        Called by the reader task, or by a push transport in its own callback. Never raises:
        a failure ends the stream with 1011, whichever called.
        """
        if self._ended:
            return
        # The hot path, 50 times a second per stream: kept flat, as few calls as it can.
        self.frames_in += 1
        try:
            if data is None:
                self._on_end("dropped", CLOSE_NORMAL)
                return
            size = len(data)
            if size > self._max_frame_bytes:
                limit = self._max_frame_bytes
                self._report("too-big", f"a {size}-byte frame (limit {limit})")
                self._on_end("too-big", CLOSE_TOO_BIG)
                return
            received = self._protocol.receive(data)
            message = received.message
            if received.violations:
                self._count(received.violations)
            if type(message) is Media:
                callback = self._on_media
                if callback is not None:
                    callback(message)
                elif self.events.push(message, size):
                    self._report_unread(self.events)
                if self._audio_queues:
                    self._to_audio_readers(message, size)
            elif message is not None:
                self._dispatch(message, size)
        except Exception as error:
            self._on_crash(error)

    def check(self, data: str | bytes) -> TwilioMessage | None:
        """The message a frame carries, or ``None`` for a bad frame (counted, logged, ignored)."""
        received = self._protocol.receive(data)
        if received.violations:
            self._count(received.violations)
        return received.message

    def _count(self, violations: tuple[Violation, ...]) -> None:
        counts = self._violations
        for violation in violations:
            counts[violation.code] = counts.get(violation.code, 0) + 1
        self._report(violations[0].kind, violations[0].describe())

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
        if kind is DTMF or kind is Mark or kind is UnknownMessage:
            self.publish(message, size)  # type: ignore[arg-type]

    # --- fan-out ------------------------------------------------------------------------------

    def on_media(self, callback: Callable[[Media], object] | None) -> None:
        """Give every ``Media`` to ``callback`` instead of the stream's own iterator."""
        self._on_media = callback

    def publish(self, event: Event, size: int) -> None:
        """Give an event that arrived as a ``size``-byte frame to its readers.

        While a :meth:`collect_digits` waits, a ``DTMF`` goes to it alone (to the oldest of
        them when several wait), until it has its ``count`` digits or a ``finish_on`` key.
        While a media callback is set (:meth:`on_media`), a ``Media`` goes to it, and to each
        :meth:`audio` reader, but not to the stream's own iterator. Every other event goes
        to the stream's own iterator.
        """
        if type(event) is Media:
            self._publish_media(event, size)
            return
        collectors = self._collectors
        if collectors and type(event) is DTMF:
            if collectors[0].take(event.digit):
                collectors.popleft()
            return
        if self.events.push(event, size):
            self._report_unread(self.events)

    def _publish_media(self, media: Media, size: int) -> None:
        callback = self._on_media
        if callback is not None:
            callback(media)
        elif self.events.push(media, size):
            self._report_unread(self.events)
        self._to_audio_readers(media, size)

    def _to_audio_readers(self, media: Media, size: int) -> None:
        for queue in self._audio_queues:
            if queue.push(media, size):
                self._report_unread(queue)

    def end(self) -> None:
        """The stream ended: the reader task stops; readers get what is queued, then the end."""
        self._ended = True
        self._on_media = None
        self.events.end()
        for queue in self._audio_queues:
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
        queue = EventQueue(self._limits)
        if self._ended:
            queue.end()
        self._audio_queues.append(queue)
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
                        payload = bytes([SILENCE_BYTE]) * (gap_ms * BYTES_PER_MS) + payload
                    expected_ms = event.timestamp + len(event.payload) // BYTES_PER_MS
                pcm = decoder.decode(payload)
                if pcm:
                    yield pcm
            tail = decoder.flush()
            if tail:
                yield tail
        finally:
            self._audio_queues.remove(queue)

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
