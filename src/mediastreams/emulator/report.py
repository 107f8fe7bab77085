"""What a call showed: every violation, and how the app's timing felt to the caller.

Times are milliseconds since Twilio sent ``start``. The figures (see
:mod:`mediastreams.emulator.measures` for how replies, barge-ins, stalls and pauses are
found):

- ``time_to_first_audio_ms``: when the app's first ``media`` frame arrived.
- ``utterances``: the caller's speech, cut on 300 ms of silence.
- ``turns``: for each utterance, from its end to the first audio the app sent after it
  (``latency_ms``; ``None`` if the app never answered).
- ``replies``: the app's audio as Twilio played it, reply by reply.
- ``barge_ins``: utterances that began during a reply; the app's ``clear`` (``None`` if it
  talked over the caller), how much of the reply the caller had heard (``heard_ms``), the
  queued audio the clear threw away, and the audio the app still sent after it.
- ``stalls``: the playout running dry inside a reply; ``pauses``: quiet between replies.
- ``marks``: sent, echoed, and echoed because a ``clear`` dropped their audio.
- ``audio``: received, played, dropped inbound (31930), discarded by ``clear``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import Finding
from .call import StreamSummary, Timeline
from .clock import TimeDoubt, time_doubts
from .measures import STALL_LISTED_MS, BargeIn, Pause, Reply, Stall, Turn, measure
from .rest import RestRequest
from .script import FRAME_MS, Utterance

__all__ = [
    "BargeIn",
    "CallReport",
    "Pause",
    "Reply",
    "Stall",
    "Turn",
    "render_summary",
    "render_text",
    "summarize",
]

_FRAME_CHARS = 1000  # of a faulty frame shown in the report (a payload may be megabytes)


@dataclass
class CallReport:
    """Everything a call showed. :meth:`to_dict` is the ``--json`` form."""

    target: str
    clock: str
    placed: bool = True
    stream_url: str | None = None
    stream_sid: str | None = None
    call_sid: str | None = None
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    twiml_verbs: list[str] = field(default_factory=list)
    prelude_ms: int = 0
    duration_ms: int = 0
    ended_by: str = "caller"
    time_to_first_audio_ms: float | None = None
    utterances: list[Utterance] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    barge_ins: list[BargeIn] = field(default_factory=list)
    stalls: list[Stall] = field(default_factory=list)
    stall_max_ms: int | None = None
    stall_at_ms: int | None = None
    stalled_ms: int = 0
    pauses: list[Pause] = field(default_factory=list)
    marks_sent: int = 0
    marks_echoed: int = 0
    marks_echoed_by_clear: int = 0
    clears: int = 0
    max_buffered_ms: float = 0.0
    audio_received_ms: float = 0.0
    audio_played_ms: float = 0.0
    inbound_dropped_ms: float = 0.0
    discarded_by_clear_ms: float = 0.0
    frames_after_stop: int = 0
    wall_s: float = 0.0
    streams: list[StreamSummary] = field(default_factory=list)
    rest_url: str | None = None
    rest_requests: list[RestRequest] = field(default_factory=list)

    @property
    def violations(self) -> list[Finding]:
        """The app's mistakes: these decide the exit code."""
        return [f for f in self.findings if f.violation.sender == "app"]

    @property
    def ok(self) -> bool:
        """The call was placed and the app made no mistake."""
        return self.placed and not self.violations

    @property
    def exit_code(self) -> int:
        """0: no mistake; 1: the app made one; 2: the call could not be placed."""
        if not self.placed:
            return 2
        return 1 if self.violations else 0

    @property
    def pause_max_ms(self) -> float | None:
        """The longest pause between two replies (``None``: fewer than two replies)."""
        return max((p.duration_ms for p in self.pauses), default=None)

    def codes(self) -> list[int]:
        """The distinct Twilio codes found, in order of first appearance."""
        return list(dict.fromkeys(f.violation.code for f in self.findings))

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data; ``violations`` as in ``mediastreams inspect --json``."""
        return {
            "target": self.target,
            "clock": self.clock,
            "placed": self.placed,
            "exit_code": self.exit_code,
            "stream_url": self.stream_url,
            "stream_sid": self.stream_sid,
            "call_sid": self.call_sid,
            "violations": [f.to_dict() for f in self.findings],
            "summary": {
                "violations": len(self.violations),
                "by_code": dict(sorted(Counter(f.violation.code for f in self.findings).items())),
                "by_kind": self._by_kind(),
            },
            "notes": self.notes,
            "twiml": {"verbs": self.twiml_verbs, "prelude_ms": self.prelude_ms},
            "duration_ms": self.duration_ms,
            "ended_by": self.ended_by,
            **self._timing_dict(),
            "frames_after_stop": self.frames_after_stop,
            "streams": [stream.to_dict() for stream in self.streams],
            "rest": None
            if self.rest_url is None
            else {
                "url": self.rest_url,
                "requests": [request.to_dict() for request in self.rest_requests],
            },
            "wall_s": round(self.wall_s, 4),
        }

    def _timing_dict(self) -> dict[str, Any]:
        return {
            "time_to_first_audio_ms": _round(self.time_to_first_audio_ms),
            "utterances": [{"onset_ms": u.onset_ms, "end_ms": u.end_ms} for u in self.utterances],
            "turns": [
                {
                    "speech_end_ms": t.speech_end_ms,
                    "first_reply_ms": _round(t.first_reply_ms),
                    "latency_ms": _round(t.latency_ms),
                }
                for t in self.turns
            ],
            "replies": [
                {
                    "start_ms": r.start_ms,
                    "end_ms": _round(r.end_ms),
                    "played_ms": _round(r.played_ms),
                    "clear_ms": _round(r.clear_ms),
                }
                for r in self.replies
            ],
            "barge_ins": [
                {
                    "onset_ms": b.onset_ms,
                    "clear_ms": _round(b.clear_ms),
                    "clear_reaction_ms": _round(b.clear_reaction_ms),
                    "heard_ms": _round(b.heard_ms),
                    "discarded_ms": _round(b.discarded_ms),
                    "audio_after_clear_ms": _round(b.audio_after_clear_ms),
                }
                for b in self.barge_ins
            ],
            "playout": {
                "stall_max_ms": self.stall_max_ms,
                "stall_at_ms": self.stall_at_ms,
                "stalled_ms": self.stalled_ms,
                "stalls": [{"at_ms": s.at_ms, "duration_ms": s.duration_ms} for s in self.stalls],
                "pause_max_ms": _round(self.pause_max_ms),
                "pauses": [
                    {
                        "at_ms": _round(p.at_ms),
                        "duration_ms": _round(p.duration_ms),
                        "cause": p.cause,
                    }
                    for p in self.pauses
                ],
            },
            "marks": {
                "sent": self.marks_sent,
                "echoed": self.marks_echoed,
                "echoed_by_clear": self.marks_echoed_by_clear,
            },
            "clears": self.clears,
            "frames": {"max_buffered_ms": _round(self.max_buffered_ms)},
            "audio": {
                "received_ms": _round(self.audio_received_ms),
                "played_ms": _round(self.audio_played_ms),
                "inbound_dropped_ms": _round(self.inbound_dropped_ms),
                "discarded_by_clear_ms": _round(self.discarded_by_clear_ms),
            },
        }

    def _by_kind(self) -> list[dict[str, Any]]:
        """One entry per (code, kind, field): how often, and the first one with its frame."""
        return [
            {
                "code": first.violation.code,
                "kind": first.violation.kind,
                "path": first.violation.path,
                "count": count,
                "first_line": first.line,
                "frame": (first.violation.frame or "")[:_FRAME_CHARS] or None,
            }
            for first, count in _firsts(self.findings)
        ]

    def to_json(self) -> str:
        """:meth:`to_dict` as one line of JSON."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def add_measures(self, timeline: Timeline, speech: list[Utterance]) -> None:
        """Fill the timing figures from what the stream recorded."""
        self.duration_ms = timeline.duration_ms
        self.ended_by = timeline.ended_by
        self.time_to_first_audio_ms = timeline.media_ms[0] if timeline.media_ms else None
        self.marks_sent = timeline.marks_sent
        self.marks_echoed = timeline.marks_echoed
        self.marks_echoed_by_clear = timeline.marks_echoed_by_clear
        self.clears = len(timeline.clears_ms)
        self.max_buffered_ms = timeline.max_buffered_ms
        self.audio_received_ms = sum(timeline.media_bytes) / 8
        self.audio_played_ms = timeline.played_bytes / 8
        self.inbound_dropped_ms = timeline.inbound_dropped * FRAME_MS
        self.discarded_by_clear_ms = timeline.discarded_by_clear_ms
        self.frames_after_stop = timeline.frames_after_stop
        self.utterances = list(speech)
        found = measure(timeline, speech)
        self.turns, self.replies, self.barge_ins = found.turns, found.replies, found.barge_ins
        self.pauses = found.pauses
        self.stalls = [s for s in found.stalls if s.duration_ms >= STALL_LISTED_MS]
        self.stalled_ms = sum(s.duration_ms for s in found.stalls)
        longest = max(found.stalls, key=lambda s: s.duration_ms, default=None)
        if longest is not None:
            self.stall_max_ms, self.stall_at_ms = longest.duration_ms, longest.at_ms
        self.notes += _advice(self)
        if timeline.started_at_s is not None:
            until_s = timeline.started_at_s + timeline.duration_ms / 1000
            doubts = time_doubts(timeline.started_at_s, until_s)
            if doubts:
                self.notes.append(_clock_note(doubts))


