"""``mediastreams serve``: answer real calls on a ready server.

Bad input (a missing file, a bad ``--app``, a port in use) gives one error line and exit
code 2, never a traceback. Its log lines are :mod:`mediastreams.cli.logs`'; ``--workers``
is :mod:`mediastreams.cli.workers`. Only click is imported before the options are read, so
``serve --help`` and a usage error come back at once.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..backends import BACKENDS
from .failure import CommandFailed
from .options import auth_token_option, listen, param_option, parse_parameters, port_option

if TYPE_CHECKING:  # the server (Starlette, asyncio...) is imported once the options are read
    from ..limits import Limits
    from ..server import Handler, ServerConfig

__all__ = ["serve_command"]


def _load_mulaw(path: str) -> bytes:
    from ..audio import to_mulaw
    from ..exceptions import AudioError

    try:
        return to_mulaw(path)
    except AudioError as error:
        # The message starts with the path and says what is wrong (missing, a directory,
        # an unknown format...).
        raise CommandFailed(f"--play {error}") from None


def _load_callable(option: str, spec: str) -> Any:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CommandFailed(f"{option} {spec!r}: write it as module:function")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like uvicorn: modules in the current directory
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise CommandFailed(f"{option} {spec}: cannot import {module_name}: {error}") from None
    found = getattr(module, attribute, None)
    if found is None:
        raise CommandFailed(f"{option} {spec}: {module_name} has no {attribute!r}")
    if not callable(found):
        raise CommandFailed(f"{option} {spec}: {attribute} is not a function")
    return found


def _load_app(spec: str) -> Handler:
    from ..server import ServerConfig

    handler = _load_callable("--app", spec)
    try:
        ServerConfig.check_handler(handler)
    except TypeError as error:
        raise CommandFailed(f"--app {spec}: {error}") from None
    return handler  # type: ignore[no-any-return]


def _handler(play: str | None, echo: bool, app: str | None, hangup_after_play: bool) -> Handler:
    from ..server import echo_handler, play_handler

    chosen = [name for name, on in (("--play", play), ("--echo", echo), ("--app", app)) if on]
    if len(chosen) != 1:
        raise CommandFailed("choose one of --play FILE, --echo or --app module:function")
    if hangup_after_play and not play:
        raise CommandFailed("--hangup-after-play goes with --play")
    if play:
        return play_handler(_load_mulaw(play), hangup_after_play=hangup_after_play)
    if echo:
        return echo_handler
    assert app is not None
    return _load_app(app)


def _loop_factory(loop: str) -> Callable[[], Any] | None:
    """The event loop ``--loop`` names: None for asyncio's own."""
    if loop == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        raise CommandFailed(
            "--loop uvloop needs the uvloop package: pip install 'mediastreams[uvloop]'"
        ) from None
    factory: Callable[[], Any] = uvloop.new_event_loop
    return factory


