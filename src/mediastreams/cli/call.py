"""``mediastreams call TARGET``: place an emulated Twilio call and report what the app did.

Exit codes: 0 when the app made no mistake, 1 when it made one, 2 when the call could not
be placed (or the options are wrong), 130 when Ctrl-C came before the call was placed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, cast

import click

from .failure import CommandFailed, Interrupted
from .options import (
    account_sid_option,
    allow_module_app,
    auth_token_option,
    check_writable,
    connect_to_option,
    max_duration_option,
    param_option,
    parse_parameters,
    stream_path_option,
    trace_parameters_option,
    trace_payloads_option,
    webhook_path_option,
)

__all__ = ["call_command"]

_ORDER = "mediastreams.call.order"  # ctx.meta: the options' names in command-line order


class _OrderedCommand(click.Command):
    """A command that remembers the order of its options: ``--barge-in-after`` applies to
    the ``--audio`` after it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        names = {f"--{name.replace('_', '-')}": name for name in ("audio", "barge_in_after")}
        order = []
        for arg in args:
            if arg == "--":
                break
            name = names.get(arg.partition("=")[0])
            if name is not None:
                order.append(name)
        ctx.meta[_ORDER] = order
        return super().parse_args(ctx, args)


@click.command("call", cls=_OrderedCommand)
@click.argument("target")
@click.option(
    "--audio",
    "audio",
    multiple=True,
    metavar="FILE[@SECONDS]",
    help="Audio the caller speaks, in order; each file is a turn, spoken once the app has "
    "had its say (repeatable). FILE@SECONDS: spoken at that time, whatever the app is doing.",
)
@click.option(
    "--barge-in-after",
    "barge_in_after",
    multiple=True,
    type=click.IntRange(min=0),
    metavar="MS",
    help="Speak the next --audio MS milliseconds after the app's next reply starts, "
    "talking over it (repeatable).",
)
@click.option(
    "--dtmf",
    "dtmf",
    multiple=True,
    metavar="DIGITS[@SECONDS]",
    help="Keys pressed at a time since the stream started, e.g. 12#@3.5; without a time, "
    "a turn after the --audio files, once the app has had its say (repeatable).",
)
@click.option(
    "--hangup-after",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Hang up at this time; by default, once the script is done and the app has "
    "been quiet for 2 s.",
)
@param_option()
@auth_token_option()
@connect_to_option
@click.option(
    "--rest-port",
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Serve Twilio's REST call control (hang up, redirect, streams) on 127.0.0.1:PORT "
    "for the call; needs --auth-token. Point the app's Twilio client at it.",
)
@account_sid_option
@webhook_path_option
@click.option(
    "--webhook-method",
    type=click.Choice(["POST", "GET"]),
    default="POST",
    show_default=True,
    help="How the webhook is requested, as set on the phone number.",
)
@stream_path_option
@click.option("--record", type=click.Path(dir_okay=False), help="WAV of what the caller heard.")
@click.option(
    "--record-stereo",
    type=click.Path(dir_okay=False),
    help="Stereo WAV: the caller left, the app's played audio right.",
)
@click.option("--trace", type=click.Path(dir_okay=False), help="JSON Lines trace of every frame.")
@trace_payloads_option
@trace_parameters_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the report as one JSON object, alone on stdout (what the app prints goes "
    "to stderr).",
)
@click.option(
    "--json-out",
    type=click.Path(dir_okay=False),
    help="Write the report as JSON to this file too.",
)
@click.option(
    "--clock",
    type=click.Choice(["real", "virtual"]),
    help="virtual (default for module:app without --rest-port) or real (default, and the "
    "only choice, for a URL).",
)
@click.option(
    "--calls",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Place this many calls at once (a load test) and print a summary.",
)
@max_duration_option(default_s=600.0, min_s=0, help="Hang up at this time whatever happens.")
def call_command(
    target: str,
    audio: tuple[str, ...],
    barge_in_after: tuple[int, ...],
    dtmf: tuple[str, ...],
    hangup_after: float | None,
    params: tuple[str, ...],
    auth_token: str | None,
    connect_to: tuple[str, int] | None,
    rest_port: int | None,
    account_sid: str | None,
    webhook_path: str | None,
    webhook_method: str,
    stream_path: str,
    record: str | None,
    record_stereo: str | None,
    trace: str | None,
    trace_payloads: bool,
    trace_parameters: bool,
    as_json: bool,
    json_out: str | None,
    clock: str | None,
    calls: int,
    max_duration: float,
) -> int:
    """Place an emulated Twilio call to TARGET and report every mistake the app made.

    TARGET is a voice webhook URL (http(s)://...), a stream URL (ws(s)://...) or an ASGI
    app in this process (package.module:app).
    """
    placed = _Placed(target, calls)
    try:
        barge_ms = _barge_ins(click.get_current_context().meta.get(_ORDER, []), barge_in_after)
        if clock == "virtual" and "://" in target:
            # The library's own message speaks Python (clock='real').
            raise CommandFailed(
                "--clock virtual needs a module:app target; a URL runs in real time"
            )
        for option, path in (
            ("--record", record),
            ("--record-stereo", record_stereo),
            ("--trace", trace),
            ("--json-out", json_out),
        ):
            check_writable(option, path)
        if "://" not in target:
            allow_module_app()
        outputs = _Outputs(record, record_stereo, trace, trace_payloads, trace_parameters)
        with _DeferredInterrupt() as interrupt:
            # The emulator takes a second or more to import on a busy machine: Ctrl-C meanwhile
            # still gives a report, of a call interrupted before it was placed.
            from ..emulator import runner
            from ..emulator.clock import ClockName
            from ..emulator.target import choose_clock

            steps = _steps(audio, barge_ms, dtmf, hangup_after)
            chosen = choose_clock(target, cast("ClockName | None", clock), {"rest_port": rest_port})
        if interrupt.caught:
            results = [runner.interrupted_result(target, chosen) for _ in range(calls)]
            if calls == 1:
                runner.write_outputs(results[0], record=record, record_stereo=record_stereo)
            return _report(results, as_json, json_out)
        with _stdout_to_stderr() if as_json else contextlib.nullcontext():
            results = _place(
                target,
                steps,
                {
                    "clock": clock,
                    "auth_token": auth_token,
                    "connect_to": connect_to,
                    "rest_port": rest_port,
                    "account_sid": account_sid,
                    "parameters": parse_parameters(params),
                    "webhook_path": webhook_path,
                    "webhook_method": webhook_method,
                    "stream_path": stream_path,
                    "max_duration_s": max_duration,
                    "end_quiet_ms": None if hangup_after is not None else 2000,
                    # Ctrl-C hangs up; the report and recordings still come.
                    "hang_up_on_cancel": True,
                    "on_frame": placed.observe,
                },
                outputs,
                calls,
            )
    except KeyboardInterrupt:
        when = "before the call was placed" if not placed.seen else "while the call was placed"
        raise Interrupted(f"interrupted {when}: no report") from None
    return _report(results, as_json, json_out)