def _advice(report: CallReport) -> list[str]:
    """What the figures say about the app's habits; not protocol violations."""
    advice = []
    if report.audio_received_ms and not report.marks_sent:
        advice.append(
            f"the app sent {report.audio_received_ms:,.0f} ms of audio and no mark: it cannot "
            "know what the caller has heard (send a mark after each reply; Twilio echoes it "
            "once the audio before it has played)"
        )
    for barge in report.barge_ins:
        if barge.clear_ms is None:
            advice.append(
                f"the caller spoke over the app at {barge.onset_ms} ms and the app never sent "
                "clear: the caller kept hearing the audio already queued"
            )
        elif barge.audio_after_clear_ms:
            advice.append(
                f"after its clear at {barge.clear_ms:,.0f} ms the app still sent "
                f"{barge.audio_after_clear_ms:,.0f} ms of audio while the caller was speaking"
            )
    return advice


def _clock_note(doubts: list[TimeDoubt]) -> str:
    """One note: why virtual time may not hold for this app, and what to do."""
    reasons = []
    blocks = [d for d in doubts if d.cause == "blocked"]
    if blocks:
        longest = max(blocks, key=lambda d: d.blocked_ms)
        reasons.append(
            f"a callback blocked the event loop {len(blocks)} time(s), for up to "
            f"{longest.blocked_ms:,.0f} ms of real time (at {longest.first_s:.2f} s) while "
            "virtual time stood still"
        )
    threads = [d.detail for d in doubts if d.cause == "thread"]
    if threads:
        reasons.append(
            f"thread(s) of the app's own ({', '.join(threads[:3])}) ran while virtual time "
            "jumped ahead"
        )
    sockets = [d.detail for d in doubts if d.cause == "socket"]
    if sockets:
        reasons.append(
            f"the app waited on {', '.join(sockets[:3])} while virtual time jumped ahead"
        )
    return (
        "virtual time may be wrong for this app, and the timing figures with it: "
        + "; ".join(reasons)
        + ". Place the call in real time (--clock real, or clock='real')"
    )


