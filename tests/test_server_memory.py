"""Memory per connection is bounded: a flood of 64 KB media frames with no mark echoes, sent to
``mediastreams serve --echo`` on every backend, measured through the server process's own RSS.

Before the bounds, this flood grew the server by 1.5 to 1.9 GiB in 10 s on every backend
(the echo's play buffer and the picows adapter's queue grew with every frame). The bound
asserted here is generous on purpose (the figures measured are in docs/server.md).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from mediastreams.protocol import TwilioProtocol
from mediastreams.server import BACKENDS
from waiting import DEADLINE_S

MAX_GROWTH_MIB = 150
"""The bound asserted on the server's peak RSS growth during the flood."""
FLOOD_BYTES = 400 * 1024 * 1024  # with no bound, the echo alone would keep ~300 MiB of it
FLOOD_SECONDS = 10.0  # whichever comes first
PAYLOAD_BYTES = 48_000  # base64: 64,000 characters, a frame just under the 64 KiB limit


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` figure (``VmRSS``, ``VmHWM``) in KiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    assert match, text
    return int(match.group(1))


@pytest.fixture
def echo_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """``mediastreams serve --echo`` on a free port, in its own process: (pid, port)."""
    backend = request.param
    log = tmp_path / "server.log"
    command = [sys.executable, "-m", "mediastreams", "serve", "--echo", "--backend", backend]
    command += ["--port", "0", "--log-level", "warning"]
    with log.open("wb") as stderr:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(rb"http://127\.0\.0\.1:(\d+)/", log.read_bytes())):
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start in 30 s"
            time.sleep(0.05)
        yield server.pid, int(found.group(1))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert server.returncode == 0, log.read_text()
    assert b"Traceback" not in log.read_bytes()


async def flood(port: int, pid: int) -> dict[str, float]:
    """Open a call, then send 64 KB media frames as fast as the server takes them."""
    from websockets.asyncio.client import connect

    twilio = TwilioProtocol()
    twilio.send_connected()
    twilio.send_start()
    url = f"ws://127.0.0.1:{port}/media-stream"
    async with connect(url, compression=None, max_size=None, open_timeout=30) as ws:
        for frame in twilio.data_to_send():
            await ws.send(frame)
        for _ in range(10):  # a normal start: small frames, until the echo comes back
            twilio.send_media(b"\xff" * 160)
        for frame in twilio.data_to_send():
            await ws.send(frame)
        async with asyncio.timeout(30):
            while '"event":"media"' not in await ws.recv():
                pass
        # Read (and drop) what the app sends, as Twilio does, but never echo a mark.
        reader = asyncio.create_task(drain(ws))
        before_kib = status_kib(pid, "VmRSS")
        payload = base64.b64encode(os.urandom(PAYLOAD_BYTES)).decode()
        sid = twilio.stream_sid
        sent = 0
        number = 100
        started = time.monotonic()
        while sent < FLOOD_BYTES and time.monotonic() - started < FLOOD_SECONDS:
            number += 1
            frame = json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": str(number),
                    "streamSid": sid,
                    "media": {
                        "track": "inbound",
                        "chunk": str(number),
                        "timestamp": str(number * 20),
                        "payload": payload,
                    },
                }
            )
            await ws.send(frame)
            sent += len(frame)
        seconds = time.monotonic() - started
        peak_kib = status_kib(pid, "VmHWM")
        after_kib = status_kib(pid, "VmRSS")
        await ws.close()  # still reading: the close handshake needs the server's reply
        await reader
    return {
        "sent_mib": sent / 2**20,
        "seconds": seconds,
        "before_mib": before_kib / 1024,
        "peak_growth_mib": (peak_kib - before_kib) / 1024,
        "after_growth_mib": (after_kib - before_kib) / 1024,
    }


async def drain(ws: Any) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


async def no_streams(port: int) -> None:
    async with asyncio.timeout(30), httpx.AsyncClient(timeout=DEADLINE_S) as client:
        while (await client.get(f"http://127.0.0.1:{port}/healthz")).json()["streams"]:
            await asyncio.sleep(0.05)


@pytest.mark.anyio
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/<pid>/status")
@pytest.mark.parametrize("echo_server", BACKENDS, indirect=True)
async def test_a_media_flood_keeps_the_server_within_its_bounds(
    echo_server: tuple[int, int],
) -> None:
    pid, port = echo_server
    figures = await flood(port, pid)
    print(" ".join(f"{name}={value:.1f}" for name, value in figures.items()))  # -s to see
    assert figures["sent_mib"] >= 50  # a flood, not a trickle
    assert figures["peak_growth_mib"] < MAX_GROWTH_MIB, figures
    await no_streams(port)  # and the stream ended with the socket
