"""The session over picows, on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from picows import ws_create_server

from fake_twilio import DroppedCall, call_and_drop, call_and_listen
from mediastreams.adapters.picows import PicowsTransport
from mediastreams.session import MediaStream, Outcome

pytestmark = pytest.mark.anyio

SOURCE = bytes(range(256)) * 10


async def serve_one(run: object) -> tuple[asyncio.Server, list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []

    async def session(transport: PicowsTransport) -> None:
        async with MediaStream(transport) as stream:
            await run(stream)  # type: ignore[operator]

    def factory(request: object) -> PicowsTransport:
        return PicowsTransport(lambda t: tasks.append(asyncio.create_task(session(t))))

    server = await ws_create_server(factory, "127.0.0.1", 0)
    return server, tasks


async def test_play_and_hang_up() -> None:
    async def run(stream: MediaStream) -> None:
        assert (await stream.play(SOURCE)).outcome is Outcome.PLAYED

    server, tasks = await serve_one(run)
    async with server:
        port = server.sockets[0].getsockname()[1]
        twilio = await call_and_listen(f"ws://127.0.0.1:{port}/")
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert bytes(twilio.heard) == SOURCE


async def test_a_dropped_socket_ends_the_stream() -> None:
    dropped = DroppedCall(SOURCE)

    server, tasks = await serve_one(dropped.run)
    async with server:
        port = server.sockets[0].getsockname()[1]
        await call_and_drop(f"ws://127.0.0.1:{port}/")
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert dropped.ended[0].end_reason == "dropped"


async def test_binary_and_close_frames() -> None:
    transport = PicowsTransport()
    transport._put(b"\x00")
    assert await transport.receive() == b"\x00"
    transport.on_ws_disconnected(None)  # type: ignore[arg-type]
    assert await transport.receive() is None
    assert await transport.receive() is None
    with pytest.raises(Exception, match="closed"):
        await transport.send("x")