def _percentile(ordered: list[float], percent: float) -> float:
    index = min(len(ordered) - 1, max(0, round(percent / 100 * (len(ordered) - 1))))
    return ordered[index]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def render_text(report: CallReport) -> Any:
    """The report as a rich renderable (tables), for the terminal."""
    from rich.console import Group
    from rich.text import Text

    title = "call placed" if report.placed else "call NOT placed"
    head = Text(f"{report.target} ({report.clock} clock): {title}", style="bold")
    parts: list[Any] = [head]
    if report.twiml_verbs:
        verbs = ", ".join(report.twiml_verbs)
        parts.append(Text(f"TwiML: {verbs} ({report.prelude_ms / 1000:.1f} s before the stream)"))
    parts += [Text(f"note: {note}", style="yellow") for note in report.notes]
    parts.append(_violations_table(report))
    if report.placed:
        parts.append(_measures_table(report))
    return Group(*parts)


def _violations_table(report: CallReport) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Violations (first of each kind, with its frame)", expand=False)
    for column in ("code", "kind", "count", "from", "message", "hint"):
        table.add_column(column, overflow="fold")
    for first, count in _firsts(report.findings):
        v = first.violation
        message = v.message
        if v.frame:
            message += f"\nframe (line {first.line}): {v.frame[: _FRAME_CHARS // 5]}"
        # Text, not markup: a frame may hold brackets.
        table.add_row(str(v.code), v.kind, str(count), v.sender, Text(message), Text(v.hint))
    if not report.findings:
        table.add_row("-", "none", "0", "", "no violation", "")
    return table


