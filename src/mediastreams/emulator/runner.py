"""Place a call: the webhook, the TwiML verb by verb, every stream, and the report.

:func:`place_call` runs a whole call in a fresh event loop, in virtual time by default (for
an in-process ASGI app) or in real time; :func:`place_call_async` runs it in the current
loop. A target is an ``http(s)://`` voice webhook URL, a ``ws(s)://`` stream URL, an ASGI
app, or ``"module:attribute"`` naming one.

The call is a :class:`~mediastreams.emulator.line.Line` (the clock, the caller, what the
caller hears, the recording, the streams), walked by an
:class:`~mediastreams.emulator.interpreter.Interpreter` (the TwiML), and optionally
controlled over a :class:`~mediastreams.emulator.rest.RestServer` (Twilio's REST API).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..exceptions import EmulatorError
from ..security import compute_signature
from ..trace import TraceWriter
from .clock import ClockName, VirtualEventLoop, run_in_loop
from .interpreter import Direct, Fetch, Interpreter, Source
from .line import Line, Opener
from .recorder import Recorder
from .report import CallReport
from .rest import RestServer
from .script import CallerScript, Step
from .streams import FrameObserver, StreamPlan
from .transport import IN_PROCESS_BASE_URL, ASGIApp, ASGITransport, WebSocketTransport
from .transport import asgi_lifespan as _lifespan
from .webhook import RoutedTransport, TwilioRequests, call_parameters

__all__ = [
    "CallResult",
    "load_app",
    "place_call",
    "place_call_async",
    "place_calls",
    "place_calls_async",
    "write_outputs",
]

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")


@dataclass
class CallResult:
    """A finished call: the report, and the recording of what the caller heard."""

    report: CallReport
    recorder: Recorder

    @property
    def heard_mulaw(self) -> bytes:
        """Everything the caller heard (TwiML prelude, then the playout), mu-law/8000."""
        return self.recorder.heard_mulaw

    @property
    def ok(self) -> bool:
        """The call was placed and the app made no mistake."""
        return self.report.ok

    def codes(self) -> list[int]:
        """The distinct Twilio codes found (see :meth:`CallReport.codes`)."""
        return self.report.codes()

    def raise_for_violations(self) -> None:
        """Fail if the app made a mistake: see :meth:`CallReport.raise_for_violations`.

        Raises:
            ViolationsFound: every kind of mistake, once, in one readable message (an
                ``AssertionError``, so a test fails with it).
        """
        self.report.raise_for_violations()


def load_app(spec: str) -> ASGIApp:
    """Import ``"package.module:attribute"`` (an ASGI app, or a factory with ``()``).

    Raises:
        EmulatorError: the module or attribute cannot be found, or ``spec`` is a URL
            without its scheme (``127.0.0.1:5050/incoming-call``).
    """
    url = _url_meant(spec)
    if url is not None:
        raise EmulatorError(
            f"{spec!r} is not module:app; did you mean {url}? A URL needs its scheme: "
            "http(s):// for a voice webhook, ws(s):// for a stream"
        )
    module_name, _, attribute = spec.partition(":")
    factory = attribute.endswith("()")
    attribute = attribute.removesuffix("()")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # whatever the module raised, it is reported in one line
        raise EmulatorError(
            f"cannot import {module_name!r}: {type(error).__name__}: {error}"
        ) from error
    try:
        app: Any = module
        for part in (attribute or "app").split("."):
            app = getattr(app, part)
    except AttributeError:
        raise EmulatorError(f"{module_name!r} has no attribute {attribute!r}") from None
    if factory:
        app = app()
    if not callable(app):
        raise EmulatorError(f"{spec} is not an ASGI app")
    return app  # type: ignore[no-any-return]


_HOST = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d+))?(?P<path>/.*)?")


def _url_meant(spec: str) -> str | None:
    """The URL ``spec`` names without its scheme, if it cannot be ``module:attribute``."""
    match = _HOST.fullmatch(spec)
    if match is None:
        return None
    host, port, path = match["host"], match["port"], match["path"]
    if port is None and path is None and all(part.isidentifier() for part in host.split(".")):
        return None  # "package.module": a module name, not a host
    local = host in ("localhost", "[::1]") or host.replace(".", "").isdigit()
    return ("http://" if local else "https://") + spec


def place_call(
    target: str | ASGIApp,
    steps: Sequence[Step] = (),
    *,
    clock: ClockName | None = None,
    **options: Any,
) -> CallResult:
    """Place a call and wait for it to end (see :func:`place_call_async` for the options).

    Args:
        target: a webhook URL, a stream URL, an ASGI app or ``"module:app"``.
        steps: the caller's script.
        clock: ``"virtual"`` (the default for an in-process app without ``rest_port``) or
            ``"real"`` (the default, and the only choice, for a URL). The REST stand-in
            listens on a real socket, which virtual time cannot follow.
    """
    chosen = _clock(target, clock, options)
    return run_in_loop(lambda: place_call_async(target, steps, **options), clock=chosen)


def _clock(target: str | ASGIApp, clock: ClockName | None, options: Mapping[str, Any]) -> ClockName:
    app_target = not (isinstance(target, str) and "://" in target)
    default: ClockName = "virtual" if app_target and options.get("rest_port") is None else "real"
    chosen: ClockName = clock or default
    if chosen == "virtual" and not app_target:
        raise EmulatorError("virtual time needs an in-process ASGI app; use clock='real'")
    return chosen


async def place_call_async(
    target: str | ASGIApp,
    steps: Sequence[Step] = (),
    *,
    auth_token: str | None = None,
    account_sid: str | None = None,
    rest_port: int | None = None,
    connect_to: tuple[str, int] | None = None,
    public_url: str | None = None,
    parameters: Mapping[str, str] | None = None,
    webhook_path: str | None = None,
    webhook_method: str = "POST",
    stream_path: str = "/media-stream",
    trace: str | os.PathLike[str] | None = None,
    trace_payloads: bool = False,
    trace_parameters: bool = False,
    max_duration_s: float = 600.0,
    end_quiet_ms: int | None = 2000,
    open_timeout_s: float = 10.0,
    hang_up_on_cancel: bool = False,
    lifespan: bool = True,
    on_frame: FrameObserver | None = None,
) -> CallResult:
    """Place a call in the running event loop.

    The call runs on that loop's clock: virtual on a
    :class:`~mediastreams.emulator.clock.VirtualEventLoop`, real otherwise.

    Args:
        target: an ``http(s)://`` voice webhook URL (the TwiML runs verb by verb), a
            ``ws(s)://`` stream URL, an ASGI app, or ``"module:app"``.
        steps: the caller's script (:mod:`mediastreams.emulator.script`), run once per call
            from the call's first stream.
        auth_token: sign the webhooks and the upgrades with ``X-Twilio-Signature``; the REST
            stand-in's password.
        account_sid: the call's ``AccountSid`` (``AC`` + 32 hex digits; a fresh one by
            default), so that an app can be configured with it before the call.
        rest_port: serve Twilio's REST call control on ``127.0.0.1:rest_port`` for the
            length of the call (0: any free port, in the report's ``rest.url``); needs
            ``auth_token``.
        connect_to: ``(host, port)`` to send the requests for the public host to (the
            webhook, and every WebSocket whatever host its URL names): a local server behind
            a tunnel; the signatures still cover the public URLs.
        public_url: for an ASGI app: where the app is said to live, such as
            ``"https://abc.ngrok.app"`` (``https://testserver`` by default). The webhook and
            stream URLs use it, and the signatures cover those URLs, so an app that checks
            ``X-Twilio-Signature`` against its configured public URL passes.
        parameters: ``start.customParameters`` when starting from a stream URL or an app
            (with a webhook they come from ``<Parameter>``).
        webhook_path: for an ASGI app: start with a POST to this path (for example
            ``"/incoming-call"``) instead of opening ``stream_path`` directly.
        webhook_method: ``"POST"`` (Twilio's default) or ``"GET"`` (the parameters go in
            the query string), as set on the phone number.
        stream_path: for an ASGI app without ``webhook_path``: the stream's path.
        trace: write every frame of the call's (first) bidirectional stream, both ways, to
            this JSON Lines file.
        trace_payloads: keep media payloads in the trace.
        trace_parameters: keep custom parameter values in the trace.
        max_duration_s: hang up at this point whatever the script says.
        end_quiet_ms: after the script, hang up once the app has been quiet this long
            (``None``: only a timed hang-up, the TwiML or the app end the call).
        open_timeout_s: how long a WebSocket may take to open, and a webhook to answer.
        hang_up_on_cancel: if the call is cancelled (Ctrl-C under ``asyncio.run``) at any
            moment, hang up and return the report so far instead of raising.
        lifespan: for an ASGI app, run its lifespan startup before the call and its shutdown
            after (``False`` when it is already running).
        on_frame: called with ``(seconds since the call's first start, sender, frame)`` for
            every frame of the traced stream, both ways, as it goes.

    Raises:
        AudioError: an audio file of the script cannot be read.
        EmulatorError: the target or an option cannot be used.
    """
    started = time.perf_counter()
    if account_sid is not None and not _ACCOUNT_SID.fullmatch(account_sid):
        raise EmulatorError(f"account_sid {account_sid!r}: expected AC and 32 hex digits")
    if rest_port is not None and not auth_token:
        raise EmulatorError(
            "the REST stand-in checks requests as Twilio does, with the auth token as "
            "password: give auth_token (--auth-token) with rest_port (--rest-port)"
        )
    script = CallerScript(steps, end_quiet_ms=end_quiet_ms)
    app = load_app(target) if isinstance(target, str) and "://" not in target else target
    if public_url is not None and isinstance(app, str):
        raise EmulatorError(
            "public_url is for an app in this process; a URL target is the public URL "
            "already (give connect_to to reach a local server behind it)"
        )
    base_url = IN_PROCESS_BASE_URL if public_url is None else _base_url(public_url)
    label = target if isinstance(target, str) else _name(app)
    virtual = isinstance(asyncio.get_running_loop(), VirtualEventLoop)
    report = CallReport(target=label, clock="virtual" if virtual else "real")
    recorder = Recorder()
    writer = (
        TraceWriter(Path(trace), payloads=trace_payloads, parameters=trace_parameters)
        if trace
        else None
    )
    call = _Placement(
        report,
        recorder,
        script,
        writer,
        _Options(
            account_sid=account_sid,
            auth_token=auth_token,
            rest_port=rest_port,
            connect_to=connect_to,
            parameters=dict(parameters or {}),
            webhook_method=webhook_method,
            open_timeout_s=open_timeout_s,
            max_duration_ms=int(max_duration_s * 1000),
            hang_up_on_cancel=hang_up_on_cancel,  # Ctrl-C in the CLI
            on_frame=on_frame,
        ),
    )
    try:
        if isinstance(app, str):
            await call.over_network(app)
        else:
            async with _lifespan(app) if lifespan else contextlib.nullcontext():
                await call.in_process(app, base_url, webhook_path, stream_path)
    finally:
        if writer is not None:
            writer.close()
    report.wall_s = time.perf_counter() - started
    return CallResult(report, recorder)


def place_calls(
    target: str | ASGIApp,
    steps: Sequence[Step] = (),
    *,
    calls: int,
    clock: ClockName | None = None,
    **options: Any,
) -> list[CallResult]:
    """Place ``calls`` calls at once and wait for them all (a load test).

    Takes the arguments of :func:`place_call`, except the per-call outputs (``trace``).
    """
    chosen = _clock(target, clock, options)
    return run_in_loop(
        lambda: place_calls_async(target, steps, calls=calls, **options), clock=chosen
    )


async def place_calls_async(
    target: str | ASGIApp,
    steps: Sequence[Step] = (),
    *,
    calls: int,
    **options: Any,
) -> list[CallResult]:
    """Place ``calls`` calls at once in the running loop; an app's lifespan runs once.

    Raises:
        EmulatorError: ``calls`` is below 1, or a trace or a fixed REST port was asked for
            (one per call would be needed).
    """
    if calls < 1:
        raise EmulatorError("calls must be at least 1")
    if options.get("trace"):
        raise EmulatorError("a trace records one call; place the calls without trace=")
    if options.get("rest_port") and calls > 1:
        raise EmulatorError("a REST port serves one call; use rest_port=0 for many calls")
    app = load_app(target) if isinstance(target, str) and "://" not in target else target
    if isinstance(app, str):
        one = [place_call_async(app, steps, **options) for _ in range(calls)]
        return list(await asyncio.gather(*one))
    async with _lifespan(app):
        many = [place_call_async(app, steps, lifespan=False, **options) for _ in range(calls)]
        return list(await asyncio.gather(*many))


def _base_url(public_url: str) -> str:
    """``public_url`` as ``scheme://host[:port]``, or an error saying what is wrong."""
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EmulatorError(
            f"public_url {public_url!r}: expected https://host (the address Twilio would "
            "reach the app at, such as https://abc.ngrok.app)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise EmulatorError(
            f"public_url {public_url!r}: give the scheme and host only, such as "
            f"{parts.scheme}://{parts.netloc}; the paths come from webhook_path and stream_path"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _name(app: object) -> str:
    return f"{type(app).__module__}.{type(app).__qualname__}"


@dataclass(frozen=True)
class _Options:
    """How to place one call (see :func:`place_call_async`)."""

    account_sid: str | None
    auth_token: str | None
    rest_port: int | None
    connect_to: tuple[str, int] | None
    parameters: dict[str, str]
    webhook_method: str
    open_timeout_s: float
    max_duration_ms: int
    hang_up_on_cancel: bool
    on_frame: FrameObserver | None


class _Placement:
    """One call: its webhook client, line, interpreter and REST stand-in, run to the end."""

    def __init__(
        self,
        report: CallReport,
        recorder: Recorder,
        script: CallerScript,
        trace: TraceWriter | None,
        options: _Options,
    ) -> None:
        self.report = report
        self.recorder = recorder
        self.script = script
        self.trace = trace
        self.options = options
        self.params = call_parameters(account_sid=options.account_sid)

    async def over_network(self, url: str) -> None:
        def opener(plan: StreamPlan) -> Any:
            return WebSocketTransport.open(
                plan.url,
                signature=self._sign(plan.url),
                connect_to=self.options.connect_to,
                open_timeout_s=self.options.open_timeout_s,
            )

        scheme = urlsplit(url).scheme
        if scheme in ("ws", "wss"):
            source: Source = Direct(
                StreamPlan(_strip_query(url, self.report), self.options.parameters)
            )
        elif scheme in ("http", "https"):
            source = Fetch(url, self.options.webhook_method, answer=True)
        else:
            raise EmulatorError(f"{url}: expected an http(s):// or ws(s):// URL")
        # With connect_to, the webhook (and any later request to that host: an action, a
        # status callback) goes to the local server too, as through a tunnel.
        routed = (
            RoutedTransport(urlsplit(url).hostname or "", self.options.connect_to)
            if self.options.connect_to
            else None
        )
        async with httpx.AsyncClient(
            transport=routed, timeout=self.options.open_timeout_s
        ) as client:
            await self._call(client, source, opener)

    async def in_process(
        self, app: ASGIApp, base_url: str, webhook_path: str | None, stream_path: str
    ) -> None:
        def opener(plan: StreamPlan) -> Any:
            return ASGITransport.open(
                app,
                plan.url,
                signature=self._sign(plan.url),
                open_timeout_s=self.options.open_timeout_s,
            )

        if webhook_path is None:
            url = "ws" + base_url.removeprefix("http") + stream_path  # https -> wss
            source: Source = Direct(StreamPlan(url, self.options.parameters))
        else:
            source = Fetch(base_url + webhook_path, self.options.webhook_method, answer=True)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base_url
        ) as client:
            await self._call(client, source, opener)

    def _sign(self, url: str) -> str | None:
        # https://www.twilio.com/docs/voice/media-streams: the upgrade is signed over the wss
        # URL Twilio connected to, with no parameters (a GET).
        return compute_signature(self.options.auth_token, url) if self.options.auth_token else None

    async def _call(self, client: httpx.AsyncClient, source: Source, opener: Opener) -> None:
        requests = TwilioRequests(
            client,
            self.params,
            auth_token=self.options.auth_token,
            connect_to=self.options.connect_to,
        )
        line = Line(
            self.script,
            self.recorder,
            self.report,
            opener,
            requests,
            call_sid=self.params["CallSid"],
            account_sid=self.params["AccountSid"],
            max_duration_ms=self.options.max_duration_ms,
            trace=self.trace,
            on_frame=self.options.on_frame,
        )
        interpreter = Interpreter(line, requests, self.report)
        rest = None
        if self.options.rest_port is not None:
            assert self.options.auth_token is not None
            rest = RestServer(
                line,
                interpreter,
                self.params,
                auth_token=self.options.auth_token,
                port=self.options.rest_port,
            )
            await rest.start()
            self.report.rest_url = rest.url
        try:
            await self._run(line, interpreter, source)
        finally:
            if rest is not None:
                await rest.close()
                self.report.rest_requests = rest.requests
        self._summarize(line)

    async def _run(self, line: Line, interpreter: Interpreter, source: Source) -> None:
        """Walk the TwiML until the call is to end, then end it; Ctrl-C hangs up."""
        walk = asyncio.create_task(interpreter.run(source))
        ending = asyncio.create_task(line.end_requested.wait())
        limit = asyncio.create_task(line.limit_duration())
        try:
            await asyncio.wait({walk, ending}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self.options.hang_up_on_cancel or task is None:
                for work in (walk, ending, limit):
                    work.cancel()
                await line.abort()
                raise
            task.uncancel()
            line.request_end("interrupted")
        for work in (ending, limit, walk):
            work.cancel()
        await asyncio.wait({walk, ending, limit})
        line.request_end("error")  # if the walk failed before asking for the end
        await line.close(cancel_opening=line.ended_by == "interrupted")
        await interpreter.after_call()
        if not walk.cancelled() and walk.exception() is not None:
            raise walk.exception()  # type: ignore[misc]

    def _summarize(self, line: Line) -> None:
        report = self.report
        report.call_sid = self.params["CallSid"]
        report.streams = line.streams
        main = next((s for s in line.streams if s.bidirectional), None) or next(
            iter(line.streams), None
        )
        if main is not None:
            report.stream_url = main.url
            report.stream_sid = main.stream_sid if main.started_ms is not None else None
        opened = any(s.started_ms is not None for s in line.streams)
        if not opened and any(s.ended_by == "failed" for s in line.streams):
            report.placed = False
        report.ended_by = line.ended_by or "twiml"
        report.add_measures(line.talkback, self.script.speech)


def _strip_query(url: str, report: CallReport) -> str:
    parts = urlsplit(url)
    if parts.query:
        report.notes.append(
            f"the stream URL's query string ({parts.query!r}) was dropped, as Twilio does"
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


def write_outputs(
    result: CallResult,
    *,
    record: str | os.PathLike[str] | None = None,
    record_stereo: str | os.PathLike[str] | None = None,
) -> None:
    """Write the recordings a call was asked for."""
    if record:
        Path(record).write_bytes(result.recorder.heard_wav())
    if record_stereo:
        Path(record_stereo).write_bytes(result.recorder.stereo_wav())
