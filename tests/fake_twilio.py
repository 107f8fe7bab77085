"""Twilio's side of an in-memory stream, driven step by step by the session tests."""

from __future__ import annotations

import asyncio

from mediastreams.adapters.memory import MemoryTransport
from mediastreams.protocol import TwilioProtocol


async def settle(rounds: int = 20) -> None:
    """Let every ready task run (in-memory queues need no real time)."""
    for _ in range(rounds):
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

    async def play_all(self, frame_bytes: int = 160, max_frames: int = 100_000) -> None:
        """Play frames until the app has nothing more buffered or pending."""
        for _ in range(max_frames):
            await self.take()
            if not self.protocol.buffered_bytes and not self.protocol.pending_marks:
                return
            await self.play(frame_bytes)
        raise AssertionError("the app kept sending")
