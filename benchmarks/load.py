"""The load client: N concurrent calls, 50 media frames a second each, timing every echo.

A raw asyncio protocol with prebuilt frames (masked with a zero key, which RFC 6455 allows),
parsing what comes back just enough to time echoes and echo marks: as little Python per frame
as a client can do, so that up to its knee the server is what is measured. It measures its own
cost too (CPU per frame pair, and how far its 1 ms ticks ran late), so that a load generator
can be compared with it, and so a point where the client itself ran out of CPU can be told.

Each call sends ``connected``, ``start``, then 50 ``media`` frames per second, the calls
spread over 20 phase slots 1 ms apart; it echoes every ``mark`` at once, as Twilio does when
its buffer is empty. The send time goes in the first 12 bytes of each payload; the echo
carries it back, so the delay is measured from the frame's send to its echo's arrival.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import sys
import time
from typing import Any

HOST = "127.0.0.1"
SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
MAX_CALLS = 4000
MAX_SECS = 60.0
CLIENT_BOUND_CPU_PCT = 90.0  # above this share of its core the client may be the limit
CLIENT_BOUND_RATE_PCT = 95.0  # below this share of the planned send rate it was the limit


def _mask(text: bytes) -> bytes:
    # Client frames must be masked; a zero key (RFC 6455 allows any) keeps the bytes as they are.
    n = len(text)
    if n < 126:
        return bytes([0x81, 0x80 | n]) + b"\0\0\0\0" + text
    return bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big") + b"\0\0\0\0" + text


HANDSHAKE = (
    f"GET /media-stream HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()
OPENING = _mask(b'{"event":"connected","protocol":"Call","version":"1.0.0"}') + _mask(
    json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": SID,
            "start": {
                "accountSid": "AC" + "0" * 32,
                "streamSid": SID,
                "callSid": "CA" + "0" * 32,
                "tracks": ["inbound"],
                "customParameters": {},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        },
        separators=(",", ":"),
    ).encode()
)
_REST_B64 = base64.b64encode(bytes((i * 37) & 0x7F for i in range(148)))
_PRE = (
    '{"event":"media","sequenceNumber":"2","streamSid":"' + SID + '","media":{"track":"inbound",'
    '"chunk":"1","timestamp":"20","payload":"'
).encode()
_POST = b'"}}'
_PAYLOAD_KEY = b'"payload":'
_NAME_KEY = b'"name":"'


def media_frame(now_ns: int) -> bytes:
    """An inbound media frame whose payload starts with the send time (12 bytes, 16 chars)."""
    stamp = base64.b64encode(now_ns.to_bytes(12, "big"))
    return _mask(_PRE + stamp + _REST_B64 + _POST)


def mark_echo(name: bytes) -> bytes:
    return _mask(
        b'{"event":"mark","sequenceNumber":"3","streamSid":"'
        + SID.encode()
        + b'","mark":{"name":"'
        + name
        + b'"}}'
    )


class Call(asyncio.Protocol):
    """One call: the handshake, then frames parsed just enough to time echoes and echo marks."""

    delays_ns: list[int]
    window_end_ns = 1 << 62

    def __init__(self, ready: asyncio.Future[None]) -> None:
        self.ready = ready
        self.buffer = b""
        self.up = False
        self.echoes = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(HANDSHAKE)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.up:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                self.ready.set_exception(RuntimeError(head[:200].decode(errors="replace")))
                return
            self.up, self.buffer = True, rest
            assert self.transport is not None
            self.transport.write(OPENING)
            self.ready.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buffer, offset, now = self.buffer, 0, time.monotonic_ns()
        while len(buffer) - offset >= 2:
            length = buffer[offset + 1] & 0x7F
            head = 2
            if length == 126:
                if len(buffer) - offset < 4:
                    break
                length, head = int.from_bytes(buffer[offset + 2 : offset + 4], "big"), 4
            elif length == 127:
                if len(buffer) - offset < 10:
                    break
                length, head = int.from_bytes(buffer[offset + 2 : offset + 10], "big"), 10
            if len(buffer) - offset < head + length:
                break
            self._frame(buffer[offset + head : offset + head + length], now)
            offset += head + length
        self.buffer = buffer[offset:]

    def _frame(self, text: bytes, now: int) -> None:
        head = text[:24]
        if b'"media"' in head:
            i = text.find(_PAYLOAD_KEY) + len(_PAYLOAD_KEY)
            i = text.index(b'"', i) + 1  # json.dumps may put a space after the colon
            sent = int.from_bytes(base64.b64decode(text[i : i + 16]), "big")
            if now <= Call.window_end_ns:
                self.echoes += 1
                Call.delays_ns.append(now - sent)
        elif b'"mark"' in head:
            i = text.find(_NAME_KEY) + len(_NAME_KEY)
            assert self.transport is not None
            self.transport.write(mark_echo(text[i : text.index(b'"', i)]))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(str(exc)))


def runqueue_wait_s(pid: int | str) -> float:
    """Seconds the process's main thread was ready to run but waited for a core.

    On a shared machine this is the time other processes took from it: a server that waits
    a lot falls behind for want of a core, not of speed.
    """
    try:
        with open(f"/proc/{pid}/schedstat") as file:
            return int(file.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_load(port: int, calls: int, secs: float, server_pid: int) -> dict[str, Any]:
    """Open ``calls`` calls, send 50 frames/s on each for ``secs``, measure the echoes."""
    assert 0 < calls <= MAX_CALLS and 0 < secs <= MAX_SECS
    loop = asyncio.get_running_loop()
    Call.delays_ns, Call.window_end_ns = [], 1 << 62  # a fresh window for each run
    protocols: list[Call] = []
    for first in range(0, calls, 50):
        waiting = []
        for _ in range(min(50, calls - first)):
            ready: asyncio.Future[None] = loop.create_future()
            _, protocol = await loop.create_connection(lambda r=ready: Call(r), HOST, port)  # type: ignore[misc]
            protocols.append(protocol)
            waiting.append(ready)
        await asyncio.wait_for(asyncio.gather(*waiting), 30)
    await asyncio.sleep(0.5)
    slots = [[p.transport for p in protocols[s::20]] for s in range(20)]
    cpu0, client0 = proc_cpu_s(server_pid), time.process_time()
    wait0, client_wait0 = runqueue_wait_s(server_pid), runqueue_wait_s("self")
    start = time.monotonic()
    sent, max_behind_ms = 0, 0.0
    for tick in range(int(secs * 1000)):
        target = start + tick / 1000
        now = time.monotonic()
        if target > now:
            await asyncio.sleep(target - now)
        else:
            max_behind_ms = max(max_behind_ms, (now - target) * 1000)
        frame = media_frame(time.monotonic_ns())
        for transport in slots[tick % 20]:
            assert transport is not None
            transport.write(frame)
        sent += len(slots[tick % 20])
        if tick % 20 == 19:
            await asyncio.sleep(0)
    elapsed = time.monotonic() - start
    cpu1, client1 = proc_cpu_s(server_pid), time.process_time()
    wait1, client_wait1 = runqueue_wait_s(server_pid), runqueue_wait_s("self")
    Call.window_end_ns = time.monotonic_ns() + 100_000_000  # echoes in flight: 100 ms grace
    await asyncio.sleep(0.1)
    delays = sorted(Call.delays_ns)
    for protocol in protocols:
        assert protocol.transport is not None
        protocol.transport.close()

    def quantile(q: float) -> float | None:
        return (
            round(delays[min(len(delays) - 1, int(q * len(delays)))] / 1e6, 2) if delays else None
        )

    server_cpu_s, client_cpu_s = cpu1 - cpu0, client1 - client0
    client_cpu_pct = round(100 * client_cpu_s / elapsed, 1)
    return {
        "calls": calls,
        "sent": sent,
        "echoed_pct": round(100 * len(delays) / max(sent, 1), 2),
        "server_cpu_pct": round(100 * server_cpu_s / elapsed, 1),
        "server_cpu_pct_per_call": round(100 * server_cpu_s / elapsed / calls, 3),
        # Per frame echoed, not sent: a saturated server echoes fewer than were sent.
        "us_per_frame_pair": round(1e6 * server_cpu_s / max(len(delays), 1), 1),
        "delay_p50_ms": quantile(0.5),
        "delay_p99_ms": quantile(0.99),
        # Time ready to run but waiting for the core, as a share of the window: what the
        # machine's other processes took. High, and the lag figures say more about them.
        "server_wait_pct": round(100 * (wait1 - wait0) / elapsed, 1),
        "client_wait_pct": round(100 * (client_wait1 - client_wait0) / elapsed, 1),
        "client_cpu_pct": client_cpu_pct,
        # The client's own CPU per frame pair: one frame written, its echo read and timed.
        "client_us_per_frame_pair": round(1e6 * client_cpu_s / max(sent, 1), 1),
        "client_max_behind_ms": round(max_behind_ms, 1),
        # The frames went out over `elapsed` instead of `secs`: the client (or its core, on a
        # shared machine) could not keep the rate, and the server saw fewer calls than N.
        "send_rate_pct": round(100 * secs / elapsed, 1),
        "client_bound": client_cpu_pct >= CLIENT_BOUND_CPU_PCT
        or 100 * secs / elapsed < CLIENT_BOUND_RATE_PCT,
    }


def main(argv: list[str]) -> None:
    """``python -m benchmarks.load PORT CALLS SECS SERVER_PID``: one point, as JSON."""
    port, calls, secs, pid = argv
    print(json.dumps(asyncio.run(run_load(int(port), int(calls), float(secs), int(pid)))))


if __name__ == "__main__":
    main(sys.argv[1:])
