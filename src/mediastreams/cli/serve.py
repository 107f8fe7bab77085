"""``mediastreams serve``: answer real calls on a ready server.

Bad input (a missing file, a bad ``--app``, a port in use) gives one error line and exit
code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import os
import sys
from typing import Any

import click

from ..connections import max_connections_for
from ..limits import DEFAULT_LIMITS, Limits
from ..security import PublicURL, StreamTokens, loggable
from ..server import BACKENDS, Handler, ServerConfig, bind, echo_handler, play_handler, serve

__all__ = ["serve_command"]


class BadInput(click.ClickException):
    """One clear line, exit code 2 (like a usage error)."""

    exit_code = 2


def _parameters(values: tuple[str, ...]) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise BadInput(f"--param {item!r}: write it as name=value")
        parameters[name] = value
    return parameters


def _load_mulaw(path: str) -> bytes:
    from ..audio import to_mulaw
    from ..exceptions import AudioError

    try:
        return to_mulaw(path)
    except AudioError as error:
        # The message starts with the path and says what is wrong (missing, a directory,
        # an unknown format...).
        raise BadInput(f"--play {error}") from None


def _load_app(spec: str) -> Handler:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise BadInput(f"--app {spec!r}: write it as module:function")
    sys.path.insert(0, os.getcwd())  # like uvicorn: modules in the current directory
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise BadInput(f"--app {spec}: cannot import {module_name}: {error}") from None
    handler = getattr(module, attribute, None)
    if handler is None:
        raise BadInput(f"--app {spec}: {module_name} has no {attribute!r}")
    try:
        ServerConfig.check_handler(handler)
    except TypeError as error:
        raise BadInput(f"--app {spec}: {error}") from None
    return handler  # type: ignore[no-any-return]


def _handler(play: str | None, echo: bool, app: str | None, hangup_after_play: bool) -> Handler:
    chosen = [name for name, on in (("--play", play), ("--echo", echo), ("--app", app)) if on]
    if len(chosen) != 1:
        raise BadInput("choose one of --play FILE, --echo or --app module:function")
    if hangup_after_play and not play:
        raise BadInput("--hangup-after-play goes with --play")
    if play:
        return play_handler(_load_mulaw(play), hangup_after_play=hangup_after_play)
    if echo:
        return echo_handler
    assert app is not None
    return _load_app(app)


def _check_backend(backend: str) -> None:
    if backend == "picows":
        try:
            importlib.import_module("picows")
        except ImportError:
            raise BadInput(
                "--backend picows needs the picows package: pip install 'mediastreams[picows]'"
            ) from None


class _SidFormatter(logging.Formatter):
    """``time level logger message stream_sid=... call_sid=...``: greppable per call.

    The SIDs come from the peer's ``start`` frame, so they are escaped like every value from
    the wire: a newline in one cannot forge a log line.
    """

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        sids = [
            f"{k}={loggable(getattr(record, k), max_chars=64)}"
            for k in ("stream_sid", "call_sid")
            if hasattr(record, k)
        ]
        return " ".join([line, *sids])


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_SidFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("mediastreams")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=5050,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on; 0 picks a free one (printed at start).",
)
@click.option(
    "--public-url",
    metavar="URL",
    help="The base the world reaches this server at (https://abc.example, a tunnel or proxy).",
)
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A <Parameter>.")
@click.option("--play", metavar="FILE", help="Play FILE when the stream starts.")
@click.option("--hangup-after-play", is_flag=True, help="With --play: end the call after it.")
@click.option("--echo", is_flag=True, help="Play the caller's audio back to them.")
@click.option("--app", metavar="MODULE:FUNCTION", help="Your async def handler(stream).")
@click.option(
    "--auth-token",
    envvar="TWILIO_AUTH_TOKEN",
    metavar="TOKEN",
    help="Check X-Twilio-Signature on both routes (default: $TWILIO_AUTH_TOKEN).",
)
@click.option(
    "--stream-token",
    is_flag=True,
    help="Give each call a one-time token in the TwiML; refuse streams that lack it.",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="uvicorn",
    show_default=True,
    help="uvicorn takes GET and POST webhooks; websockets and picows carry more calls per core "
    "but take GET webhooks only.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    metavar="N",
    help="Open connections (HTTP and WebSocket) past which new ones get HTTP 503 "
    "[default: three quarters of the file limit (ulimit -n)].",
)
@click.option(
    "--lead-ms",
    default=1000,
    show_default=True,
    type=click.IntRange(20),
    help="How far audio sent may run ahead of what Twilio confirmed playing.",
)
@click.option(
    "--mark-interval-ms",
    default=200,
    show_default=True,
    type=click.IntRange(20),
    help="A mark at least this often: the accuracy of what the caller heard.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    metavar="LEVEL",
    help="debug, info, warning or error.",
)
def serve_command(
    host: str,
    port: int,
    public_url: str | None,
    params: tuple[str, ...],
    play: str | None,
    hangup_after_play: bool,
    echo: bool,
    app: str | None,
    auth_token: str | None,
    stream_token: bool,
    backend: str,
    max_connections: int | None,
    lead_ms: int,
    mark_interval_ms: int,
    log_level: str,
) -> None:
    """Answer calls: TwiML on /incoming-call, the Media Stream on /media-stream."""
    _check_backend(backend)
    handler = _handler(play, echo, app, hangup_after_play)
    if mark_interval_ms > lead_ms:
        raise BadInput("--mark-interval-ms must not exceed --lead-ms")
    if public_url is not None:
        # Checked apart from the config, whose errors could also be about a <Parameter>.
        try:
            PublicURL.parse(public_url)
        except ValueError as error:
            raise BadInput(f"--public-url: {error}") from None
    try:
        config = ServerConfig(
            handler=handler,
            public_url=public_url,
            parameters=_parameters(params),
            auth_token=auth_token or None,
            stream_options={"lead_ms": lead_ms, "mark_interval_ms": mark_interval_ms},
            stream_tokens=StreamTokens() if stream_token else None,
            limits=_limits(max_connections),
        )
    except ValueError as error:
        raise BadInput(f"--param: {error}") from None
    try:
        _configure_logging(log_level)
    except ValueError:
        raise BadInput(f"--log-level {log_level!r}: use debug, info, warning or error") from None
    try:
        sock = bind(host, port)
    except OSError as error:
        raise BadInput(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    base = public_url or f"http://{host}:{sock.getsockname()[1]}"
    click.echo(
        f"mediastreams serve ({backend}): webhook {base}/incoming-call, stream /media-stream"
        + (", signatures checked" if auth_token else "")
        + f", at most {max_connections_for(config.limits)} connections",
        err=True,
    )
    try:
        asyncio.run(_run(config, sock, backend))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


def _limits(max_connections: int | None) -> Limits:
    if max_connections is None:
        return DEFAULT_LIMITS
    return dataclasses.replace(DEFAULT_LIMITS, max_connections=max_connections)


async def _run(config: ServerConfig, sock: Any, backend: Any) -> None:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(config, sock, backend=backend, stop=stop)
