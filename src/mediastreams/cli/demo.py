"""``mediastreams demo``: the whole loop on one machine, in one command.

The built-in server answers an emulated call placed through its TwiML webhook, with
signatures on. The app greets the caller, the caller answers, presses a key, talks over the
app (barge-in), and hangs up; the timeline shows each step as it happens, and the report,
the recordings and the trace are written to a folder.
"""

from __future__ import annotations

import asyncio
import secrets
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .failure import CommandFailed
from .options import listen, port_option

# rich, the server and the emulator are imported when the demo runs: `--help` stays quick.
if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["demo_command"]

_EXPECTED_CALL_S = 23.0  # how long the scripted call lasts, for the progress bar


@click.command("demo")
@click.option(
    "--clock",
    type=click.Choice(["real", "virtual"]),
    default="real",
    show_default=True,
    help="real: a real server on 127.0.0.1, in real time (about 25 s). virtual: the same "
    "app in this process, with time skipped (well under a second).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Folder for the recordings, the trace and the JSON report.",
)
@port_option(default=0, help="Port for the server with --clock real (0: any free port).")
def demo_command(clock: str, out_dir: Path, port: int) -> int:
    """Run a whole emulated call against the built-in server, and show what happened."""
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandFailed(f"cannot create {out_dir}: {error.strerror}") from None
    console.print(f"[bold]mediastreams demo[/] ({clock} clock): server, call, timeline, report\n")
    result = _run(clock, port, out_dir, console)
    return _finish(result, out_dir, console)


def _steps() -> list[Any]:
    from ..emulator import Audio, Press, Silence, WaitForQuiet

    prompts = resources.files("mediastreams.demo").joinpath("prompts")
    return [
        WaitForQuiet(quiet_ms=700),  # the greeting and the beep
        Audio(prompts.joinpath("caller-request.wav").read_bytes()),
        WaitForQuiet(quiet_ms=700),  # the app asks for a key
        Press("5"),
        Silence(2000),  # the app starts a long message...
        Audio(prompts.joinpath("caller-interrupt.wav").read_bytes()),  # ...and is cut off
        WaitForQuiet(quiet_ms=1000),  # goodbye; then the caller hangs up
    ]


def _run(clock: str, port: int, out_dir: Path, console: Console) -> Any:
    from rich.markup import escape

    from ..demo.timeline import Timeline

    timeline = Timeline(lambda text: console.print(escape(text)))
    options: dict[str, Any] = {
        "auth_token": secrets.token_hex(16),  # throwaway: signatures are checked for real
        "trace": out_dir / "trace.jsonl",
        "on_frame": timeline.frame,
        "max_duration_s": 120.0,
    }
    if clock == "virtual":
        return _run_virtual(timeline, options)
    with _progress(console) as progress:
        return asyncio.run(_run_real(timeline, options, port, progress, console))


def _run_virtual(timeline: Any, options: dict[str, Any]) -> Any:
    from ..emulator import place_call
    from ..server import create_app

    app = create_app(_config(timeline, options["auth_token"]))
    return place_call(app, _steps(), clock="virtual", webhook_path="/incoming-call", **options)


async def _run_real(
    timeline: Any, options: dict[str, Any], port: int, progress: Progress, console: Console
) -> Any:
    from ..emulator import place_call_async
    from ..server import serve

    sock = listen("127.0.0.1", port)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/incoming-call"
    console.print(f"server: {url} (auth token set: requests must be signed)")
    stop = asyncio.Event()
    server = asyncio.create_task(serve(_config(timeline, options["auth_token"]), sock, stop=stop))
    ticker = asyncio.create_task(_tick(progress))
    try:
        return await place_call_async(url, _steps(), hang_up_on_cancel=True, **options)
    finally:
        ticker.cancel()
        stop.set()
        await asyncio.gather(server, ticker, return_exceptions=True)


def _config(timeline: Any, auth_token: str) -> Any:
    from ..demo import conversation
    from ..server import ServerConfig

    async def handler(stream: Any) -> None:
        await conversation(stream, timeline.note)

    return ServerConfig(handler=handler, auth_token=auth_token, parameters={"demo": "yes"})


def _progress(console: Console) -> Progress:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("call"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


async def _tick(progress: Progress) -> None:
    task = progress.add_task("call", total=_EXPECTED_CALL_S)
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        progress.update(task, completed=min(loop.time() - started, _EXPECTED_CALL_S))
        await asyncio.sleep(0.2)


def _finish(result: Any, out_dir: Path, console: Console) -> int:
    from ..emulator.render import render_text
    from ..emulator.runner import write_outputs

    heard, stereo, report = (
        out_dir / "caller-heard.wav",
        out_dir / "call-stereo.wav",
        out_dir / "report.json",
    )
    write_outputs(result, record=heard, record_stereo=stereo)
    report.write_text(result.report.to_json() + "\n", encoding="utf-8")
    console.print()
    console.print(render_text(result.report))
    console.print("\nwritten:")
    for path, what in (
        (heard, "what the caller heard"),
        (stereo, "caller left, app right"),
        (out_dir / "trace.jsonl", "every frame, both ways (mediastreams inspect reads it)"),
        (report, "this report as JSON"),
    ):
        console.print(f"  {path}  [dim]{what}[/]")
    return int(result.report.exit_code)
