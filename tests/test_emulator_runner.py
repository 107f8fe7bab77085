"""Whole calls: the recording of a played file, the async API, and the report's shape."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emulator_apps import correlation, plays, stream_app
from mediastreams.audio import to_mulaw, wav_bytes
from mediastreams.emulator import Hangup, load_app, place_call, place_call_async, place_calls_async
from mediastreams.exceptions import EmulatorError, ViolationsFound


def chirp_wav(path: Path, sample_rate: int = 16000, seconds: float = 2.0) -> Path:
    """A 200-3000 Hz sweep at 16 kHz: not what Twilio plays, so it must be converted."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    phase = 2 * np.pi * (200 * t + (2800 / (2 * seconds)) * t * t)
    pcm = (12000 * np.sin(phase)).astype("<i2")
    path.write_bytes(wav_bytes(pcm.tobytes(), encoding="pcm", sample_rate=sample_rate))
    return path


def test_the_recording_of_a_played_file_matches_the_file_as_mu_law(tmp_path: Path) -> None:
    source = to_mulaw(chirp_wav(tmp_path / "chirp.wav"))
    result = place_call(stream_app(plays(source, chunk_bytes=160)), [Hangup(at_ms=3000)])
    assert correlation(result.heard_mulaw, source) >= 0.99


@pytest.mark.anyio
async def test_the_async_api_runs_in_the_current_loop_in_real_time() -> None:
    result = await place_call_async(stream_app(plays(b"\x10" * 800)), [Hangup(at_ms=100)])
    assert result.report.clock == "real"
    assert result.report.duration_ms == 100
    assert result.ok


def test_the_report_as_json() -> None:
    result = place_call(stream_app(plays(b"\x10" * 8000)), [Hangup(at_ms=1500)])
    report = result.report.to_dict()
    assert report["placed"] and report["exit_code"] == 0
    assert report["marks"] == {"sent": 1, "echoed": 1, "echoed_by_clear": 0}
    assert report["audio"] == {
        "received_ms": 1000.0,
        "played_ms": 1000.0,
        "inbound_dropped_ms": 0,
        "discarded_by_clear_ms": 0,
    }
    assert report["playout"]["max_buffered_ms"] == 1000.0
    assert report["time_to_first_audio_ms"] == 0.0
    assert report["stream_sid"].startswith("MZ")
    assert result.report.to_json().startswith("{")


def test_load_app() -> None:
    assert callable(load_app("emulator_apps:TONE_MULAW.__len__"))
    with pytest.raises(EmulatorError, match="no attribute"):
        load_app("emulator_apps:missing")
    with pytest.raises(EmulatorError, match="cannot import"):
        load_app("no_such_module:app")


def test_virtual_time_needs_an_app() -> None:
    with pytest.raises(EmulatorError, match="virtual time"):
        place_call("ws://127.0.0.1:9/x", clock="virtual")


def test_rendering_the_report_for_the_terminal() -> None:
    from rich.console import Console

    from mediastreams.emulator.render import render_text

    result = place_call(stream_app(plays(b"\x10" * 800)), [Hangup(at_ms=100)])
    console = Console(record=True, width=120)
    console.print(render_text(result.report))
    text: Any = console.export_text()
    assert "time to first audio" in text


def test_many_calls_share_one_lifespan() -> None:
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette

    from mediastreams.emulator import place_calls

    started: list[int] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        started.append(1)
        yield

    base = stream_app(plays(b"\x10" * 800))
    app = Starlette(routes=base.routes, lifespan=lifespan)
    results = place_calls(app, [Hangup(at_ms=500)], calls=10)
    assert started == [1]
    assert [r.report.exit_code for r in results] == [0] * 10
    assert len({r.report.stream_sid for r in results}) == 10
    with pytest.raises(EmulatorError, match="one call"):
        place_calls(app, calls=2, trace="x.jsonl")


def test_every_frame_is_observed_as_it_goes(tmp_path: Path) -> None:
    seen: list[tuple[float, str, str | bytes]] = []
    trace = tmp_path / "t.jsonl"
    result = place_call(
        stream_app(plays(b"\x10" * 800)),
        [Hangup(at_ms=200)],
        trace=trace,
        on_frame=lambda t, sender, frame: seen.append((t, sender, frame)),
    )
    assert result.ok
    events = [(s, json.loads(f)["event"]) for _, s, f in seen if isinstance(f, str)]
    assert events[:2] == [("twilio", "connected"), ("twilio", "start")]
    assert ("app", "media") in events and ("app", "mark") in events
    assert ("twilio", "mark") in events and events[-1] == ("twilio", "stop")
    times = [t for t, _, _ in seen]
    assert times == sorted(times) and times[-1] >= 0.2
    assert len(seen) == len(trace.read_text().splitlines())


