"""One page, one call at a time: the page's messages in, the call's audio and events out.

The page and this process talk over one WebSocket (``/ws``):

- page to process: binary messages are the microphone, 16-bit little-endian mono PCM at the
  page's sample rate; text messages are JSON: ``{"type": "hello", "sample_rate": 48000}``
  first, then ``{"type": "call", "muted": false}``, ``hangup``,
  ``{"type": "dtmf", "digit": "5"}`` and ``{"type": "mute", "muted": true}``;
- process to page: binary messages are what the caller hears, 16-bit PCM at the page's
  rate, one message per 20 ms tick; text messages are JSON events: ``ready``, ``state``,
  ``error``, the timeline's (:mod:`.timeline`) and, after the hang-up, ``report``.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..audio import MULAW_SAMPLE_RATE, mulaw
from ..emulator.asgi import ASGIApp
from ..emulator.runner import CallResult, place_call_async
from ..exceptions import AudioError, EmulatorError
from .caller import DTMF_KEYS, LiveCaller
from .resampler import LiveResampler
from .timeline import Event, LiveTimeline

__all__ = ["CALL_FILES", "PageSession", "Phone"]

CALL_FILES: dict[str, str] = {
    "caller-heard.wav": "what the caller heard (WAV)",
    "call-stereo.wav": "caller left, app right (stereo WAV)",
    "trace.jsonl": "every frame, both ways (mediastreams inspect reads it)",
    "report.json": "the report (JSON)",
}
"""The files each call leaves, by name, with what they hold."""

_MIN_SAMPLE_RATE, _MAX_SAMPLE_RATE = 8000, 384_000  # what browsers' AudioContexts run at


@dataclass
class Phone:
    """What the page calls, and where each call's files go; shared by every page.

    Attributes:
        target: a webhook URL, a stream URL, or an ASGI app (its lifespan already running).
        label: the target as the user named it.
        options: keyword arguments for :func:`~mediastreams.emulator.place_call_async`.
        out_dir: where each call's files go, in ``call-N/``.
        on_report: called with each finished call's result and its folder (the terminal).
    """

    target: str | ASGIApp
    label: str
    options: dict[str, Any]
    out_dir: Path
    on_report: Callable[[CallResult, Path], None] = lambda result, folder: None
    calls: int = 0
    last_exit_code: int = 0
    active: set[asyncio.Task[None]] = field(default_factory=set)

    def call_dir(self) -> tuple[int, Path]:
        """A new call's number and its (new) folder."""
        self.calls += 1
        folder = self.out_dir / f"call-{self.calls}"
        folder.mkdir(parents=True, exist_ok=True)
        return self.calls, folder

    async def hang_up_all(self) -> None:
        """Ctrl-C: every call under way hangs up (the report and files still come)."""
        for task in list(self.active):
            task.cancel()
        if self.active:
            await asyncio.wait(self.active)


