"""Calls per core: one server process carrying N concurrent bidirectional calls.

Run: ``uv run python -m benchmarks.server [--secs 5] [--calls 100,250,500,1000]
[--stacks mediastreams-picows,plain-starlette]``

Each call sends ``connected``, ``start``, then 50 ``media`` frames per second; the server runs
``mediastreams serve --echo`` (the session plays the caller's audio back, with its marks),
and the load client echoes every mark at once, as Twilio does when its buffer is empty. The
same load runs against a plain Starlette endpoint on uvicorn that does ``json.loads`` and
sends a hand-built dict back (no session, no marks), side by side in the same run.

Method (as in the research notes, section 5): the server is pinned to CPU 0, the load client
to CPU 1; loopback only; connections spread over 20 phase slots 1 ms apart; N and seconds are
bounded and every child process is stopped. The client writes the send time into the first
12 bytes of each payload; the echo carries it back, so the delay is measured from the frame's
send to its echo's arrival at the client. Server CPU comes from ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from benchmarks.harness import Row

HOST = "127.0.0.1"
SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
STACKS = [
    "mediastreams-picows",
    "mediastreams-websockets",
    "mediastreams-uvicorn",
    "plain-starlette",
]
FASTEST = "mediastreams-picows"  # the backend the 500-call target is for

# --- the servers (run in a child process) ----------------------------------------------------


def run_server(stack: str, port: int) -> None:
    """Serve ``stack`` on ``port`` until SIGTERM."""
    if stack == "plain-starlette":
        _run_plain(port)
        return
    from mediastreams.server import ServerConfig, bind, echo_handler, serve

    backend = stack.removeprefix("mediastreams-")
    sock = bind(HOST, port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await serve(ServerConfig(handler=echo_handler), sock, backend=backend, stop=stop)  # type: ignore[arg-type]

    asyncio.run(main())


def _run_plain(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                frame = json.loads(await websocket.receive_text())
                if frame["event"] == "media":
                    reply = {
                        "event": "media",
                        "streamSid": frame["streamSid"],
                        "media": {"payload": frame["media"]["payload"]},
                    }
                    await websocket.send_text(json.dumps(reply))
        except WebSocketDisconnect:
            pass

    app = Starlette(routes=[WebSocketRoute("/media-stream", endpoint)])
    uvicorn.run(
        app,
        host=HOST,
        port=port,
        ws="websockets-sansio",
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=2048,
        ws_max_size=64 * 1024,
    )


# --- the load client (run in a child process) ------------------------------------------------


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


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_load(port: int, calls: int, secs: float, server_pid: int) -> dict[str, Any]:
    """Open ``calls`` calls, send 50 frames/s on each for ``secs``, measure the echoes."""
    assert 0 < calls <= 2000 and 0 < secs <= 30
    loop = asyncio.get_running_loop()
    Call.delays_ns = []
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
    cpu0, client0 = _proc_cpu_s(server_pid), time.process_time()
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
    cpu1, client1 = _proc_cpu_s(server_pid), time.process_time()
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

    server_cpu_s = cpu1 - cpu0
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
        "client_cpu_pct": round(100 * (client1 - client0) / elapsed, 1),
        "client_max_behind_ms": round(max_behind_ms, 1),
    }


# --- the runner ------------------------------------------------------------------------------


def _wait_port(port: int, timeout_s: float = 15) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return True
        time.sleep(0.1)
    return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _pinned(cpu: int) -> Any:
    cpus = os.sched_getaffinity(0)
    return (lambda: os.sched_setaffinity(0, {cpu})) if cpu in cpus and len(cpus) > 1 else None


def measure(stack: str, calls: int, secs: float) -> dict[str, Any]:
    """One point: a fresh server for ``stack`` on CPU 0, the load on CPU 1."""
    port = _free_port()
    command = [sys.executable, "-m", "benchmarks.server", "--serve", stack, "--port", str(port)]
    server = subprocess.Popen(
        command, preexec_fn=_pinned(0), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        if not _wait_port(port):
            raise RuntimeError(f"{stack} did not start")
        load = [
            sys.executable,
            "-m",
            "benchmarks.server",
            "--load",
            str(port),
            str(calls),
            str(secs),
            str(server.pid),
        ]
        result = subprocess.run(
            load, preexec_fn=_pinned(1), capture_output=True, text=True, timeout=secs + 90
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-800:])
        return dict(json.loads(result.stdout.strip().splitlines()[-1]))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _cell(result: dict[str, Any]) -> str:
    if "error" in result:
        return "failed: " + result["error"][:60]
    return (
        f"{result['server_cpu_pct']}% · {result['us_per_frame_pair']} µs · "
        f"p50 {result['delay_p50_ms']} / p99 {result['delay_p99_ms']} ms · "
        f"{result['echoed_pct']}%"
    )


def main(argv: list[str] | None = None) -> list[Row]:
    """Measure every stack at every N; print the table and return the rows for the runner."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--secs", type=float, default=5.0)
    parser.add_argument("--calls", default="100,250,500,1000")
    parser.add_argument("--stacks", default=",".join(STACKS))
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else [])
    if args.serve:
        run_server(args.serve, args.port)
        return []
    if args.load:
        port, calls, secs, pid = args.load
        print(json.dumps(asyncio.run(run_load(int(port), int(calls), float(secs), int(pid)))))
        return []
    levels = [int(n) for n in args.calls.split(",")]
    stacks = args.stacks.split(",")
    print(f"\n### Echo calls on one core ({args.secs:g} s per point)\n")
    print(
        "Each cell: server CPU (% of one core) · server CPU µs per inbound+outbound frame pair"
        " · delay from a frame's send to its echo (p50 / p99) · % of frames echoed in the window\n"
    )
    print("| stack | " + " | ".join(f"N={n}" for n in levels) + " |")
    print("|---|" + "---|" * len(levels))
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for stack in stacks:
        cells = []
        for calls in levels:
            try:
                result = measure(stack, calls, args.secs)
            except Exception as error:  # report and go on with the next point
                result = {"error": str(error)}
            results[stack, calls] = result
            print(json.dumps({"stack": stack, **result}), file=sys.stderr)
            cells.append(_cell(result))
        print(f"| {stack} | " + " | ".join(cells) + " |", flush=True)
    return _rows(results, stacks, levels)


