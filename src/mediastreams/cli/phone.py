"""``mediastreams phone TARGET``: talk to an app from the browser, through the emulator.

Exit codes: the last call's (0 when the app made no mistake or no call was placed, 1 when
it made one), 2 when the options are wrong or the page cannot be served.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import tempfile
import webbrowser
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import click

from .failure import CommandFailed, Interrupted
from .options import (
    account_sid_option,
    allow_module_app,
    auth_token_option,
    connect_to_option,
    listen,
    max_duration_option,
    param_option,
    parse_parameters,
    port_option,
    stream_path_option,
    trace_parameters_option,
    trace_payloads_option,
    webhook_path_option,
)

__all__ = ["phone_command"]


@click.command("phone")
@click.argument("target")
@port_option(default=0, help="Serve the page on 127.0.0.1:PORT (0: any free port).")
@click.option("--no-browser", is_flag=True, help="Print the page's URL; do not open it.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write each call's recordings, trace and JSON report to DIR/call-N/.",
)
@param_option()
@auth_token_option()
@connect_to_option
@account_sid_option
@webhook_path_option
@stream_path_option
@trace_payloads_option
@trace_parameters_option
@max_duration_option(
    default_s=3600.0, min_s=1, help="Hang up a call at this time whatever happens."
)
def phone_command(
    target: str,
    port: int,
    no_browser: bool,
    out_dir: Path | None,
    params: tuple[str, ...],
    auth_token: str | None,
    connect_to: tuple[str, int] | None,
    account_sid: str | None,
    webhook_path: str | None,
    stream_path: str,
    trace_payloads: bool,
    trace_parameters: bool,
    max_duration: float,
) -> int:
    """Talk to TARGET from the browser: the page is the caller, the emulator is Twilio.

    TARGET is a voice webhook URL (http(s)://...), a stream URL (ws(s)://...) or an ASGI
    app in this process (package.module:app). The page shows the call live (both
    directions, marks, clear, keys, turns, barge-ins, violations) and, after the hang-up,
    the report and the recordings. Ctrl-C hangs up and stops.
    """
    options: dict[str, Any] = {
        "auth_token": auth_token,
        "connect_to": connect_to,
        "account_sid": account_sid,
        "parameters": parse_parameters(params),
        "max_duration_s": max_duration,
        "trace_payloads": trace_payloads,
        "trace_parameters": trace_parameters,
    }
    if "://" not in target:
        options.update(webhook_path=webhook_path, stream_path=stream_path, lifespan=False)
        allow_module_app()
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CommandFailed(f"--out {out_dir}: {error.strerror}") from None
    try:
        return asyncio.run(_main(target, options, port, not no_browser, out_dir))
    except (KeyboardInterrupt, asyncio.CancelledError):  # a second Ctrl-C
        raise Interrupted("interrupted again: stopped without waiting for the calls") from None


async def _main(
    target: str, options: dict[str, Any], port: int, browse: bool, out_dir: Path | None
) -> int:
    from ..emulator.runner import load_app
    from ..exceptions import EmulatorError
    from ..phone import Phone, run_phone

    sock = listen("127.0.0.1", port)
    try:
        app = load_app(target) if "://" not in target else target
        async with _app_running(app), _folder(out_dir) as folder:
            show = functools.partial(_show, kept=out_dir is not None)
            phone = Phone(app, target, options, folder, on_report=show)
            url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
            click.echo(f"mediastreams phone: {url} calls {target} (Ctrl-C stops)", err=True)
            click.echo(url)  # alone on stdout, for scripts
            if browse:
                webbrowser.open(url)
            _stop_on_signals()
            await run_phone(phone, sock)
            return phone.last_exit_code
    except EmulatorError as error:
        raise CommandFailed(str(error)) from None
    finally:
        sock.close()


def _stop_on_signals() -> None:
    """Ctrl-C (or SIGTERM) hangs up and stops, once; a second one stops at once."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows: Ctrl-C still works
            loop.add_signal_handler(number, main.cancel)


@contextlib.asynccontextmanager
async def _app_running(app: Any) -> AsyncIterator[None]:
    """An in-process app's lifespan runs once, for every call the page places."""
    if isinstance(app, str):
        yield
        return
    from ..emulator.asgi import asgi_lifespan

    async with asgi_lifespan(app):
        yield


@contextlib.asynccontextmanager
async def _folder(out_dir: Path | None) -> AsyncIterator[Path]:
    """``--out DIR``, or a folder of our own for the page's downloads, removed at the end."""
    if out_dir is not None:
        yield out_dir
        return
    with tempfile.TemporaryDirectory(prefix="mediastreams-phone-") as name:
        yield Path(name)


def _show(result: Any, folder: Path, *, kept: bool) -> None:
    from rich.console import Console

    from ..emulator.render import render_text

    console = Console(highlight=False, soft_wrap=True)
    console.print(render_text(result.report))
    if kept:
        console.print(f"written: {folder}")
