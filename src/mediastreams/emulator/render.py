"""The report for people: rich tables for the terminal, and figures over many calls.

:func:`render_text` draws one :class:`~mediastreams.emulator.report.CallReport` (the TwiML,
the notes, the violations with their first frame, the streams of the call, the REST requests
and the timing); :func:`summarize` and :func:`render_summary` give the spread over the calls
of a load test (``mediastreams call --calls N``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..tally import FRAME_CHARS_SHOWN
from .report import CallReport

__all__ = ["render_summary", "render_text", "summarize"]


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
    if report.streams:
        parts.append(_streams_table(report))
    if report.rest_url is not None:
        parts.append(_rest_table(report))
    if report.placed:
        parts.append(_measures_table(report))
    return Group(*parts)


def _violations_table(report: CallReport) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Violations (first of each kind, with its frame)", expand=False)
    for column in ("code", "kind", "count", "from", "message", "hint"):
        table.add_column(column, overflow="fold")
    for group in report.tally.groups.values():
        first = group.first
        v = first.violation
        message = v.message
        if v.frame:
            message += f"\nframe (line {first.line}): {v.frame[: FRAME_CHARS_SHOWN // 5]}"
        # Text, not markup: a frame may hold brackets.
        table.add_row(str(v.code), v.kind, str(group.count), v.sender, Text(message), Text(v.hint))
    if report.tally.ungrouped:
        table.add_row("...", "other kinds", str(report.tally.ungrouped), "", "", "")
    if not report.tally.violations:
        table.add_row("-", "none", "0", "", "no violation", "")
    return table


def _streams_table(report: CallReport) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Streams", expand=False)
    for column in ("stream", "kind", "tracks", "from / to (ms)", "ended by", "frames out / in"):
        table.add_column(column, overflow="fold")
    for stream in report.streams:
        name = stream.url + (f" ({stream.name})" if stream.name else "")
        ended: str = stream.ended_by or "-"
        if stream.close_code is not None:
            ended += f", close {stream.close_code}"
        if stream.error:
            ended += f": {stream.error}"
        table.add_row(
            Text(name),
            "<Connect>" if stream.bidirectional else "one-way",
            ", ".join(stream.tracks),
            f"{_ms(stream.started_ms)} / {_ms(stream.ended_ms)}",
            Text(ended),
            f"{stream.frames_sent} / {stream.frames_received}",
        )
    return table


def _rest_table(report: CallReport) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"REST requests to the stand-in at {report.rest_url}", expand=False)
    for column in ("at", "request", "parameters", "answer"):
        table.add_column(column, overflow="fold")
    for request in report.rest_requests:
        params = ", ".join(f"{name}={value}" for name, value in request.params.items())
        answer = str(request.status) + (f" ({request.code})" if request.code else "")
        table.add_row(
            f"{_ms(request.at_ms)} ms",
            Text(f"{request.method} {request.path}"),
            Text(params),
            answer,
        )
    if not report.rest_requests:
        table.add_row("-", "none", "", "")
    return table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


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
    codes: Counter[int] = Counter()
    for report in reports:
        codes.update(report.tally.by_code())
    return {
        "calls": len(reports),
        "placed": sum(r.placed for r in reports),
        "with_violations": sum(bool(r.violation_count) for r in reports),
        "exit_code": max((r.exit_code for r in reports), default=0),
        "time_to_first_audio_ms": _spread(first_audio),
        "turn_latency_ms": _spread(latencies),
        "by_code": dict(sorted(codes.items())),
    }


def _percentile(ordered: list[float], percent: float) -> float:
    index = min(len(ordered) - 1, max(0, round(percent / 100 * (len(ordered) - 1))))
    return ordered[index]


def _spread(ordered: list[float]) -> dict[str, float | None]:
    if not ordered:
        return {"p50": None, "p95": None, "max": None}
    return {
        "p50": _round(_percentile(ordered, 50)),
        "p95": _round(_percentile(ordered, 95)),
        "max": _round(ordered[-1]),
    }


def _round(value: float) -> float:
    return round(value, 1)


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
