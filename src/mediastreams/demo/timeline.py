"""A readable, live account of a call, from the frames going by.

Every frame is too much to read (50 a second each way), so the timeline tells what a person
would want to know: the stream opening, the app starting to talk (and how long after the
caller stopped), the caller starting and stopping to speak, key presses, ``clear`` and the
marks it flushed, and the hang-up.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ..exceptions import ProtocolError
from ..messages import DTMF, Clear, Mark, Media, Start, Stop, parse
from .conversation import SpeechDetector

__all__ = ["Timeline"]

# A gap this long in the app's audio ends one reply; the next audio starts another.
_REPLY_GAP_S = 0.3


class Timeline:
    """Turns frames into lines of text, as they arrive.

    Args:
        write: where each line goes (``print``, a rich console's ``print``...).
    """

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._caller = SpeechDetector()
        self._caller_stopped_at: float | None = None
        self._last_app_audio_at: float | None = None
        self._app_audio_s = 0.0
        self._marks_sent = 0
        self._marks_echoed = 0
        self._cleared_at: float | None = None
        self._echoed_by_clear = 0
        self.now = 0.0

    def line(self, text: str, t: float | None = None) -> None:
        """Write one line stamped with the call time."""
        self._flush_clear_echoes()
        self._write(f"{self.now if t is None else t:7.2f} s  {text}")

    def _flush_clear_echoes(self) -> None:
        if self._echoed_by_clear:
            count, self._echoed_by_clear = self._echoed_by_clear, 0
            assert self._cleared_at is not None
            self.line(f"twilio: echoes the {count} pending marks at once", self._cleared_at)

    def note(self, text: str) -> None:
        """A line from the app's side (what the handler decided)."""
        self.line(text)

    def frame(self, t: float, sender: str, frame: str | bytes) -> None:
        """One frame of the stream, ``t`` seconds after ``start``."""
        self.now = max(t, 0.0)
        if isinstance(frame, bytes):
            self.line(f"{sender}: a binary frame ({len(frame)} bytes)")
            return
        try:
            message = parse(frame, sender="twilio" if sender == "twilio" else "app")
        except ProtocolError:  # the emulator reports the violation; the timeline shows the frame
            self.line(f"{sender}: an invalid frame: {frame[:80]}")
            return
        if sender == "twilio":
            self._from_twilio(message)
        else:
            self._from_app(message)

    def _from_twilio(self, message: object) -> None:
        if isinstance(message, Start):
            params = json.dumps(message.custom_parameters) if message.custom_parameters else "none"
            self.line(f"twilio: start, stream {message.stream_sid}, parameters {params}")
        elif isinstance(message, Media):
            self._caller_audio(message.payload)
        elif isinstance(message, DTMF):
            self.line(f"caller: presses {message.digit}")
        elif isinstance(message, Mark):
            self._marks_echoed += 1
            if self._cleared_at is not None and self.now - self._cleared_at < 0.05:
                self._echoed_by_clear += 1
        elif isinstance(message, Stop):
            self.line(
                f"caller: hangs up (stop); marks sent {self._marks_sent}, "
                f"echoed {self._marks_echoed}"
            )

    def _caller_audio(self, payload: bytes) -> None:
        change = self._caller.push(payload)
        if change == "start":
            self.line("caller: starts speaking", self.now - 0.04)
        elif change == "end":
            self._caller_stopped_at = self.now - 0.6
            self.line("caller: stops speaking", self._caller_stopped_at)

    def _from_app(self, message: object) -> None:
        if isinstance(message, Media):
            self._app_audio(len(message.payload) / 8000)
        elif isinstance(message, Mark):
            self._marks_sent += 1
        elif isinstance(message, Clear):
            self._cleared_at = self.now
            self.line("app: clear (barge-in): Twilio drops the buffered audio")

    def _app_audio(self, duration_s: float) -> None:
        gap = self._last_app_audio_at is None or self.now - self._last_app_audio_at > _REPLY_GAP_S
        if gap:
            after = ""
            if self._caller_stopped_at is not None:
                after = f", {1000 * (self.now - self._caller_stopped_at):.0f} ms after the caller"
                self._caller_stopped_at = None
            self.line(f"app: audio starts{after}")
        self._last_app_audio_at = self.now
        self._app_audio_s += duration_s
