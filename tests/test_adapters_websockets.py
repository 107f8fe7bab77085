"""The session over the ``websockets`` server, on 127.0.0.1."""

from __future__ import annotations

import pytest
from websockets.asyncio.server import ServerConnection, serve

from fake_twilio import DroppedCall, call_and_drop, call_and_listen
from mediastreams.adapters.websockets import open_stream
from mediastreams.session import Outcome

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
