"""Pacing without I/O: which frames and marks go out now, and what the echoes confirmed.

:class:`Pacer` is the scheduling logic of :class:`~mediastreams.session.MediaStream` alone: a
state machine on play ids and byte counts, with no socket, no clock and no event loop, in the
manner of python-websockets' protocol. Its caller feeds it what happens (a play queued, audio
from its source, a mark echoed, a ``clear``) and asks it what to do::

    pacer = Pacer()
    pacer.add_play(1)
    pacer.add_audio(1, mulaw)
    pacer.end_source(1)
    for item in pacer.frames_to_send():   # bytes: a media payload; str: a mark's name
        ...
    pacer.on_echo(name)                   # Twilio echoed a mark
    for resolved in pacer.resolved():     # Resolved(play_id, outcome, ...), MarkResolved(...)
        ...

Audio goes out in frames of ``frame_ms`` and at most ``lead_ms`` ahead of what Twilio's mark
echoes confirmed; every play carries its own marks, and an echo from before the last
``clear`` counts as discarded, not played
(https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-mark-message).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from .wireformat import BYTES_PER_MS, FRAME_MS

__all__ = [
    "DEFAULT_FRAME_MS",
    "DEFAULT_LEAD_MS",
    "DEFAULT_MARK_INTERVAL_MS",
    "MARK_PREFIX",
    "MarkResolved",
    "Outcome",
    "Outgoing",
    "Pacer",
    "PlayProgress",
    "Resolved",
]

DEFAULT_FRAME_MS: Final = FRAME_MS  # the frames Twilio sends; it plays other sizes too
DEFAULT_LEAD_MS = 1000
DEFAULT_MARK_INTERVAL_MS = 200

MARK_PREFIX = "_ms:"
"""The pacer's own marks start with this; a user's mark names may not."""

Outgoing: TypeAlias = bytes | str
"""What :meth:`Pacer.frames_to_send` returns, in order: ``bytes`` is the payload of one
``media`` frame, ``str`` the name of one ``mark``."""

_NOTHING: tuple[()] = ()


class Outcome(enum.Enum):
    """How a play (or a mark) ended."""

    PENDING = "pending"  # not resolved yet
    PLAYED = "played"  # Twilio echoed the final mark: the caller heard it all
    INTERRUPTED = "interrupted"  # a clear discarded it (barge-in)
    ENDED = "ended"  # the stream ended first (stop, close or a dropped socket)
    FAILED = "failed"  # the audio source raised; see PlayHandle.error


class PlayProgress:
    """A play's byte counts, kept up to date by the :class:`Pacer` (read them, never write).

    Attributes:
        sent_bytes: audio handed out by :meth:`Pacer.frames_to_send`.
        played_bytes: audio Twilio confirmed as played, by mark echoes.
        dropped_bytes: audio dropped unsent because it fell more than the play's
            ``max_backlog_ms`` behind.
    """

    __slots__ = ("dropped_bytes", "played_bytes", "sent_bytes")

    def __init__(self) -> None:
        self.sent_bytes = 0
        self.played_bytes = 0
        self.dropped_bytes = 0


@dataclass(frozen=True, slots=True)
class Resolved:
    """A play's outcome is known: ``PLAYED``, ``INTERRUPTED``, ``ENDED`` or ``FAILED``."""

    play_id: int
    outcome: Outcome
    played_bytes: int
    sent_bytes: int


@dataclass(frozen=True, slots=True)
class MarkResolved:
    """A mark queued with :meth:`Pacer.add_mark` resolved: ``PLAYED``, ``INTERRUPTED`` (a
    ``clear`` discarded the audio before it) or ``ENDED``."""

    mark_id: int
    outcome: Outcome


