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


SILENCE_MULAW = b"\xff" * 8000
"""One second of mu-law silence, as Twilio sends it."""


class EnergyDetector:
    """The app's side of barge-in: speech starts after 3 loud frames, ends after 10 quiet."""

    def __init__(self, *, onset_frames: int = 3, release_frames: int = 10) -> None:
        self.onset_frames = onset_frames
        self.release_frames = release_frames
        self.speaking = False
        self._run = 0

    def push(self, payload: bytes) -> str | None:
        """``"start"`` or ``"end"`` when the caller starts or stops talking, else ``None``."""
        samples = np.frombuffer(mulaw.decode(payload), dtype="<i2").astype(np.float64)
        loud = bool(samples.size) and float(np.sqrt(np.mean(samples**2))) > 1000
        self._run = self._run + 1 if loud != self.speaking else 0
        if self._run < (self.release_frames if self.speaking else self.onset_frames):
            return None
        self.speaking, self._run = not self.speaking, 0
        return "start" if self.speaking else "end"


def agent_app(
    replies: list[bytes],
    *,
    clears: bool = True,
    reply_delay_s: float = 0.0,
    chunk_bytes: int = 8000,
) -> Starlette:
    """A voice agent in miniature: it talks, listens, and gets interrupted.

    It sends ``replies[0]`` at ``start`` (all at once, in chunks, then a mark). When the
    caller starts talking it sends ``clear`` (unless ``clears`` is false: it talks over the
    caller); when the caller stops, it waits ``reply_delay_s`` and sends the next reply.
    """

    async def send_reply(websocket: WebSocket, sid: str, number: int, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        audio = replies[number]
        for offset in range(0, len(audio), chunk_bytes):
            await websocket.send_text(media(sid, audio[offset : offset + chunk_bytes]))
        await websocket.send_text(mark(sid, f"reply-{number}"))

    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        detector = EnergyDetector()
        sid, number = "", 0
        pending: list[asyncio.Task[None]] = []
        try:
            while True:
                frame = json.loads(await websocket.receive_text())
                if frame["event"] == "start":
                    sid = frame["streamSid"]
                    pending.append(asyncio.create_task(send_reply(websocket, sid, 0, 0.0)))
                elif frame["event"] == "media":
                    change = detector.push(base64.b64decode(frame["media"]["payload"]))
                    if change == "start" and clears:
                        await websocket.send_text(json.dumps({"event": "clear", "streamSid": sid}))
                    elif change == "end" and number + 1 < len(replies):
                        number += 1
                        reply = send_reply(websocket, sid, number, reply_delay_s)
                        pending.append(asyncio.create_task(reply))
                elif frame["event"] == "stop":
                    break
        except WebSocketDisconnect:
            pass
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    return Starlette(routes=[WebSocketRoute("/media-stream", stream)])


def paced(*parts: bytes | float) -> Behaviour:
    """Send each ``bytes`` part at once and sleep each ``float`` (seconds) between them."""

    async def behaviour(websocket: WebSocket, start: dict[str, Any]) -> None:
        for part in parts:
            if isinstance(part, bytes):
                await websocket.send_text(media(start["streamSid"], part))
            else:
                await asyncio.sleep(part)

    return behaviour


def heard_run_ms(heard: bytes, at_ms: int) -> tuple[int, int]:
    """The stretch of sound (no 0xFF byte) in a recording around ``at_ms``: (start, end) ms."""
    at = at_ms * 8
    start = heard.rfind(b"\xff", 0, at) + 1
    end = heard.find(b"\xff", at)
    return start // 8, (len(heard) if end < 0 else end) // 8
