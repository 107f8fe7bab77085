"""The session over aiohttp's WebSocket server, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from fake_twilio import DroppedCall, TwilioClient, call_and_drop, call_and_listen
from mediastreams.adapters.aiohttp import AiohttpTransport, open_stream
from mediastreams.limits import Limits
from mediastreams.session import MediaStream, Outcome
from stream_failures import (
    ReaderDies,
    call_and_kill_reader,
    call_and_see_it_crash,
    kill_reader_on_marker,
    tracebacks,
)

pytestmark = pytest.mark.anyio

SOURCE = bytes(range(256)) * 10


@contextlib.asynccontextmanager
async def running(run: Callable[[MediaStream], Awaitable[None]]) -> AsyncIterator[int]:
    async def media_stream(request: web.Request) -> web.StreamResponse:
        async with open_stream(request) as stream:
            await run(stream)
        return stream.transport.websocket  # type: ignore[attr-defined,no-any-return]

    app = web.Application()
    app.router.add_get("/media-stream", media_stream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def test_play_and_hang_up() -> None:
    async def run(stream: MediaStream) -> None:
        assert (await stream.play(SOURCE)).outcome is Outcome.PLAYED

    async with running(run) as port:
        twilio = await call_and_listen(f"ws://127.0.0.1:{port}/media-stream")
    assert bytes(twilio.heard) == SOURCE


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
    async with running(run) as port:
        twilio = await call_and_see_it_crash(f"ws://127.0.0.1:{port}/media-stream")
    assert (twilio.ws.close_code, twilio.ws.close_reason) == (1011, "RuntimeError: boom")
    (record,) = tracebacks(caplog)  # once, by the server
    assert record.name.startswith("aiohttp")


async def test_a_reader_that_dies_ends_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    kill_reader_on_marker(AiohttpTransport, monkeypatch)
    app = ReaderDies()
    async with running(app.run) as port:
        twilio = await call_and_kill_reader(f"ws://127.0.0.1:{port}/media-stream")
        await app.wait()
    assert twilio.ws.close_code == 1011
    assert app.ended == [("error", 1011, Outcome.ENDED)]


async def test_a_silent_peer_is_closed_after_the_idle_timeout() -> None:
    ended: list[MediaStream] = []

    async def media_stream(request: web.Request) -> web.StreamResponse:
        async with open_stream(request, limits=Limits(idle_timeout_s=0.3)) as stream:
            async for _ in stream:
                pass
        ended.append(stream)
        return stream.transport.websocket  # type: ignore[attr-defined,no-any-return]

    app = web.Application()
    app.router.add_get("/media-stream", media_stream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        async with TwilioClient(f"ws://127.0.0.1:{port}/media-stream") as twilio:
            await twilio.open()  # then silence
            await asyncio.wait_for(twilio.closed.wait(), 30)
        assert twilio.ws.close_code == 1011
        async with asyncio.timeout(30):
            while not ended:
                await asyncio.sleep(0.01)
    finally:
        await runner.cleanup()
    assert ended[0].end_reason == "idle"
