"""A stand-in for OpenAI's Realtime API, enough for a Twilio bridge to hold a conversation.

It speaks the Realtime WebSocket events a Twilio bridge uses (GA names; the beta
``response.audio.delta`` with ``--beta``) and logs every event, both ways, to a JSON Lines
file, so a run can say what the model was told:

- ``session.created`` on connect, ``session.updated`` for each ``session.update``.
- ``input_audio_buffer.append`` (g711 mu-law, base64) feeds a server VAD on energy: speech
  starts after ``ONSET_MS`` of frames above ``SPEECH_RMS``; ``input_audio_buffer.speech_started``
  carries ``audio_start_ms`` = onset less ``PREFIX_PADDING_MS``, as the real server does. Speech
  stops after ``SILENCE_MS`` quiet: ``speech_stopped``, ``committed``, then a response.
- Speech that starts during a response cancels it (the real server's default
  ``interrupt_response``): no more deltas, ``response.done`` with ``status: cancelled``.
- A response is one WAV file, sent as ``response.output_audio.delta`` chunks of
  ``--chunk-ms`` of mu-law, after ``--latency-ms``, at the pace of the profile named by the
  first segment of the URL path (``/v1/realtime``: ``--speed`` times real time; the real API
  also sends audio ahead of playback; see ``PROFILES`` for ``/slow/...`` and ``/late/...``).
- ``conversation.item.truncate`` is answered with ``conversation.item.truncated``, or an
  ``error`` when ``audio_end_ms`` is past the audio sent for that item (the real API refuses
  it with "Audio content of X ms is already shorter than Y ms"); the log keeps
  ``audio_end_ms`` beside how much audio the item had.
- ``conversation.item.create`` + ``response.create`` (the app speaks first) answer with the
  greeting.

Run: ``python fake_realtime.py --port 8900 --log fake.jsonl --prompts DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

FRAME_BYTES = 160  # 20 ms of mu-law at 8 kHz
SPEECH_RMS = 400.0  # 16-bit PCM level of a voiced frame (about -38 dBFS)
ONSET_MS = 100
SILENCE_MS = 500  # server_vad's default silence_duration_ms
PREFIX_PADDING_MS = 300  # server_vad's default prefix_padding_ms

# A model's pace: (times real time, deltas still sent after speech_started), by URL prefix.
# "slow": generation slower than playback (the caller hears gaps); "late": a few deltas
# already on their way when speech starts, sent before the cancel takes effect.
PROFILES = {"slow": (0.8, 0), "late": (1.5, 3)}

_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}"


def _mulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    return np.where(sign, -(magnitude - 0x84), magnitude - 0x84).astype(np.float64)


_DECODE = _mulaw_table()


def _rms(mulaw: bytes) -> float:
    samples = _DECODE[np.frombuffer(mulaw, dtype=np.uint8)]
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


def read_mulaw(path: Path) -> bytes:
    """A WAV file (mu-law or PCM, 8 kHz mono) as mu-law bytes."""
    info = soundfile.info(str(path))
    if info.samplerate != 8000 or info.channels != 1:
        raise SystemExit(f"{path}: expected 8 kHz mono, got {info.samplerate} Hz")
    if info.subtype == "ULAW":
        with soundfile.SoundFile(str(path)) as wav:
            pcm = wav.read(dtype="int16")
    else:
        pcm, _ = soundfile.read(str(path), dtype="int16")
    return _encode(pcm)


def _encode(pcm: np.ndarray) -> bytes:
    # The G.711 mu-law encoder (ITU-T G.711), vectorised.
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


class Log:
    """Every event both ways, one JSON object a line, with the server's clock."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")

    def write(self, session: str, direction: str, event: dict[str, Any]) -> None:
        shown = dict(event)
        for key in ("audio", "delta"):
            if key in shown:
                shown[key] = f"<{len(base64.b64decode(shown[key]))} bytes>"
        record = {"t": round(time.time(), 4), "session": session, "dir": direction, **shown}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()


