"""Small Media Streams apps for the emulator's tests, each right or making one classic mistake.

Every app is a Starlette app with the stream at ``/media-stream`` and, where useful, a voice
webhook at ``/incoming-call``. ``behaviour`` is an async function given the socket and the
``start`` frame, run once the stream has started.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from mediastreams.audio import mulaw

Behaviour = Callable[[WebSocket, dict[str, Any]], Awaitable[None]]

TONE_MULAW = mulaw.encode(
    b"".join(
        int(8000 * ((i // 20) % 2 * 2 - 1)).to_bytes(2, "little", signed=True) for i in range(8000)
    )
)
"""One second of a loud 200 Hz square wave, as mu-law."""


def b64(audio: bytes) -> str:
    return base64.b64encode(audio).decode("ascii")


def media(sid: str, audio: bytes) -> str:
    return json.dumps({"event": "media", "streamSid": sid, "media": {"payload": b64(audio)}})


def mark(sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": name}})


def stream_app(
    behaviour: Behaviour,
    *,
    twiml: str | None = None,
    received: list[dict[str, Any]] | None = None,
) -> Starlette:
    """An app that runs ``behaviour`` at ``start`` and keeps every frame it got."""
    frames = received if received is not None else []

    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        task: asyncio.Task[None] | None = None
        try:
            while True:
                frame = json.loads(await websocket.receive_text())
                frames.append(frame)
                if frame["event"] == "start":
                    task = asyncio.create_task(behaviour(websocket, frame))
                elif frame["event"] == "stop":
                    break
        except WebSocketDisconnect:
            pass
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def incoming(request: Request) -> Response:
        document = twiml or (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            '<Stream url="wss://abc.example/media-stream"/></Connect></Response>'
        )
        return Response(document, media_type="text/xml")

    return Starlette(
        routes=[
            WebSocketRoute("/media-stream", stream),
            Route("/incoming-call", incoming, methods=["POST"]),
        ]
    )


async def nothing(websocket: WebSocket, start: dict[str, Any]) -> None:
    """A quiet app: it listens and never speaks."""


def plays(audio: bytes, *, chunk_bytes: int = 8000, with_mark: bool = True) -> Behaviour:
    """Send ``audio`` at once in chunks, then a mark (the usual TTS pattern)."""

    async def behaviour(websocket: WebSocket, start: dict[str, Any]) -> None:
        sid = start["streamSid"]
        for offset in range(0, len(audio), chunk_bytes):
            await websocket.send_text(media(sid, audio[offset : offset + chunk_bytes]))
        if with_mark:
            await websocket.send_text(mark(sid, "done"))

    return behaviour


def sends(*frames: str | bytes) -> Behaviour:
    """Send these frames (``{sid}`` in a text frame becomes the streamSid)."""

    async def behaviour(websocket: WebSocket, start: dict[str, Any]) -> None:
        for frame in frames:
            if isinstance(frame, bytes):
                await websocket.send_bytes(frame)
            else:
                await websocket.send_text(frame.replace("{sid}", start["streamSid"]))

    return behaviour


def correlation(heard: bytes, source: bytes) -> float:
    """Pearson correlation of two mu-law signals, at the lag that lines them up best."""
    a = np.frombuffer(mulaw.decode(heard), dtype="<i2").astype(np.float64)
    b = np.frombuffer(mulaw.decode(source), dtype="<i2").astype(np.float64)
    size = len(a) + len(b)
    lags = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lag = int(np.argmax(lags[: len(a) - len(b) + 1]))
    return float(np.corrcoef(a[lag : lag + len(b)], b)[0, 1])
