"""A load run's report: what the calls did, the distributions, and whether to believe them.

:class:`LoadReport` reads the merged :class:`~mediastreams.load.stats.Stats` of every process.
Its figures are about the app, measured by the generator; :attr:`LoadReport.trusted` says
whether the generator kept its own time. A generator whose ticks ran late (more than 1% of
them over 10 ms) or whose process was busy more than 90% of the time was itself a bottleneck:
its lags and late frames may be its own, and the report says so first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import LoadConfig
from .run import TICK_LATE_MS
from .stats import HISTOGRAMS, LATE_MS, Second, Stats

__all__ = ["UNTRUSTED_CPU_PCT", "UNTRUSTED_LATE_TICKS_PCT", "LoadReport", "live_line"]

UNTRUSTED_LATE_TICKS_PCT = 1.0
"""More ticks than this share running over ``TICK_LATE_MS`` late: the figures are doubtful."""
UNTRUSTED_CPU_PCT = 90.0
"""A generator process busier than this (of one core): the figures are doubtful."""
_LABELS = {
    "echo_lag": "caller frame sent to its echo",
    "first_audio": "start to the app's first audio",
    "turn": "end of a caller turn to the app's next audio",
    "clear_reaction": "barge-in to the app's clear",
    "tick_late": "the generator's tick, late by",
}


@dataclass
class LoadReport:
    """The report of a load run."""

    config: LoadConfig
    stats: Stats
    interrupted: bool = False

    @property
    def counters(self) -> dict[str, int]:
        return self.stats.counters

    @property
    def echoed_pct(self) -> float | None:
        """Of the caller frames stamped, the share whose echo came back (``None``: no echo)."""
        sent, echoed = self.counters["stamped_sent"], self.counters["echoed"]
        if not echoed or not sent:
            return None
        return 100 * echoed / sent

    @property
    def late_ticks_pct(self) -> float:
        ticks = self.counters["ticks"]
        return 100 * self.counters["ticks_late"] / ticks if ticks else 0.0

    @property
    def untrusted_because(self) -> list[str]:
        """Why the figures may be the generator's own, not the app's (empty: trusted)."""
        reasons = []
        if self.late_ticks_pct > UNTRUSTED_LATE_TICKS_PCT:
            reasons.append(
                f"{self.late_ticks_pct:.1f}% of the generator's ticks ran more than "
                f"{TICK_LATE_MS} ms late (over {UNTRUSTED_LATE_TICKS_PCT:g}%)"
            )
        busy = [p for p in self.stats.process_cpu_pct if p > UNTRUSTED_CPU_PCT]
        if busy:
            reasons.append(
                f"a generator process used {max(busy):.0f}% of its core (over "
                f"{UNTRUSTED_CPU_PCT:g}%): add --processes, or give it a core of its own"
            )
        return reasons

    @property
    def trusted(self) -> bool:
        return not self.untrusted_because

    @property
    def ok(self) -> bool:
        """No violation, and no call failed."""
        return not self.stats.violations and not self.counters["calls_failed"]

    @property
    def exit_code(self) -> int:
        """0: no violation and no failed call; 1: some."""
        return 0 if self.ok else 1

    @property
    def us_per_frame_pair(self) -> float | None:
        """The generator's CPU per caller frame sent (and its echo read), in the steady window
        when there was one (every call up, none ending yet), else over the whole run."""
        stats = self.stats
        if stats.steady_frames_sent:
            return 1e6 * stats.steady_cpu_s / stats.steady_frames_sent
        sent = self.counters["frames_sent"]
        return 1e6 * stats.cpu_s / sent if sent else None

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-safe data (``mediastreams load --json``)."""
        c = self.counters
        stats = self.stats
        return {
            "config": self.config.public_dict(),
            "ok": self.ok,
            "exit_code": self.exit_code,
            "interrupted": self.interrupted,
            "trusted": self.trusted,
            "untrusted_because": self.untrusted_because,
            "calls": {
                "planned": c["calls_planned"],
                "started": c["calls_started"],
                "up": c["calls_up"],
                "completed": c["calls_completed"],
                "ended_by_app": c["calls_ended_by_app"],
                "failed": c["calls_failed"],
                "failed_by_cause": [_group(g) for g in _by_count(stats.failures)],
                "first_start_s": stats.starts_s[0] if stats.starts_s else None,
                "last_start_s": stats.starts_s[-1] if stats.starts_s else None,
                "start_rate": _rate(stats.starts_s),
            },
            "frames": {
                "sent": c["frames_sent"],
                "stamped": c["stamped_sent"],
                "received": c["media_received"],
                "received_bytes": c["media_bytes_received"],
                "echoed": c["echoed"],
                "echoed_pct": _round(self.echoed_pct, 3),
                "lost": c["stamped_sent"] - c["echoed"] if c["echoed"] else None,
                "late": {f"over_{ms}_ms": stats.late[ms] for ms in LATE_MS},
                "after_stop": c["frames_after_stop"],
            },
            "marks": {
                "received": c["marks_received"],
                "echoed": c["marks_echoed"],
                "echoed_by_clear": c["marks_echoed_by_clear"],
                "lost": c["marks_lost"],
            },
            "clears": c["clears"],
            "barge_ins": c["barge_ins"],
            "violations": {
                "count": stats.violation_count,
                "by_code": [_group(g) for g in _by_count(stats.violations)],
            },
            "latency": {name: stats.histograms[name].summary_ms() for name in HISTOGRAMS},
            "generator": {
                "processes": stats.processes,
                "cpu_s": round(stats.cpu_s, 2),
                "wall_s": round(stats.wall_s, 2),
                "cpu_pct_by_process": stats.process_cpu_pct,
                "us_per_frame_pair": _round(self.us_per_frame_pair, 1),
                "steady_s": round(stats.steady_s, 2),
                "ticks": c["ticks"],
                "ticks_late": c["ticks_late"],
                "ticks_late_pct": round(self.late_ticks_pct, 3),
            },
            "timeline": [_timeline_row(a, b) for a, b in _pairs(stats.seconds)],
        }

    def render_text(self) -> str:
        """The report for a terminal."""
        data = self.to_dict()
        calls, frames, marks = data["calls"], data["frames"], data["marks"]
        gen = data["generator"]
        lines = []
        if not self.trusted:
            lines.append("THE GENERATOR WAS A BOTTLENECK: its figures cannot be trusted.")
            lines += [f"  - {reason}" for reason in self.untrusted_because]
            lines.append("")
        verdict = "OK" if self.ok else "PROBLEMS"
        lines.append(f"mediastreams load {self.config.target}: {verdict}")
        lines.append(
            f"calls: {calls['planned']} planned, {calls['up']} streamed, {calls['completed']} "
            f"completed, {calls['ended_by_app']} ended by the app, {calls['failed']} failed"
            + (f"; started at {calls['start_rate']:.1f}/s" if calls["start_rate"] else "")
        )
        for group in calls["failed_by_cause"]:
            lines.append(f"  failed {group['count']}x: {_describe(group)}")
        echoed = f"{frames['echoed_pct']:.2f}%" if frames["echoed_pct"] is not None else "-"
        lines.append(
            f"caller frames: {frames['sent']:,} sent, echoed {echoed}; app frames: "
            f"{frames['received']:,}; late over 20/40/100 ms: "
            + "/".join(f"{n:,}" for n in frames["late"].values())
        )
        lines.append(
            f"marks: {marks['received']:,} received, {marks['echoed']:,} echoed "
            f"({marks['echoed_by_clear']:,} by a clear), {marks['lost']:,} lost; "
            f"clears: {data['clears']:,}; barge-ins: {data['barge_ins']:,}"
        )
        lines.append(f"violations: {data['violations']['count']:,}")
        for group in data["violations"]["by_code"]:
            lines.append(f"  {group['count']}x {_describe(group)}")
        lines.append("latency (ms):       count     p50     p90     p99     max")
        for name in HISTOGRAMS:
            s = data["latency"][name]
            if s["count"]:
                lines.append(
                    f"  {name:<16} {s['count']:>9,} {s['p50_ms']:>7} {s['p90_ms']:>7} "
                    f"{s['p99_ms']:>7} {s['max_ms']:>7}   {_LABELS[name]}"
                )
        per_pair = gen["us_per_frame_pair"]
        lines.append(
            f"generator: {gen['processes']} process(es), CPU {gen['cpu_pct_by_process']}% of a "
            f"core, {per_pair if per_pair is not None else '-'} µs per frame pair; ticks late "
            f"over {TICK_LATE_MS} ms: {gen['ticks_late_pct']}%"
        )
        return "\n".join(lines)


