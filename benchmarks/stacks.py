"""The servers the server benchmark compares, each run in a child process of its own.

- ``raw-asyncio``: the floor (:mod:`benchmarks.floor`), a bare asyncio protocol;
- ``mediastreams-<backend>``: ``mediastreams serve --echo`` on picows, websockets or uvicorn
  (the session plays the caller's audio back, with its marks and pacing);
- ``plain-starlette``: a plain Starlette endpoint on uvicorn that does ``json.loads`` and
  sends a hand-built dict back (no session, no marks): what an app written without
  mediastreams would do.

Run one: ``uv run python -m benchmarks.stacks STACK PORT [CPU]`` (until SIGTERM). With
``BENCH_LOOP=uvloop`` in the environment every stack runs on uvloop's event loop instead of
asyncio's (``uv run --with uvloop``; ``benchmarks.server --loop uvloop`` sets it).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from benchmarks.load import HOST

LOOP_VARIABLE = "BENCH_LOOP"  # "uvloop": every stack on uvloop
FLOOR = "raw-asyncio"
FASTEST = "mediastreams-picows"  # the backend the targets are for
PLAIN = "plain-starlette"
STACKS = [
    FLOOR,
    FASTEST,
    "mediastreams-websockets",
    "mediastreams-uvicorn",
    PLAIN,
]


def pin(cpu: int | None) -> None:
    """Run this process on ``cpu`` alone, when that core is ours and not our only one."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    cpus = os.sched_getaffinity(0)
    if cpu in cpus and len(cpus) > 1:
        os.sched_setaffinity(0, {cpu})


def use_loop(name: str) -> None:
    """Run what follows on event loop ``name``: ``asyncio`` (the default) or ``uvloop``."""
    if name == "uvloop":
        import uvloop

        uvloop.install()
    elif name != "asyncio":
        raise SystemExit(f"unknown event loop {name!r}; use asyncio or uvloop")


def run_server(stack: str, port: int) -> None:
    """Serve ``stack`` on ``HOST:port`` until SIGTERM."""
    if stack == FLOOR:
        from benchmarks.floor import run

        run(port)
    elif stack == PLAIN:
        _run_plain(port)
    elif stack.startswith("mediastreams-"):
        _run_mediastreams(stack.removeprefix("mediastreams-"), port)
    else:
        raise SystemExit(f"unknown stack {stack!r}; use one of {', '.join(STACKS)}")


def _run_mediastreams(backend: str, port: int) -> None:
    from mediastreams.server import ServerConfig, bind, echo_handler, serve

    sock = bind(HOST, port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
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


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python -m benchmarks.stacks STACK PORT [CPU]")
    pin(int(sys.argv[3]) if len(sys.argv) == 4 else None)
    use_loop(os.environ.get(LOOP_VARIABLE, "asyncio"))
    run_server(sys.argv[1], int(sys.argv[2]))
