"""An app in the shape of Twilio's OpenAI Realtime sample, pointed at a Realtime server.

Twilio's sample (github.com/twilio-samples/speech-assistant-openai-realtime-api-python,
``main.py`` as of commit d70e251) is what many voice bridges start from. This app keeps its
logic, quirks included, so the emulator judges code shaped like what people copy:

- ``/incoming-call`` answers ``<Say>``, ``<Pause length="1">``, ``<Say>``, then
  ``<Connect><Stream url="wss://{host}/media-stream">`` with the host of the request.
- ``/media-stream`` opens the Realtime WebSocket and runs two loops: Twilio's ``media`` goes
  out as ``input_audio_buffer.append``; each ``response.output_audio.delta`` comes back as a
  ``media`` frame followed by a ``mark``; ``input_audio_buffer.speech_started`` sends
  ``conversation.item.truncate`` and ``clear``.
- ``audio_end_ms`` is computed the sample's way: the latest inbound ``media.timestamp`` minus
  the one seen when the item's first delta arrived; only while marks are outstanding.
- Its quirks, kept on purpose: the ``except WebSocketDisconnect`` around
  ``websocket.iter_text()`` never runs (Starlette's ``iter_text`` ends quietly on a
  disconnect), so the Realtime socket is not closed when the caller hangs up; ``start`` does
  not reset the response state (the sample assigns locals there, without ``nonlocal``).

Settings come from the environment: ``REALTIME_URL`` (the Realtime endpoint, default
OpenAI's), ``OPENAI_API_KEY`` (required, as in the sample), ``AI_SPEAKS_FIRST=1`` (the
sample's commented-out greeting), ``SHOW_TIMING_MATH=1``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any

import websockets
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.websockets import WebSocketDisconnect
from twilio.twiml.voice_response import Connect, VoiceResponse

API_KEY = os.getenv("OPENAI_API_KEY")
REALTIME_URL = os.getenv("REALTIME_URL", "wss://api.openai.com/v1/realtime")
TEMPERATURE = float(os.getenv("TEMPERATURE", "0.8"))
VOICE = "alloy"
AI_SPEAKS_FIRST = os.getenv("AI_SPEAKS_FIRST") == "1"
SHOW_TIMING_MATH = os.getenv("SHOW_TIMING_MATH") == "1"
INSTRUCTIONS = "You are a helpful and bubbly assistant on a phone line."
LOGGED_EVENTS = {
    "error",
    "response.done",
    "input_audio_buffer.committed",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "conversation.item.truncated",
    "session.created",
    "session.updated",
}
# The GA name and the beta name of an audio delta.
DELTA_EVENTS = {"response.output_audio.delta", "response.audio.delta"}

if not API_KEY:
    raise ValueError("Set OPENAI_API_KEY (any value for a local Realtime stand-in).")

app = FastAPI()


@app.get("/", response_class=JSONResponse)
async def index() -> dict[str, str]:
    return {"message": "Twilio Media Stream Server is running!"}


@app.api_route("/incoming-call", methods=["GET", "POST"])
async def incoming_call(request: Request) -> HTMLResponse:
    """TwiML: two <Say>s around a one-second <Pause>, then <Connect><Stream>."""
    response = VoiceResponse()
    response.say(
        "Please wait while we connect your call to the A. I. voice assistant, powered by "
        "Twilio and the Open A I Realtime API",
        voice="Google.en-US-Chirp3-HD-Aoede",
    )
    response.pause(length=1)
    response.say("O.K. you can start talking!", voice="Google.en-US-Chirp3-HD-Aoede")
    connect = Connect()
    connect.stream(url=f"wss://{request.url.hostname}/media-stream")
    response.append(connect)
    return HTMLResponse(content=str(response), media_type="application/xml")


@app.websocket("/media-stream")
async def media_stream(websocket: WebSocket) -> None:
    """Bridge one Twilio stream to one Realtime session."""
    print("Client connected", flush=True)
    await websocket.accept()
    url = f"{REALTIME_URL}?model=gpt-realtime&temperature={TEMPERATURE}&voice={VOICE}"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with websockets.connect(url, additional_headers=headers) as realtime:
        await start_session(realtime)
        await Bridge(websocket, realtime).run()


async def start_session(realtime: Any) -> None:
    await realtime.send(
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "model": "gpt-realtime",
                    "output_modalities": ["audio"],
                    "audio": {
                        "input": {
                            "format": {"type": "audio/pcmu"},
                            "turn_detection": {"type": "server_vad"},
                        },
                        "output": {"format": {"type": "audio/pcmu"}},
                    },
                    "instructions": INSTRUCTIONS,
                },
            }
        )
    )
    if AI_SPEAKS_FIRST:
        greeting = {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Greet the user."}],
            },
        }
        await realtime.send(json.dumps(greeting))
        await realtime.send(json.dumps({"type": "response.create"}))


class Bridge:
    """The sample's per-connection state and its two loops."""

    def __init__(self, websocket: WebSocket, realtime: Any) -> None:
        self.websocket = websocket
        self.realtime = realtime
        self.stream_sid: str | None = None
        self.latest_media_timestamp = 0
        self.last_assistant_item: str | None = None
        self.mark_queue: list[str] = []
        self.response_start_timestamp_twilio: int | None = None

    async def run(self) -> None:
        await asyncio.gather(self.from_twilio(), self.to_twilio())

    async def from_twilio(self) -> None:
        """Twilio's frames: audio to the model, the stream SID, mark echoes."""
        try:
            async for text in self.websocket.iter_text():
                data = json.loads(text)
                if data["event"] == "media" and self.realtime.state.name == "OPEN":
                    self.latest_media_timestamp = int(data["media"]["timestamp"])
                    append = {
                        "type": "input_audio_buffer.append",
                        "audio": data["media"]["payload"],
                    }
                    await self.realtime.send(json.dumps(append))
                elif data["event"] == "start":
                    self.stream_sid = data["start"]["streamSid"]
                    print(f"Incoming stream has started {self.stream_sid}", flush=True)
                    self.latest_media_timestamp = 0
                    # The sample also "resets" the response start and the last item here,
                    # but as locals of this loop (no nonlocal): the shared state keeps them.
                elif data["event"] == "mark" and self.mark_queue:
                    self.mark_queue.pop(0)
        except WebSocketDisconnect:
            # Never reached: iter_text() ends quietly when the socket closes.
            print("Client disconnected.", flush=True)
            if self.realtime.state.name == "OPEN":
                await self.realtime.close()

    async def to_twilio(self) -> None:
        """The model's events: audio and marks to Twilio, and the barge-in."""
        try:
            async for message in self.realtime:
                response = json.loads(message)
                kind = response.get("type")
                if kind in LOGGED_EVENTS:
                    print(f"Received event: {kind}", _brief(response), flush=True)
                if kind in DELTA_EVENTS and "delta" in response:
                    await self.forward_audio(response)
                if kind == "input_audio_buffer.speech_started":
                    print("Speech started detected.", flush=True)
                    if self.last_assistant_item:
                        print(f"Interrupting response with id: {self.last_assistant_item}")
                        await self.interrupt()
        except Exception as error:
            print(f"Error in send_to_twilio: {error}", flush=True)

    async def forward_audio(self, response: dict[str, Any]) -> None:
        payload = base64.b64encode(base64.b64decode(response["delta"])).decode()
        await self.websocket.send_json(
            {"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}}
        )
        item = response.get("item_id")
        if item and item != self.last_assistant_item:
            self.response_start_timestamp_twilio = self.latest_media_timestamp
            self.last_assistant_item = item
            if SHOW_TIMING_MATH:
                print(f"Start timestamp for new response: {self.latest_media_timestamp}ms")
        await self.send_mark()

    async def interrupt(self) -> None:
        """Truncate the item at the time elapsed since its first delta, and clear."""
        print("Handling speech started event.", flush=True)
        if not self.mark_queue or self.response_start_timestamp_twilio is None:
            return
        elapsed = self.latest_media_timestamp - self.response_start_timestamp_twilio
        if SHOW_TIMING_MATH:
            print(
                f"Truncation: {self.latest_media_timestamp} - "
                f"{self.response_start_timestamp_twilio} = {elapsed}ms",
                flush=True,
            )
        if self.last_assistant_item:
            truncate = {
                "type": "conversation.item.truncate",
                "item_id": self.last_assistant_item,
                "content_index": 0,
                "audio_end_ms": elapsed,
            }
            await self.realtime.send(json.dumps(truncate))
        await self.websocket.send_json({"event": "clear", "streamSid": self.stream_sid})
        self.mark_queue.clear()
        self.last_assistant_item = None
        self.response_start_timestamp_twilio = None

    async def send_mark(self) -> None:
        if self.stream_sid:
            mark = {"event": "mark", "streamSid": self.stream_sid, "mark": {"name": "responsePart"}}
            await self.websocket.send_json(mark)
            self.mark_queue.append("responsePart")


def _brief(event: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in event.items() if k not in ("delta", "audio")})