def live_line(before: Second | None, now: Second, planned: int) -> str:
    """The live line for one second: calls, frames a second each way, late, errors, CPU."""
    dt = now.second - before.second if before is not None and now.second > before.second else 1
    sent = now.frames_sent - (before.frames_sent if before else 0)
    received = now.media_received - (before.media_received if before else 0)
    cpu = now.cpu_s - before.cpu_s if before is not None else None
    cpu_text = f"{100 * cpu / dt:.0f}%" if cpu is not None else "-"
    return (
        f"{now.second:>5} s  active {now.active}/{planned}  out {sent / dt:,.0f}/s  "
        f"in {received / dt:,.0f}/s  late {now.late_frames:,}  violations {now.violations:,}  "
        f"errors {now.failed:,}  ticks late {now.ticks_late:,}  cpu {cpu_text}"
    )


def _pairs(seconds: list[Second]) -> list[tuple[Second | None, Second]]:
    return [(seconds[i - 1] if i else None, s) for i, s in enumerate(seconds)]


def _timeline_row(before: Second | None, now: Second) -> dict[str, Any]:
    def diff(name: str) -> float:
        return float(getattr(now, name) - (getattr(before, name) if before else 0))

    first = before is None
    return {
        "t_s": now.second,
        "active": now.active,
        "sent_per_s": int(diff("frames_sent")),
        "received_per_s": int(diff("media_received")),
        "late": int(diff("late_frames")),
        "violations": int(diff("violations")),
        "failed": int(diff("failed")),
        "ticks_late": int(diff("ticks_late")),
        "cpu_pct": None if first else round(100 * diff("cpu_s"), 1),
    }


def _by_count(groups: dict[str, Any]) -> list[Any]:
    return sorted(groups.values(), key=lambda g: (-g.count, g.code, g.kind))


def _group(group: Any) -> dict[str, Any]:
    return {
        "code": group.code,
        "kind": group.kind,
        "count": group.count,
        "message": group.message,
        "hint": group.hint,
        "frame": group.frame,
    }


def _describe(group: dict[str, Any]) -> str:
    code = f"{group['code']} " if group["code"] else ""
    return f"{code}{group['kind']}: {group['message']}"


def _rate(starts_s: list[float]) -> float | None:
    """Calls started per second, from the first start to the last."""
    if len(starts_s) < 2 or starts_s[-1] <= starts_s[0]:
        return None
    return round((len(starts_s) - 1) / (starts_s[-1] - starts_s[0]), 2)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
