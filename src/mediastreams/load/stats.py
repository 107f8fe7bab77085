"""What one load generator process counts, and how the processes' counts add up.

A :class:`Stats` is filled by every call of a process as frames come and go: counters,
histograms of durations, violations and failures grouped by Twilio's code, and one
:class:`Second` a second for the live line and the pictures. Its :meth:`Stats.to_dict` is what
a worker process hands its parent, and :meth:`Stats.merge` adds one process's to another's,
so a run over several processes has the same figures as one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..violations import Violation
from .histogram import Histogram

__all__ = ["HISTOGRAMS", "LATE_MS", "Group", "Second", "Stats"]

LATE_MS = (20, 40, 100)
"""The lateness thresholds frames are counted against."""
HISTOGRAMS = ("echo_lag", "first_audio", "turn", "clear_reaction", "tick_late")
"""The durations measured: send to echo of a caller frame; ``start`` to the app's first
audio; end of a caller's turn to the app's next audio; barge-in to ``clear``; and the
generator's own timer ticks, how late each ran."""
_FRAME_CHARS = 300  # of a faulty frame kept as the example


@dataclass
class Group:
    """Every violation (or failure) of one code and kind: how many, and the first one."""

    code: int
    kind: str
    message: str
    hint: str
    frame: str | None = None
    count: int = 0

    @classmethod
    def first(cls, violation: Violation) -> Group:
        frame = violation.frame[:_FRAME_CHARS] if violation.frame else None
        return cls(violation.code, violation.kind, violation.message, violation.hint, frame)


@dataclass
class Second:
    """The counters at the end of one second of the run (cumulative, except ``active``).

    ``second`` counts from the run's epoch (1 is the end of its first second); seconds are
    consecutive in a process's list.
    """

    second: int
    active: int
    frames_sent: int
    media_received: int
    late_frames: int
    violations: int
    failed: int
    cpu_s: float
    ticks_late: int

    @classmethod
    def total(cls, second: int, parts: Iterable[Second]) -> Second:
        """The row of ``second`` for several processes at once: each counter added up."""
        rows = list(parts)
        counters = [f.name for f in fields(cls) if f.name != "second"]
        return cls(second, **{name: sum(getattr(row, name) for row in rows) for name in counters})


_COUNTERS = (
    "calls_planned",
    "calls_started",  # a connection was tried
    "calls_up",  # the stream started: start was sent
    "calls_completed",  # the generator's stop ended it, as planned
    "calls_ended_by_app",  # the app closed the socket normally (1000/1001) before the stop
    "calls_failed",
    "frames_sent",
    "stamped_sent",  # caller frames that carried a stamp
    "media_received",
    "media_bytes_received",
    "echoed",  # stamped frames that came back
    "marks_received",
    "marks_echoed",
    "marks_echoed_by_clear",
    "marks_lost",  # still waiting in the playout at the stop
    "clears",
    "barge_ins",  # the caller started a turn while the app's audio played
    "frames_after_stop",
    "ticks",  # timer ticks while at least one call was served
    "ticks_late",  # of them, those that ran more than TICK_LATE_MS late
)


