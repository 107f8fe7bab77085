"""Server CPU per frame pair in lockstep: repeatable counts for optimising the hot path.

The server benchmark (:mod:`benchmarks.server`) measures real servers under real load, on a
shared machine whose speed moves from one minute to the next. This one trades realism for
repeatability: the server (the floor, or ``mediastreams serve --echo`` on picows, on asyncio's
transports or on aiofastnet's) runs in this process, on real loopback sockets, and the client
is driven in lockstep from inside the event loop's selector: whenever the server has nothing
left to do, the client reads every echo, answers the marks and writes one media frame on
every call, and the server runs again.
Each server turn thus sees the same frames in the same order every run, so its work is the
same every run:

- ``--cpu``: the server's CPU time per frame pair (``time.thread_time`` with the client's
  turns taken out), for interleaved runs of each stack;
- ``--callgrind``: the server's instructions per frame pair, counted by valgrind's callgrind
  with collection on only during server turns: the same count whatever else the machine does
  (within a fraction of a per cent), so a change worth 1% shows.

Only servers that have written every echo by the time their loop waits fit this harness (the
floor and picows do; the websockets backend writes some from timers, and stalls it). Neither
counts the kernel's side of the syscalls (callgrind sees user space only; thread time
does count them): the real benchmark's ratio to the floor is the figure of record, these are
for the steps in between. Run::

    uv run python -m benchmarks.lockstep --cpu --calls 100 --ticks 500
    uv run python -m benchmarks.lockstep --callgrind --calls 50 --ticks 200
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import gc
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.load import HANDSHAKE, HOST, OPENING, _mask

STACKS = [
    "raw-asyncio",
    "mediastreams-picows",
    "mediastreams-picows-aiofastnet",
    "raw-asyncio-parsed",  # the floor plus reading each frame (see benchmarks.floor)
]
AIOFASTNET = "-aiofastnet"  # picows on aiofastnet's transports instead of asyncio's
_FRAME = _mask(
    b'{"event":"media","sequenceNumber":"2","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0",'
    b'"media":{"track":"inbound","chunk":"1","timestamp":"20","payload":"'
    + base64.b64encode(bytes(range(96, 256)))
    + b'"}}'
)
_SID = b"MZ18ad3ab5a668481ce02b83e7395059f0"
_NAME_KEY = b'"name":"'


def _mark_echo(name: bytes) -> bytes:
    return _mask(
        b'{"event":"mark","sequenceNumber":"3","streamSid":"'
        + _SID
        + b'","mark":{"name":"'
        + name
        + b'"}}'
    )


# --- callgrind's collection switch -----------------------------------------------------------

_TOGGLE_C = r"""
#include <valgrind/callgrind.h>
void toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
"""


def _toggler() -> Callable[[], None] | None:
    """CALLGRIND_TOGGLE_COLLECT as a function, compiled once (None without gcc or headers)."""
    if not Path("/usr/include/valgrind/callgrind.h").exists() or not shutil.which("gcc"):
        return None
    directory = Path(tempfile.gettempdir()) / "mediastreams-lockstep"
    directory.mkdir(exist_ok=True)
    library = directory / "toggle.so"
    if not library.exists():
        source = directory / "toggle.c"
        source.write_text(_TOGGLE_C)
        subprocess.run(
            ["gcc", "-O1", "-shared", "-fPIC", "-o", str(library), str(source)], check=True
        )
    function = ctypes.CDLL(str(library)).toggle
    function.restype = None
    return function  # type: ignore[no-any-return]


# --- the client ------------------------------------------------------------------------------


class Client:
    """N calls on plain sockets, outside the event loop: written and read only in its turns."""

    def __init__(self, socks: list[socket.socket]) -> None:
        self.socks = socks
        self.buffers = [b""] * len(socks)
        self.pending = [b""] * len(socks)  # mark echoes to send with the next media frame
        self.echoes = 0
        self.marks = 0
        self.outstanding = 0

    def turn(self) -> bool:
        """Read what came back; if every frame of the last tick was echoed, send the next.

        Returns whether a tick went out (the server then has work: the loop must not wait).
        """
        self.read()
        if self.echoes < self.outstanding:
            return False
        for index, sock in enumerate(self.socks):
            sock.send(self.pending[index] + _FRAME)
            self.pending[index] = b""
        self.outstanding += len(self.socks)
        return True

    def read(self) -> None:
        """Read and parse whatever the server sent."""
        for index, sock in enumerate(self.socks):
            self._read(index, sock)

    def _read(self, index: int, sock: socket.socket) -> None:
        data = self.buffers[index]
        while True:
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                break
            if not chunk:
                raise ConnectionError("the server closed a call")
            data += chunk
        offset = 0
        while len(data) - offset >= 2:
            length, head = data[offset + 1] & 0x7F, 2
            if length == 126:
                length, head = int.from_bytes(data[offset + 2 : offset + 4], "big"), 4
            if len(data) - offset < head + length:
                break
            text = data[offset + head : offset + head + length]
            offset += head + length
            if text.startswith(b'{"event":"media"'):
                self.echoes += 1
            elif text.startswith(b'{"event":"mark"'):
                start = text.find(_NAME_KEY) + len(_NAME_KEY)
                self.pending[index] += _mark_echo(text[start : text.index(b'"', start)])
                self.marks += 1
        self.buffers[index] = data[offset:]


async def _connect(port: int, calls: int) -> list[socket.socket]:
    loop = asyncio.get_running_loop()
    socks = []
    for _ in range(calls):
        sock = socket.socket()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, (HOST, port))
        await loop.sock_sendall(sock, HANDSHAKE)
        head = b""
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(sock, 4096)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(head[:200].decode(errors="replace"))
        await loop.sock_sendall(sock, OPENING)
        socks.append(sock)
    await asyncio.sleep(0.5)  # every stream opened and started
    return socks


# --- the lockstep selector -------------------------------------------------------------------


_STALL_S = 30.0


class _Selector(selectors.EpollSelector):
    """Gives the client its turn each time the server would otherwise wait."""

    turn: Callable[[], bool] | None = None

    def select(self, timeout: float | None = None) -> list[Any]:
        if self.turn is None or timeout == 0:
            return super().select(timeout)
        if self.turn():
            return super().select(0)
        events = super().select(_STALL_S if timeout is None else min(timeout, _STALL_S))
        if not events and timeout is None:
            raise RuntimeError(f"the server sent nothing for {_STALL_S:g} s")
        return events


class Meter:
    """Counts the server's part of each run: its thread time, and callgrind's collection."""

    def __init__(self, toggle: Callable[[], None] | None) -> None:
        self.toggle = toggle
        self.server_s = 0.0
        self.on = False
        self._since = 0.0

    def server_on(self) -> None:
        if self.toggle is not None:
            self.toggle()
        self.on = True
        self._since = time.thread_time()

    def server_off(self) -> None:
        self.server_s += time.thread_time() - self._since
        self.on = False
        if self.toggle is not None:
            self.toggle()


async def _serve(stack: str, sock: socket.socket, stop: asyncio.Event) -> None:
    if stack.startswith("raw-asyncio"):
        from benchmarks.floor import serve

        await serve(sock, stop, parsed=stack == "raw-asyncio-parsed")
        return
    from mediastreams.limits import Limits
    from mediastreams.server import ServerConfig, echo_handler
    from mediastreams.server import serve as serve_ms

    # Long deadlines: a run under valgrind is slow, and no timer should fire in the window.
    limits = Limits(
        idle_timeout_s=3600, send_timeout_s=3600, ping_interval_s=3600, ping_timeout_s=3600
    )
    config = ServerConfig(handler=echo_handler, limits=limits)
    if stack.endswith(AIOFASTNET):
        import mediastreams.server.picows

        # The server turns aiofastnet off (its accept loop spins when descriptors run out);
        # here it is measured on, to know what that costs.
        mediastreams.server.picows._without_aiofastnet = lambda _: {}  # type: ignore[attr-defined]
        stack = stack.removesuffix(AIOFASTNET)
    backend = stack.removeprefix("mediastreams-")
    await serve_ms(config, sock, backend=backend, stop=stop)  # type: ignore[arg-type]


async def run(stack: str, calls: int, ticks: int, warmup: int, meter: Meter) -> dict[str, Any]:
    """One run: ``warmup`` ticks, then ``ticks`` measured; the server's share of them."""
    loop = asyncio.get_running_loop()
    selector = loop._selector  # type: ignore[attr-defined]
    assert isinstance(selector, _Selector)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(2048)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    stop = asyncio.Event()
    server = asyncio.create_task(_serve(stack, listener, stop))
    socks = await _connect(port, calls)
    client = Client(socks)
    done = loop.create_future()
    sent = 0

    def turn() -> bool:
        nonlocal sent
        if meter.on:
            meter.server_off()
        if sent == warmup + ticks:
            client.read()
            if client.echoes >= client.outstanding:
                done.set_result(None)
                return True  # its callbacks are ready: the loop must not wait
            meter.server_on()
            return False
        went = client.turn()
        sent += went
        if sent > warmup:
            meter.server_on()  # from the first measured tick's frames on
        return went

    selector.turn = turn
    try:
        await done
    finally:
        selector.turn = None
    for sock in socks:
        sock.close()
    stop.set()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(server, 30)
    pairs = calls * ticks
    return {
        "stack": stack,
        "calls": calls,
        "ticks": ticks,
        "marks_per_pair": round(client.marks / max(client.echoes, 1), 3),
        "us_per_pair": round(1e6 * meter.server_s / pairs, 2),
    }


