"""The run's results as Markdown: one row per call, then what the logs and recordings show."""

from __future__ import annotations

from typing import Any

TALLY_KEYS = (
    "frames",
    "binary_frames",
    "media_bytes",
    "audio_ms",
    "marks",
    "clears",
    "frames_after_stop",
    "violations",
    "by_code",
)


def render(data: dict[str, Any]) -> str:
    lines = ["# Emulator against third-party apps", ""]
    lines.append(
        "Versions: " + ", ".join(f"{name} {v}" for name, v in data["versions"].items()) + "."
    )
    lines.append(f"Script time: {data['script_s']} s.")
    lines += ["", _table(data["calls"]), ""]
    for result in data["calls"]:
        lines += _details(result)
    return "\n".join(lines) + "\n"


def _table(calls: list[dict[str, Any]]) -> str:
    head = (
        "| call | clock | exit | violations | utterances | turns "
        "| barge-ins (onset: clear reaction, heard ms) | marks sent/echoed/by clear | clears "
        "| stall max ms (at) / stalled ms | pause max ms | audio received/played ms "
        "| virtual-time note | REST | ended by | wall s |"
    )
    rows = [head, "|" + "---|" * 16]
    for result in calls:
        report = result["report"]
        if report is None:
            rows.append(
                f"| {result['call']} | {result['clock']} | {result['exit_code']} "
                "| (no report) |" + " |" * 12
            )
            continue
        groups = report["groups"]
        violations = ", ".join(f"{g['code']} {g['kind']} x{g['count']}" for g in groups) or "none"
        barge_ins = (
            "; ".join(
                f"{b['onset_ms']}: {_ms(b['clear_reaction_ms'])}, {_ms(b['heard_ms'])}"
                for b in report["barge_ins"]
            )
            or "none"
        )
        marks = report["marks"]
        audio = report["audio"]
        playout = report["playout"]
        stall = _ms(playout["stall_max_ms"])
        if playout["stall_at_ms"] is not None:
            stall += f" ({_ms(playout['stall_at_ms'])})"
        stall += f" / {_ms(playout['stalled_ms'])}"
        clock_note = any("virtual time may be wrong" in n for n in report["notes"])
        rest = report["rest"]
        requests = (
            ", ".join(f"{r['method']} {r['status']}" for r in rest["requests"]) or "none"
            if rest is not None
            else "-"
        )
        rows.append(
            f"| {result['call']} | {report['clock']} | {report['exit_code']} | {violations} "
            f"| {len(report['utterances'])} | {len(report['turns'])} | {barge_ins} "
            f"| {marks['sent']}/{marks['echoed']}/{marks['echoed_by_clear']} "
            f"| {report['clears']} | {stall} | {_ms(playout['pause_max_ms'])} "
            f"| {_ms(audio['received_ms'])}/{_ms(audio['played_ms'])} "
            f"| {'yes' if clock_note else 'no'} | {requests} "
            f"| {report['ended_by']} | {result['wall_s']} |"
        )
    return "\n".join(rows)


