"""The failure cases every adapter is tested with: a crash in the app, a reader that dies."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from fake_twilio import TwilioClient

MARKER = "kill-the-reader"


def kill_reader_on_marker(transport_class: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make reading a marked frame raise, as a parser bug would: ``transport_class.receive``,
    and the protocol's ``receive()`` (which reads frames a push transport hands over)."""
    from mediastreams.protocol import AppProtocol

    receive = transport_class.receive
    read = AppProtocol.receive

    def read_or_die(self: AppProtocol, frame: str | bytes) -> Any:
        if isinstance(frame, str) and MARKER in frame:
            raise RecursionError("maximum recursion depth exceeded while decoding")
        return read(self, frame)

    monkeypatch.setattr(AppProtocol, "receive", read_or_die)

    async def receive_or_die(self: Any) -> str | bytes | None:
        frame = await receive(self)
        if isinstance(frame, str) and MARKER in frame:
            raise RecursionError("maximum recursion depth exceeded while decoding")
        return frame  # type: ignore[no-any-return]

    monkeypatch.setattr(transport_class, "receive", receive_or_die)


class ReaderDies:
    """The app's side: a long play, then ``async for`` until the stream ends.

    ``run`` records how the stream ended; ``wait`` returns once it did.
    """

    def __init__(self) -> None:
        self.ended: list[tuple[str | None, int | None, Any]] = []

    async def run(self, stream: Any) -> None:
        handle = stream.play(b"\x01" * 80_000)
        async for _ in stream:
            pass
        await stream.wait_closed()
        self.ended.append((stream.end_reason, stream.close_code, (await handle).outcome))

    async def wait(self) -> None:
        async with asyncio.timeout(30):
            while not self.ended:
                await asyncio.sleep(0.01)


async def call_and_kill_reader(url: str) -> TwilioClient:
    """Place a call, hear a little, then send the frame that kills the app's reader."""
    async with TwilioClient(url) as twilio:
        await twilio.open()
        await twilio.run_until(lambda: len(twilio.heard) >= 320)
        await twilio.send_raw('{"event":"' + MARKER + '"}')
        await asyncio.wait_for(twilio.closed.wait(), 30)
    return twilio


async def call_and_see_it_crash(url: str) -> TwilioClient:
    """Place a call to an app that raises; return once the app closed the socket."""
    async with TwilioClient(url) as twilio:
        await twilio.open()
        await asyncio.wait_for(twilio.closed.wait(), 30)
    return twilio


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The log records that carry a traceback."""
    return [r for r in caplog.records if r.exc_info]