def _child(stack: str, calls: int, ticks: int, warmup: int, callgrind: bool) -> dict[str, Any]:
    meter = Meter(_toggler() if callgrind else None)
    loop = asyncio.SelectorEventLoop(_Selector())
    try:
        gc.collect()
        return loop.run_until_complete(run(stack, calls, ticks, warmup, meter))
    finally:
        loop.close()


# --- the commands ----------------------------------------------------------------------------


def _spawn(args: list[str], valgrind: list[str] | None = None) -> dict[str, Any]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    command = [*(valgrind or []), sys.executable, "-m", "benchmarks.lockstep", "--child", *args]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def cpu(stacks: list[str], calls: int, ticks: int, warmup: int, rounds: int) -> None:
    """Interleaved runs of each stack; thread CPU per pair, median, and ratio to the floor."""
    figures: dict[str, list[float]] = {s: [] for s in stacks}
    for index in range(rounds):
        for stack in stacks if index % 2 == 0 else stacks[::-1]:
            result = _spawn([stack, str(calls), str(ticks), str(warmup)])
            figures[stack].append(result["us_per_pair"])
            print(json.dumps(result), file=sys.stderr, flush=True)
    floor = statistics.median(figures["raw-asyncio"]) if "raw-asyncio" in figures else None
    print(f"\n| stack | µs per pair (median of {rounds}) | runs | / floor |\n|---|---|---|---|")
    for stack, values in figures.items():
        median = statistics.median(values)
        ratio = f"{median / floor:.2f}x" if floor else "-"
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {stack} | {median:.2f} | {runs} | {ratio} |")