def _details(result: dict[str, Any]) -> list[str]:
    lines = [f"## {result['call']}", ""]
    report = result["report"]
    if result.get("problem"):
        lines.append(f"- runner: {result['problem']}")
    if report is None:
        return [*lines, "- no report (see the call's stderr log)", ""]
    for group in report["groups"]:
        lines.append(
            f"- violation: {group['code']} {group['kind']} from the {group['from']}, "
            f"{group['count']} time(s): {group['message']}"
        )
    for note in report["notes"]:
        lines.append(f"- note: {note}")
    for utterance in report["utterances"]:
        lines.append(f"- caller spoke from {utterance['onset_ms']} to {utterance['end_ms']} ms")
    for turn in report["turns"]:
        lines.append(
            f"- turn: caller stopped at {turn['speech_end_ms']} ms, "
            f"reply latency {_ms(turn['latency_ms'])} ms"
        )
    for reply in report["replies"]:
        cut = f", cleared at {_ms(reply['clear_ms'])} ms" if reply["clear_ms"] is not None else ""
        lines.append(
            f"- reply: {reply['start_ms']} to {_ms(reply['end_ms'])} ms, "
            f"{_ms(reply['played_ms'])} ms played{cut}"
        )
    playout = report["playout"]
    for stall in playout["stalls"]:
        lines.append(f"- stall: at {stall['at_ms']} ms, {stall['duration_ms']} ms")
    if playout["stalled_ms"]:
        lines.append(f"- stalled in all: {playout['stalled_ms']} ms")
    for pause in playout["pauses"]:
        lines.append(
            f"- pause: at {_ms(pause['at_ms'])} ms, {_ms(pause['duration_ms'])} ms "
            f"({pause['cause']})"
        )
    for barge in report["barge_ins"]:
        lines.append(
            f"- barge-in at {barge['onset_ms']} ms: clear at {_ms(barge['clear_ms'])} ms, "
            f"heard {_ms(barge['heard_ms'])} ms, discarded {_ms(barge['discarded_ms'])} ms, "
            f"audio after clear {_ms(barge['audio_after_clear_ms'])} ms"
        )
    for item in result.get("heard", []):
        if item["heard_ms"] is None:
            continue
        lines.append(
            f"- recording: {item['prompt']} ({item['length_ms']:.0f} ms) started at "
            f"{item['start_ms']:.0f} ms, heard {item['heard_ms']:.0f} ms"
            + (f" (cut {item['cut_ms']:.0f} ms)" if item["cut_ms"] else " (whole)")
            + (f", with {item['gaps_ms']:.0f} ms of silence inside" if item["gaps_ms"] else "")
        )
    lines += _realtime_lines(result)
    if report["rest"] is not None:
        for request in report["rest"]["requests"]:
            lines.append(
                f"- REST at {_ms(request['at_ms'])} ms: {request['method']} {request['path']} "
                f"{request['params']} -> {request['status']}"
                + (f" (code {request['code']})" if request["code"] else "")
            )
    lines.append(f"- streams: {[s['ended_by'] for s in report['streams']]}")
    lines += _agreement(report, result.get("inspect"))
    return [*lines, ""]


def _agreement(report: dict[str, Any], inspected: dict[str, Any] | None) -> list[str]:
    """Whether ``mediastreams inspect --json`` of the call's trace gives the same counts."""
    if not inspected or "error" in inspected:
        return [f"- inspect of the trace: {inspected}"]
    differ = [key for key in TALLY_KEYS if report.get(key) != inspected.get(key)]
    if not differ:
        return ["- inspect of the trace: the same counts as the report"]
    return [
        f"- inspect of the trace differs on {key}: report {report.get(key)}, "
        f"inspect {inspected.get(key)}"
        for key in differ
    ]


def _realtime_lines(result: dict[str, Any]) -> list[str]:
    session = result.get("realtime")
    if session is None:
        return []
    lines = []
    heard_by_prompt = {h["prompt"]: h for h in result.get("heard", [])}
    for response in session["responses"]:
        lines.append(
            f"- model: response {response['prompt']} {response['status']}, "
            f"{response['audio_sent_ms']} ms of audio sent"
        )
    for truncate in session["truncates"]:
        seen = heard_by_prompt.get(truncate["prompt"] or "", {}).get("heard_ms")
        compare = "" if seen is None else f"; the recording shows {seen:.0f} ms heard"
        if seen is not None:
            compare += f" (off by {truncate['audio_end_ms'] - seen:+.0f} ms)"
        lines.append(
            f"- truncate: {truncate['prompt']} at audio_end_ms {truncate['audio_end_ms']} "
            f"of {truncate['item_audio_ms']} ms sent{compare}"
        )
    for error in session["errors"]:
        lines.append(f"- model error: {error}")
    closed = session["closed_after_call_s"]
    lines.append(
        "- Realtime session: "
        + (
            f"closed {closed} s after the call ended"
            if closed is not None
            else "still open 5 s after the call ended (the app never closed it)"
        )
    )
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