def _check_backend(backend: str) -> None:
    if backend == "picows":
        try:
            importlib.import_module("picows")
        except ImportError:
            raise CommandFailed(
                "--backend picows needs the picows package: pip install 'mediastreams[picows]'"
            ) from None


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@port_option(default=5050, help="Port to listen on; 0 picks a free one (printed at start).")
@click.option(
    "--public-url",
    metavar="URL",
    help="The https:// base the world reaches this server at (a tunnel or proxy); a path in "
    "it is a prefix the proxy strips.",
)
@param_option(help="A <Parameter>.")
@click.option("--play", metavar="FILE", help="Play FILE when the stream starts.")
@click.option("--hangup-after-play", is_flag=True, help="With --play: end the call after it.")
@click.option("--echo", is_flag=True, help="Play the caller's audio back to them.")
@click.option("--app", metavar="MODULE:FUNCTION", help="Your async def handler(stream).")
@click.option(
    "--on-webhook",
    metavar="MODULE:FUNCTION",
    help="Called with the webhook's parameters; the dict it returns is stream.context.data.",
)
@auth_token_option(help="Check X-Twilio-Signature on both routes (default: $TWILIO_AUTH_TOKEN).")
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
    help="The server under the handler; each takes GET and POST webhooks; websockets and "
    "picows carry more calls per core.",
)
@click.option(
    "--loop",
    type=click.Choice(["asyncio", "uvloop"]),
    default="asyncio",
    show_default=True,
    help="The event loop; uvloop (the uvloop extra) costs less CPU per frame.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Processes sharing the port (SO_REUSEPORT), one per core.",
)
@click.option(
    "--redis",
    "redis_url",
    metavar="URL",
    envvar="MEDIASTREAMS_REDIS",
    help="Share call state between workers and machines: redis://host:6379/0.",
)
@click.option(
    "--control-token",
    envvar="MEDIASTREAMS_CONTROL_TOKEN",
    metavar="TOKEN",
    help="Bearer token of the call-control API (/calls); needed beyond loopback.",
)
@click.option("--metrics", is_flag=True, help="Prometheus metrics at /metrics.")
@click.option(
    "--forwarded-allow-ips",
    metavar="ADDRESSES",
    default="",
    help="Comma-separated proxy addresses or networks (or *) whose X-Forwarded-* headers are "
    "trusted [default: none].",
)
@click.option(
    "--drain-timeout",
    default=600.0,
    show_default=True,
    type=click.FloatRange(0),
    metavar="SECONDS",
    help="After SIGTERM, how long live calls may go on before they close with 1001.",
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
    help="debug, info, warning or error; the app's own loggers too.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object a line, with the call's SIDs.",
)
def serve_command(**options: Any) -> None:
    """Answer calls: TwiML on /incoming-call, the Media Stream on /media-stream.

    SIGTERM drains (/readyz answers 503, live calls go on, then the server exits); a second
    SIGTERM or Ctrl-C stops at once.
    """
    import asyncio

    from .logs import configure_logging

    o = _Options(**options)
    _check_backend(o.backend)
    loop_factory = _loop_factory(o.loop)
    handler = _handler(o.play, o.echo, o.app, o.hangup_after_play)
    if o.mark_interval_ms > o.lead_ms:
        raise CommandFailed("--mark-interval-ms must not exceed --lead-ms")
    _check_shared_state(o)
    config = _config(o, handler)
    try:
        configure_logging(o.log_level, o.log_format)
    except ValueError:
        raise CommandFailed(
            f"--log-level {o.log_level!r}: use debug, info, warning or error"
        ) from None
    if o.workers > 1 and _WORKER_ENV not in os.environ:
        from .workers import run_workers

        raise SystemExit(
            run_workers(
                click.get_current_context(),
                o.host,
                o.port,
                o.workers,
                config,
                banner=functools.partial(_banner, o, config),
            )
        )
    sock = listen(o.host, o.port, reuse_port=_WORKER_ENV in os.environ)
    if _WORKER_ENV not in os.environ:
        _banner(o, config, sock.getsockname()[1])
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            workers = int(os.environ.get(_WORKER_ENV, "1"))
            runner.run(_run(config, sock, o.backend, workers=workers))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


# Set in a worker's environment by the supervisor: how many workers there are.
_WORKER_ENV = "MEDIASTREAMS_WORKERS"
_DUPLICATE_TERM_S = 1.0


@dataclasses.dataclass(frozen=True)
class _Options:
    host: str
    port: int
    public_url: str | None
    params: tuple[str, ...]
    play: str | None
    hangup_after_play: bool
    echo: bool
    app: str | None
    on_webhook: str | None
    auth_token: str | None
    stream_token: bool
    backend: str
    loop: str
    workers: int
    redis_url: str | None
    control_token: str | None
    metrics: bool
    forwarded_allow_ips: str
    drain_timeout: float
    max_connections: int | None
    lead_ms: int
    mark_interval_ms: int
    log_level: str
    log_format: str


def _check_shared_state(o: _Options) -> None:
    if o.workers > 1 and not o.redis_url:
        needing = [
            name
            for name, on in (
                ("--stream-token", o.stream_token),
                ("--on-webhook", o.on_webhook),
                ("--control-token", o.control_token),
            )
            if on
        ]
        if needing:
            raise CommandFailed(
                f"{', '.join(needing)} with --workers {o.workers} needs state shared by the "
                "workers: add --redis redis://host:6379/0 (or run one worker)"
            )
    if o.redis_url:
        try:
            importlib.import_module("redis")
        except ImportError:
            raise CommandFailed(
                "--redis needs the redis package: pip install 'mediastreams[redis]'"
            ) from None
    if o.metrics:
        try:
            importlib.import_module("prometheus_client")
        except ImportError:
            raise CommandFailed(
                "--metrics needs the prometheus-client package: pip install 'mediastreams[metrics]'"
            ) from None


