"""``mediastreams call TARGET``: place an emulated Twilio call and report what the app did.

Exit codes: 0 when the app made no mistake, 1 when it made one, 2 when the call could not
be placed (or the options are wrong).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

__all__ = ["call_command"]


def _host_port(value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r}: expected HOST:PORT, such as 127.0.0.1:8000")
    return host.strip("[]"), int(port)


def _check_writable(option: str, path: str | None) -> None:
    # Checked before the call, so a typo in a folder name does not cost the whole call.
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise _Failure(f"{option} {path}: there is no folder {folder}; create it first")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise _Failure(f"{option} {path}: cannot write there; choose another path")


def _parameters(values: tuple[str, ...]) -> dict[str, str]:
    parameters = {}
    for value in values:
        name, equals, text = value.partition("=")
        if not equals or not name:
            raise click.BadParameter(f"{value!r}: expected NAME=VALUE", param_hint="--param")
        parameters[name] = text
    return parameters


@click.command("call")
@click.argument("target")
@click.option(
    "--audio",
    "audio",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Audio the caller speaks, in order; each file is a turn (repeatable).",
)
@click.option(
    "--dtmf",
    "dtmf",
    multiple=True,
    metavar="DIGITS@SECONDS",
    help="Keys pressed at a time since the stream started, e.g. 12#@3.5 (repeatable).",
)
@click.option(
    "--hangup-after",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Hang up at this time; by default, once the script is done and the app has "
    "been quiet for 2 s.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A custom parameter for start (when TARGET is not a webhook).",
)
@click.option(
    "--auth-token",
    envvar="TWILIO_AUTH_TOKEN",
    metavar="TOKEN",
    help="Sign the webhook and the upgrade with X-Twilio-Signature (default: $TWILIO_AUTH_TOKEN).",
)
@click.option(
    "--connect-to",
    metavar="HOST:PORT",
    help="Send the webhook and the WebSockets to HOST:PORT, whatever host their URLs name.",
)
@click.option(
    "--rest-port",
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Serve Twilio's REST call control (hang up, redirect, streams) on 127.0.0.1:PORT "
    "for the call; needs --auth-token. Point the app's Twilio client at it.",
)
@click.option(
    "--account-sid",
    envvar="TWILIO_ACCOUNT_SID",
    metavar="AC...",
    help="The call's AccountSid, as the app is configured (default: $TWILIO_ACCOUNT_SID, "
    "else a fresh one).",
)
@click.option(
    "--webhook-path",
    metavar="PATH",
    help="For module:app: start with a POST to PATH (such as /incoming-call).",
)
@click.option(
    "--webhook-method",
    type=click.Choice(["POST", "GET"]),
    default="POST",
    show_default=True,
    help="How the webhook is requested, as set on the phone number.",
)
@click.option(
    "--stream-path",
    default="/media-stream",
    show_default=True,
    metavar="PATH",
    help="For module:app without --webhook-path: the stream's path.",
)
@click.option("--record", type=click.Path(dir_okay=False), help="WAV of what the caller heard.")
@click.option(
    "--record-stereo",
    type=click.Path(dir_okay=False),
    help="Stereo WAV: the caller left, the app's played audio right.",
)
@click.option("--trace", type=click.Path(dir_okay=False), help="JSON Lines trace of every frame.")
@click.option("--trace-payloads", is_flag=True, help="Keep media payloads in the trace.")
@click.option("--trace-parameters", is_flag=True, help="Keep custom parameter values in the trace.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
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
@click.option(
    "--max-duration",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    metavar="SECONDS",
    help="Hang up at this time whatever happens.",
)
def call_command(
    target: str,
    audio: tuple[str, ...],
    dtmf: tuple[str, ...],
    hangup_after: float | None,
    params: tuple[str, ...],
    auth_token: str | None,
    connect_to: str | None,
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
    clock: str | None,
    calls: int,
    max_duration: float,
) -> int:
    """Place an emulated Twilio call to TARGET and report every mistake the app made.

    TARGET is a voice webhook URL (http(s)://...), a stream URL (ws(s)://...) or an ASGI
    app in this process (package.module:app).
    """
    from ..emulator.runner import place_call, place_calls, write_outputs
    from ..emulator.script import Hangup, Step, default_steps, parse_dtmf_option
    from ..exceptions import AudioError, EmulatorError

    if clock == "virtual" and "://" in target:
        # The library's own message speaks Python (clock='real').
        raise _Failure("--clock virtual needs a module:app target; a URL runs in real time")
    for option, path in (("--record", record), ("--record-stereo", record_stereo)):
        _check_writable(option, path)
    _check_writable("--trace", trace)
    if "://" not in target and "" not in sys.path:
        sys.path.insert(0, "")  # import module:app from the current directory, as uvicorn does
    try:
        steps: list[Step] = default_steps(audio)
        steps += [parse_dtmf_option(text) for text in dtmf]
        if hangup_after is not None:
            steps.append(Hangup(at_ms=round(hangup_after * 1000)))
        options: dict[str, Any] = {
            "clock": clock,
            "auth_token": auth_token,
            "connect_to": _host_port(connect_to),
            "rest_port": rest_port,
            "account_sid": account_sid,
            "parameters": _parameters(params),
            "webhook_path": webhook_path,
            "webhook_method": webhook_method,
            "stream_path": stream_path,
            "max_duration_s": max_duration,
            "end_quiet_ms": None if hangup_after is not None else 2000,
            "hang_up_on_cancel": True,  # Ctrl-C hangs up; the report and recordings still come
        }
        if calls > 1:
            if trace or record or record_stereo:
                raise click.UsageError("--trace, --record and --record-stereo take one call")
            return _many(place_calls(target, steps, calls=calls, **options), as_json)
        result = place_call(
            target,
            steps,
            trace=trace,
            trace_payloads=trace_payloads,
            trace_parameters=trace_parameters,
            **options,
        )
        write_outputs(result, record=record, record_stereo=record_stereo)
    except (AudioError, EmulatorError, ValueError, OSError) as error:
        raise _Failure(str(error)) from None
    _show(result.report, as_json)
    return result.report.exit_code


def _many(results: list[Any], as_json: bool) -> int:
    from ..emulator.report import render_summary, summarize

    reports = [result.report for result in results]
    summary = summarize(reports)
    if as_json:
        click.echo(json.dumps({"calls": [r.to_dict() for r in reports], "summary": summary}))
    else:
        from rich.console import Console

        Console().print(render_summary(summary))
    return int(summary["exit_code"])


def _show(report: object, as_json: bool) -> None:
    from ..emulator.report import CallReport, render_text

    assert isinstance(report, CallReport)
    if as_json:
        click.echo(report.to_json())
        return
    from rich.console import Console

    Console().print(render_text(report))


class _Failure(click.ClickException):
    exit_code = 2

    def show(self, file: object = None) -> None:
        click.echo(f"mediastreams call: {self.message}", err=True)