@dataclass
class Stats:
    """The counts of one process (or, merged, of a whole run)."""

    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    late: dict[int, int] = field(default_factory=lambda: dict.fromkeys(LATE_MS, 0))
    histograms: dict[str, Histogram] = field(
        default_factory=lambda: {name: Histogram() for name in HISTOGRAMS}
    )
    violations: dict[str, Group] = field(default_factory=dict)
    failures: dict[str, Group] = field(default_factory=dict)
    seconds: list[Second] = field(default_factory=list)
    starts_s: list[float] = field(default_factory=list)  # when each call was started
    cpu_s: float = 0.0  # the process's CPU over the run
    wall_s: float = 0.0
    # The steady window: every call streaming, none ended yet.
    steady_s: float = 0.0
    steady_cpu_s: float = 0.0
    steady_frames_sent: int = 0
    steady_media_received: int = 0
    processes: int = 1
    process_cpu_pct: list[float] = field(default_factory=list)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a counter (for what is not on the hot path)."""
        self.counters[name] += n

    def violation(self, violation: Violation) -> None:
        """Count a violation, keeping the first of its code and kind as the example."""
        _add(self.violations, violation)

    def failure(self, violation: Violation) -> None:
        """Count a failed call by its cause (Twilio's code and kind)."""
        self.counters["calls_failed"] += 1
        _add(self.failures, violation)

    @property
    def violation_count(self) -> int:
        return sum(group.count for group in self.violations.values())

    def merge(self, other: Stats) -> None:
        """Add another process's counts to these."""
        for name, n in other.counters.items():
            self.counters[name] = self.counters.get(name, 0) + n
        for ms, n in other.late.items():
            self.late[ms] = self.late.get(ms, 0) + n
        for name, histogram in other.histograms.items():
            self.histograms[name].merge(histogram)
        for mine, theirs in ((self.violations, other.violations), (self.failures, other.failures)):
            for key, group in theirs.items():
                if key in mine:
                    mine[key].count += group.count
                else:
                    mine[key] = Group(**asdict(group))
        self.seconds = _merge_seconds(self.seconds, other.seconds)
        self.starts_s = sorted(self.starts_s + other.starts_s)
        self.cpu_s += other.cpu_s
        self.wall_s = max(self.wall_s, other.wall_s)
        self.steady_s = min(self.steady_s, other.steady_s) if self.steady_s else other.steady_s
        self.steady_cpu_s += other.steady_cpu_s
        self.steady_frames_sent += other.steady_frames_sent
        self.steady_media_received += other.steady_media_received
        self.processes += other.processes
        self.process_cpu_pct += other.process_cpu_pct

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-safe, for :meth:`from_dict` in another process."""
        return {
            "counters": self.counters,
            "late": {str(ms): n for ms, n in self.late.items()},
            "histograms": {name: h.to_dict() for name, h in self.histograms.items()},
            "violations": {key: asdict(g) for key, g in self.violations.items()},
            "failures": {key: asdict(g) for key, g in self.failures.items()},
            "seconds": [asdict(s) for s in self.seconds],
            "starts_s": self.starts_s,
            "cpu_s": self.cpu_s,
            "wall_s": self.wall_s,
            "steady_s": self.steady_s,
            "steady_cpu_s": self.steady_cpu_s,
            "steady_frames_sent": self.steady_frames_sent,
            "steady_media_received": self.steady_media_received,
            "processes": self.processes,
            "process_cpu_pct": self.process_cpu_pct,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stats:
        """The stats :meth:`to_dict` wrote."""
        return cls(
            counters={k: int(v) for k, v in data["counters"].items()},
            late={int(ms): int(n) for ms, n in data["late"].items()},
            histograms={k: Histogram.from_dict(v) for k, v in data["histograms"].items()},
            violations={k: Group(**v) for k, v in data["violations"].items()},
            failures={k: Group(**v) for k, v in data["failures"].items()},
            seconds=[Second(**s) for s in data["seconds"]],
            starts_s=[float(t) for t in data["starts_s"]],
            cpu_s=float(data["cpu_s"]),
            wall_s=float(data["wall_s"]),
            steady_s=float(data["steady_s"]),
            steady_cpu_s=float(data["steady_cpu_s"]),
            steady_frames_sent=int(data["steady_frames_sent"]),
            steady_media_received=int(data["steady_media_received"]),
            processes=int(data["processes"]),
            process_cpu_pct=[float(p) for p in data["process_cpu_pct"]],
        )


def _add(groups: dict[str, Group], violation: Violation) -> None:
    key = f"{violation.code} {violation.kind}"
    group = groups.get(key)
    if group is None:
        group = groups[key] = Group.first(violation)
    group.count += 1


def _merge_seconds(ours: list[Second], theirs: list[Second]) -> list[Second]:
    """Second by second (all processes count seconds from one epoch), the counters added.

    A process that ended earlier than the other keeps its last counters (with no call
    active) in the later seconds, so that the sums never go down.
    """
    if not ours or not theirs:
        return list(ours or theirs)
    last = max(ours[-1].second, theirs[-1].second)
    return [
        Second.total(second, [s for s in (_at(ours, second), _at(theirs, second)) if s is not None])
        for second in range(min(ours[0].second, theirs[0].second), last + 1)
    ]


def _at(seconds: list[Second], second: int) -> Second | None:
    """The row of ``second``; past the end, the last row with no call active."""
    if second < seconds[0].second:
        return None
    index = second - seconds[0].second
    if index < len(seconds):
        return seconds[index]
    return replace(seconds[-1], second=second, active=0)
