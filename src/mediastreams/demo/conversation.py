"""The demo's app: a short phone conversation that shows playing, DTMF and barge-in.

It greets the caller, waits for them to speak, asks for a key, starts a long message, and
stops it the moment the caller talks over it (``clear``), then says goodbye. The prompts are
short recordings made with a speech synthesizer, shipped in ``prompts/`` as mu-law WAV.

Use it as ``mediastreams serve --app mediastreams.demo.conversation:handler``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from importlib import resources

import numpy as np

from ..audio import mulaw, to_mulaw
from ..messages import DTMF, Media
from ..session import MediaStream, PlayHandle

__all__ = ["SpeechDetector", "conversation", "handler", "prompt"]

Note = Callable[[str], None]


def prompt(name: str) -> bytes:
    """A bundled prompt (``greeting``, ``ack``, ``story``, ``goodbye``...) as mu-law/8000."""
    return to_mulaw(resources.files(__package__).joinpath("prompts", f"{name}.wav").read_bytes())


def beep(duration_ms: int = 250, frequency_hz: float = 880.0) -> np.ndarray:
    """A short tone, as 16-bit samples at 8000 Hz."""
    t = np.arange(duration_ms * 8) / 8000
    return (np.sin(2 * np.pi * frequency_hz * t) * 8000).astype(np.int16)


class SpeechDetector:
    """Tells when the caller starts and stops talking, from 20 ms frames of mu-law.

    A frame is voiced when its level is above ``threshold_rms`` (16-bit PCM); speech starts
    after ``onset_frames`` voiced frames in a row and ends after ``release_frames`` quiet
    ones, so a pause between words does not end it.
    """

    def __init__(
        self, *, threshold_rms: float = 400.0, onset_frames: int = 3, release_frames: int = 30
    ) -> None:
        self.threshold_rms = threshold_rms
        self.onset_frames = onset_frames
        self.release_frames = release_frames
        self.speaking = False
        self._run = 0

    def push(self, frame: bytes) -> str | None:
        """``"start"`` or ``"end"`` when the caller starts or stops talking, else ``None``."""
        samples = np.frombuffer(mulaw.decode(frame), dtype="<i2").astype(np.float32)
        voiced = bool(samples.size) and float(np.sqrt(np.mean(samples**2))) > self.threshold_rms
        self._run = self._run + 1 if voiced != self.speaking else 0
        limit = self.release_frames if self.speaking else self.onset_frames
        if self._run < limit:
            return None
        self.speaking, self._run = not self.speaking, 0
        return "start" if self.speaking else "end"


class _Step(enum.Enum):
    GREETING = "greeting"
    LISTENING = "listening"
    WAITING_FOR_KEY = "waiting for a key"
    STORY = "story"
    INTERRUPTED = "interrupted"
    GOODBYE = "goodbye"


async def conversation(stream: MediaStream, note: Note | None = None) -> None:
    """Run the demo conversation on ``stream`` until the caller hangs up.

    Args:
        stream: an open stream.
        note: called with a line of text at each turn the app takes (for a live timeline).
    """
    say = note or (lambda text: None)
    step = _Step.GREETING
    greeting = stream.play(prompt("greeting"))
    tone = stream.play(beep(), sample_rate=8000)
    say("app: plays the greeting and a beep")
    detector = SpeechDetector()
    story: PlayHandle | None = None
    async for event in stream:
        if step is _Step.GREETING and tone.done():
            step = _Step.LISTENING
            say(f"app: greeting played ({greeting.played_ms + tone.played_ms:.0f} ms confirmed)")
        if isinstance(event, DTMF) and step is _Step.WAITING_FOR_KEY:
            story = stream.play(prompt("story"))
            step = _Step.STORY
            say(f"app: caller pressed {event.digit}; plays a long message")
        elif isinstance(event, Media):
            step = _on_speech(stream, step, detector.push(event.payload), story, say)


def _on_speech(
    stream: MediaStream, step: _Step, change: str | None, story: PlayHandle | None, say: Note
) -> _Step:
    if change == "start" and step is _Step.STORY and story is not None and not story.done():
        stream.clear()
        say(f"app: caller talks over the message; clear after {story.played_ms:.0f} ms heard")
        return _Step.INTERRUPTED
    if change != "end":
        return step
    if step is _Step.LISTENING:
        stream.play(prompt("ack"))
        say("app: caller finished speaking; asks for a key")
        return _Step.WAITING_FOR_KEY
    if step is _Step.INTERRUPTED:
        stream.play(prompt("goodbye"))
        say("app: says goodbye")
        return _Step.GOODBYE
    return step


async def handler(stream: MediaStream) -> None:
    """The demo conversation as a ``serve --app`` handler."""
    await conversation(stream)
