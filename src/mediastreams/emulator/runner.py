"""Place a call: the webhook, the TwiML before the stream, the stream, and the report.

:func:`place_call` runs a whole call in a fresh event loop, in virtual time by default (for
an in-process ASGI app) or in real time; :func:`place_call_async` runs it in the current
loop. A target is an ``http(s)://`` voice webhook URL, a ``ws(s)://`` stream URL, an ASGI
app, or ``"module:attribute"`` naming one.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from .. import twiml
from ..diagnostics import Finding, Violation
from ..exceptions import EmulatorError, TwiMLError
from ..security import compute_signature
from ..trace import TraceWriter
from .call import FrameObserver, StreamRun
from .clock import ClockName, VirtualEventLoop, run_in_loop
from .recorder import Recorder
from .report import CallReport
from .script import CallerScript, Step
from .transport import ASGIApp, ASGITransport, ConnectFailed, Transport, WebSocketTransport
from .transport import asgi_lifespan as _lifespan
from .webhook import (
    RoutedTransport,
    StreamPlan,
    TwiMLWalk,
    WebhookFailed,
    call_parameters,
    describe_verb,
    fetch_twiml,
    walk_twiml,
)

__all__ = [
    "CallResult",
    "load_app",
    "place_call",
    "place_call_async",
    "place_calls",
    "place_calls_async",
]

IN_PROCESS_BASE_URL = "https://testserver"
"""Where an in-process app is said to live (its webhook and stream URLs use this host)."""


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
        clock: ``"virtual"`` (the default for an in-process app) or ``"real"`` (the default,
            and the only choice, for a URL).
    """
    app_target = not (isinstance(target, str) and "://" in target)
    chosen: ClockName = clock or ("virtual" if app_target else "real")
    if chosen == "virtual" and not app_target:
        raise EmulatorError("virtual time needs an in-process ASGI app; use clock='real'")
    return run_in_loop(lambda: place_call_async(target, steps, **options), clock=chosen)


