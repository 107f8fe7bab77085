"""Place a call: the webhook, the TwiML verb by verb, every stream, and the report.

:func:`place_call` runs a whole call in a fresh event loop, in virtual time by default (for
an in-process ASGI app) or in real time; :func:`place_call_async` runs it in the current
loop. A target is an ``http(s)://`` voice webhook URL, a ``ws(s)://`` stream URL, an ASGI
app, or ``"module:attribute"`` naming one.

The call is a :class:`~mediastreams.emulator.line.Line` (the clock, the caller, what the
caller hears, the recording, the streams), walked by an
:class:`~mediastreams.emulator.interpreter.Interpreter` (the TwiML), and optionally
controlled over a :class:`~mediastreams.emulator.rest.RestServer` (Twilio's REST API);
:mod:`~mediastreams.emulator.placement` runs them for one call, and
:mod:`~mediastreams.emulator.target` reads what the call is placed to. This module checks
the options and runs calls in their loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exceptions import EmulatorError
from ..trace import TraceWriter
from .asgi import ASGIApp
from .asgi import asgi_lifespan as _lifespan
from .clock import ClockName, VirtualEventLoop, run_in_loop
from .placement import Options, Placement
from .recorder import Recorder
from .report import CallReport
from .script import CallerScript, Step
from .streams import FrameObserver
from .target import app_name, base_url, choose_clock, is_url, load_app
from .transport import IN_PROCESS_BASE_URL

__all__ = [
    "CallResult",
    "interrupted_result",
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
    chosen = choose_clock(target, clock, options)
    return run_in_loop(lambda: place_call_async(target, steps, **options), clock=chosen)


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
            moment, hang up and return the report so far instead of raising; cancelled
            before the call was placed (while the app was imported or its lifespan started),
            the report says so (``placed`` false, ``ended_by`` ``"interrupted"``).
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
    app = load_app(target) if isinstance(target, str) and not is_url(target) else target
    if public_url is not None and isinstance(app, str):
        raise EmulatorError(
            "public_url is for an app in this process; a URL target is the public URL "
            "already (give connect_to to reach a local server behind it)"
        )
    app_url = IN_PROCESS_BASE_URL if public_url is None else base_url(public_url)
    label = target if isinstance(target, str) else app_name(app)
    virtual = isinstance(asyncio.get_running_loop(), VirtualEventLoop)
    report = CallReport(target=label, clock="virtual" if virtual else "real")
    recorder = Recorder()
    writer = (
        TraceWriter(Path(trace), payloads=trace_payloads, parameters=trace_parameters)
        if trace
        else None
    )
    call = Placement(
        report,
        recorder,
        script,
        writer,
        Options(
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
        if hang_up_on_cancel and _cancelled():
            # Ctrl-C while the app was imported (or the audio read): no call to place. The
            # cancel is delivered at the next await.
            await asyncio.sleep(0)
        if isinstance(app, str):
            await call.over_network(app)
        else:
            async with _lifespan(app) if lifespan else contextlib.nullcontext():
                await call.in_process(app, app_url, webhook_path, stream_path)
    except asyncio.CancelledError:
        # Once the call runs, the placement hangs up on a cancel and returns; a cancel that
        # gets here came before (or after, in the app's lifespan shutdown).
        task = asyncio.current_task()
        if not hang_up_on_cancel or task is None:
            raise
        task.uncancel()
        if report.call_sid is None:
            _interrupted_before_placing(report)
    finally:
        if writer is not None:
            writer.close()
    report.wall_s = time.perf_counter() - started
    return CallResult(report, recorder)


def _cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _interrupted_before_placing(report: CallReport) -> None:
    report.placed = False
    report.ended_by = "interrupted"
    report.notes.append(
        "interrupted (Ctrl-C) before the call was placed: no request reached the app"
    )


def interrupted_result(target: str, clock: ClockName) -> CallResult:
    """The result of a call interrupted before it was placed (Ctrl-C while the command was
    still loading): nothing reached the app, nothing was heard.

    Args:
        target: what the call was to be placed to.
        clock: the clock it would have run on.
    """
    report = CallReport(target=target, clock=clock)
    _interrupted_before_placing(report)
    return CallResult(report, Recorder())


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
    chosen = choose_clock(target, clock, options)
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
    app = load_app(target) if isinstance(target, str) and not is_url(target) else target
    if isinstance(app, str):
        return await _all_of([place_call_async(app, steps, **options) for _ in range(calls)])
    async with _lifespan(app):
        many = [place_call_async(app, steps, lifespan=False, **options) for _ in range(calls)]
        return await _all_of(many)


async def _all_of(calls: list[Coroutine[Any, Any, CallResult]]) -> list[CallResult]:
    """Run the calls at once; cancelled, each hangs up (if it was placed with
    ``hang_up_on_cancel``) and its result still comes."""
    tasks = [asyncio.create_task(one) for one in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except asyncio.CancelledError:
        task = asyncio.current_task()
        # gather() passed the cancel on to every call and raises even if they returned.
        if task is None or not all(t.done() and not t.cancelled() for t in tasks):
            raise
        task.uncancel()
        return [t.result() for t in tasks]


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