def _report(results: list[Any], as_json: bool, json_out: str | None) -> int:
    """Show the calls' report (or summary); the exit code."""
    if any(r.report.ended_by == "interrupted" and not r.report.placed for r in results):
        click.echo("mediastreams call: interrupted before the call was placed", err=True)
    if len(results) > 1:
        return _many(results, as_json, json_out)
    _show(results[0].report, as_json, json_out)
    return int(results[0].report.exit_code)


def _barge_ins(order: list[str], barge_in_after: tuple[int, ...]) -> list[int | None]:
    """For each --audio in order, the --barge-in-after given just before it, if any."""
    per_audio: list[int | None] = []
    waiting: int | None = None
    values = iter(barge_in_after)
    for name in order:
        if name == "barge_in_after":
            if waiting is not None:
                raise CommandFailed(
                    "two --barge-in-after in a row: each applies to the next --audio"
                )
            waiting = next(values)
        else:
            per_audio.append(waiting)
            waiting = None
    if waiting is not None:
        raise CommandFailed("--barge-in-after applies to the next --audio; add one after it")
    return per_audio


def _steps(
    audio: tuple[str, ...],
    barge_ms: list[int | None],
    dtmf: tuple[str, ...],
    hangup_after: float | None,
) -> list[Any]:
    from ..emulator.script import Hangup, Step, cli_steps, parse_audio_option, parse_dtmf_option

    try:
        steps: list[Step] = cli_steps(
            [parse_audio_option(text) for text in audio],
            barge_ms,
            [parse_dtmf_option(text) for text in dtmf],
        )
    except ValueError as error:
        raise CommandFailed(str(error)) from None
    if hangup_after is not None:
        steps.append(Hangup(at_ms=round(hangup_after * 1000)))
    return steps


