"""Every TwiML flow as Twilio runs it: one-way and bidirectional streams, verbs, actions."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from emulator_apps import TONE_MULAW, correlation, mark, media
from mediastreams.emulator import Audio, CallResult, Hangup, Press, Silence, place_call

Speak = Callable[[WebSocket, dict[str, Any]], Awaitable[bool]]
"""Answers ``start``; ``True`` when it closed the socket."""


class Socket:
    """A WebSocket route that keeps every frame it gets, and may answer ``start``."""

    def __init__(self, on_start: Speak | None = None) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed_by_twilio = False
        self._on_start = on_start

    async def serve(self, websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                frame = json.loads(await websocket.receive_text())
                self.frames.append(frame)
                on_start = self._on_start if frame["event"] == "start" else None
                if on_start is not None and await on_start(websocket, frame):
                    return
        except WebSocketDisconnect:
            self.closed_by_twilio = True

    def events(self) -> list[str]:
        return [frame["event"] for frame in self.frames]

    def media(self, track: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["event"] == "media" and f["media"]["track"] == track]

    def audio(self, track: str) -> bytes:
        return b"".join(base64.b64decode(f["media"]["payload"]) for f in self.media(track))


async def says_tone(websocket: WebSocket, start: dict[str, Any]) -> bool:
    await websocket.send_text(media(start["streamSid"], TONE_MULAW))
    await websocket.send_text(mark(start["streamSid"], "tone"))
    return False


async def closes_after_tone(websocket: WebSocket, start: dict[str, Any]) -> bool:
    await says_tone(websocket, start)
    await websocket.close()
    return True


async def closes_half_a_second_into_its_tone(websocket: WebSocket, start: dict[str, Any]) -> bool:
    await says_tone(websocket, start)
    await asyncio.sleep(0.5)
    await websocket.close()
    return True


class Requests:
    """HTTP routes answering TwiML, keeping each request's path and form."""

    def __init__(self, documents: dict[str, str]) -> None:
        self.documents = documents
        self.seen: list[tuple[str, dict[str, str]]] = []

    async def answer(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        self.seen.append((request.url.path, form))
        return Response(self.documents.get(request.url.path, ""), media_type="text/xml")

    def forms(self, path: str) -> list[dict[str, str]]:
        return [form for seen, form in self.seen if seen == path]


def app_with(requests: Requests, **sockets: Socket) -> Starlette:
    routes: list[Any] = [
        Route(path, requests.answer, methods=["POST"]) for path in requests.documents
    ]
    routes += [WebSocketRoute(f"/{name}", socket.serve) for name, socket in sockets.items()]
    return Starlette(routes=routes)


def call(document: str, steps: list[Any], **sockets: Socket) -> tuple[CallResult, Requests]:
    requests = Requests({"/incoming-call": document})
    app = app_with(requests, **sockets)
    return place_call(app, steps, webhook_path="/incoming-call"), requests


def kinds(result: CallResult) -> list[tuple[int, str]]:
    return [(f.violation.code, f.violation.kind) for f in result.report.findings]


def test_start_both_tracks_then_connect_opens_both_and_the_caller_hears_the_agent() -> None:
    fork, agent = Socket(), Socket(says_tone)
    document = (
        '<Response><Start><Stream name="recorder" track="both_tracks" url="/fork"/></Start>'
        '<Connect><Stream url="/agent"/></Connect></Response>'
    )
    steps = [Audio(TONE_MULAW, raw_mulaw=True), Press("5", at_ms=1500), Hangup(at_ms=2000)]
    result, _ = call(document, steps, fork=fork, agent=agent)
    report = result.report
    assert report.findings == [], report.findings  # the agent's replies are not 31951
    assert fork.frames[1]["start"]["tracks"] == ["inbound", "outbound"]
    assert agent.frames[1]["start"]["tracks"] == ["inbound"]
    assert correlation(result.heard_mulaw, TONE_MULAW) > 0.99  # the caller hears the agent
    # The fork's outbound track is what the caller heard: the agent's tone.
    assert correlation(fork.audio("outbound"), TONE_MULAW) > 0.99
    # Its inbound track is the caller, the same frames the agent got: one script per call.
    assert fork.audio("inbound") == agent.audio("inbound")
    assert fork.audio("inbound")[:8000] == TONE_MULAW
    # One frame of each track per 20 ms: inbound then outbound, same timestamp, own chunks.
    pairs = [f for f in fork.frames if f["event"] == "media"][:4]
    assert [(f["media"]["track"], f["media"]["chunk"]) for f in pairs] == [
        ("inbound", "1"),
        ("outbound", "1"),
        ("inbound", "2"),
        ("outbound", "2"),
    ]
    assert pairs[0]["media"]["timestamp"] == pairs[1]["media"]["timestamp"]
    numbers = [int(f["sequenceNumber"]) for f in fork.frames if "sequenceNumber" in f]
    assert numbers == list(range(1, len(numbers) + 1))
    # DTMF goes to the bidirectional stream only.
    assert "dtmf" in agent.events() and "dtmf" not in fork.events()
    assert fork.events()[-1] == agent.events()[-1] == "stop"
    streams = report.to_dict()["streams"]
    assert [(s["url"], s["bidirectional"], s["tracks"]) for s in streams] == [
        ("wss://testserver/fork", False, ["inbound", "outbound"]),
        ("wss://testserver/agent", True, ["inbound"]),
    ]
    assert [s["stream_sid"] for s in streams] == [
        fork.frames[1]["streamSid"],
        agent.frames[1]["streamSid"],
    ]
    assert [s["ended_by"] for s in streams] == ["caller", "caller"]
    assert streams[0]["frames_sent"] == len(fork.frames)
    assert streams[1]["frames_received"] == 2  # the tone and its mark
    assert report.stream_sid == agent.frames[1]["streamSid"]  # the report's main stream


def test_a_start_with_nothing_after_it_ends_the_call_at_once() -> None:
    fork = Socket()
    result, _ = call(
        '<Response><Start><Stream url="/fork"/></Start></Response>',
        [Hangup(at_ms=5000)],
        fork=fork,
    )
    assert fork.events() == ["connected", "start", "stop"]
    assert result.report.ended_by == "twiml" and result.report.duration_ms == 0
    assert result.report.findings == []
    (stream,) = result.report.to_dict()["streams"]
    assert stream["ended_by"] == "twiml" and stream["bidirectional"] is False


def test_verbs_after_start_run_and_the_outbound_track_carries_them() -> None:
    fork = Socket()
    document = (
        '<Response><Start><Stream track="outbound_track" url="/fork"/></Start>'
        "<Say>one two three four five</Say><Hangup/></Response>"
    )
    result, _ = call(document, [Hangup(at_ms=10_000)], fork=fork)
    report = result.report
    assert report.twiml_verbs == ["<Start>", "<Say>", "<Hangup>"]
    assert report.ended_by == "twiml" and report.duration_ms == 5 * 400
    assert fork.frames[1]["start"]["tracks"] == ["outbound"]
    assert fork.media("inbound") == []  # only the track asked for
    heard = fork.audio("outbound")
    assert heard == result.heard_mulaw == result.recorder.heard_mulaw[: 5 * 400 * 8]
    assert len(set(heard)) > 10  # the <Say> tone, not silence


def test_stop_stream_by_name_stops_that_stream_and_the_call_goes_on() -> None:
    recorder, other = Socket(), Socket()
    document = (
        '<Response><Start><Stream name="rec" url="/recorder"/></Start>'
        '<Start><Stream name="other" url="/other"/></Start>'
        '<Pause length="1"/><Stop><Stream name="rec"/></Stop><Pause length="1"/>'
        '<Stop><Stream name="nobody"/></Stop></Response>'
    )
    result, _ = call(document, [Hangup(at_ms=10_000)], recorder=recorder, other=other)
    assert recorder.events()[-1] == "stop" and recorder.closed_by_twilio
    assert len(recorder.media("inbound")) == 50  # one second
    assert len(other.media("inbound")) == 100  # it ran on, to the end of the TwiML
    streams = result.report.to_dict()["streams"]
    assert [(s["name"], s["ended_by"], s["ended_ms"]) for s in streams] == [
        ("rec", "stop", 1000),
        ("other", "twiml", 2000),
    ]
    assert any("'nobody'" in note and "nothing stopped" in note for note in result.report.notes)


def test_more_than_four_forked_tracks_or_a_name_in_use_is_refused() -> None:
    sockets = {f"s{n}": Socket() for n in range(4)}
    document = (
        "<Response>"
        '<Start><Stream name="a" track="both_tracks" url="/s0"/></Start>'
        '<Start><Stream name="a" url="/s1"/></Start>'
        '<Start><Stream name="b" track="both_tracks" url="/s2"/></Start>'
        '<Start><Stream name="c" url="/s3"/></Start>'
        '<Pause length="1"/></Response>'
    )
    result, _ = call(document, [Hangup(at_ms=10_000)], **sockets)
    assert kinds(result) == [(0, "stream-name-taken"), (0, "stream-limit")]
    assert "4 per call" in result.report.findings[1].violation.message
    opened = [name for name, socket in sockets.items() if socket.frames]
    assert opened == ["s0", "s2"]
    streams = result.report.to_dict()["streams"]
    assert [s["ended_by"] for s in streams] == ["twiml", "refused", "twiml", "refused"]


def test_a_relative_stream_url_resolves_against_the_webhook_url() -> None:
    agent = Socket()
    result, _ = call(
        '<Response><Connect><Stream url="agent"/></Connect></Response>',
        [Hangup(at_ms=200)],
        agent=agent,
    )
    assert result.report.findings == []
    assert result.report.stream_url == "wss://testserver/agent"
    assert agent.frames[1]["event"] == "start"
    assert any("relative" in note for note in result.report.notes)


def test_the_connect_action_gets_the_current_status_and_its_twiml_runs() -> None:
    agent = Socket(closes_after_tone)
    requests = Requests(
        {
            "/incoming-call": (
                '<Response><Connect action="/after"><Stream url="/agent"/></Connect>'
                "<Say>never said</Say></Response>"
            ),
            "/after": "<Response><Say>goodbye now</Say></Response>",
        }
    )
    result = place_call(
        app_with(requests, agent=agent), [Hangup(at_ms=10_000)], webhook_path="/incoming-call"
    )
    report = result.report
    assert [form["CallStatus"] for form in requests.forms("/after")] == ["in-progress"]
    assert report.twiml_verbs == ["<Connect>", "<Say>"]  # the action's, not the document's
    assert report.ended_by == "twiml" and report.findings == []
    # The app closed at once; its tone had no time to play. Then the action's <Say>: 800 ms.
    assert 800 <= report.duration_ms <= 840
    tone = result.heard_mulaw[-800 * 8 :]
    assert len(set(tone)) > 10


def test_the_app_closing_the_socket_lets_the_twiml_go_on() -> None:
    agent = Socket(closes_after_tone)
    result, _ = call(
        '<Response><Connect><Stream url="/agent"/></Connect><Pause length="2"/></Response>',
        [Hangup(at_ms=10_000)],
        agent=agent,
    )
    report = result.report
    assert report.ended_by == "twiml" and 2000 <= report.duration_ms <= 2040
    assert any("does not hang up" in note for note in report.notes)
    (stream,) = report.to_dict()["streams"]
    assert (stream["ended_by"], stream["close_code"]) == ("app", 1000)


def test_status_callbacks_in_order_with_twilios_parameters() -> None:
    events: list[dict[str, str]] = []
    agent_frames: list[int] = []
    agent = Socket()

    async def record(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        # When stream-started arrives, the app has had connected and start.
        agent_frames.append(len(agent.frames))
        events.append(form)
        return Response("")

    requests = Requests(
        {
            "/incoming-call": (
                '<Response><Start><Stream name="gone" url="wss://testserver/nothing-here" '
                'statusCallback="/events"/></Start>'
                '<Connect><Stream url="/agent" statusCallback="https://testserver/events"/>'
                "</Connect></Response>"
            )
        }
    )
    app = app_with(requests, agent=agent)
    app.router.routes.append(Route("/events", record, methods=["POST"]))
    result = place_call(app, [Hangup(at_ms=300)], webhook_path="/incoming-call")
    assert kinds(result) == [(31920, "handshake-refused")]
    by_stream: dict[str, list[str]] = {}
    for form in events:
        by_stream.setdefault(form["StreamName"], []).append(form["StreamEvent"])
    agent_sid = agent.frames[1]["streamSid"]
    assert by_stream == {"gone": ["stream-error"], agent_sid: ["stream-started", "stream-stopped"]}
    error = next(form for form in events if form["StreamEvent"] == "stream-error")
    assert error["StreamError"].startswith("31920") and "nothing-here" in error["StreamError"]
    started = next(form for form in events if form["StreamEvent"] == "stream-started")
    assert set(started) == {
        "AccountSid",
        "CallSid",
        "StreamSid",
        "StreamName",
        "StreamEvent",
        "Timestamp",
    }
    assert started["StreamSid"] == agent_sid and started["CallSid"] == result.report.call_sid
    assert agent_frames[events.index(started)] >= 2  # after connected and start


def test_a_crashing_app_gets_stream_error_with_31921_and_its_exception() -> None:
    events: list[dict[str, str]] = []

    async def crashes(websocket: WebSocket, start: dict[str, Any]) -> bool:
        await says_tone(websocket, start)
        raise RuntimeError("boom")

    async def record(request: Request) -> Response:
        events.append(dict(parse_qsl((await request.body()).decode())))
        return Response("")

    agent = Socket(crashes)
    requests = Requests(
        {
            "/incoming-call": (
                '<Response><Connect><Stream url="/agent" statusCallback="/events"/></Connect>'
                "</Response>"
            )
        }
    )
    app = app_with(requests, agent=agent)
    app.router.routes.append(Route("/events", record, methods=["POST"]))
    result = place_call(app, [Hangup(at_ms=3000)], webhook_path="/incoming-call")
    (finding,) = result.report.findings
    assert (finding.violation.code, finding.violation.kind) == (31921, "close-error")
    assert "RuntimeError: boom" in finding.violation.message
    assert [form["StreamEvent"] for form in events] == ["stream-started", "stream-error"]
    error = events[1]["StreamError"]
    assert error.startswith("31921") and "RuntimeError: boom" in error
    assert events[1]["StreamSid"] == agent.frames[1]["streamSid"]
    (stream,) = result.report.to_dict()["streams"]
    assert (stream["ended_by"], stream["close_code"]) == ("app", 1011)
    assert result.report.exit_code == 1


def test_one_way_streams_get_no_dtmf_and_the_caller_script_runs_once() -> None:
    fork = Socket()
    document = '<Response><Start><Stream url="/fork"/></Start><Pause length="2"/></Response>'
    steps = [Silence(500), Press("12"), Hangup(at_ms=1500)]
    result, _ = call(document, steps, fork=fork)
    assert "dtmf" not in fork.events()
    notes = result.report.notes
    assert any("'12'" in note and "no bidirectional stream" in note for note in notes)
    assert len(fork.media("inbound")) == 75 and result.report.duration_ms == 1500


def test_two_connects_in_a_row_share_the_caller_and_the_report() -> None:
    first, second = Socket(closes_half_a_second_into_its_tone), Socket(says_tone)
    document = (
        '<Response><Connect><Stream url="/first"/></Connect>'
        '<Connect><Stream url="/second"/></Connect></Response>'
    )
    result, _ = call(document, [Hangup(at_ms=2000)], first=first, second=second)
    report = result.report
    assert report.findings == []
    assert report.stream_sid == first.frames[1]["streamSid"]
    assert second.frames[1]["event"] == "start"
    # The caller's frames go on where they were: the second stream starts later in the call.
    streams = report.to_dict()["streams"]
    assert streams[0]["ended_by"] == "app" and 500 <= streams[1]["started_ms"] <= 540
    # Over both streams; the first app closed before its tone had played: no echo for it.
    assert report.marks_sent == 2 and report.marks_echoed == 1
    assert correlation(result.heard_mulaw, TONE_MULAW) > 0.99


def test_max_duration_ends_a_call_that_never_streams() -> None:
    result, _ = call('<Response><Pause length="100"/></Response>', [])
    assert result.report.ended_by == "twiml"  # the default: the TwiML ran out after 100 s
    requests = Requests({"/incoming-call": '<Response><Pause length="100"/></Response>'})
    result = place_call(app_with(requests), [], webhook_path="/incoming-call", max_duration_s=1.5)
    assert result.report.ended_by == "caller" and result.report.prelude_ms == 1500
    assert len(result.heard_mulaw) == 1500 * 8
