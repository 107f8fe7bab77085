"""``mediastreams load TARGET``: many calls at once, a live line, a report of distributions.

Exit codes: 0 when no call failed and the app made no mistake, 1 when it did, 2 for wrong
options (or a worker process that died), 130 after Ctrl-C (the report still comes).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .failure import CommandFailed
from .options import (
    account_sid_option,
    auth_token_option,
    check_writable,
    param_option,
    parse_parameters,
)

__all__ = ["load_command"]


@click.command("load")
@click.argument("target")
@click.option("--calls", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Spread the calls over this many processes (one core each); one summary.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=100.0,
    show_default=True,
    help="Calls started per second (the ramp); 0 starts them all at once.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long each call streams once started.",
)
@click.option(
    "--turns",
    metavar="TALK_MS/LISTEN_MS",
    help="The callers talk, then listen, in turns (e.g. 2000/3000); by default they talk "
    "all the time.",
)
@param_option(help="A custom parameter for start (when TARGET is a stream URL).")
@auth_token_option()
@account_sid_option
@click.option(
    "--drain",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="After a call's time, how long to wait for its echoes and for the app's audio and "
    "marks to play out before the stop.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the report as one JSON object, alone on stdout.",
)
@click.option("--html", type=click.Path(dir_okay=False), help="Write the report's pictures here.")
@click.option("--quiet", is_flag=True, help="No live line on stderr.")
def load_command(
    target: str,
    calls: int,
    processes: int,
    rate: float,
    duration: float,
    turns: str | None,
    params: tuple[str, ...],
    auth_token: str | None,
    account_sid: str | None,
    drain: float,
    as_json: bool,
    html: str | None,
    quiet: bool,
) -> int:
    """Place many calls at once to TARGET, as Twilio does, and report what the app did.

    TARGET is the stream URL (ws://host:port/media-stream) or the voice webhook
    (http://host:port/incoming-call, asked for TwiML before each call). Each caller talks
    in real time; the app's audio is played at Twilio's pace and its marks echoed. A line a
    second on stderr shows the calls active, frames a second each way, late frames,
    violations and errors; the report gives the distributions of the echo lag, time to first
    audio, turn latency and clear reaction, and says when the generator itself could not
    keep up.
    """
    from ..load import LoadConfig, Turns, WorkerFailed, run_load

    try:
        config = LoadConfig(
            target,
            calls=calls,
            processes=processes,
            rate=rate,
            duration_s=duration,
            turns=Turns.parse(turns) if turns else Turns(),
            auth_token=auth_token,
            parameters=parse_parameters(params),
            account_sid=account_sid,
            drain_s=drain,
        )
        config.check()
    except ValueError as error:
        raise CommandFailed(str(error)) from None
    check_writable("--html", html)
    if not quiet:
        click.echo(
            f"mediastreams load: {calls} calls to {target}, {rate:g}/s, {duration:g} s each "
            f"(Ctrl-C hangs up and reports)",
            err=True,
        )
    try:
        report = run_load(config, None if quiet else _LiveLine(calls))
    except WorkerFailed as error:
        raise CommandFailed(str(error)) from None
    _show(report, as_json, html)
    return 130 if report.interrupted else report.exit_code


class _LiveLine:
    def __init__(self, planned: int) -> None:
        self.planned = planned
        self.before: Any = None

    def __call__(self, second: Any) -> None:
        from ..load.report import live_line

        click.echo(live_line(self.before, second, self.planned), err=True)
        self.before = second


def _show(report: Any, as_json: bool, html: str | None) -> None:
    import json

    if html is not None:
        from ..load.picture import report_html

        try:
            with open(html, "w", encoding="utf-8") as file:
                file.write(report_html(report))
        except OSError as error:
            raise CommandFailed(f"--html {html}: {error.strerror}") from None
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        click.echo(report.render_text())
        if html is not None:
            click.echo(f"pictures: {html}")
    sys.stdout.flush()
