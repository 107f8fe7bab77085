"""Twilio's playout buffer as counts: where each mark waits, not the audio before it.

A load generator needs the playout's timing (when a mark is reached, when a ``clear`` empties
it), never the audio itself. :class:`CountingPlayout` keeps two running byte counts, queued
and played, and each mark at the count it was queued behind: a 20 ms tick adds 160 to
``played`` and echoes the marks it passes. It stands in for
:class:`~mediastreams.playout.Playout` inside a
:class:`~mediastreams.protocol.TwilioProtocol`, so the rules (a mark into an empty buffer is
echoed at once, ``clear`` echoes every waiting mark) stay in one place.
"""

from __future__ import annotations

from collections import deque

from ..playout import Playout
from ..wireformat import SILENCE_BYTE

__all__ = ["CountingPlayout"]


class CountingPlayout(Playout):
    """A :class:`~mediastreams.playout.Playout` that counts bytes instead of keeping them.

    ``queued - played`` is the audio waiting. :meth:`play` returns silence of the length
    played (the audio itself was never kept).

    Args:
        max_bytes: audio past this many waiting bytes is refused (Twilio discards it, 31931).
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self.queued = 0  # bytes of audio queued since the stream started
        self.played = 0
        self.marks: deque[tuple[int, str]] = deque()  # (queued count when sent, name)

    @property
    def buffered_bytes(self) -> int:
        return self.queued - self.played

    @property
    def pending_marks(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.marks)

    def add_audio(self, payload: bytes) -> bool:
        return self.add_bytes(len(payload))

    def add_bytes(self, n_bytes: int) -> bool:
        """Queue ``n_bytes`` of audio; ``False`` (and nothing queued) past ``max_bytes``."""
        if self.queued - self.played + n_bytes > self.max_bytes:
            return False
        self.queued += n_bytes
        return True

    def add_mark(self, name: str) -> bool:
        if self.queued == self.played:
            return False
        self.marks.append((self.queued, name))
        return True

    def clear(self) -> tuple[str, ...]:
        pending = self.pending_marks
        self.marks.clear()
        self.played = self.queued
        return pending

    def play(self, n_bytes: int) -> tuple[bytes, list[str]]:
        took = min(n_bytes, self.queued - self.played)
        self.played += took
        reached = []
        marks = self.marks
        while marks and marks[0][0] <= self.played:
            reached.append(marks.popleft()[1])
        return bytes([SILENCE_BYTE]) * took, reached
