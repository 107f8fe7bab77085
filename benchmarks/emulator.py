"""A 60 s emulated call in virtual time, in process: how long it takes on this machine.

The app is a Starlette WebSocket endpoint that reads every frame, answers each second of
caller audio with a second of its own plus a mark, as a voice agent would. The caller speaks
for 3 s, keeps quiet, presses a key and hangs up at 60 s: 3,000 inbound frames, 60 replies.
The baseline is the call's own length: the time a real-time emulator needs. The same call is
also placed 100 times at once (one event loop, one app).

Run: ``uv run python -m benchmarks.emulator``.
"""

from __future__ import annotations

import base64
import json
import statistics
import time

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from mediastreams.emulator import Audio, Hangup, Press, place_call, place_calls

from benchmarks.harness import Row, cpu_time_call, print_table

CALL_S = 60
_REPLY = base64.b64encode(b"\x10\x90" * 4000).decode()


async def _agent(websocket: WebSocket) -> None:
    await websocket.accept()
    sid, frames = "", 0
    try:
        while True:
            frame = json.loads(await websocket.receive_text())
            if frame["event"] == "start":
                sid = frame["streamSid"]
            elif frame["event"] == "media":
                frames += 1
                if frames % 50 == 0:
                    reply = {"event": "media", "streamSid": sid, "media": {"payload": _REPLY}}
                    await websocket.send_text(json.dumps(reply))
                    mark = {"event": "mark", "streamSid": sid, "mark": {"name": f"r{frames}"}}
                    await websocket.send_text(json.dumps(mark))
            elif frame["event"] == "stop":
                return
    except WebSocketDisconnect:
        return


APP = Starlette(routes=[WebSocketRoute("/media-stream", _agent)])
STEPS = [
    Audio(b"\x10\x90" * 12000, raw_mulaw=True),
    Press("1", at_ms=10_000),
    Hangup(at_ms=CALL_S * 1000),
]


def one_call() -> None:
    """Place the benchmark's call once and check that it ran to the end."""
    result = place_call(APP, STEPS)
    assert result.report.duration_ms == CALL_S * 1000, result.report.duration_ms
    assert result.report.findings == [], result.report.findings


CONCURRENT = 100


def concurrent_calls() -> None:
    """The same call, placed 100 times at once against the one app."""
    results = place_calls(APP, STEPS, calls=CONCURRENT)
    assert all(r.report.duration_ms == CALL_S * 1000 for r in results)


def main() -> list[Row]:
    """Time the call (wall and CPU) and print the table."""
    one_call()  # warm-up: imports, tables
    walls = []
    for _ in range(5):
        started = time.perf_counter()
        one_call()
        walls.append(time.perf_counter() - started)
    wall = statistics.median(walls)
    cpu = cpu_time_call(one_call)
    started = time.perf_counter()
    concurrent_calls()
    many_wall = time.perf_counter() - started
    rows = [
        Row(
            f"{CALL_S} s call, virtual time, wall",
            wall,
            float(CALL_S),
            "s",
            "real time",
            target="< 1 s",
        ),
        Row(f"{CALL_S} s call, virtual time, CPU", cpu, float(CALL_S), "s", "real time"),
        Row(
            f"{CONCURRENT} concurrent {CALL_S} s calls, virtual time, wall",
            many_wall,
            float(CALL_S),
            "s",
            "real time",
        ),
        Row(
            "per 20 ms frame (both ways), wall",
            wall / (CALL_S * 50) * 1e6,
            None,
            "µs",
        ),
    ]
    print_table("Emulator: a scripted call against an in-process ASGI app", rows)
    return rows


if __name__ == "__main__":
    main()
