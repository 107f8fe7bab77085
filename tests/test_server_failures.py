"""A stream can't outlive its socket, on every backend: crashes close with 1011, a reader that
dies ends the stream, a silent peer or one that stops reading is closed, /healthz counts only
live streams, and the emulator reports a crash as 31921.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from fake_twilio import TwilioClient
from mediastreams.limits import Limits
from mediastreams.protocol import AppProtocol
from mediastreams.server import (
    BACKENDS,
    ServerConfig,
    bind,
    create_app,
    echo_handler,
    play_handler,
    serve,
)
from mediastreams.session import MediaStream, PlayHandle
from waiting import DEADLINE_S

MARKER = "kill-the-reader"


@contextlib.asynccontextmanager
async def running(config: ServerConfig, backend: str) -> AsyncIterator[int]:
    """A server on a free loopback port; on exit it must stop (a hang fails the test)."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    server = asyncio.create_task(serve(config, sock, backend=backend, stop=stop))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(30):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    await health(port)
                    break
                await asyncio.sleep(0.02)
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(server, DEADLINE_S)  # shutdown never waits on a dead task
        sock.close()


async def health(port: int) -> int:
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/healthz", timeout=DEADLINE_S)
    return int(reply.json()["streams"])


async def until(predicate: Any, timeout_s: float = 30) -> None:
    async with asyncio.timeout(timeout_s):
        while not await predicate():
            await asyncio.sleep(0.02)


async def no_streams(port: int) -> None:
    async def zero() -> bool:
        return await health(port) == 0

    await until(zero)


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info]


async def crashing(stream: MediaStream) -> None:
    raise RuntimeError("boom")


class SlowReader(TwilioClient):
    """Twilio's side with a small receive buffer and no compression: not reading stalls the app.

    On loopback the kernel otherwise takes tens of megabytes before a writer has to wait.
    """

    def __init__(self, port: int) -> None:
        super().__init__(f"ws://127.0.0.1:{port}/media-stream")
        self.port = port

    async def __aenter__(self) -> SlowReader:
        from websockets.asyncio.client import connect

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        self.ws = await connect(self.url, sock=sock, open_timeout=30, compression=None)
        self._reader = asyncio.create_task(self._read())
        return self


# --- crashes -----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_crashing_handler_closes_with_1011_and_logs_once(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    uvicorn_log = logging.getLogger("uvicorn.error")  # it does not propagate to the root
    async with running(ServerConfig(handler=crashing), backend) as port:
        uvicorn_log.addHandler(caplog.handler)  # after uvicorn configured its logging
        try:
            async with TwilioClient(f"ws://127.0.0.1:{port}/media-stream") as twilio:
                await twilio.open()
                await asyncio.wait_for(twilio.closed.wait(), 30)
            assert (twilio.ws.close_code, twilio.ws.close_reason) == (
                1011,
                "RuntimeError: boom",
            )
            await no_streams(port)
        finally:
            uvicorn_log.removeHandler(caplog.handler)
    (record,) = tracebacks(caplog)  # the server's, once; uvicorn has nothing to add
    assert record.getMessage().startswith("the handler failed on stream MZ")