class _Play:
    """A play's audio not yet sent: the chunks as its source gave them, taken frame by frame.

    A chunk of exactly one frame (an echo, a relay) goes out as the same ``bytes`` object,
    with no copy; a frame cut from a longer chunk is one slice.
    """

    __slots__ = (
        "available",
        "chunks",
        "head",
        "id",
        "last_mark",
        "max_backlog",
        "progress",
        "resolved",
        "source_done",
    )

    def __init__(self, play_id: int, max_backlog_ms: int | None) -> None:
        self.id = play_id
        self.progress = PlayProgress()
        self.chunks: deque[bytes] = deque()
        self.head = 0  # bytes of chunks[0] already sent
        self.available = 0  # bytes not yet sent
        self.source_done = False
        self.resolved = False  # failed while queued: skipped, never sent
        self.last_mark = 0  # play bytes at the last mark sent
        self.max_backlog = None if max_backlog_ms is None else max_backlog_ms * BYTES_PER_MS

    def append(self, mulaw: bytes) -> None:
        """Add audio from the source; past ``max_backlog`` unsent, the oldest is dropped."""
        if not mulaw:
            return
        self.chunks.append(mulaw if type(mulaw) is bytes else bytes(mulaw))
        self.available += len(mulaw)
        if self.max_backlog is not None and self.available > self.max_backlog:
            self._drop(self.available - self.max_backlog)

    def _drop(self, excess: int) -> None:
        self.available -= excess
        self.progress.dropped_bytes += excess
        chunks = self.chunks
        while excess:
            left = len(chunks[0]) - self.head
            if left > excess:
                self.head += excess
                return
            chunks.popleft()
            self.head = 0
            excess -= left

    def take(self, size: int) -> bytes:
        """The next ``size`` bytes (at most :attr:`available`)."""
        self.available -= size
        chunks, head = self.chunks, self.head
        first = chunks[0]
        left = len(first) - head
        if left > size:
            self.head = head + size
            return first[head : head + size]
        chunks.popleft()
        self.head = 0
        if left == size:
            return first if head == 0 else first[head:]
        parts = [first[head:]]  # a frame across chunks: rare with a source of whole frames
        size -= left
        while size:
            chunk = chunks[0]
            if len(chunk) > size:
                parts.append(chunk[:size])
                self.head = size
                break
            parts.append(chunks.popleft())
            size -= len(chunk)
        return b"".join(parts)


class _Mark:
    """A mark queued behind plays, waiting to be sent."""

    __slots__ = ("id", "name")

    def __init__(self, mark_id: int, name: str) -> None:
        self.id = mark_id
        self.name = name


class _MarkPoint:
    """One of the pacer's own marks, sent: what its echo confirms."""

    __slots__ = ("final", "generation", "play", "play_bytes", "stream_bytes")

    def __init__(self, play: _Play, stream_bytes: int, generation: int, final: bool) -> None:
        self.play = play
        self.play_bytes = play.progress.sent_bytes
        self.stream_bytes = stream_bytes
        self.generation = generation
        self.final = final


