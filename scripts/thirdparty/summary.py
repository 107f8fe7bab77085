"""The run's results as Markdown: one row per call, then what the logs and recordings show."""

from __future__ import annotations

from typing import Any


def render(data: dict[str, Any]) -> str:
    lines = ["# Emulator against third-party apps", ""]
    lines.append(
        "Versions: " + ", ".join(f"{name} {v}" for name, v in data["versions"].items()) + "."
    )
    lines.append(
        f"Script time: {data['script_s']} s. The CLI "
        + ("has" if data["cli_barge_in_after"] else "has no")
        + " `--barge-in-after`"
        + ("." if data["cli_barge_in_after"] else ": its calls speak both turns as one file.")
    )
    lines += ["", _table(data["calls"]), ""]
    for result in data["calls"]:
        lines += _details(result)
    return "\n".join(lines) + "\n"


def _table(calls: list[dict[str, Any]]) -> str:
    head = (
        "| call | clock | exit | violations | turns | barge-ins (onset ms: clear reaction ms) "
        "| marks sent/echoed/by clear | clears | gap max ms | audio received/played ms "
        "| ended by | wall s |"
    )
    rows = [head, "|" + "---|" * 12]
    for result in calls:
        report = result["report"]
        if report is None:
            rows.append(
                f"| {result['call']} | {result['clock']} | {result['exit_code']} "
                "| (no report) |" + " |" * 8
            )
            continue
        violations = ", ".join(f"{v['code']} {v['kind']}" for v in report["violations"]) or "none"
        barge_ins = (
            "; ".join(
                f"{b['onset_ms']}: {_ms(b['clear_reaction_ms'])}" for b in report["barge_ins"]
            )
            or "none"
        )
        marks = report["marks"]
        audio = report["audio"]
        rows.append(
            f"| {result['call']} | {report['clock']} | {report['exit_code']} | {violations} "
            f"| {len(report['turns'])} | {barge_ins} "
            f"| {marks['sent']}/{marks['echoed']}/{marks['echoed_by_clear']} "
            f"| {report['clears']} | {_ms(report['frames']['gap_max_ms'])} "
            f"| {_ms(audio['received_ms'])}/{_ms(audio['played_ms'])} "
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
    for note in report["notes"]:
        lines.append(f"- note: {note}")
    for turn in report["turns"]:
        lines.append(
            f"- turn: caller stopped at {turn['speech_end_ms']} ms, "
            f"reply latency {_ms(turn['latency_ms'])} ms"
        )
    for barge in report["barge_ins"]:
        extra = "".join(
            f", {key} {_ms(barge[key])} ms" for key in ("heard_ms", "discarded_ms") if key in barge
        )
        lines.append(
            f"- barge-in at {barge['onset_ms']} ms: clear at {_ms(barge['clear_ms'])} ms, "
            f"audio after clear {_ms(barge['audio_after_clear_ms'])} ms{extra}"
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
    for request in result.get("rest", []):
        lines.append(
            f"- REST: {request['method']} {request['path']} {request['form']} "
            f"(basic auth {'right' if request['auth_matches'] else 'WRONG'})"
        )
    return [*lines, ""]


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