async def place_call_async(
    target: str | ASGIApp,
    steps: Sequence[Step] = (),
    *,
    auth_token: str | None = None,
    connect_to: tuple[str, int] | None = None,
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
        target: an ``http(s)://`` voice webhook URL (the TwiML leg runs first), a ``ws(s)://``
            stream URL, an ASGI app, or ``"module:app"``.
        steps: the caller's script (:mod:`mediastreams.emulator.script`).
        auth_token: sign the webhook and the upgrade with ``X-Twilio-Signature``.
        connect_to: ``(host, port)`` to open the WebSocket to, whatever host the stream URL
            names (a local server behind a tunnel); the signature still covers that URL.
        parameters: ``start.customParameters`` when starting from a stream URL or an app
            (with a webhook they come from ``<Parameter>``).
        webhook_path: for an ASGI app: start with a POST to this path (for example
            ``"/incoming-call"``) instead of opening ``stream_path`` directly.
        webhook_method: ``"POST"`` (Twilio's default) or ``"GET"`` (the parameters go in
            the query string), as set on the phone number.
        stream_path: for an ASGI app without ``webhook_path``: the stream's path.
        trace: write every frame, both ways, to this JSON Lines file.
        trace_payloads: keep media payloads in the trace.
        trace_parameters: keep custom parameter values in the trace.
        max_duration_s: hang up at this point whatever the script says.
        end_quiet_ms: after the script, hang up once the app has been quiet this long
            (``None``: only a timed hang-up or the app ends the call).
        open_timeout_s: how long the WebSocket may take to open.
        hang_up_on_cancel: if the call is cancelled (Ctrl-C under ``asyncio.run``), hang up
            and return the report so far instead of raising.
        lifespan: for an ASGI app, run its lifespan startup before the call and its shutdown
            after (``False`` when it is already running).
        on_frame: called with ``(seconds since start, sender, frame)`` for every frame of
            the stream, both ways, as it goes.

    Raises:
        AudioError: an audio file of the script cannot be read.
        EmulatorError: the target cannot be used.
    """
    started = time.perf_counter()
    script = CallerScript(steps, end_quiet_ms=end_quiet_ms)
    app = load_app(target) if isinstance(target, str) and "://" not in target else target
    label = target if isinstance(target, str) else _name(app)
    virtual = isinstance(asyncio.get_running_loop(), VirtualEventLoop)
    report = CallReport(target=label, clock="virtual" if virtual else "real")
    recorder = Recorder()
    writer = (
        TraceWriter(Path(trace), payloads=trace_payloads, parameters=trace_parameters)
        if trace
        else None
    )
    call = _Placement(report, recorder, script, writer, auth_token, open_timeout_s)
    call.hang_up_on_cancel = hang_up_on_cancel  # Ctrl-C in the CLI
    call.webhook_method = webhook_method
    call.on_frame = on_frame
    try:
        if isinstance(app, str):
            await call.over_network(app, connect_to, parameters, max_duration_s)
        else:
            async with _lifespan(app) if lifespan else contextlib.nullcontext():
                await call.in_process(app, webhook_path, stream_path, parameters, max_duration_s)
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
    app_target = not (isinstance(target, str) and "://" in target)
    chosen: ClockName = clock or ("virtual" if app_target else "real")
    if chosen == "virtual" and not app_target:
        raise EmulatorError("virtual time needs an in-process ASGI app; use clock='real'")
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
        EmulatorError: ``calls`` is below 1, or a trace was asked for (one file per call
            would be needed).
    """
    if calls < 1:
        raise EmulatorError("calls must be at least 1")
    if options.get("trace"):
        raise EmulatorError("a trace records one call; place the calls without trace=")
    app = load_app(target) if isinstance(target, str) and "://" not in target else target
    if isinstance(app, str):
        one = [place_call_async(app, steps, **options) for _ in range(calls)]
        return list(await asyncio.gather(*one))
    async with _lifespan(app):
        many = [place_call_async(app, steps, lifespan=False, **options) for _ in range(calls)]
        return list(await asyncio.gather(*many))


def _name(app: object) -> str:
    return f"{type(app).__module__}.{type(app).__qualname__}"


class _Placement:
    def __init__(
        self,
        report: CallReport,
        recorder: Recorder,
        script: CallerScript,
        trace: TraceWriter | None,
        auth_token: str | None,
        open_timeout_s: float,
    ) -> None:
        self.report = report
        self.recorder = recorder
        self.script = script
        self.trace = trace
        self.auth_token = auth_token
        self.open_timeout_s = open_timeout_s
        self.params = call_parameters()
        self.hang_up_on_cancel = False
        self.webhook_method = "POST"
        self.on_frame: FrameObserver | None = None

    async def over_network(
        self,
        url: str,
        connect_to: tuple[str, int] | None,
        parameters: Mapping[str, str] | None,
        max_duration_s: float,
    ) -> None:
        def opener(plan: StreamPlan) -> Any:
            return WebSocketTransport.open(
                plan.url,
                signature=self._sign(plan.url),
                connect_to=connect_to,
                open_timeout_s=self.open_timeout_s,
            )

        scheme = urlsplit(url).scheme
        if scheme in ("ws", "wss"):
            plan = StreamPlan(_strip_query(url, self.report), dict(parameters or {}))
            await self._stream(plan, opener, max_duration_s, None)
        elif scheme in ("http", "https"):
            # With connect_to, the webhook goes to the local server too, as through a tunnel.
            routed = (
                RoutedTransport(urlsplit(url).hostname or "", connect_to) if connect_to else None
            )
            async with httpx.AsyncClient(transport=routed, timeout=self.open_timeout_s) as client:
                await self._from_webhook(client, url, opener, max_duration_s)
        else:
            raise EmulatorError(f"{url}: expected an http(s):// or ws(s):// URL")

    async def in_process(
        self,
        app: ASGIApp,
        webhook_path: str | None,
        stream_path: str,
        parameters: Mapping[str, str] | None,
        max_duration_s: float,
    ) -> None:
        def opener(plan: StreamPlan) -> Any:
            return ASGITransport.open(
                app, plan.url, signature=self._sign(plan.url), open_timeout_s=self.open_timeout_s
            )

        if webhook_path is None:
            url = "wss" + IN_PROCESS_BASE_URL.removeprefix("https") + stream_path
            await self._stream(
                StreamPlan(url, dict(parameters or {})), opener, max_duration_s, None
            )
            return
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=IN_PROCESS_BASE_URL
        ) as client:
            await self._from_webhook(
                client, IN_PROCESS_BASE_URL + webhook_path, opener, max_duration_s
            )

    async def _from_webhook(
        self, client: httpx.AsyncClient, url: str, opener: Any, max_duration_s: float
    ) -> None:
        plan = await self._twiml(client, url)
        if plan is None:
            return
        await self._stream(plan, opener, max_duration_s, client)
        if plan.action is not None and self.report.placed:
            await self._action(client, plan, url)

    def _sign(self, url: str) -> str | None:
        # https://www.twilio.com/docs/voice/media-streams: the upgrade is signed over the wss
        # URL Twilio connected to, with no parameters (a GET).
        return compute_signature(self.auth_token, url) if self.auth_token else None

    async def _twiml(self, client: httpx.AsyncClient, url: str) -> StreamPlan | None:
        try:
            document = await fetch_twiml(
                client, url, self.params, auth_token=self.auth_token, method=self.webhook_method
            )
            walk = await walk_twiml(
                client, document, url=url, params=self.params, auth_token=self.auth_token
            )
        except WebhookFailed as failed:
            self.report.placed = False
            self.report.findings.append(Finding(failed.violation, None, None))
            return None
        self._record_walk(walk)
        if walk.prelude:
            self.recorder.add_prelude(walk.prelude)
            # <Say>/<Play>/<Pause> take their time before the stream opens (virtual or real).
            await asyncio.sleep(len(walk.prelude) / 8000)
        return walk.stream

    def _record_walk(self, walk: TwiMLWalk) -> None:
        self.report.findings += [Finding(v, None, None) for v in walk.findings]
        self.report.notes += walk.notes
        self.report.twiml_verbs = walk.verbs
        self.report.prelude_ms = len(walk.prelude) // 8

    async def _stream(
        self,
        plan: StreamPlan,
        opener: Any,
        max_duration_s: float,
        client: httpx.AsyncClient | None,
    ) -> None:
        self.report.stream_url = plan.url
        try:
            transport: Transport = await opener(plan)
        except ConnectFailed as failed:
            self.report.placed = False
            self.report.findings.append(Finding(failed.violation, None, None))
            return
        run = StreamRun(
            transport,
            self.script,
            custom_parameters=plan.parameters,
            call_sid=self.params["CallSid"],
            account_sid=self.params["AccountSid"],
            bidirectional=plan.bidirectional,
            trace=self.trace,
            max_duration_ms=int(max_duration_s * 1000),
            recorder=self.recorder,
            hang_up_on_cancel=self.hang_up_on_cancel,
            on_frame=self.on_frame,
        )
        self.report.stream_sid = run.protocol.stream_sid
        self.report.call_sid = self.params["CallSid"]
        events = _StatusEvents(client, plan, self, run.protocol.stream_sid)
        await events.send("stream-started")
        try:
            await run.run()
        finally:
            self.report.findings += run.findings
            self.report.add_measures(run.timeline, self.script.speech)
        await events.send("stream-stopped")

    async def _action(self, client: httpx.AsyncClient, plan: StreamPlan, url: str) -> None:
        # https://www.twilio.com/docs/voice/twiml/connect#action: when <Connect> ends, Twilio
        # requests the action URL for the TwiML that continues the call.
        assert plan.action is not None
        action_url = urljoin(url, plan.action)
        try:
            document = await fetch_twiml(
                client,
                action_url,
                self.params,
                auth_token=self.auth_token,
                method=plan.action_method,
            )
        except WebhookFailed as failed:
            self.report.findings.append(Finding(failed.violation, None, None))
            return
        try:
            verbs = ", ".join(describe_verb(v) for v in twiml.parse_twiml(document).verbs)
        except TwiMLError as error:
            self.report.findings.append(
                Finding(
                    Violation(12100, "twiml-parse", "app", f"{action_url}: {error}", ""), None, None
                )
            )
            return
        self.report.notes.append(
            f"the <Connect action> {action_url} answered: {verbs or 'nothing'}"
        )


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


class _StatusEvents:
    """The stream's ``statusCallback`` requests (https://www.twilio.com/docs/voice/twiml/stream)."""

    def __init__(
        self,
        client: httpx.AsyncClient | None,
        plan: StreamPlan,
        placement: _Placement,
        stream_sid: str,
    ) -> None:
        self.client = client
        self.plan = plan
        self.placement = placement
        self.stream_sid = stream_sid

    async def send(self, event: str) -> None:
        if self.client is None or self.plan.status_callback is None:
            return
        params = {
            "AccountSid": self.placement.params["AccountSid"],
            "CallSid": self.placement.params["CallSid"],
            "StreamSid": self.stream_sid,
            "StreamName": self.plan.name or self.stream_sid,
            "StreamEvent": event,
            "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        try:
            await fetch_twiml(
                self.client,
                self.plan.status_callback,
                params,
                auth_token=self.placement.auth_token,
                method=self.plan.status_callback_method,
            )
        except WebhookFailed as failed:
            self.placement.report.findings.append(Finding(failed.violation, None, None))