class Pacer:
    """Which frames and marks to send now, from what the echoes confirmed; no I/O, no clock.

    Plays and marks are named by ids the caller picks (unique among those pending). Nothing
    here needs an event loop: each method changes the state, and :meth:`frames_to_send` and
    :meth:`resolved` say what follows.

    Args:
        frame_ms: the size of every outbound frame but a play's last.
        lead_ms: how far the audio sent may run ahead of the audio confirmed.
        mark_interval_ms: a mark goes out at least this often within a play.

    Raises:
        ValueError: unless ``0 < frame_ms <= mark_interval_ms <= lead_ms``.
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
        # Plays with audio still to send, and marks to send after them, in order.
        self._queue: deque[_Play | _Mark] = deque()
        self._plays: dict[int, _Play] = {}  # every unresolved play, oldest first
        self._sent_marks: dict[str, deque[tuple[int, int]]] = {}  # name -> (id, generation)
        self._marks: dict[str, _MarkPoint] = {}
        self._generation = 0  # +1 per clear: marks of an older one were discarded, not played
        self._out: list[Outgoing] = []
        self._resolved: list[Resolved | MarkResolved] = []
        self.sent_bytes = 0  # over the whole stream
        self.confirmed_bytes = 0

    @property
    def lead_ms(self) -> float:
        """Audio sent and not yet confirmed, in milliseconds."""
        return (self.sent_bytes - self.confirmed_bytes) / BYTES_PER_MS

    # --- what the caller tells the pacer ------------------------------------------------------

    def add_play(self, play_id: int, *, max_backlog_ms: int | None = None) -> PlayProgress:
        """Queue a play behind everything queued before; its audio comes with :meth:`add_audio`.

        Args:
            play_id: the play's id, unique among pending plays.
            max_backlog_ms: keep at most this much of its audio unsent, dropping the oldest
                (for a live source); ``None`` keeps all.

        Returns:
            The play's byte counts, updated as it goes.
        """
        play = _Play(play_id, max_backlog_ms)
        self._plays[play_id] = play
        self._queue.append(play)
        return play.progress

    def add_audio(self, play_id: int, mulaw: bytes) -> None:
        """More of a play's audio (headerless mu-law/8000); ignored once the play resolved."""
        play = self._plays.get(play_id)
        if play is not None:
            play.append(mulaw)

    def pass_through(self, play_id: int, mulaw: bytes) -> bool:
        """Send ``mulaw`` as it is, if it can go out now as one whole frame of the play.

        The relay's case, 50 times a second: the play is the one sending, has nothing
        buffered, this is exactly one frame, the lead has room and no mark falls due after it.
        Then it counts as sent and this returns ``True``: the caller sends it as one media
        frame's payload. Otherwise nothing changes and this returns ``False``: give it to
        :meth:`add_audio`.
        """
        play = self._plays.get(play_id)
        size = self._frame_bytes
        if (
            play is None
            or len(mulaw) != size
            or type(mulaw) is not bytes
            or play.available
            or play.source_done
            or self._out
            or not self._queue
            or self._queue[0] is not play
            or self.sent_bytes + size - self.confirmed_bytes > self._lead_bytes
        ):
            return False
        progress = play.progress
        if progress.sent_bytes + size - play.last_mark >= self._mark_bytes:
            return False  # a mark falls due after it
        self.sent_bytes += size
        progress.sent_bytes += size
        return True

    def end_source(self, play_id: int) -> None:
        """A play's source has no more audio: its last frame and final mark may go out.

        A play whose source gave no audio at all resolves as ``PLAYED`` when its turn comes.
        """
        play = self._plays.get(play_id)
        if play is not None:
            play.source_done = True

    def fail_source(self, play_id: int) -> None:
        """A play's source failed: it resolves as ``FAILED`` now, and sends nothing more."""
        play = self._plays.pop(play_id, None)
        if play is not None:
            play.resolved = True
            self._resolve(play, Outcome.FAILED)

    def add_mark(self, mark_id: int, name: str) -> None:
        """Queue a mark behind everything queued so far; it resolves on its echo.

        The name must not start with :data:`MARK_PREFIX`.
        """
        self._queue.append(_Mark(mark_id, name))

    def on_echo(self, name: str) -> bool:
        """Twilio echoed a mark.

        Returns:
            Whether the mark was one of the pacer's own (the app's marks, and names the pacer
            never sent, are the app's business).
        """
        if name.startswith(MARK_PREFIX):
            self._on_own_echo(name)
            return True
        waiting = self._sent_marks.get(name)
        if waiting:
            mark_id, generation = waiting.popleft()
            if not waiting:
                del self._sent_marks[name]
            played = generation == self._generation
            self._resolved.append(
                MarkResolved(mark_id, Outcome.PLAYED if played else Outcome.INTERRUPTED)
            )
        return False

    def clear(self) -> None:
        """A ``clear`` was sent: every pending play and unsent mark is ``INTERRUPTED``.

        Twilio echoes the marks it held at once; those echoes are not counted as played.
        """
        self._generation += 1
        for item in self._queue:
            if type(item) is _Mark:
                self._resolved.append(MarkResolved(item.id, Outcome.INTERRUPTED))
        self._queue.clear()
        for play in self._plays.values():
            self._resolve(play, Outcome.INTERRUPTED)
        self._plays.clear()
        # Marks sent so far can only be echoed as discarded now: forget them, so a peer that
        # never echoes cannot make them pile up clear after clear.
        self._marks.clear()
        self.confirmed_bytes = self.sent_bytes  # Twilio's buffer is empty again

    def end(self) -> None:
        """The stream ended: every pending play and mark resolves as ``ENDED``."""
        for play in self._plays.values():
            self._resolve(play, Outcome.ENDED)
        for waiting in self._sent_marks.values():
            self._resolved.extend(MarkResolved(mark_id, Outcome.ENDED) for mark_id, _ in waiting)
        for item in self._queue:
            if type(item) is _Mark:
                self._resolved.append(MarkResolved(item.id, Outcome.ENDED))
        self._plays.clear()
        self._sent_marks.clear()
        self._queue.clear()
        self._marks.clear()

    # --- what the pacer tells the caller ------------------------------------------------------

    def frames_to_send(self) -> Sequence[Outgoing]:
        """Every frame and mark the lead allows now, in order (see :data:`Outgoing`).

        A play that has sent its last frame gets its final mark; an empty one resolves.
        """
        self._pump()
        if not self._out:
            return _NOTHING
        out, self._out = self._out, []
        return out

    def resolved(self) -> Sequence[Resolved | MarkResolved]:
        """Plays and marks resolved since the last call, in order."""
        if not self._resolved:
            return _NOTHING
        resolved, self._resolved = self._resolved, []
        return resolved

    def pending(self) -> list[int]:
        """The ids of every unresolved play, oldest first."""
        return list(self._plays)

    # --- inside -------------------------------------------------------------------------------

    def _resolve(self, play: _Play, outcome: Outcome) -> None:
        progress = play.progress
        self._resolved.append(
            Resolved(play.id, outcome, progress.played_bytes, progress.sent_bytes)
        )

    def _pump(self) -> None:
        queue = self._queue
        while queue:
            item = queue[0]
            if type(item) is _Mark:
                queue.popleft()
                self._out.append(item.name)
                self._sent_marks.setdefault(item.name, deque()).append((item.id, self._generation))
                continue
            assert type(item) is _Play
            if item.resolved:  # failed while queued
                queue.popleft()
                continue
            self._send_frames(item)
            if not (item.source_done and item.available == 0):
                return  # waiting for room or for the source
            queue.popleft()
            self._finish_sending(item)

    def _send_frames(self, play: _Play) -> None:
        # The hot path: one pass per frame, on locals; a frame is taken from the play's chunks
        # with no copy when the source gave it whole.
        frame_bytes, mark_bytes = self._frame_bytes, self._mark_bytes
        room = self._lead_bytes - (self.sent_bytes - self.confirmed_bytes)
        progress, out = play.progress, self._out
        source_done = play.source_done
        sent = 0
        while room > 0:
            available = play.available
            if available >= frame_bytes:
                size = frame_bytes
            elif source_done and available:
                size = available  # the last frame is not padded
            else:
                break
            out.append(play.take(size))
            room -= size
            sent += size
            if (not source_done or play.available) and (
                progress.sent_bytes + sent - play.last_mark >= mark_bytes
            ):
                self._commit(play, sent)
                sent = 0
                self._send_mark(play, final=False)
        if sent:
            self._commit(play, sent)

    def _commit(self, play: _Play, n_bytes: int) -> None:
        self.sent_bytes += n_bytes
        play.progress.sent_bytes += n_bytes

    def _finish_sending(self, play: _Play) -> None:
        if play.progress.sent_bytes == 0:  # an empty source: nothing to confirm
            del self._plays[play.id]
            self._resolve(play, Outcome.PLAYED)
            return
        self._send_mark(play, final=True)

    def _send_mark(self, play: _Play, *, final: bool) -> None:
        sent = play.progress.sent_bytes
        # Unique per stream (play id + offset), so an echo maps to exactly one point.
        name = f"{MARK_PREFIX}{play.id}:{sent // BYTES_PER_MS}"
        self._out.append(name)
        play.last_mark = sent
        self._marks[name] = _MarkPoint(play, self.sent_bytes, self._generation, final)

    def _on_own_echo(self, name: str) -> None:
        point = self._marks.pop(name, None)
        if point is None or point.generation != self._generation:
            return  # echoed by a clear: that audio was discarded, not played
        self.confirmed_bytes = max(self.confirmed_bytes, point.stream_bytes)
        play = point.play
        progress = play.progress
        progress.played_bytes = max(progress.played_bytes, point.play_bytes)
        if point.final and self._plays.pop(play.id, None) is not None:
            self._resolve(play, Outcome.PLAYED)
