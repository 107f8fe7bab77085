"""The session over Starlette's WebSocket, on uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from fake_twilio import DroppedCall, TwilioClient, call_and_drop
from mediastreams.adapters.starlette import StarletteTransport, open_stream
from mediastreams.messages import DTMF
from mediastreams.server import bind
from mediastreams.session import MediaStream, Outcome
from stream_failures import (
    ReaderDies,
    call_and_kill_reader,
    call_and_see_it_crash,
    kill_reader_on_marker,
    tracebacks,
)
from waiting import DEADLINE_S

pytestmark = pytest.mark.anyio

SOURCE = bytes(range(256)) * 5


@contextlib.asynccontextmanager
async def running(run: Callable[[MediaStream], Awaitable[None]]) -> AsyncIterator[int]:
    async def media_stream(websocket: WebSocket) -> None:
        async with open_stream(websocket, lead_ms=200, mark_interval_ms=100) as stream:
            await run(stream)

    app = Starlette(routes=[WebSocketRoute("/media-stream", media_stream)])
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(DEADLINE_S):
            while not server.started:
                await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, DEADLINE_S)
        sock.close()


async def test_play_marks_and_dtmf() -> None:
    results: dict[str, object] = {}

    async def run(stream: MediaStream) -> None:
        results["params"] = stream.custom_parameters
        handle = await stream.play(SOURCE)
        results["outcome"] = handle.outcome
        async for event in stream:
            if isinstance(event, DTMF):
                results["digit"] = event.digit
                return

    async with running(run) as port:
        url = f"ws://127.0.0.1:{port}/media-stream"
        async with TwilioClient(url, custom_parameters={"k": "v"}) as twilio:
            await twilio.open()
            await twilio.run_until(lambda: len(twilio.heard) == len(SOURCE))
            await twilio.run_until(lambda: not twilio.protocol.pending_marks)
            twilio.protocol.send_dtmf("7")
            await twilio.flush()
            await asyncio.wait_for(twilio.closed.wait(), DEADLINE_S)
    assert bytes(twilio.heard) == SOURCE
    assert results == {"params": {"k": "v"}, "outcome": Outcome.PLAYED, "digit": "7"}


async def test_a_dropped_socket_ends_the_stream() -> None:
    dropped = DroppedCall(SOURCE)

    async with running(dropped.run) as port:
        await call_and_drop(f"ws://127.0.0.1:{port}/media-stream")
        await dropped.wait()
    assert dropped.ended[0].end_reason == "dropped"


async def test_an_exception_in_the_block_closes_with_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run(stream: MediaStream) -> None:
        raise RuntimeError("boom")

    caplog.set_level(logging.ERROR)
    uvicorn_log = logging.getLogger("uvicorn.error")  # it does not propagate to the root
    async with running(run) as port:
        uvicorn_log.addHandler(caplog.handler)  # after uvicorn configured its logging
        try:
            twilio = await call_and_see_it_crash(f"ws://127.0.0.1:{port}/media-stream")
            async with asyncio.timeout(30):  # uvicorn logs it once the app has returned
                while not tracebacks(caplog):
                    await asyncio.sleep(0.01)
        finally:
            uvicorn_log.removeHandler(caplog.handler)
    assert (twilio.ws.close_code, twilio.ws.close_reason) == (1011, "RuntimeError: boom")
    (record,) = tracebacks(caplog)  # once, by the server
    assert "boom" in str(record.exc_info[1])  # type: ignore[index]


async def test_a_reader_that_dies_ends_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    kill_reader_on_marker(StarletteTransport, monkeypatch)
    app = ReaderDies()
    async with running(app.run) as port:
        twilio = await call_and_kill_reader(f"ws://127.0.0.1:{port}/media-stream")
        await app.wait()
    assert twilio.ws.close_code == 1011
    assert app.ended == [("error", 1011, Outcome.ENDED)]
