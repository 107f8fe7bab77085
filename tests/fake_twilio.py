"""Twilio's side of an in-memory stream, driven step by step by the session tests."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from mediastreams.adapters.memory import MemoryTransport
from mediastreams.exceptions import RemoteProtocolError
from mediastreams.protocol import TwilioProtocol
from waiting import DEADLINE_S


async def settle(timeout_s: float = 30.0) -> None:
    """Run the event loop until every other task waits on something: nothing is ready to run.

    In-memory queues need no real time, so once no callback is ready, whatever a test set
    off (a frame received, a play queued, an echo) has gone as far as it can; work in a
    thread or behind a timer is waited for by the caller, on its own condition. Fails after
    ``timeout_s`` if the loop never goes idle (a task that spins).
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        await asyncio.sleep(0)
        # asyncio's loop keeps the callbacks ready to run in `_ready` (CPython 3.11-3.13).
        while loop._ready:  # type: ignore[attr-defined]
            await asyncio.sleep(0)


class FakeTwilio:
    """Twilio's side over a :class:`MemoryTransport`, driven step by step by a test."""

    def __init__(self, transport: MemoryTransport, **options: object) -> None:
        self.transport = transport
        self.peer = transport.peer
        self.protocol = TwilioProtocol(**options)  # type: ignore[arg-type]
        self.heard = bytearray()
        self.frames: list[str] = []

    def open(self) -> None:
        self.protocol.send_connected()
        self.protocol.send_start()
        self.flush()

    def flush(self) -> None:
        self.peer.send_all(self.protocol.data_to_send())

    async def take(self) -> list[str]:
        """Read what the app sent into the playout buffer; returns the frames."""
        await settle()
        frames = self.peer.received()
        for frame in frames:
            self.protocol.receive_text(frame)
        self.frames += frames
        self.flush()  # mark echoes (for marks on an empty buffer, or after clear)
        return frames

    async def play(self, n_bytes: int) -> bytes:
        await self.take()
        played = self.protocol.play(n_bytes)
        self.heard += played
        self.flush()
        await settle()
        return played

    async def play_all(
        self,
        *waiting_for: Any,
        frame_bytes: int = 160,
        max_frames: int = 20_000,
        timeout_s: float = 30.0,
    ) -> None:
        """Play frames until the app has nothing more buffered or pending, and every handle
        in ``waiting_for`` is done (a file may still be converting in a thread: that is
        waited for up to ``timeout_s``; more than ``max_frames`` frames is an app that keeps
        sending)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        frames = 0
        while True:
            await self.take()
            if self.protocol.buffered_bytes or self.protocol.pending_marks:
                frames += 1
                assert frames <= max_frames, "the app kept sending"
                await self.play(frame_bytes)
            elif all(handle.done() for handle in waiting_for):
                return
            else:
                assert loop.time() < deadline, "a handle never resolved"
                await asyncio.sleep(0.001)  # real time, for work in a thread


class TwilioClient:
    """Twilio's side over a real ``websockets`` client connection (loopback only).

    A reader task feeds every frame from the app to :class:`TwilioProtocol`; :meth:`tick`
    plays one frame of the playout buffer (faster than real time when called in a loop) and
    sends what Twilio would (mark echoes, and inbound media when given).
    """

    def __init__(self, url: str, headers: dict[str, str] | None = None, **options: object):
        self.url = url
        self.headers = headers or {}
        self.protocol = TwilioProtocol(**options)  # type: ignore[arg-type]
        self.heard = bytearray()
        self.received: list[str] = []
        self.errors: list[RemoteProtocolError] = []
        self.closed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TwilioClient:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, additional_headers=self.headers, open_timeout=DEADLINE_S)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, DEADLINE_S)

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for frame in self.ws:
                assert isinstance(frame, str)
                self.received.append(frame)
                try:
                    self.protocol.receive_text(frame)
                except RemoteProtocolError as error:
                    self.errors.append(error)  # Twilio ignores it, with a warning
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def open(self) -> None:
        self.protocol.send_connected()
        self.protocol.send_start()
        await self.flush()

    async def flush(self) -> None:
        for frame in self.protocol.data_to_send():
            await self.send_raw(frame)

    async def send_raw(self, frame: str | bytes) -> None:
        """Send a frame; the app may have closed the socket already (it then goes nowhere)."""
        from websockets.exceptions import ConnectionClosed

        if self.closed.is_set():
            return
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(frame)

    async def tick(self, inbound: bytes | None = None, *, frame_bytes: int = 160) -> None:
        """One step: play a frame out, send the caller's frame in, send the echoes."""
        self.heard += self.protocol.play(frame_bytes)
        if inbound is not None and not self.closed.is_set():
            self.protocol.send_media(inbound)
        await self.flush()
        await asyncio.sleep(0.002)

    async def run_until(self, done: object, *, timeout_s: float = DEADLINE_S) -> None:
        """Tick until ``done()`` is true or the app closed the socket (bounded in time)."""
        assert callable(done)
        async with asyncio.timeout(timeout_s):
            while not done() and not self.closed.is_set():
                await self.tick()


async def call_and_listen(url: str, *, timeout_s: float = DEADLINE_S) -> TwilioClient:
    """Place a call to ``url``, play out whatever the app sends until it hangs up."""
    async with TwilioClient(url) as twilio:
        await twilio.open()
        await twilio.run_until(lambda: False, timeout_s=timeout_s)
    return twilio


async def call_and_drop(url: str, *, after_bytes: int = 320) -> TwilioClient:
    """Place a call, hear a little, then drop the socket with no close handshake."""
    async with TwilioClient(url) as twilio:
        await twilio.open()
        await twilio.run_until(lambda: len(twilio.heard) >= after_bytes)
        twilio.ws.transport.abort()
        await asyncio.wait_for(twilio.closed.wait(), DEADLINE_S)
    return twilio


class DroppedCall:
    """The app's side of the dropped-socket case, the same for every adapter.

    ``run`` plays more than the call will hear, waits for the stream to end and checks that
    the play ended with it; ``wait`` returns once that happened.
    """

    def __init__(self, source: bytes) -> None:
        self.source = source
        self.ended: list[Any] = []

    async def run(self, stream: Any) -> None:
        from mediastreams.session import Outcome

        handle = stream.play(self.source * 10)
        await stream.wait_closed()
        assert (await handle).outcome is Outcome.ENDED
        self.ended.append(stream)

    async def wait(self) -> None:
        async with asyncio.timeout(30):
            while not self.ended:
                await asyncio.sleep(0.01)