# --- Ctrl-C at any moment: the report so far, and the recording --------------------------


class Phases:
    """An app whose every part says when it was reached: the webhook, a redirect, sockets."""

    def __init__(self, document: str) -> None:
        self.document = document
        self.reached: dict[str, float] = {}
        self.frames: dict[str, list[str]] = {"agent": [], "fork": []}

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route, WebSocketRoute
        from starlette.websockets import WebSocket, WebSocketDisconnect

        async def incoming(request: Request) -> Response:
            self.reached["webhook"] = time.monotonic()
            if self.document == "never":
                await asyncio.Event().wait()
            return Response(self.document, media_type="text/xml")

        async def stuck(request: Request) -> Response:
            self.reached["redirect"] = time.monotonic()
            await asyncio.Event().wait()
            return Response("")

        def socket(name: str) -> Any:
            async def serve(websocket: WebSocket) -> None:
                await websocket.accept()
                try:
                    while True:
                        frame = json.loads(await websocket.receive_text())
                        self.frames[name].append(frame["event"])
                except WebSocketDisconnect:
                    return

            return serve

        return Starlette(
            routes=[
                Route("/incoming-call", incoming, methods=["POST"]),
                Route("/stuck", stuck, methods=["POST"]),
                WebSocketRoute("/agent", socket("agent")),
                WebSocketRoute("/fork", socket("fork")),
            ]
        )


def interrupted(phases: Phases, reached: Any, **options: Any) -> Any:
    """Place a real-time call, cancel it (as Ctrl-C does) once ``reached()``, return it."""

    async def run() -> Any:
        call = asyncio.create_task(
            place_call_async(
                phases.app(),
                [Hangup(at_ms=60_000)],
                webhook_path="/incoming-call",
                hang_up_on_cancel=True,
                **options,
            )
        )
        deadline = time.monotonic() + 30
        while not reached():
            assert not call.done(), call.result().report.to_dict()
            assert time.monotonic() < deadline, "the phase was never reached"
            await asyncio.sleep(0.01)
        call.cancel()
        return await call

    return asyncio.run(run())


def test_ctrl_c_while_the_webhook_is_fetched() -> None:
    phases = Phases("never")
    result = interrupted(phases, lambda: "webhook" in phases.reached)
    report = result.report
    assert report.ended_by == "interrupted" and report.findings == []
    assert report.twiml_verbs == [] and result.heard_mulaw == b""


def test_ctrl_c_during_the_prelude_keeps_what_was_heard() -> None:
    words = " ".join(["word"] * 100)  # 40 s of <Say>
    phases = Phases(
        f'<Response><Say>{words}</Say><Connect><Stream url="/agent"/></Connect></Response>'
    )
    answered = phases.reached

    def well_into_the_say() -> bool:
        return "webhook" in answered and time.monotonic() > answered["webhook"] + 1.5

    report = interrupted(phases, well_into_the_say).report
    assert report.ended_by == "interrupted" and report.twiml_verbs == ["<Say>"]
    assert 0 < report.prelude_ms < 40_000 and report.stream_url is None
    assert phases.frames["agent"] == []


def test_ctrl_c_between_verbs() -> None:
    phases = Phases('<Response><Pause length="0"/><Redirect>/stuck</Redirect></Response>')
    report = interrupted(phases, lambda: "redirect" in phases.reached).report
    assert report.ended_by == "interrupted"
    assert report.twiml_verbs == ["<Pause length=0>", "<Redirect>"]


def test_ctrl_c_during_the_streams_hangs_up_each_and_keeps_the_recording() -> None:
    phases = Phases(
        '<Response><Start><Stream url="/fork"/></Start>'
        '<Connect><Stream url="/agent"/></Connect></Response>'
    )
    result = interrupted(phases, lambda: len(phases.frames["agent"]) > 10)
    report = result.report
    assert report.ended_by == "interrupted" and report.findings == []
    assert phases.frames["agent"][-1] == phases.frames["fork"][-1] == "stop"
    assert 0 < report.duration_ms < 60_000
    assert len(result.heard_mulaw) == report.duration_ms * 8
    assert [s["ended_by"] for s in report.to_dict()["streams"]] == ["interrupted"] * 2


def stuck_in_startup() -> tuple[Any, asyncio.Event]:
    """An app whose lifespan startup never ends, and the event set once it has begun."""
    from starlette.applications import Starlette

    begun = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        begun.set()
        await asyncio.Event().wait()
        yield

    return Starlette(routes=stream_app(plays(b"\x10" * 800)).routes, lifespan=lifespan), begun


