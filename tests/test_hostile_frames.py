"""Hostile frames against real servers on every backend: each is refused with our own error
and ignored, the stream goes on, nothing is logged as a crash, and once the peer leaves
``/healthz`` is back to 0.

These are the frames that broke a stream before the parser was bounded: a 2 KB frame nested
1,000 deep (a ``RecursionError`` that killed the reader), duplicate keys, a lone surrogate,
non-ASCII digits in a counter, and 5,000 unknown keys (quadratic diagnostics). Each stays
under the 64 KiB frame limit, which ends a stream by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from fake_twilio import TwilioClient
from mediastreams.server import BACKENDS, ServerConfig, echo_handler
from test_server_failures import health, no_streams, running

from helpers import frame

SID = "MZ0123456789abcdef0123456789abcdef"

HOSTILE = {
    "nested": '{"event":"media","x":' + "[" * 1000 + "]" * 1000 + "}",
    "duplicate-event": '{"event":"media","event":"clear","streamSid":"MZ1"}',
    "lone-surrogate": '{"event":"clear","streamSid":"\\ud800"}',
    "arabic-digit": frame(
        event="media",
        sequenceNumber="\u0663",
        streamSid=SID,
        media={"track": "inbound", "chunk": "1", "timestamp": "20", "payload": "/w=="},
    ),
    "unknown-keys": '{"event":"media",' + ",".join(f'"k{n}":1' for n in range(5000)) + "}",  # 44 KB
}


async def echoed_after(twilio: TwilioClient, count: int) -> None:
    """Send caller audio until ``count`` bytes more have come back: the stream still works."""
    target = len(twilio.heard) + count
    async with asyncio.timeout(30):
        while len(twilio.heard) < target:
            twilio.protocol.send_media(b"\x10" * 160)
            await twilio.flush()
            await twilio.tick()
            await asyncio.sleep(0.02)


@pytest.mark.anyio
@pytest.mark.parametrize("backend", BACKENDS)
async def test_hostile_frames_are_ignored_and_the_stream_goes_on(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running(ServerConfig(handler=echo_handler), backend) as port:
        async with TwilioClient(f"ws://127.0.0.1:{port}/media-stream") as twilio:
            await twilio.open()
            await echoed_after(twilio, 320)
            for text in HOSTILE.values():
                started = time.process_time()
                await twilio.send_raw(text)
                assert time.process_time() - started < 5  # generous: the client's own work
            await echoed_after(twilio, 320)
            assert not twilio.closed.is_set()
            assert await health(port) == 1
        await no_streams(port)
    assert not [r for r in caplog.records if r.exc_info], "a hostile frame made a traceback"
    ignored = [r.getMessage() for r in caplog.records if "ignored a frame" in r.getMessage()]
    assert ignored, "the server said nothing about the frames it ignored"
    assert all(len(message) < 2000 for message in ignored)  # no frame copied whole to the log
