"""The in-memory transport: the test seam."""

from __future__ import annotations

import pytest

from mediastreams.adapters.memory import MemoryTransport
from mediastreams.exceptions import StreamClosed

pytestmark = pytest.mark.anyio


async def test_frames_both_ways_and_close() -> None:
    transport = MemoryTransport()
    transport.peer.send_all(["a", b"b"])
    assert await transport.receive() == "a"
    assert await transport.receive() == b"b"
    await transport.send("c")
    assert transport.peer.received() == ["c"]
    await transport.close(1000)
    await transport.close(1011)  # idempotent
    assert transport.close_code == 1000 and transport.peer.closed
    assert await transport.receive() is None
    assert await transport.peer.receive() is None
    with pytest.raises(StreamClosed):
        await transport.send("d")


async def test_drop() -> None:
    transport = MemoryTransport()
    transport.peer.drop()
    assert await transport.receive() is None
    with pytest.raises(StreamClosed):
        await transport.send("x")