def _rows(
    results: dict[tuple[str, int], dict[str, Any]], stacks: list[str], levels: list[int]
) -> list[Row]:
    """Each mediastreams backend at each N against the plain endpoint at the same N.

    Four figures a point: server CPU (% of one core, and per frame pair), the median delay
    from a frame's send to its echo, and the share of frames echoed in the window. A failed
    point is left out.
    """
    rows = []
    for stack in stacks:
        if stack == "plain-starlette":
            continue
        fastest = stack == FASTEST
        for calls in levels:
            mine, plain = results[stack, calls], results.get(("plain-starlette", calls), {})
            if "error" in mine:
                continue
            at_target = fastest and calls == 500
            rows += [
                Row(
                    f"{stack} N={calls}: server CPU, % of one core",
                    mine["server_cpu_pct"],
                    plain.get("server_cpu_pct"),
                    "%",
                    "plain Starlette",
                ),
                Row(
                    f"{stack} N={calls}: server CPU per frame pair",
                    mine["us_per_frame_pair"],
                    plain.get("us_per_frame_pair"),
                    "µs",
                    "plain Starlette",
                ),
                Row(
                    f"{stack} N={calls}: p50 frame lag",
                    mine["delay_p50_ms"],
                    plain.get("delay_p50_ms"),
                    "ms",
                    "plain Starlette",
                    target="<= 5 ms" if at_target else "",
                ),
                Row(
                    f"{stack} N={calls}: frames echoed in the window",
                    mine["echoed_pct"],
                    plain.get("echoed_pct"),
                    "%",
                    "plain Starlette",
                    "higher",
                    target=">= 99%" if at_target else "",
                ),
            ]
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
