"""Real sockets on 127.0.0.1: the signed upgrade, --connect-to, and connections that fail."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.server import ServerConnection, serve

from mediastreams.emulator import Hangup, place_call
from mediastreams.emulator.transport import USER_AGENT, connect_to_hint, describe_target
from mediastreams.exceptions import SignatureError
from mediastreams.security import (
    check_upgrade_signature,
    check_webhook_signature,
    public_url_for,
)
from waiting import free_port

TOKEN = "12345678901234567890123456789012"
PUBLIC_STREAM = "wss://abc.example/media-stream"


class Checked:
    """What the signed app saw."""

    def __init__(self) -> None:
        self.upgrades: list[dict[str, str]] = []
        self.frames = 0


def signed_app(checked: Checked) -> Starlette:
    """An app that checks both signatures, as a careful production app would."""

    async def incoming(request: Request) -> Response:
        form = parse_qsl((await request.body()).decode())
        try:
            check_webhook_signature(
                TOKEN, str(request.url), form, request.headers.get("x-twilio-signature")
            )
        except SignatureError:
            return Response(status_code=403)
        twiml = (
            f'<Response><Connect><Stream url="{PUBLIC_STREAM}?token=1">'
            '<Parameter name="tenant" value="acme"/></Stream></Connect></Response>'
        )
        return Response(twiml, media_type="text/xml")

    async def stream(websocket: WebSocket) -> None:
        headers = dict(websocket.headers)
        checked.upgrades.append(headers)
        try:
            check_upgrade_signature(
                TOKEN,
                f"wss://{headers['host']}{websocket.url.path}",
                headers.get("x-twilio-signature"),
            )
        except SignatureError:
            await websocket.close(code=1008)
            return
        await websocket.accept()
        try:
            while True:
                await websocket.receive_text()
                checked.frames += 1
        except WebSocketDisconnect:
            return

    return Starlette(
        routes=[
            Route("/incoming-call", incoming, methods=["POST"]),
            WebSocketRoute("/media-stream", stream),
        ]
    )


@pytest.fixture
def checked() -> Checked:
    return Checked()


@contextlib.contextmanager
def running(app: Starlette) -> Iterator[int]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1, in a thread."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        ws="websockets-sansio",
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not uvicorn_server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield port
    finally:
        uvicorn_server.should_exit = True
        thread.join(10)


@pytest.fixture
def server(checked: Checked) -> Iterator[int]:
    with running(signed_app(checked)) as port:
        yield port


def test_webhook_and_upgrade_are_signed_as_twilio_signs_them(server: int, checked: Checked) -> None:
    result = place_call(
        f"http://127.0.0.1:{server}/incoming-call",
        [Hangup(at_ms=200)],
        auth_token=TOKEN,
        connect_to=("127.0.0.1", server),
    )
    assert result.report.findings[0].violation.kind == "stream-url-query"
    assert result.report.placed
    assert result.report.stream_url == PUBLIC_STREAM  # the query string stripped
    (headers,) = checked.upgrades
    assert headers["host"] == "abc.example"
    assert headers["user-agent"] == USER_AGENT
    assert "origin" not in headers
    assert checked.frames >= 10  # connected, start, media...


def test_a_wrong_auth_token_is_refused_at_the_webhook(server: int) -> None:
    result = place_call(
        f"http://127.0.0.1:{server}/incoming-call",
        [Hangup(at_ms=200)],
        auth_token="wrong",
        connect_to=("127.0.0.1", server),
    )
    assert result.report.exit_code == 2
    assert result.report.findings[0].violation.code == 11200
    assert "403" in result.report.findings[0].violation.message


def test_an_unsigned_upgrade_is_refused_as_31920(server: int) -> None:
    result = place_call(PUBLIC_STREAM, [Hangup(at_ms=200)], connect_to=("127.0.0.1", server))
    assert [f.violation.code for f in result.report.findings] == [31920]
    assert result.report.exit_code == 2


def test_connection_refused_is_31902_and_names_the_url_and_the_port() -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/media-stream"
    result = place_call(url, [Hangup(at_ms=200)])
    (finding,) = result.report.findings
    assert finding.violation.code == 31902
    assert finding.violation.message == f"connection refused: {url} (127.0.0.1 port {port})"
    assert "--connect-to" not in finding.violation.hint  # the host is this machine already
    assert result.report.exit_code == 2


def test_a_refused_stream_after_a_prelude_names_its_url_port_and_reports_stream_error() -> None:
    dead = free_port()
    events: list[dict[str, str]] = []

    async def incoming(request: Request) -> Response:
        return Response(
            "<Response><Say>one moment</Say><Connect>"
            f'<Stream url="ws://127.0.0.1:{dead}/media-stream" statusCallback="/events"/>'
            "</Connect></Response>"
        )

    async def record(request: Request) -> Response:
        events.append(dict(parse_qsl((await request.body()).decode())))
        return Response("")

    app = Starlette(
        routes=[
            Route("/incoming-call", incoming, methods=["POST"]),
            Route("/events", record, methods=["POST"]),
        ]
    )
    with running(app) as port:
        result = place_call(f"http://127.0.0.1:{port}/incoming-call", [Hangup(at_ms=200)])
    report = result.report
    (finding,) = report.findings
    assert finding.violation.code == 31902
    assert f"ws://127.0.0.1:{dead}/media-stream (127.0.0.1 port {dead})" in (
        finding.violation.message
    )
    assert report.prelude_ms == 800 and report.exit_code == 2
    assert [event["StreamEvent"] for event in events] == ["stream-error"]
    assert events[0]["StreamError"].startswith("31902")


def test_an_unreachable_webhook_names_the_url_and_the_port() -> None:
    port = free_port()
    result = place_call(f"http://127.0.0.1:{port}/incoming-call", [Hangup(at_ms=200)])
    (finding,) = result.report.findings
    assert finding.violation.code == 11200
    assert f"http://127.0.0.1:{port}/incoming-call (127.0.0.1 port {port})" in (
        finding.violation.message
    )


def test_a_public_host_gets_the_connect_to_hint() -> None:
    public = "wss://abc.example/media-stream"
    assert describe_target(public) == f"{public} (abc.example port 443)"
    assert (
        describe_target("ws://abc.example:8080/x")
        == "ws://abc.example:8080/x (abc.example port 8080)"
    )
    hint = connect_to_hint(public)
    assert "--connect-to 127.0.0.1:PORT" in hint and "connect_to=" in hint
    routed = ("127.0.0.1", 5061)
    assert connect_to_hint(public, routed) == ""  # already routed
    assert describe_target(public, routed) == (
        f"{public} (tried 127.0.0.1 port 5061, from --connect-to)"
    )
    for local in (
        "ws://127.0.0.1:5061/s",
        "ws://localhost/s",
        "ws://[::1]:80/s",
        "ws://127.8.0.1/",
    ):
        assert connect_to_hint(local) == "", local


def test_a_server_that_never_answers_is_31901() -> None:
    async def run() -> Any:
        writers: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)  # accept the connection, never answer the upgrade

        tcp = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = tcp.sockets[0].getsockname()[1]
        from mediastreams.emulator import place_call_async

        try:
            return await place_call_async(
                f"ws://127.0.0.1:{port}/media-stream", [Hangup(at_ms=200)], open_timeout_s=0.3
            )
        finally:
            for writer in writers:
                writer.close()
            tcp.close()
            await tcp.wait_closed()

    result = asyncio.run(run())
    assert [f.violation.code for f in result.report.findings] == [31901]


def test_a_binary_frame_over_a_real_socket_with_the_websockets_server() -> None:
    async def run() -> Any:
        async def handler(connection: ServerConnection) -> None:
            await connection.recv()  # connected
            await connection.recv()  # start
            await connection.send(b"\x00\x01")
            async for _ in connection:
                pass

        async with serve(handler, "127.0.0.1", 0) as websocket_server:
            port = next(iter(websocket_server.sockets)).getsockname()[1]
            from mediastreams.emulator import place_call_async

            return await place_call_async(
                f"ws://127.0.0.1:{port}/media-stream", [Hangup(at_ms=300)]
            )

    result = asyncio.run(run())
    assert [f.violation.code for f in result.report.findings] == [31950]
    assert result.report.findings[0].line >= 3  # after connected and start


def tunnelled_app(seen: list[str]) -> Starlette:
    """An app behind a tunnel: it rebuilds its public URLs from the forwarded headers."""

    async def incoming(request: Request) -> Response:
        url = public_url_for(
            request.url.scheme, request.headers["host"], request.url.path, request.headers
        )
        form = parse_qsl((await request.body()).decode())
        check_webhook_signature(TOKEN, url, form, request.headers.get("x-twilio-signature"))
        seen.append(url)
        stream = url.replace("https://", "wss://").replace("/incoming-call", "/media-stream")
        return Response(f'<Response><Connect><Stream url="{stream}"/></Connect></Response>')

    async def stream(websocket: WebSocket) -> None:
        headers = websocket.headers
        url = public_url_for(websocket.url.scheme, headers["host"], websocket.url.path, headers)
        check_upgrade_signature(TOKEN, url, headers.get("x-twilio-signature"))
        seen.append(url)
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()

    return Starlette(
        routes=[
            Route("/incoming-call", incoming, methods=["POST"]),
            WebSocketRoute("/media-stream", stream),
        ]
    )


def test_connect_to_routes_webhook_and_stream_as_a_tunnel_would() -> None:
    seen: list[str] = []
    with running(tunnelled_app(seen)) as port:
        result = place_call(
            "https://abc.example/incoming-call",
            [Hangup(at_ms=200)],
            auth_token=TOKEN,
            connect_to=("127.0.0.1", port),
        )
    assert result.report.ok, result.report.findings
    assert seen == ["https://abc.example/incoming-call", "wss://abc.example/media-stream"]