class Session:
    """One Realtime connection: VAD on the appended audio, one response at a time."""

    def __init__(self, ws: ServerConnection, args: argparse.Namespace, log: Log) -> None:
        self.ws = ws
        self.args = args
        self.log = log
        self.id = _id("sess")
        self.audio_ms = 0  # of input appended so far: the VAD's clock
        self.pending = b""
        self.speaking = False
        self.run_ms = 0
        self.onset_ms = 0
        self.last_voiced_ms = 0
        self.response: asyncio.Task[None] | None = None
        self.sent_ms: dict[str, int] = {}  # per assistant item: audio sent so far
        self.turn = 0
        self.send_lock = asyncio.Lock()
        profile = ws.request.path.lstrip("/").split("/", 1)[0] if ws.request else ""
        self.profile = profile if profile in PROFILES else "default"
        self.speed, self.late_deltas = PROFILES.get(profile, (args.speed, 0))
        self.deltas_left: int | None = None  # after speech_started, before the cancel

    async def send(self, event: dict[str, Any]) -> None:
        event = {"event_id": _id("event"), **event}
        self.log.write(self.id, "out", event)
        async with self.send_lock:
            await self.ws.send(json.dumps(event))

    async def run(self) -> None:
        path = self.ws.request.path if self.ws.request else ""
        self.log.write(self.id, "open", {"type": "connect", "path": path, "profile": self.profile})
        await self.send({"type": "session.created", "session": {"id": self.id}})
        try:
            async for message in self.ws:
                event = json.loads(message)
                self.log.write(self.id, "in", event)
                await self.handle(event)
        except ConnectionClosed:
            pass
        finally:
            if self.response is not None:
                self.response.cancel()
            self.log.write(self.id, "close", {"type": "disconnect"})

    async def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "session.update":
            await self.send({"type": "session.updated", "session": event.get("session", {})})
        elif kind == "input_audio_buffer.append":
            await self.append(base64.b64decode(event["audio"]))
        elif kind == "response.create":
            self.start_response("greeting")
        elif kind == "conversation.item.create":
            item = {**event.get("item", {}), "id": _id("item")}
            await self.send({"type": "conversation.item.created", "item": item})
        elif kind == "conversation.item.truncate":
            await self.truncate(event)
        elif kind == "response.cancel":
            await self.cancel_response()

    async def append(self, audio: bytes) -> None:
        self.pending += audio
        while len(self.pending) >= FRAME_BYTES:
            frame, self.pending = self.pending[:FRAME_BYTES], self.pending[FRAME_BYTES:]
            self.audio_ms += 20
            await self.vad(_rms(frame) > SPEECH_RMS)

    async def vad(self, voiced: bool) -> None:
        if voiced:
            self.last_voiced_ms = self.audio_ms
        if not self.speaking:
            self.run_ms = self.run_ms + 20 if voiced else 0
            if self.run_ms >= ONSET_MS:
                self.speaking = True
                self.onset_ms = self.audio_ms - self.run_ms
                # Speech cancels the response in progress (interrupt_response), then
                # response.done says it was cancelled; with "late" deltas the response
                # task sends a few more first.
                if self.response is not None and not self.late_deltas:
                    self.response.cancel()
                await self.send(
                    {
                        "type": "input_audio_buffer.speech_started",
                        "audio_start_ms": max(0, self.onset_ms - PREFIX_PADDING_MS),
                        "item_id": _id("item"),
                    }
                )
                if self.late_deltas and self.response is not None and not self.response.done():
                    self.deltas_left = self.late_deltas
                else:
                    await self.cancel_response()
        elif self.audio_ms - self.last_voiced_ms >= SILENCE_MS:
            self.speaking = False
            self.run_ms = 0
            await self.send(
                {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": self.last_voiced_ms}
            )
            await self.send({"type": "input_audio_buffer.committed", "item_id": _id("item")})
            self.turn += 1
            replies = self.args.replies
            self.start_response(replies[min(self.turn, len(replies)) - 1])

    def start_response(self, prompt: str) -> None:
        self.deltas_left = None
        self.response = asyncio.create_task(self.respond(prompt))

    async def cancel_response(self) -> None:
        task, self.response = self.response, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def respond(self, prompt: str) -> None:
        audio = read_mulaw(self.args.prompts / f"{prompt}.wav")
        response_id, item_id = _id("resp"), _id("item")
        delta_type = "response.audio.delta" if self.args.beta else "response.output_audio.delta"
        await self.send({"type": "response.created", "response": {"id": response_id}})
        status = "completed"
        try:
            await asyncio.sleep(self.args.latency_ms / 1000)
            await self.send(
                {
                    "type": "response.output_item.added",
                    "response_id": response_id,
                    "item": {"id": item_id, "role": "assistant", "prompt": prompt},
                }
            )
            self.sent_ms[item_id] = 0
            chunk = self.args.chunk_ms * 8
            for offset in range(0, len(audio), chunk):
                piece = audio[offset : offset + chunk]
                await self.send(
                    {
                        "type": delta_type,
                        "response_id": response_id,
                        "item_id": item_id,
                        "output_index": 0,
                        "content_index": 0,
                        "delta": base64.b64encode(piece).decode(),
                    }
                )
                self.sent_ms[item_id] += len(piece) // 8
                if self.deltas_left is not None:
                    self.deltas_left -= 1
                    if self.deltas_left <= 0:
                        raise asyncio.CancelledError  # the cancel of speech_started lands now
                await asyncio.sleep(len(piece) / 8000 / self.speed)
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        finally:
            with contextlib.suppress(ConnectionClosed):
                await self.send(
                    {
                        "type": "response.done",
                        "response": {
                            "id": response_id,
                            "status": status,
                            "item_id": item_id,
                            "audio_sent_ms": self.sent_ms.get(item_id, 0),
                        },
                    }
                )

    async def truncate(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id")
        end_ms = event.get("audio_end_ms")
        sent = self.sent_ms.get(str(item_id))
        if sent is None or not isinstance(end_ms, int) or end_ms < 0 or end_ms > sent:
            await self.send(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "code": "invalid_value",
                        # The real API's wording for a truncate past the item's audio.
                        "message": f"Audio content of {sent}ms is already shorter than {end_ms}ms",
                        "event_id": event.get("event_id"),
                    },
                }
            )
            return
        await self.send(
            {
                "type": "conversation.item.truncated",
                "item_id": item_id,
                "content_index": event.get("content_index", 0),
                "audio_end_ms": end_ms,
            }
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--prompts", type=Path, required=True, help="folder of WAV files")
    parser.add_argument(
        "--replies",
        nargs="+",
        default=["story", "ack", "goodbye"],
        help="the WAV (name without .wav) answering each caller turn; the last repeats",
    )
    parser.add_argument("--chunk-ms", type=int, default=100)
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument("--latency-ms", type=int, default=300)
    parser.add_argument("--beta", action="store_true", help="name deltas response.audio.delta")
    args = parser.parse_args()
    log = Log(args.log)

    async def handler(ws: ServerConnection) -> None:
        await Session(ws, args, log).run()

    async with serve(handler, args.host, args.port, max_size=None) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