class _Outputs:
    def __init__(
        self,
        record: str | None,
        record_stereo: str | None,
        trace: str | None,
        trace_payloads: bool,
        trace_parameters: bool,
    ) -> None:
        self.record = record
        self.record_stereo = record_stereo
        self.trace = trace
        self.trace_payloads = trace_payloads
        self.trace_parameters = trace_parameters


def _place(
    target: str, steps: list[Any], options: dict[str, Any], out: _Outputs, calls: int
) -> list[Any]:
    """Place the call (or calls) and write the recordings; the results, in order."""
    from ..emulator.runner import place_call, place_calls, write_outputs
    from ..exceptions import AudioError, EmulatorError

    try:
        if calls > 1:
            if out.trace or out.record or out.record_stereo:
                raise click.UsageError("--trace, --record and --record-stereo take one call")
            return place_calls(target, steps, calls=calls, **options)
        result = place_call(
            target,
            steps,
            trace=out.trace,
            trace_payloads=out.trace_payloads,
            trace_parameters=out.trace_parameters,
            **options,
        )
        write_outputs(result, record=out.record, record_stereo=out.record_stereo)
    except (AudioError, EmulatorError, ValueError, OSError) as error:
        raise CommandFailed(str(error)) from None
    return [result]


class _Placed:
    """Says once, on stderr, that the call is under way: from then on Ctrl-C hangs up."""

    def __init__(self, target: str, calls: int) -> None:
        self.seen = False
        self._what = f"{calls} calls placed" if calls > 1 else "call placed"
        self._target = target

    def observe(self, t: float, sender: str, frame: str | bytes) -> None:
        if not self.seen:
            self.seen = True
            click.echo(
                f"mediastreams call: {self._what}: {self._target} (Ctrl-C hangs up)", err=True
            )


class _DeferredInterrupt:
    """Ctrl-C inside is noted (``caught``), not raised: what runs inside cannot be left half
    done, and the command then reports the call as interrupted before it was placed."""

    def __init__(self) -> None:
        self.caught = False
        self._installed = False

    def __enter__(self) -> _DeferredInterrupt:
        # Only where Ctrl-C has its default handler (the main thread of the command).
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, self._catch)
            self._installed = True
        return self

    def _catch(self, signum: int, frame: object) -> None:
        self.caught = True

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """What the app prints, at the Python level and the file-descriptor level, goes to
    stderr: stdout carries the report alone."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1: the Python-level redirection suffices
        saved = None
    if saved is not None:
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _many(results: list[Any], as_json: bool, json_out: str | None) -> int:
    from ..emulator.render import render_summary, summarize

    reports = [result.report for result in results]
    summary = summarize(reports)
    text = json.dumps({"calls": [r.to_dict() for r in reports], "summary": summary})
    if json_out:
        _write_json(json_out, text)
    if as_json:
        click.echo(text)
    else:
        from rich.console import Console

        Console().print(render_summary(summary))
    return int(summary["exit_code"])


def _show(report: object, as_json: bool, json_out: str | None) -> None:
    from ..emulator.render import render_text
    from ..emulator.report import CallReport

    assert isinstance(report, CallReport)
    if json_out:
        _write_json(json_out, report.to_json())
    if as_json:
        click.echo(report.to_json())
        return
    from rich.console import Console

    Console().print(render_text(report))


def _write_json(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as file:
            file.write(text + "\n")
    except OSError as error:
        raise CommandFailed(f"--json-out {path}: {error.strerror}") from None
