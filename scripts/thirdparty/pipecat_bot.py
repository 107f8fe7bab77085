"""A pipecat bot on a Twilio Media Stream, with WAV files where the cloud services would be.

Built the way pipecat's Twilio examples are (pipecat-examples, ``twilio-chatbot/inbound``):
the webhook answers ``<Connect><Stream url="wss://{host}/ws">``, the socket is read with
``parse_telephony_websocket``, then ``TwilioFrameSerializer`` + ``FastAPIWebsocketTransport``
run a pipeline. Speech-to-text, the LLM and text-to-speech are replaced by ``WavPlayer``:

- on connect it plays ``greeting.wav``;
- at the end of each caller turn (Silero VAD, shipped inside pipecat, then a speech timeout)
  it plays the next reply (``story``, ``ack``, then ``ack`` again);
- the caller speaking interrupts it as pipecat does: an ``InterruptionFrame``, which the
  serializer sends as ``clear``;
- key ``9`` plays ``goodbye.wav`` and ends the pipeline, so the serializer hangs up over
  Twilio's REST API (``POST /2010-04-01/Accounts/{AC}/Calls/{CA}.json``, ``Status=completed``).

Settings from the environment: ``PROMPTS`` (folder of 8 kHz WAV files),
``TWILIO_API_BASE_URL`` (where the hang-up goes: pipecat's ``base_url``, scheme and host;
unset: the REST hang-up is off, since api.twilio.com cannot be reached from here),
``TWILIO_ACCOUNT_SID`` and ``TWILIO_AUTH_TOKEN`` (its basic auth, as in pipecat's example).

Run: ``uvicorn pipecat_bot:app --port 8765``; in process: ``pipecat_bot:app``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile
from fastapi import FastAPI, Request, WebSocket
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    EndWorkerFrame,
    Frame,
    InputDTMFFrame,
    InterruptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipecat.turns.user_start import VADUserTurnStartStrategy
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_processor import UserTurnProcessor
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from starlette.responses import HTMLResponse

SAMPLE_RATE = 8000
CHUNK_MS = 100  # audio pushed in pieces, as a TTS service streams it
PROMPTS = Path(
    os.environ.get("PROMPTS", Path(__file__).resolve().parents[2] / "src/mediastreams/demo/prompts")
)
REPLIES = ["story", "ack"]  # one per caller turn; the last repeats
HANG_UP_KEY = "9"

app = FastAPI()


@app.post("/incoming-call")
async def incoming_call(request: Request) -> HTMLResponse:
    """TwiML for the call, as pipecat's runner answers Twilio (``<Connect><Stream>``)."""
    host = request.headers.get("host", "localhost")
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n  <Connect>\n'
        f'    <Stream url="wss://{host}/ws"></Stream>\n  </Connect>\n</Response>'
    )
    return HTMLResponse(content=xml, media_type="application/xml")


@app.websocket("/ws")
async def media_stream(websocket: WebSocket) -> None:
    """One call: parse Twilio's first frames, then run the pipeline until it ends."""
    await websocket.accept()
    _, call_data = await parse_telephony_websocket(websocket)
    base_url = os.environ.get("TWILIO_API_BASE_URL") or None
    serializer = TwilioFrameSerializer(
        stream_sid=call_data["stream_id"],
        call_sid=call_data["call_id"],
        account_sid=os.environ.get("TWILIO_ACCOUNT_SID", ""),
        auth_token=os.environ.get("TWILIO_AUTH_TOKEN", ""),
        base_url=base_url,
        params=TwilioFrameSerializer.InputParams(auto_hang_up=base_url is not None),
    )
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
            serializer=serializer,
        ),
    )
    player = WavPlayer()
    turns = UserTurnProcessor(
        user_turn_strategies=UserTurnStrategies(
            start=[VADUserTurnStartStrategy()],
            # No speech-to-text here: the turn ends on VAD silence, not on a transcript.
            stop=[SpeechTimeoutUserTurnStopStrategy(wait_for_transcript=False)],
        )
    )
    pipeline = Pipeline(
        [
            transport.input(),
            VADProcessor(vad_analyzer=SileroVADAnalyzer()),
            turns,
            player,
            transport.output(),
        ]
    )
    task = PipelineTask(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=SAMPLE_RATE, audio_out_sample_rate=SAMPLE_RATE),
    )

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport: object, client: object) -> None:
        await player.play("greeting")

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport: object, client: object) -> None:
        logger.info("bot: the caller hung up")
        await task.cancel()

    await PipelineRunner(handle_sigint=False).run(task)
    logger.info("bot: pipeline ended")


class WavPlayer(FrameProcessor):
    """Answers each caller turn with a WAV file, where an LLM and a TTS service would be."""

    def __init__(self) -> None:
        super().__init__()
        self._turn = 0

    async def play(self, name: str, *, then_end: bool = False) -> None:
        pcm, rate = soundfile.read(str(PROMPTS / f"{name}.wav"), dtype="int16")
        if rate != SAMPLE_RATE:
            raise ValueError(f"{name}.wav: expected {SAMPLE_RATE} Hz, got {rate}")
        logger.info(f"bot: playing {name} ({len(pcm) * 1000 // rate} ms)")
        # Framed as a TTS service frames a reply: the output transport flushes the last,
        # partial 40 ms chunk on TTSStoppedFrame (without it, that tail waits and is lost).
        context_id = f"{name}-{self._turn}"
        await self.push_frame(TTSStartedFrame(context_id=context_id))
        step = SAMPLE_RATE * CHUNK_MS // 1000
        for start in range(0, len(pcm), step):
            chunk = np.ascontiguousarray(pcm[start : start + step]).tobytes()
            await self.push_frame(TTSAudioRawFrame(chunk, SAMPLE_RATE, 1, context_id=context_id))
        await self.push_frame(TTSStoppedFrame(context_id=context_id))
        if then_end:
            # Flushes the audio queued ahead of it, then ends the pipeline: the serializer
            # then hangs up over REST and the transport closes the socket.
            await self.push_frame(EndWorkerFrame(reason="caller pressed the hang-up key"))

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, UserStartedSpeakingFrame):
            logger.info("bot: caller started speaking")
        elif isinstance(frame, InterruptionFrame):
            logger.info("bot: interrupted")
        elif isinstance(frame, UserStoppedSpeakingFrame):
            reply = REPLIES[min(self._turn, len(REPLIES) - 1)]
            self._turn += 1
            await self.play(reply)
        elif isinstance(frame, InputDTMFFrame):
            logger.info(f"bot: key {frame.button.value}")
            if frame.button.value == HANG_UP_KEY:
                await self.play("goodbye", then_end=True)
