"""The session over picows, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from picows import ws_create_server

from fake_twilio import DroppedCall, call_and_drop, call_and_listen
from mediastreams.adapters.picows import PicowsTransport
from mediastreams.exceptions import StreamClosed
from mediastreams.limits import Limits
from mediastreams.session import MediaStream, Outcome
from stream_failures import (
    ReaderDies,
    call_and_kill_reader,
    call_and_see_it_crash,
    kill_reader_on_marker,
)
from waiting import DEADLINE_S

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
        await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE_S)
    assert bytes(twilio.heard) == SOURCE


async def test_a_dropped_socket_ends_the_stream() -> None:
    dropped = DroppedCall(SOURCE)

    server, tasks = await serve_one(dropped.run)
    async with server:
        port = server.sockets[0].getsockname()[1]
        await call_and_drop(f"ws://127.0.0.1:{port}/")
        await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE_S)
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


async def test_an_exception_in_the_block_closes_with_1011() -> None:
    async def run(stream: MediaStream) -> None:
        raise RuntimeError("boom")

    server, tasks = await serve_one(run)
    async with server:
        port = server.sockets[0].getsockname()[1]
        twilio = await call_and_see_it_crash(f"ws://127.0.0.1:{port}/")
        (error,) = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    assert (twilio.ws.close_code, twilio.ws.close_reason) == (1011, "RuntimeError: boom")
    assert isinstance(error, RuntimeError)  # and on to whoever runs the task


async def test_a_reader_that_dies_ends_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    kill_reader_on_marker(PicowsTransport, monkeypatch)
    app = ReaderDies()
    server, tasks = await serve_one(app.run)
    async with server:
        port = server.sockets[0].getsockname()[1]
        twilio = await call_and_kill_reader(f"ws://127.0.0.1:{port}/")
        await app.wait()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert twilio.ws.close_code == 1011
    assert app.ended == [("error", 1011, Outcome.ENDED)]


async def connected(limits: Limits) -> tuple[Any, PicowsTransport, Any]:
    """A picows server whose one connection nobody reads, and a client connected to it."""
    from websockets.asyncio.client import connect

    ready: asyncio.Future[PicowsTransport] = asyncio.get_running_loop().create_future()

    def factory(request: object) -> PicowsTransport:
        return PicowsTransport(ready.set_result, limits=limits)

    server = await ws_create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # no huge loopback buffer
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    client = await connect(f"ws://127.0.0.1:{port}/", sock=sock, compression=None)
    return server, await asyncio.wait_for(ready, 30), client


async def test_inbound_frames_past_the_bound_pause_reading() -> None:
    frame = "x" * 16 * 1024
    server, transport, client = await connected(Limits(max_queued_bytes=64 * 1024))
    async with server:

        async def flood() -> None:
            for _ in range(640):  # 10 MiB, far past the bound: the send waits on TCP
                await client.send(frame)

        sending = asyncio.create_task(flood())
        async with asyncio.timeout(30):
            while not transport._reading_paused:
                await asyncio.sleep(0.005)
        # What waits is the bound plus at most what one read of the socket brought in.
        assert transport._queued_bytes < 64 * 1024 + 256 * 1024 + len(frame)
        assert not sending.done()
        received = 0
        async with asyncio.timeout(30):
            while received < 640:  # reading resumes as the queue drains, and nothing is lost
                assert await transport.receive() == frame
                received += 1
            await sending
        await client.close()


async def test_outbound_past_the_bound_waits_for_the_peer() -> None:
    frame = "y" * 32 * 1024
    server, transport, client = await connected(Limits(max_outbound_bytes=64 * 1024))
    async with server:
        client.transport.pause_reading()
        sent = 0

        async def send_all() -> None:
            nonlocal sent
            for _ in range(1000):  # 32 MiB: more than the socket buffers hold
                await transport.send(frame)
                sent += 1

        sending = asyncio.create_task(send_all())
        async with asyncio.timeout(30):
            while transport._writable is None or transport._writable.is_set():
                await asyncio.sleep(0.005)
        underlying = transport._transport.underlying_transport  # type: ignore[union-attr]
        assert underlying.get_write_buffer_size() <= 64 * 1024 + len(frame) + 64
        assert not sending.done() and sent < 1000
        client.transport.resume_reading()
        async with asyncio.timeout(30):
            for _ in range(1000):
                assert await client.recv() == frame
            await sending
        await client.close()


async def test_pushed_frames_come_after_the_queued_ones_in_order() -> None:
    server, transport, client = await connected(Limits())
    async with server:
        for i in range(3):
            await client.send(f"queued {i}")
        async with asyncio.timeout(30):
            while len(transport._frames) < 3:
                await asyncio.sleep(0.005)
        pushed: list[str | bytes | None] = []
        transport.set_receiver(pushed.append)  # the queued three first, at once
        assert pushed == ["queued 0", "queued 1", "queued 2"]
        await client.send("live")
        await client.send(b"binary")
        async with asyncio.timeout(30):
            while len(pushed) < 5:
                await asyncio.sleep(0.005)
        assert pushed[3:] == ["live", b"binary"]
        await client.close()
        async with asyncio.timeout(30):
            while pushed[-1] is not None:
                await asyncio.sleep(0.005)
        assert pushed.count(None) == 1  # the end, once
        with pytest.raises(StreamClosed):
            transport.send_now(b"{}")


async def test_send_now_refuses_while_the_peer_does_not_read() -> None:
    frame = ("z" * 32 * 1024).encode()
    server, transport, client = await connected(Limits(max_outbound_bytes=64 * 1024))
    async with server:
        client.transport.pause_reading()
        written = 0
        async with asyncio.timeout(30):
            while transport.send_now(frame):  # written at once, until the buffer is full
                written += 1
                await asyncio.sleep(0)
        assert written < 1000
        assert not transport.send_now(frame)  # nothing written while full
        client.transport.resume_reading()
        async with asyncio.timeout(30):
            for _ in range(written):
                assert await client.recv() == frame.decode()
            while not transport.send_now(frame):  # room again
                await asyncio.sleep(0.005)
        await client.close()
