"""Pacing without I/O: which frames and marks go out now, and what the echoes confirmed.

:class:`Pacer` is the scheduling logic of :class:`~mediastreams.session.MediaStream` alone,
with no socket and no clock, over an :class:`~mediastreams.protocol.AppProtocol`. Audio goes
out in frames of ``frame_ms`` and at most ``lead_ms`` ahead of what Twilio's mark echoes
confirmed; every play carries its own marks, and an echo from before the last ``clear``
counts as discarded, not played
(https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-mark-message).

The handles an app awaits (:class:`PlayHandle`, :class:`MarkHandle`) resolve here.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .protocol import AppProtocol

__all__ = [
    "BYTES_PER_MS",
    "DEFAULT_FRAME_MS",
    "DEFAULT_LEAD_MS",
    "DEFAULT_MARK_INTERVAL_MS",
    "MARK_PREFIX",
    "MarkHandle",
    "Outcome",
    "Pacer",
    "PlayHandle",
]

BYTES_PER_MS = 8  # mu-law 8000 Hz: one byte per sample

DEFAULT_FRAME_MS = 20
DEFAULT_LEAD_MS = 1000
DEFAULT_MARK_INTERVAL_MS = 200

MARK_PREFIX = "_ms:"
"""The pacer's own marks start with this; a user's mark names may not."""


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
        self._seen()
        return self.outcome

    def _seen(self) -> None:
        """The app has looked at the outcome."""


class PlayHandle(_Handle):
    """One queued play; returned by :meth:`MediaStream.play` at once.

    ``await handle`` returns the handle once Twilio confirmed the audio played (the final
    mark was echoed), a ``clear`` interrupted it or the stream ended. It raises the source's
    error if the audio could not be read.

    Attributes:
        id: the play's number in its stream, from 1.
        source: what was played, for messages (a path, ``"1600 bytes"``, ``"a stream"``).
        outcome: :class:`Outcome`; ``PENDING`` until resolved.
    """

    def __init__(self, play_id: int, source: str = "") -> None:
        super().__init__()
        self.id = play_id
        self.source = source
        self._error: BaseException | None = None
        self._error_seen = False
        self._sent_bytes = 0
        self._played_bytes = 0
        self._dropped_bytes = 0

    @property
    def error(self) -> BaseException | None:
        """What the source raised, when ``outcome`` is ``FAILED``."""
        self._error_seen = True
        return self._error

    def _unseen_error(self) -> BaseException | None:
        """The source's error, if nobody awaited the handle or read :attr:`error`."""
        return None if self._error_seen else self._error

    @property
    def sent_ms(self) -> float:
        """Audio sent to Twilio so far, in milliseconds."""
        return self._sent_bytes / BYTES_PER_MS

    @property
    def played_ms(self) -> float:
        """Audio Twilio confirmed as played (by mark echoes), in milliseconds."""
        return self._played_bytes / BYTES_PER_MS

    @property
    def dropped_ms(self) -> float:
        """Audio dropped unsent because it fell more than ``max_backlog_ms`` behind."""
        return self._dropped_bytes / BYTES_PER_MS

    def _seen(self) -> None:
        if self.outcome is Outcome.FAILED:
            self._error_seen = True

    def _fail(self, error: BaseException) -> None:
        if self.outcome is Outcome.PENDING:
            self._error = error
            self._resolve(Outcome.FAILED)

    def __await__(self) -> Generator[Any, None, PlayHandle]:
        yield from self.wait().__await__()
        if self._error is not None:
            raise self._error
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


class _Play:
    __slots__ = ("buffer", "handle", "last_mark", "max_backlog", "offset", "source_done")

    def __init__(self, handle: PlayHandle, max_backlog_ms: int | None = None) -> None:
        self.handle = handle
        self.buffer = bytearray()
        self.offset = 0  # bytes of `buffer` already sent
        self.source_done = False
        self.last_mark = 0  # play bytes at the last mark sent
        self.max_backlog = None if max_backlog_ms is None else max_backlog_ms * BYTES_PER_MS

    @property
    def available(self) -> int:
        return len(self.buffer) - self.offset

    def append(self, mulaw: bytes) -> None:
        """Add audio from the source; past ``max_backlog`` unsent, the oldest is dropped."""
        self.buffer += mulaw
        if self.max_backlog is not None and self.available > self.max_backlog:
            excess = self.available - self.max_backlog
            self.offset += excess
            self.handle._dropped_bytes += excess
            self._compact()

    def take(self, n_bytes: int) -> bytes:
        chunk = bytes(self.buffer[self.offset : self.offset + n_bytes])
        self.offset += len(chunk)
        self._compact()
        return chunk

    def _compact(self) -> None:
        if self.offset >= 1 << 16:  # now and then, not per frame
            del self.buffer[: self.offset]
            self.offset = 0


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
        name = f"{MARK_PREFIX}{play.handle.id}:{sent // BYTES_PER_MS}"
        protocol.send_mark(name)
        play.last_mark = sent
        self._marks[name] = _MarkPoint(play, self.sent_bytes, self._generation, final)

    def owns(self, name: str) -> bool:
        """Whether a mark name is one of the pacer's own."""
        return name.startswith(MARK_PREFIX)

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
        # Marks sent so far can only be echoed as discarded now: forget them, so a peer that
        # never echoes cannot make them pile up clear after clear.
        self._marks.clear()
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