@pytest.mark.parametrize("hang_up", [True, False])
def test_ctrl_c_before_the_call_is_placed(hang_up: bool) -> None:
    async def run() -> Any:
        app, begun = stuck_in_startup()
        call = asyncio.create_task(
            place_call_async(app, [Hangup(at_ms=1000)], hang_up_on_cancel=hang_up)
        )
        await asyncio.wait_for(begun.wait(), 30)
        call.cancel()
        return await call

    if not hang_up:
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(run())
        return
    result = asyncio.run(run())
    report = result.report
    assert (report.placed, report.ended_by, report.exit_code) == (False, "interrupted", 130)
    assert report.stream_sid is None and result.heard_mulaw == b""
    assert report.notes == [
        "interrupted (Ctrl-C) before the call was placed: no request reached the app"
    ]
    with pytest.raises(ViolationsFound, match="interrupted before it was placed"):
        result.raise_for_violations()


def test_ctrl_c_during_many_calls_hangs_up_each_and_keeps_every_report() -> None:
    phases = Phases('<Response><Connect><Stream url="/agent"/></Connect></Response>')

    async def run() -> list[Any]:
        calls = asyncio.create_task(
            place_calls_async(
                phases.app(),
                [Hangup(at_ms=60_000)],
                calls=3,
                webhook_path="/incoming-call",
                hang_up_on_cancel=True,
            )
        )
        deadline = time.monotonic() + 30
        while phases.frames["agent"].count("start") < 3:  # the three calls all stream
            assert time.monotonic() < deadline and not calls.done()
            await asyncio.sleep(0.01)
        calls.cancel()
        return await calls

    results = asyncio.run(run())
    assert [r.report.ended_by for r in results] == ["interrupted"] * 3
    assert all(0 < r.report.duration_ms < 60_000 for r in results)
    assert phases.frames["agent"].count("stop") == 3


def test_without_hang_up_on_cancel_the_cancellation_goes_through() -> None:
    phases = Phases('<Response><Connect><Stream url="/agent"/></Connect></Response>')

    async def run() -> None:
        call = asyncio.create_task(
            place_call_async(phases.app(), [Hangup(at_ms=60_000)], webhook_path="/incoming-call")
        )
        deadline = time.monotonic() + 30
        while len(phases.frames["agent"]) < 5:
            assert time.monotonic() < deadline and not call.done()
            await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    asyncio.run(run())
    assert phases.frames["agent"][-1] == "media"  # no stop: the socket was just closed


# --- the public URL of an app in this process ---------------------------------------------------


def signed_app(public_url: str) -> Any:
    """The ready server, checking signatures against ``public_url`` as it would in production."""
    from mediastreams.server import ServerConfig, create_app

    async def handler(stream: Any) -> None:
        await stream.play(b"\x10" * 800)

    return create_app(ServerConfig(handler=handler, public_url=public_url, auth_token="t0ken"))


def test_a_call_can_be_placed_at_the_apps_public_url() -> None:
    app = signed_app("https://abc.ngrok.app")
    result = place_call(
        app,
        [Hangup(at_ms=1000)],
        webhook_path="/incoming-call",
        auth_token="t0ken",
        public_url="https://abc.ngrok.app",
    )
    assert result.ok, result.report.findings
    assert result.report.stream_url == "wss://abc.ngrok.app/media-stream"
    assert result.report.audio_played_ms == 100


def test_without_the_public_url_the_signature_check_fails_and_says_where_to_look() -> None:
    app = signed_app("https://abc.ngrok.app")
    result = place_call(
        app, [Hangup(at_ms=1000)], webhook_path="/incoming-call", auth_token="t0ken"
    )
    (finding,) = result.report.violations
    assert "https://testserver/incoming-call answered HTTP 403" in finding.violation.message
    assert "public_url" in finding.violation.hint


def test_a_stream_path_is_opened_at_the_public_url_too() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(f"{scope['scheme']}://{dict(scope['headers'])[b'host'].decode()}")
        await stream_app(plays(b"\x10" * 160))(scope, receive, send)

    result = place_call(app, [Hangup(at_ms=200)], public_url="https://abc.ngrok.app:8443/")
    assert result.report.stream_url == "wss://abc.ngrok.app:8443/media-stream"
    assert seen == ["wss://abc.ngrok.app:8443"]


@pytest.mark.parametrize(
    ("public_url", "message"),
    [
        ("abc.ngrok.app", "expected https://host"),
        ("ftp://abc.ngrok.app", "expected https://host"),
        ("https://abc.ngrok.app/app?x=1", "scheme and host only, such as https://abc.ngrok.app"),
    ],
)
def test_a_bad_public_url_is_refused_with_what_to_give(public_url: str, message: str) -> None:
    with pytest.raises(EmulatorError, match=message):
        place_call(stream_app(plays(b"\x10" * 160)), public_url=public_url)


def test_a_public_url_with_a_url_target_is_refused() -> None:
    with pytest.raises(EmulatorError, match="connect_to"):
        place_call("https://abc.ngrok.app/incoming-call", public_url="https://abc.ngrok.app")
