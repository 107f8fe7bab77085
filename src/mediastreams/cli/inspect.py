"""``mediastreams inspect TRACE``: every protocol violation in a recorded call."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from ..diagnostics import Finding
from ..inspection import Inspection, inspect_trace
from ..trace import read_trace

__all__ = ["inspect_command"]

_SHOWN_PER_KIND = 3
_SHOWN_UNREADABLE = 5


@click.command("inspect")
@click.argument("trace", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Print every repeat of a violation, and every unreadable line, too.",
)
def inspect_command(trace: Path, as_json: bool, show_all: bool) -> int:
    """Check a frame trace and print every protocol violation.

    TRACE is JSON Lines, one frame per line: {"t": <seconds>, "from": "twilio" | "app",
    "text": "<frame as sent>"} (or "binary": "<base64>"), as `mediastreams call --trace`
    writes. Exit status: 0 when the app sent nothing wrong, 1 when it did, 2 when the trace
    cannot be read.
    """
    try:
        with trace.open(encoding="utf-8", errors="replace") as lines:
            examples = None if show_all else _SHOWN_PER_KIND
            result = inspect_trace(read_trace(lines), examples=examples)
    except OSError as error:
        click.echo(f"mediastreams inspect: cannot read {trace}: {error.strerror}", err=True)
        return 2
    if not result.frames:
        # An empty trace checks nothing: passing it would turn a failed recording green.
        what = "no readable frame lines" if result.unreadable else "no frame lines: it is empty"
        click.echo(f"mediastreams inspect: {trace} has {what}", err=True)
        _print_errors(Console(stderr=True, soft_wrap=True), result, show_all=False)
        return 2
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_report(result, show_all)
    return 1 if result.app_violations else 0


def _print_report(result: Inspection, show_all: bool) -> None:
    console = Console(highlight=False, soft_wrap=True)
    for group in result.tally.groups.values():
        for finding in group.examples:
            _print_finding(console, finding)
        if group.count > len(group.examples):
            more = group.count - len(group.examples)
            console.print(f"  [dim]... and {more} more like this (--all)[/]")
    if result.tally.ungrouped:
        console.print(f"[yellow]... and {result.tally.ungrouped} more violations of other kinds[/]")
    _print_errors(console, result, show_all)
    _print_summary(console, result)


def _print_finding(console: Console, finding: Finding) -> None:
    v = finding.violation
    color = "red" if v.sender == "app" else "yellow"
    where = f"line {finding.line}, t={finding.t:.3f}s"
    console.print(f"[bold {color}]{v.code}[/] [{color}]{v.sender}[/] {where}: {escape(v.message)}")
    if v.hint:
        console.print(f"    [dim]hint:[/] {escape(v.hint)}")


def _print_errors(console: Console, result: Inspection, show_all: bool) -> None:
    # A file that is no trace at all (a WAV given by mistake) is thousands of such lines.
    shown = result.errors if show_all else result.errors[:_SHOWN_UNREADABLE]
    for error in shown:
        console.print(f"[yellow]line {error.line}[/]: unreadable: {escape(error.message)}")
    if result.unreadable > len(shown):
        console.print(f"  [dim]... and {result.unreadable - len(shown)} more unreadable lines[/]")


def _print_summary(console: Console, result: Inspection) -> None:
    s = result.to_dict()
    app, twilio = s["violations"]["app"], s["violations"]["twilio"]
    verdict = (
        "[bold green]no app violations[/]" if not app else f"[bold red]{app} app violations[/]"
    )
    marks = s["marks"]
    console.print(
        f"{verdict}; {twilio} in Twilio's frames; "
        f"{s['frames']['twilio']} frames from Twilio, {s['frames']['app']} from the app; "
        f"audio {s['audio_ms']['twilio']} ms in, {s['audio_ms']['app']} ms out; "
        f"marks {marks['sent']} sent, {marks['echoed']} echoed "
        f"({marks['echoed_by_clear']} by a clear); clears {s['clears']}"
    )