def instructions(stack: str, calls: int, ticks: int, warmup: int) -> dict[str, Any]:
    """Instructions callgrind counted in the server's turns of the measured window."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "callgrind.out"
        valgrind = [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            f"--callgrind-out-file={out}",
        ]
        result = _spawn([stack, str(calls), str(ticks), str(warmup), "--callgrind"], valgrind)
        total = 0
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
                break
    result["instructions_per_pair"] = round(total / (calls * ticks))
    del result["us_per_pair"]  # thread time under valgrind means nothing
    return result


_FLOORS = {"raw-asyncio": "floor", "raw-asyncio-parsed": "parsed floor"}


def _ratios(n: int, stack: str, counts: dict[str, int]) -> str:
    """`` (1.67x floor, 1.20x parsed floor)``: ``n`` against the floors counted so far."""
    ratios = [
        f"{n / counts[floor]:.2f}x {name}"
        for floor, name in _FLOORS.items()
        if floor in counts and stack not in (floor, "raw-asyncio")
    ]
    return f" ({', '.join(ratios)})" if ratios else ""


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lockstep", description=__doc__)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=500, help="measured ticks (frames a call)")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="runs of each stack, with --cpu")
    parser.add_argument("--stacks", default=",".join(STACKS[:2]))
    parser.add_argument("--cpu", action="store_true", help="thread CPU per pair")
    parser.add_argument("--callgrind", action="store_true", help="instructions per pair")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        stack, calls, ticks, warmup = args.child
        print(json.dumps(_child(stack, int(calls), int(ticks), int(warmup), args.callgrind)))
        return
    stacks = [s for s in args.stacks.split(",") if s]
    if args.callgrind:
        print("| stack | instructions per pair | marks per pair |\n|---|---|---|")
        counts: dict[str, int] = {}
        for stack in stacks:
            result = instructions(stack, args.calls, args.ticks, args.warmup)
            n = counts[stack] = result["instructions_per_pair"]
            row = f"| {stack} | {n:,}{_ratios(n, stack, counts)} | {result['marks_per_pair']} |"
            print(row, flush=True)  # each stack takes minutes under valgrind
    if args.cpu or not args.callgrind:
        cpu(stacks, args.calls, args.ticks, args.warmup, args.rounds)


if __name__ == "__main__":
    main(sys.argv[1:])
