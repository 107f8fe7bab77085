"""The REST stand-in, driven by the real ``twilio`` library from the app, in real time."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from emulator_apps import TONE_MULAW, media
from mediastreams.emulator import CallResult, Hangup, place_call
from mediastreams.exceptions import EmulatorError
from waiting import free_port

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "an auth token the app is configured with"

Action = Callable[[Client, str], Any]
"""What the app does over REST, in a thread (the twilio library is synchronous)."""


def client_for(port: int) -> Client:
    """The twilio library, pointed at the stand-in as an app would be configured."""
    client = Client(ACCOUNT, TOKEN)
    client.api.base_url = f"http://127.0.0.1:{port}"
    return client


class Agent:
    """A bidirectional stream app that, after its greeting, does ``action`` over REST."""

    def __init__(self, port: int, action: Action, *, after_frames: int = 10) -> None:
        self.port = port
        self.action = action
        self.after_frames = after_frames
        self.frames: list[dict[str, Any]] = []
        self.answer: Any = None
        self.error: BaseException | None = None

    async def serve(self, websocket: WebSocket) -> None:
        await websocket.accept()
        call_sid, done = "", False
        try:
            while True:
                frame = json.loads(await websocket.receive_text())
                self.frames.append(frame)
                if frame["event"] == "start":
                    call_sid = frame["start"]["callSid"]
                    await websocket.send_text(media(frame["streamSid"], TONE_MULAW))
                elif len(self.frames) >= self.after_frames and not done:
                    done = True
                    await self._act(call_sid)
        except WebSocketDisconnect:
            return

    async def _act(self, call_sid: str) -> None:
        try:
            self.answer = await asyncio.to_thread(self.action, client_for(self.port), call_sid)
        except Exception as error:  # kept for the test to see, with the report
            self.error = error

    def events(self) -> list[str]:
        return [frame["event"] for frame in self.frames]


class Forms:
    """Routes answering TwiML, keeping what each request carried."""

    def __init__(self, documents: dict[str, str]) -> None:
        self.documents = documents
        self.seen: list[tuple[str, dict[str, str]]] = []

    async def answer(self, request: Request) -> Response:
        self.seen.append((request.url.path, dict(parse_qsl((await request.body()).decode()))))
        return Response(self.documents[request.url.path], media_type="text/xml")


def app_for(agent: Agent, forms: Forms, **sockets: Any) -> Starlette:
    routes: list[Any] = [Route(path, forms.answer, methods=["POST"]) for path in forms.documents]
    routes.append(WebSocketRoute("/agent", agent.serve))
    routes += [WebSocketRoute(f"/{name}", serve) for name, serve in sockets.items()]
    return Starlette(routes=routes)


def rendered(report: Any) -> str:
    """The report as the terminal shows it, as plain text."""
    from rich.console import Console

    from mediastreams.emulator.render import render_text

    console = Console(record=True, width=400, file=io.StringIO())
    console.print(render_text(report))
    return console.export_text()


CONNECT = '<Response><Connect><Stream url="/agent"/></Connect><Pause length="30"/></Response>'


def call(agent: Agent, forms: Forms, **sockets: Any) -> CallResult:
    return place_call(
        app_for(agent, forms, **sockets),
        [Hangup(at_ms=20_000)],
        webhook_path="/incoming-call",
        auth_token=TOKEN,
        account_sid=ACCOUNT,
        rest_port=agent.port,
    )


def test_hang_up_over_rest_with_the_twilio_library() -> None:
    agent = Agent(free_port(), lambda client, sid: client.calls(sid).update(status="completed"))
    result = call(agent, Forms({"/incoming-call": CONNECT}))
    report = result.report
    assert agent.error is None, agent.error
    assert agent.answer.status == "completed" and agent.answer.sid == report.call_sid
    assert report.clock == "real"  # chosen for a REST stand-in
    assert report.ended_by == "rest" and report.duration_ms < 20_000
    assert agent.events()[-1] == "stop"  # as Twilio ends a call: stop, then the socket closes
    assert report.findings == []
    rest = report.to_dict()["rest"]
    assert rest["url"] == f"http://127.0.0.1:{agent.port}"
    # The terminal report shows the request and the stream it ended.
    shown = rendered(report)
    assert f"REST requests to the stand-in at {rest['url']}" in shown
    assert f"POST /2010-04-01/Accounts/{ACCOUNT}/Calls/{report.call_sid}.json" in shown
    assert "Status=completed" in shown and "Streams" in shown and "ended by" in shown
    assert "wss://testserver/agent" in shown and "rest, close" not in shown
    (request,) = rest["requests"]
    assert request["method"] == "POST"
    assert request["path"] == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{report.call_sid}.json"
    assert request["params"] == {"Status": "completed"}
    assert (request["status"], request["code"]) == (200, None)
    (stream,) = report.to_dict()["streams"]
    assert stream["ended_by"] == "rest"


def test_redirect_over_rest_ends_the_stream_and_runs_the_new_twiml() -> None:
    redirected = "<Response><Say>one two three</Say></Response>"
    agent = Agent(free_port(), lambda client, sid: client.calls(sid).update(twiml=redirected))
    result = call(agent, Forms({"/incoming-call": CONNECT}))
    report = result.report
    assert agent.error is None, agent.error
    assert agent.answer.status == "in-progress"
    assert agent.events()[-1] == "stop"
    assert report.twiml_verbs == ["<Connect>", "<Say>"]  # the <Pause length=30> never ran
    assert report.ended_by == "twiml" and report.findings == []
    (stream,) = report.to_dict()["streams"]
    assert stream["ended_by"] == "redirect"
    said = result.heard_mulaw[-1200 * 8 :]  # the <Say>'s 1.2 s of tone closes the call
    assert len(set(said)) > 10


def test_redirect_to_a_url_requests_it_as_in_progress() -> None:
    forms = Forms({"/incoming-call": CONNECT, "/next": "<Response><Hangup/></Response>"})

    def redirect(client: Client, sid: str) -> Any:
        return client.calls(sid).update(url="https://testserver/next", method="POST")

    agent = Agent(free_port(), redirect)
    result = call(agent, forms)
    assert agent.error is None, agent.error
    (form,) = [form for path, form in forms.seen if path == "/next"]
    assert form["CallStatus"] == "in-progress" and form["CallSid"] == result.report.call_sid
    assert result.report.twiml_verbs == ["<Connect>", "<Hangup>"]


def test_streams_are_created_and_stopped_over_rest() -> None:
    fork: list[dict[str, Any]] = []

    async def serve_fork(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                fork.append(json.loads(await websocket.receive_text()))
        except WebSocketDisconnect:
            return

    def fork_then_stop(client: Client, sid: str) -> list[Any]:
        created = client.calls(sid).streams.create(
            url="wss://testserver/fork",
            name="recorder",
            track="both_tracks",
            parameter1_name="tenant",
            parameter1_value="acme",
        )
        stopped = client.calls(sid).streams("recorder").update(status="stopped")
        return [created, stopped, client.calls(sid).update(status="completed")]

    agent = Agent(free_port(), fork_then_stop)
    result = call(agent, Forms({"/incoming-call": CONNECT}), fork=serve_fork)
    assert agent.error is None, agent.error
    created, stopped, _ = agent.answer
    assert created.sid.startswith("MZ") and created.status == "in-progress"
    assert created.name == "recorder" and created.call_sid == result.report.call_sid
    assert (stopped.sid, stopped.status) == (created.sid, "stopped")
    events = [frame["event"] for frame in fork]
    assert events[:2] == ["connected", "start"] and events[-1] == "stop"
    start = fork[1]["start"]
    assert start["tracks"] == ["inbound", "outbound"]
    assert start["customParameters"] == {"tenant": "acme"}
    assert fork[1]["streamSid"] == created.sid
    streams = result.report.to_dict()["streams"]
    assert [(s["bidirectional"], s["ended_by"]) for s in streams] == [
        (True, "rest"),
        (False, "rest"),
    ]
    call_path = f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{result.report.call_sid}"
    requests = result.report.to_dict()["rest"]["requests"]
    assert [r["path"] for r in requests] == [
        f"{call_path}/Streams.json",
        f"{call_path}/Streams/recorder.json",
        f"{call_path}.json",
    ]
    create = requests[0]
    assert create["params"]["Parameter1.Value"] == "(hidden)" and create["status"] == 201


def test_bad_auth_is_401_and_another_call_is_404() -> None:
    def wrong(client: Client, sid: str) -> list[Any]:
        answers: list[Any] = []
        impostor = Client(ACCOUNT, "not the token")
        impostor.api.base_url = client.api.base_url
        for attempt in (
            lambda: impostor.calls(sid).update(status="completed"),
            lambda: client.calls("CA" + "f" * 32).update(status="completed"),
            lambda: client.calls(sid).streams("nobody").update(status="stopped"),
            lambda: client.calls(sid).streams.create(url="https://testserver/x"),
        ):
            try:
                attempt()
            except TwilioRestException as error:
                answers.append((error.status, error.code))
        answers.append(client.calls(sid).fetch().status)
        client.calls(sid).update(status="completed")
        return answers

    agent = Agent(free_port(), wrong)
    result = call(agent, Forms({"/incoming-call": CONNECT}))
    assert agent.error is None, agent.error
    assert agent.answer == [(401, 20003), (404, 20404), (404, 20404), (400, 31922), "in-progress"]
    codes = [r["code"] for r in result.report.to_dict()["rest"]["requests"]]
    assert codes == [20003, 20404, 20404, 31922, None, None]
    # The app asked for an https:// stream: Twilio would refuse it (31922), and so it is found.
    assert [f.violation.code for f in result.report.findings] == [31922]


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    answer = await reader.read()  # the server answers and closes
    writer.close()
    return answer


def test_malformed_requests_get_an_http_error_not_a_crash() -> None:
    port = free_port()
    auth = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    statuses: list[int] = []
    raw: list[bytes] = []

    async def probe(websocket: WebSocket) -> None:
        await websocket.accept()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for headers in ({}, {"Authorization": "Basic !!!"}, {"Authorization": f"Basic {auth}"}):
                answer = await client.post("/2010-04-01/Accounts", headers=headers)
                statuses.append(answer.status_code)
        raw.append(await exchange(port, b"NONSENSE\r\n\r\n"))
        raw.append(await exchange(port, b"POST /x HTTP/1.1\r\nContent-Length: 9999999\r\n\r\n"))
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/media-stream", probe)])
    result = place_call(
        app, [Hangup(at_ms=5000)], auth_token=TOKEN, account_sid=ACCOUNT, rest_port=port
    )
    assert statuses == [401, 401, 404]
    assert [answer.split(b" ")[1] for answer in raw] == [b"400", b"413"]
    assert result.report.ended_by == "app"


def test_rest_needs_an_auth_token_and_a_valid_account_sid() -> None:
    app = Starlette()
    with pytest.raises(EmulatorError, match="auth_token"):
        place_call(app, [], rest_port=0)
    with pytest.raises(EmulatorError, match="AC and 32 hex digits"):
        place_call(app, [], account_sid="AC123")


def test_the_cli_serves_the_stand_in_with_rest_port_and_account_sid(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mediastreams.cli import main

    port = free_port()
    agent = Agent(port, lambda client, sid: client.calls(sid).update(status="completed"))
    module = type(sys)("rest_cli_app")
    module.app = app_for(agent, Forms({"/incoming-call": CONNECT}))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rest_cli_app", module)
    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    code = main(
        [
            "call",
            "rest_cli_app:app",
            "--webhook-path",
            "/incoming-call",
            "--auth-token",
            TOKEN,
            "--account-sid",
            ACCOUNT,
            "--rest-port",
            str(port),
            "--hangup-after",
            "20",
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert agent.error is None, agent.error
    assert code == 0 and report["clock"] == "real" and report["ended_by"] == "rest"
    assert report["rest"]["requests"][0]["status"] == 200
    code = main(["call", "rest_cli_app:app", "--rest-port", "0"])
    assert code == 2 and "--auth-token" in capsys.readouterr().err


def test_a_call_to_a_stream_url_is_redirected_to_a_url_over_rest() -> None:
    forms = Forms({"/after": "<Response><Say>one two</Say></Response>"})

    def redirect(client: Client, sid: str) -> Any:
        return client.calls(sid).update(url="https://testserver/after")

    agent = Agent(free_port(), redirect)
    app = app_for(agent, forms)
    # No webhook: the call opens the app's stream at once.
    result = place_call(
        app,
        [Hangup(at_ms=20_000)],
        stream_path="/agent",
        auth_token=TOKEN,
        account_sid=ACCOUNT,
        rest_port=agent.port,
    )
    assert agent.error is None, agent.error
    assert [path for path, _ in forms.seen] == ["/after"]
    assert result.report.twiml_verbs == ["<Say>"] and result.report.ended_by == "twiml"
