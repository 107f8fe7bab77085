"""The session over the ``websockets`` server, on 127.0.0.1."""

from __future__ import annotations

import logging

import pytest
from websockets.asyncio.server import ServerConnection, serve

from fake_twilio import DroppedCall, call_and_drop, call_and_listen
from mediastreams.adapters.websockets import WebsocketsTransport, open_stream
from mediastreams.session import Outcome
from stream_failures import (
    ReaderDies,
    call_and_kill_reader,
    call_and_see_it_crash,
    kill_reader_on_marker,
    tracebacks,
)

pytestmark = pytest.mark.anyio

SOURCE = bytes(range(256)) * 10


async def test_play_and_hang_up() -> None:
    async def handler(connection: ServerConnection) -> None:
        async with open_stream(connection) as stream:
            assert (await stream.play(SOURCE)).outcome is Outcome.PLAYED

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        twilio = await call_and_listen(f"ws://127.0.0.1:{port}/")
    assert bytes(twilio.heard) == SOURCE


async def test_a_dropped_socket_ends_the_stream() -> None:
    dropped = DroppedCall(SOURCE)

    async def handler(connection: ServerConnection) -> None:
        async with open_stream(connection) as stream:
            await dropped.run(stream)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        await call_and_drop(f"ws://127.0.0.1:{port}/")
        await dropped.wait()
    assert dropped.ended[0].end_reason == "dropped"


async def test_an_exception_in_the_block_closes_with_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(connection: ServerConnection) -> None:
        async with open_stream(connection):
            raise RuntimeError("boom")

    caplog.set_level(logging.ERROR)
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        twilio = await call_and_see_it_crash(f"ws://127.0.0.1:{port}/")
    assert (twilio.ws.close_code, twilio.ws.close_reason) == (1011, "RuntimeError: boom")
    (record,) = tracebacks(caplog)  # once, by the server
    assert record.name == "websockets.server"


async def test_a_reader_that_dies_ends_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    kill_reader_on_marker(WebsocketsTransport, monkeypatch)
    app = ReaderDies()

    async def handler(connection: ServerConnection) -> None:
        async with open_stream(connection) as stream:
            await app.run(stream)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        twilio = await call_and_kill_reader(f"ws://127.0.0.1:{port}/")
        await app.wait()
    assert twilio.ws.close_code == 1011
    assert app.ended == [("error", 1011, Outcome.ENDED)]