def _config(o: _Options, handler: Handler) -> ServerConfig:
    from ..security import StreamTokens
    from ..server import ServerConfig
    from ..server.config import check_public_url, check_redis_url, trusted_network

    # Each option is checked apart from the config, whose errors are then a <Parameter>'s.
    for option, value, check in (
        ("--public-url", o.public_url, check_public_url),
        ("--redis", o.redis_url, check_redis_url),
    ):
        if value:
            try:
                check(value)
            except ValueError as error:
                raise CommandFailed(f"{option}: {error}") from None
    allow = [a for a in o.forwarded_allow_ips.split(",") if a.strip()]
    for address in allow:
        try:
            trusted_network(address)
        except ValueError as error:
            raise CommandFailed(f"--{error}") from None
    on_webhook = _load_callable("--on-webhook", o.on_webhook) if o.on_webhook else None
    try:
        return ServerConfig(
            handler=handler,
            public_url=o.public_url,
            parameters=parse_parameters(o.params),
            auth_token=o.auth_token or None,
            stream_options={"lead_ms": o.lead_ms, "mark_interval_ms": o.mark_interval_ms},
            stream_tokens=StreamTokens() if o.stream_token else None,
            limits=_limits(o.max_connections),
            redis_url=o.redis_url or None,
            on_webhook=on_webhook,
            control_token=o.control_token or None,
            metrics=o.metrics,
            forwarded_allow_ips=tuple(allow),
            drain_timeout_s=o.drain_timeout,
        )
    except ValueError as error:
        raise CommandFailed(f"--param: {error}") from None


def _banner(o: _Options, config: ServerConfig, port: int) -> None:
    """The start-up line: the exact URLs to give Twilio (those signatures are checked on)."""
    from ..connections import max_connections_for
    from ..server.config import check_public_url
    from .logs import announce

    if config.public_url is not None:
        origin = check_public_url(config.public_url)
        webhook = origin.http_url(config.incoming_path)
        stream = origin.websocket_url(config.stream_path)
    else:
        webhook = f"http://{o.host}:{port}{config.incoming_path}"
        stream = f"ws://{o.host}:{port}{config.stream_path}"
    signed = ", signatures checked on these URLs" if o.auth_token else ""
    on_loop = f" on {o.loop}" if o.loop != "asyncio" else ""
    workers = f", {o.workers} workers on {o.host}:{port} with SO_REUSEPORT" if o.workers > 1 else ""
    announce(
        f"mediastreams serve ({o.backend}{on_loop}{workers}): webhook {webhook}"
        + f", stream {stream}{signed}"
        + f", at most {max_connections_for(config.limits)} connections"
        + (" each" if o.workers > 1 else "")
        + (f", shared state on {_redis_where(o.redis_url)}" if o.redis_url else ""),
        o.log_format,
    )


def _redis_where(url: str) -> str:
    from ..store.redis import _safe_url

    return _safe_url(url)


def _limits(max_connections: int | None) -> Limits:
    from ..limits import DEFAULT_LIMITS

    if max_connections is None:
        return DEFAULT_LIMITS
    return dataclasses.replace(DEFAULT_LIMITS, max_connections=max_connections)


async def _run(config: ServerConfig, sock: Any, backend: Any, *, workers: int = 1) -> None:
    import asyncio
    import signal

    from ..server import serve

    stop, drain = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    # A worker may get the first SIGTERM twice: from a service manager that signals every
    # process of the service (systemd's default) and from the supervisor, which forwards it.
    duplicate_s = _DUPLICATE_TERM_S if workers > 1 else 0.0
    drain_at = 0.0

    def on_term() -> None:
        # The first SIGTERM drains; a second one stops at once.
        nonlocal drain_at
        if not drain.is_set():
            drain_at = loop.time()
            drain.set()
        elif loop.time() - drain_at >= duplicate_s:
            stop.set()

    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, on_term)
    # A worker starts with both blocked (see cli.workers): the ones sent meanwhile come now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM))
    await serve(config, sock, backend=backend, stop=stop, drain=drain, workers=workers)
