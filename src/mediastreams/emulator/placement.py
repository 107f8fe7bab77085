"""One call, placed: its HTTP client, line, TwiML interpreter and REST stand-in, run to the end.

:func:`~mediastreams.emulator.runner.place_call_async` checks its options and builds a
:class:`Placement`; the placement reaches the app (over the network, or in process), walks the
TwiML until the call is to end, ends it (Ctrl-C hangs up) and fills the report.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..exceptions import EmulatorError
from ..security import compute_signature
from ..trace import TraceWriter
from .asgi import ASGIApp, ASGITransport
from .interpreter import Direct, Fetch, Interpreter, Source
from .line import Line, Opener
from .recorder import Recorder
from .report import CallReport
from .rest import RestServer
from .script import Caller
from .streams import FrameObserver, StreamPlan, TickObserver
from .transport import WebSocketTransport
from .webhook import RoutedTransport, TwilioRequests, call_parameters

__all__ = ["Options", "Placement"]


@dataclass(frozen=True)
class Options:
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
    on_tick: TickObserver | None


class Placement:
    """One call: its webhook client, line, interpreter and REST stand-in, run to the end."""

    def __init__(
        self,
        report: CallReport,
        recorder: Recorder,
        script: Caller,
        trace: TraceWriter | None,
        options: Options,
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
            on_tick=self.options.on_tick,
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
        report.add_measures(line.talkback, self.script.speech, self.script.key_presses_ms)


def _strip_query(url: str, report: CallReport) -> str:
    parts = urlsplit(url)
    if parts.query:
        report.notes.append(
            f"the stream URL's query string ({parts.query!r}) was dropped, as Twilio does"
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))
