"""The app's talk-back, as Twilio played it: when its audio came, queued, played and was cleared.

A :class:`Talkback` is what the call's bidirectional streams note as the call goes, in
milliseconds since the call's first ``start``: each ``media`` arrival, each ``clear`` (with
the audio it threw away), and tick by tick the playout (when app audio was queued or playing,
when audible audio was). :func:`~mediastreams.emulator.measures.measure` turns it into
replies, barge-ins, stalls and pauses. What the frames were (counts, marks, violations) is the
call's :class:`~mediastreams.tally.Tally`; this is when things happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..protocol import BYTES_PER_MS
from .loudness import audible_extent, is_audible

__all__ = ["Talkback"]


@dataclass
class Talkback:
    """When the app's audio came and played, in milliseconds since the call's first ``start``."""

    media_ms: list[float] = field(default_factory=list)
    media_bytes: list[int] = field(default_factory=list)
    clears_ms: list[float] = field(default_factory=list)
    # How many media frames had arrived when each clear did.
    clears_after_media: list[int] = field(default_factory=list)
    # Tick times at which the caller heard the app (something audible played in that tick).
    audible_ticks_ms: list[int] = field(default_factory=list)
    played_bytes: int = 0
    max_buffered_ms: float = 0.0
    duration_ms: int = 0
    inbound_dropped: int = 0  # caller frames not sent: the app's side was congested (31930)
    # The playout's busy stretches (app audio queued or playing), run-length encoded:
    # (start_ms, end_ms, played_bytes at the start, played_bytes at the end). The stretch
    # under way is `playout_open`: (start_ms, played_bytes at the start).
    playout_runs: list[tuple[int, int, int, int]] = field(default_factory=list)
    playout_open: tuple[int, int] | None = None
    # The stretches with audible app audio queued or playing, (start_ms, end_ms); and the
    # one under way. A pause inside queued audio is inside; silence the app sends is not.
    audible_runs: list[tuple[int, int]] = field(default_factory=list)
    audible_open: int | None = None
    # Where the queued audio's last loud sample is, counted in bytes that ever entered
    # the playout (played, discarded, or still queued).
    audible_until: int = 0
    discarded_bytes: int = 0
    # For each clear: played_bytes when it came, and the queued bytes it threw away.
    clears_played_bytes: list[int] = field(default_factory=list)
    clears_discarded_bytes: list[int] = field(default_factory=list)
    started_at_s: float | None = None  # the event loop's time when start was sent

    @property
    def received_bytes(self) -> int:
        """The app's audio that arrived, in bytes."""
        return sum(self.media_bytes)

    @property
    def discarded_by_clear_ms(self) -> float:
        """Queued audio thrown away by every ``clear``."""
        return self.discarded_bytes / BYTES_PER_MS

    def note_playout(self, now_ms: int, buffered_bytes: int, played: bytes) -> None:
        """One tick of playout: the bytes queued when it began, and the audio it played."""
        if buffered_bytes and self.playout_open is None:
            self.playout_open = (now_ms, self.played_bytes)
        elif not buffered_bytes and self.playout_open is not None:
            start_ms, played_at_start = self.playout_open
            self.playout_runs.append((start_ms, now_ms, played_at_start, self.played_bytes))
            self.playout_open = None
        if self.audible_until > self.played_bytes + self.discarded_bytes:
            if self.audible_open is None:
                self.audible_open = now_ms
        elif self.audible_open is not None:
            self.audible_runs.append((self.audible_open, now_ms))
            self.audible_open = None
        self.played_bytes += len(played)
        if is_audible(played):
            self.audible_ticks_ms.append(now_ms)

    def note_media(
        self, now_ms: float, payload: bytes, buffered_before: int, buffered_after: int
    ) -> None:
        """A ``media`` frame arrived; it was queued unless the buffer was full (31931)."""
        self.media_ms.append(now_ms)
        self.media_bytes.append(len(payload))
        self.max_buffered_ms = max(self.max_buffered_ms, buffered_after / BYTES_PER_MS)
        loud = audible_extent(payload)
        if loud and buffered_after > buffered_before:
            start = self.played_bytes + self.discarded_bytes + buffered_before
            self.audible_until = max(self.audible_until, start + loud)

    def note_clear(self, now_ms: float, discarded_bytes: int) -> None:
        """A ``clear`` arrived, throwing away ``discarded_bytes`` of queued audio."""
        self.clears_ms.append(now_ms)
        self.clears_after_media.append(len(self.media_ms))
        self.clears_played_bytes.append(self.played_bytes)
        self.clears_discarded_bytes.append(discarded_bytes)
        self.discarded_bytes += discarded_bytes