@pytest.mark.anyio
@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_reader_that_dies_ends_the_stream(
    backend: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    receive = AppProtocol.receive_parsed  # every text frame but the stream's media

    def parse_or_die(self: AppProtocol, message: Any, frame: str | bytes) -> Any:
        if isinstance(frame, str) and MARKER in frame:
            raise RecursionError("maximum recursion depth exceeded while decoding")
        return receive(self, message, frame)

    monkeypatch.setattr(AppProtocol, "receive_parsed", parse_or_die)
    caplog.set_level(logging.ERROR)
    # A long play, then `async for`: the handler waits on the stream the whole call.
    config = ServerConfig(handler=play_handler(b"\x01" * 80_000))
    async with running(config, backend) as port:
        async with TwilioClient(f"ws://127.0.0.1:{port}/media-stream") as twilio:
            await twilio.open()
            await twilio.run_until(lambda: len(twilio.heard) >= 320)
            assert await health(port) == 1
            await twilio.send_raw('{"event":"' + MARKER + '"}')
            await asyncio.wait_for(twilio.closed.wait(), 30)
        assert twilio.ws.close_code == 1011
        assert twilio.ws.close_reason.startswith("RecursionError: maximum recursion depth")
        await no_streams(port)
    (record,) = tracebacks(caplog)  # the session's, once; the handler saw a clean end
    assert record.name == "mediastreams.session"


# --- deadlines ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_silent_peer_is_closed_after_the_idle_timeout(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = ServerConfig(handler=echo_handler, limits=Limits(idle_timeout_s=0.3))
    with caplog.at_level(logging.WARNING, "mediastreams.session"):
        async with running(config, backend) as port:
            async with TwilioClient(f"ws://127.0.0.1:{port}/media-stream") as twilio:
                await twilio.open()  # then not a frame more
                await asyncio.wait_for(twilio.closed.wait(), 30)
            assert twilio.ws.close_code == 1011
            assert twilio.ws.close_reason == "no frame from the peer for 0.3 s"
            await no_streams(port)
    assert caplog.text.count("no frame from the peer") == 1


@pytest.mark.anyio
@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_peer_that_stops_reading_is_dropped_after_the_send_timeout(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A lead of hours sends the whole play at once: far more than the socket buffers hold.
    config = ServerConfig(
        handler=play_handler(b"\x01" * 16_000_000),
        stream_options={"frame_ms": 1000, "mark_interval_ms": 1000, "lead_ms": 10_000_000},
        limits=Limits(send_timeout_s=0.5, close_timeout_s=0.5, max_outbound_bytes=65536),
    )
    with caplog.at_level(logging.WARNING, "mediastreams.session"):
        async with running(config, backend) as port, SlowReader(port) as twilio:
            twilio.ws.transport.pause_reading()
            await twilio.open()

            async def gave_up() -> bool:
                await twilio.tick(b"\xff" * 160)  # the peer still talks: not idle
                return "the peer read nothing for 0.5 s" in caplog.text

            await until(gave_up)
            await no_streams(port)
            twilio.ws.transport.resume_reading()
            await asyncio.wait_for(twilio.closed.wait(), 30)


# --- what /healthz counts ----------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("backend", BACKENDS)
async def test_healthz_leaves_out_a_stream_whose_handler_works_on(backend: str) -> None:
    working = asyncio.Event()
    finish = asyncio.Event()

    async def post_call_work(stream: MediaStream) -> None:
        await stream.wait_closed()
        working.set()
        await finish.wait()  # saving a transcript, say

    async with running(ServerConfig(handler=post_call_work), backend) as port:
        async with TwilioClient(f"ws://127.0.0.1:{port}/media-stream") as twilio:
            await twilio.open()

            async def counted() -> bool:
                return await health(port) == 1

            await until(counted)
            twilio.protocol.send_stop()
            await twilio.flush()
            await asyncio.wait_for(working.wait(), 30)
            assert await health(port) == 0
        finish.set()


# --- the handler and the end of the stream -----------------------------------------------------


@pytest.mark.anyio
async def test_using_the_stream_after_the_caller_hung_up_is_no_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def goodbye_too_late(stream: MediaStream) -> None:
        async for _ in stream:
            pass
        stream.play(b"\x01" * 160)  # raises StreamClosed: the caller is gone

    caplog.set_level(logging.WARNING)
    async with running(ServerConfig(handler=goodbye_too_late), "uvicorn") as port:
        async with TwilioClient(f"ws://127.0.0.1:{port}/media-stream") as twilio:
            await twilio.open()
            twilio.protocol.send_stop()
            await twilio.flush()
            await asyncio.wait_for(twilio.closed.wait(), 30)
        assert twilio.ws.close_code == 1000
        await no_streams(port)
    assert not tracebacks(caplog)
    assert "the handler used stream MZ" in caplog.text and "after it ended" in caplog.text


@pytest.mark.anyio
async def test_a_failed_play_nothing_awaited_is_logged_with_its_file(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plays: list[PlayHandle] = []

    async def careless(stream: MediaStream) -> None:
        plays.append(stream.play("/no/such/greeting.mp3"))
        async for _ in stream:
            pass

    caplog.set_level(logging.ERROR)
    async with running(ServerConfig(handler=careless), "uvicorn") as port:
        async with TwilioClient(f"ws://127.0.0.1:{port}/media-stream") as twilio:
            await twilio.open()

            async def failed() -> bool:
                return bool(plays) and plays[0].done()

            await until(failed)  # before the caller hangs up
            twilio.protocol.send_stop()
            await twilio.flush()
            await asyncio.wait_for(twilio.closed.wait(), 30)
        await no_streams(port)
    (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert message.startswith("play 1 (/no/such/greeting.mp3) failed and nothing awaited it")


# --- the emulator's verdict --------------------------------------------------------------------


def test_a_crash_under_create_app_is_31921_in_the_emulator() -> None:
    from mediastreams.emulator import Hangup, place_call

    result = place_call(create_app(ServerConfig(handler=crashing)), [Hangup(at_ms=2000)])
    assert not result.ok
    (finding,) = result.report.findings
    assert finding.violation.code == 31921
    assert "RuntimeError: boom" in finding.violation.message
    assert result.report.exit_code == 1


@pytest.fixture
def crashing_module() -> Iterator[str]:
    module = type(sys)("crashing_app")
    module.app = create_app(ServerConfig(handler=crashing))  # type: ignore[attr-defined]
    sys.modules["crashing_app"] = module
    yield "crashing_app:app"
    del sys.modules["crashing_app"]


def test_call_exits_1_on_a_crashing_app(
    crashing_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from mediastreams.cli import main

    assert main(["call", crashing_module, "--hangup-after", "2", "--json"]) == 1
    (violation,) = json.loads(capsys.readouterr().out)["groups"]
    assert violation["code"] == 31921 and violation["count"] == 1
    assert "RuntimeError: boom" in violation["message"]