def _firsts(findings: list[Finding]) -> list[tuple[Finding, int]]:
    """The first finding of each (code, kind, field), with how often it occurred."""
    counts = Counter(_key(f) for f in findings)
    firsts: dict[tuple[int, str, str], Finding] = {}
    for finding in findings:
        firsts.setdefault(_key(finding), finding)
    return [(first, counts[key]) for key, first in firsts.items()]


def _key(finding: Finding) -> tuple[int, str, str]:
    v = finding.violation
    return v.code, v.kind, v.path or ""


def _measures_table(report: CallReport) -> Any:
    from rich.table import Table

    table = Table(title="Timing", expand=False)
    table.add_column("measure")
    table.add_column("value", justify="right")

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f} ms"

    table.add_row("duration (ended by " + report.ended_by + ")", ms(report.duration_ms))
    table.add_row("time to first audio", ms(report.time_to_first_audio_ms))
    for number, turn in enumerate(report.turns, start=1):
        table.add_row(f"turn {number}: reply latency", ms(turn.latency_ms))
    for number, barge in enumerate(report.barge_ins, start=1):
        name = f"barge-in {number} at {barge.onset_ms:,} ms"
        table.add_row(f"{name}: clear reaction", ms(barge.clear_reaction_ms))
        table.add_row(
            f"{name}: reply heard / discarded", f"{ms(barge.heard_ms)} / {ms(barge.discarded_ms)}"
        )
        table.add_row(f"{name}: audio sent after clear", ms(barge.audio_after_clear_ms))
    table.add_row(
        "marks sent / echoed / by clear",
        f"{report.marks_sent} / {report.marks_echoed} / {report.marks_echoed_by_clear}",
    )
    table.add_row("clears", str(report.clears))
    stall = ms(report.stall_max_ms)
    if report.stall_at_ms is not None:
        stall += f" at {report.stall_at_ms:,} ms"
    table.add_row("replies", str(len(report.replies)))
    table.add_row("longest stall inside a reply", stall)
    table.add_row("longest pause between replies", ms(report.pause_max_ms))
    table.add_row("most audio buffered ahead", ms(report.max_buffered_ms))
    table.add_row(
        "audio received / played", f"{ms(report.audio_received_ms)} / {ms(report.audio_played_ms)}"
    )
    table.add_row("audio discarded by clear", ms(report.discarded_by_clear_ms))
    table.add_row("wall time", f"{report.wall_s:.3f} s")
    return table


def summarize(reports: list[CallReport]) -> dict[str, Any]:
    """Figures over many calls (a load test): how many went wrong, and timing percentiles."""
    first_audio = sorted(
        r.time_to_first_audio_ms for r in reports if r.time_to_first_audio_ms is not None
    )
    latencies = sorted(t.latency_ms for r in reports for t in r.turns if t.latency_ms is not None)
    codes = Counter(f.violation.code for r in reports for f in r.findings)
    return {
        "calls": len(reports),
        "placed": sum(r.placed for r in reports),
        "with_violations": sum(bool(r.violations) for r in reports),
        "exit_code": max((r.exit_code for r in reports), default=0),
        "time_to_first_audio_ms": _spread(first_audio),
        "turn_latency_ms": _spread(latencies),
        "by_code": dict(sorted(codes.items())),
    }


def _spread(ordered: list[float]) -> dict[str, float | None]:
    if not ordered:
        return {"p50": None, "p95": None, "max": None}
    return {
        "p50": _round(_percentile(ordered, 50)),
        "p95": _round(_percentile(ordered, 95)),
        "max": _round(ordered[-1]),
    }


def render_summary(summary: dict[str, Any]) -> Any:
    """:func:`summarize`'s figures as a rich table."""
    from rich.table import Table

    table = Table(title=f"{summary['calls']} calls", expand=False)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("placed", str(summary["placed"]))
    table.add_row("with violations", str(summary["with_violations"]))
    for name in ("time_to_first_audio_ms", "turn_latency_ms"):
        spread = summary[name]
        text = " / ".join("-" if v is None else f"{v:,.0f}" for v in spread.values())
        table.add_row(f"{name.removesuffix('_ms').replace('_', ' ')} p50 / p95 / max (ms)", text)
    codes = ", ".join(f"{code} x{count}" for code, count in summary["by_code"].items())
    table.add_row("codes", codes or "none")
    return table