class PageSession:
    """The page on the other end of one ``/ws`` WebSocket.

    Args:
        websocket: the accepted socket.
        phone: what to call, and where the files go.
    """

    def __init__(self, websocket: WebSocket, phone: Phone) -> None:
        self._ws = websocket
        self._phone = phone
        self._outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._sample_rate: int | None = None
        self._caller: LiveCaller | None = None
        self._call: asyncio.Task[None] | None = None
        self._connected = False  # the call's first stream has started

    async def run(self) -> None:
        """Serve the page until it goes away; a call under way then hangs up."""
        sender = asyncio.create_task(self._send_all())
        try:
            self._send({"type": "ready", "target": self._phone.label, "keys": DTMF_KEYS})
            await self._receive_all()
        finally:
            if self._call is not None:
                self._hang_up()  # the page is gone: so is the caller
                await asyncio.wait({self._call})
            self._outbox.put_nowait(None)
            await sender

    # --- out -------------------------------------------------------------------------------

    def _send(self, event: Event) -> None:
        self._outbox.put_nowait(json.dumps(event, separators=(",", ":")))

    def _state(self, state: str, **details: Any) -> None:
        self._send({"type": "state", "state": state, **details})

    def _error(self, message: str) -> None:
        self._send({"type": "error", "message": message})

    async def _send_all(self) -> None:
        while (message := await self._outbox.get()) is not None:
            try:
                if isinstance(message, bytes):
                    await self._ws.send_bytes(message)
                else:
                    await self._ws.send_text(message)
            except (WebSocketDisconnect, RuntimeError, OSError):
                return  # the page went away; what is left is not for anyone

    # --- in --------------------------------------------------------------------------------

    async def _receive_all(self) -> None:
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                self._audio(message["bytes"])
            elif message.get("text") is not None:
                self._command(message["text"])

    def _audio(self, data: bytes) -> None:
        if self._caller is None:
            return  # the microphone runs before and between calls; nobody listens then
        try:
            self._caller.feed(data)
        except ValueError as error:
            self._error(f"microphone audio refused: {error}")

    def _command(self, text: str) -> None:
        try:
            command = json.loads(text)
            kind = command["type"]
        except (ValueError, KeyError, TypeError):
            self._error(f"not a command: {text[:200]!r}")
            return
        caller = self._caller
        if kind == "hello":
            self._hello(command.get("sample_rate"))
        elif kind == "call":
            self._start_call(muted=bool(command.get("muted")))
        elif kind == "hangup" and caller is not None:
            self._hang_up()
        elif kind == "dtmf" and caller is not None:
            try:
                caller.press(str(command.get("digit", "")))
            except ValueError as error:
                self._error(str(error))
        elif kind == "mute" and caller is not None:
            caller.mute(bool(command.get("muted")))
            self._send({"type": "muted", "muted": caller.muted})
        elif kind not in ("hangup", "dtmf", "mute"):
            self._error(f"unknown command {kind!r}")

    def _hang_up(self) -> None:
        """The caller hangs up: at the next tick once the stream runs; before (during the
        webhook, or a TwiML prelude), the call is given up at once."""
        if self._caller is not None and self._connected:
            self._caller.hang_up()
        elif self._call is not None:
            self._call.cancel()  # place_call_async hangs up and reports (hang_up_on_cancel)

    def _hello(self, sample_rate: object) -> None:
        if (
            not isinstance(sample_rate, int)
            or not _MIN_SAMPLE_RATE <= sample_rate <= _MAX_SAMPLE_RATE
        ):
            self._error(
                f"sample_rate {sample_rate!r}: expected an integer from {_MIN_SAMPLE_RATE} "
                f"to {_MAX_SAMPLE_RATE} Hz"
            )
            return
        try:
            LiveResampler(sample_rate, MULAW_SAMPLE_RATE)
        except ValueError as error:
            self._error(f"the page's audio cannot be used: {error}")
            return
        self._sample_rate = sample_rate

    def _start_call(self, *, muted: bool) -> None:
        if self._sample_rate is None:
            self._error("say hello with the page's sample rate before calling")
        elif self._call is not None and not self._call.done():
            self._error("a call is under way: hang up first")
        else:
            self._caller = LiveCaller(self._sample_rate)
            self._caller.mute(muted)
            self._call = asyncio.create_task(self._place(self._caller, self._sample_rate))
            self._phone.active.add(self._call)
            self._call.add_done_callback(self._phone.active.discard)

    # --- the call --------------------------------------------------------------------------

    async def _place(self, caller: LiveCaller, sample_rate: int) -> None:
        number, folder = self._phone.call_dir()
        timeline = LiveTimeline(self._send, caller)
        speaker = LiveResampler(MULAW_SAMPLE_RATE, sample_rate)
        self._connected = False

        def on_frame(t_s: float, sender: str, frame: str | bytes) -> None:
            if not self._connected:
                self._connected = True
                self._state("connected", call=number)
            timeline.frame(t_s, sender, frame)

        def on_tick(now_ms: int, caller_frame: bytes, heard_frame: bytes) -> None:
            timeline.tick(now_ms, caller_frame, heard_frame)
            pcm = speaker.process(np.frombuffer(mulaw.decode(heard_frame), dtype="<i2"))
            if pcm.size:
                self._outbox.put_nowait(pcm.astype("<i2").tobytes())

        self._state("calling", call=number)
        try:
            result = await place_call_async(
                self._phone.target,
                caller=caller,
                on_frame=on_frame,
                on_tick=on_tick,
                on_finding=timeline.finding,
                trace=folder / "trace.jsonl",
                hang_up_on_cancel=True,
                **self._phone.options,
            )
        except (EmulatorError, AudioError, OSError) as error:
            self._error(f"the call could not be placed: {error}")
            self._state("idle")
            return
        finally:
            self._caller = None
        self._finish(result, number, folder)

    def _finish(self, result: CallResult, number: int, folder: Path) -> None:
        from ..emulator.render import render_text

        report = result.report
        self._phone.last_exit_code = report.exit_code
        try:
            (folder / "caller-heard.wav").write_bytes(result.recorder.heard_wav())
            (folder / "call-stereo.wav").write_bytes(result.recorder.stereo_wav())
            (folder / "report.json").write_text(report.to_json() + "\n", encoding="utf-8")
        except OSError as error:
            self._error(f"the call's files could not be written to {folder}: {error.strerror}")
        self._phone.on_report(result, folder)
        self._send(
            {
                "type": "report",
                "call": number,
                "report": report.to_dict(),
                "text": _plain(render_text(report)),
                "files": [
                    {"name": name, "label": label, "url": f"files/call-{number}/{name}"}
                    for name, label in CALL_FILES.items()
                ],
            }
        )
        self._state("ended", call=number)


def _plain(renderable: Any) -> str:
    """A rich renderable as plain text, as the terminal shows it (without colours)."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=110, color_system=None, soft_wrap=False)
    console.print(renderable)
    return buffer.getvalue()
