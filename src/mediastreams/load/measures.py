"""What one call of the load generator measures of the app, as its frames arrive.

:class:`CallMeasures` times the app against the caller: the lag of each echoed caller frame
(its stamp comes back), time to first audio, turn latency (the end of a caller's turn to the
app's next audio), the clear reaction (a barge-in to the app's ``clear``) and late frames. It
writes into the process's :class:`~mediastreams.load.stats.Stats` as it goes (histograms,
late counts) and adds its own counters in at the end (:meth:`CallMeasures.fold`).

A frame is *late* by its lag when it carries a stamp; otherwise by the hole it ends: how long
the playout had been empty when it came, if the app's audio had stopped less than
``REPLY_IDLE_MS`` (2 s) before (longer is a pause between replies, as the emulator says).
Times are microseconds since the run's epoch.
"""

from __future__ import annotations

from ..emulator.measures import REPLY_IDLE_MS
from ..wireformat import BYTES_PER_MS, FRAME_BYTES
from .caller import STAMP_BYTES, read_stamp
from .stats import Stats

__all__ = ["BARGE_IN_MS", "CallMeasures"]

BARGE_IN_MS = 100
"""A caller who starts a turn while this much of the app's audio waits talks over it. An app
that echoes the caller keeps a frame or two queued, which is not a reply."""
_BARGE_IN_BYTES = BARGE_IN_MS * BYTES_PER_MS
_REPLY_IDLE_US = REPLY_IDLE_MS * 1000


class CallMeasures:
    """One call's measures of the app (see the module's docstring)."""

    __slots__ = (
        "_barge_in_us",
        "_counters",
        "_first_audio",
        "_histograms",
        "_lag",
        "_late",
        "_turn_end_us",
        "dry_us",
        "echoed",
        "media_bytes",
        "media_in",
        "started_us",
    )

    def __init__(self, stats: Stats) -> None:
        self.started_us = 0  # when start was sent
        self.media_in = 0  # the app's media frames
        self.media_bytes = 0
        self.echoed = 0  # of them, caller frames that came back
        self.dry_us: int | None = None  # when the playout last ran out
        self._first_audio = False
        self._turn_end_us: int | None = None
        self._barge_in_us: int | None = None
        self._counters = stats.counters
        self._late = stats.late
        self._histograms = stats.histograms
        self._lag = stats.histograms["echo_lag"]

    def media(self, audio: bytes, was_empty: bool, now_us: int) -> None:
        """The app's audio arrived (``was_empty``: the playout had nothing queued)."""
        self.media_in += 1
        self.media_bytes += len(audio)
        if not self._first_audio:
            self._first_audio = True
            self._histograms["first_audio"].record(now_us - self.started_us)
        if self._turn_end_us is not None:
            self._histograms["turn"].record(now_us - self._turn_end_us)
            self._turn_end_us = None
        late_us = -1
        sent_us = read_stamp(audio)
        if sent_us is not None:
            late_us = now_us - sent_us
            self._lag.record(late_us)
            self.echoed += 1
        if len(audio) > FRAME_BYTES:  # an app that sends more than 20 ms a frame
            late_us = max(late_us, self._stamps_after_first(audio, now_us))
        if late_us < 0 and was_empty and self.dry_us is not None:
            hole_us = now_us - self.dry_us
            if hole_us < _REPLY_IDLE_US:
                late_us = hole_us
        if late_us >= 20_000:
            late = self._late
            late[20] += 1
            if late_us >= 40_000:
                late[40] += 1
                if late_us >= 100_000:
                    late[100] += 1

    def _stamps_after_first(self, audio: bytes, now_us: int) -> int:
        lag_us = -1
        for offset in range(FRAME_BYTES, len(audio), FRAME_BYTES):
            sent_us = read_stamp(audio[offset : offset + STAMP_BYTES])
            if sent_us is not None:
                lag_us = max(lag_us, now_us - sent_us)
                self._lag.record(now_us - sent_us)
                self.echoed += 1
        return lag_us

    def caller_talks(self, queued_bytes: int, now_us: int) -> None:
        """A caller's turn starts, with ``queued_bytes`` of the app's audio waiting."""
        if queued_bytes >= _BARGE_IN_BYTES:
            self._barge_in_us = now_us
            self._counters["barge_ins"] += 1

    def caller_listens(self, now_us: int) -> None:
        """A caller's turn ends: the app's next audio is its answer."""
        self._turn_end_us = now_us

    def cleared(self, now_us: int) -> None:
        """The app sent ``clear``."""
        self._counters["clears"] += 1
        if self._barge_in_us is not None:
            self._histograms["clear_reaction"].record(now_us - self._barge_in_us)
            self._barge_in_us = None

    def fold(self, counters: dict[str, int], frames_sent: int) -> None:
        """Add this call's counts (and the ``frames_sent`` by its caller) to ``counters``."""
        counters["frames_sent"] += frames_sent
        counters["stamped_sent"] += frames_sent
        counters["echoed"] += self.echoed
        counters["media_received"] += self.media_in
        counters["media_bytes_received"] += self.media_bytes
