"""What the caller does: speak audio files, stay silent, press keys, wait, hang up.

A script is a list of steps run in order, one 20 ms frame at a time::

    script = [
        WaitForQuiet(),                 # let the greeting play out
        Audio("question.wav"),          # any format mediastreams' audio module reads
        WaitForQuiet(),                 # the app answers; wait until it is done
        Press("42#"),                   # keys, in sequence (100 ms each)
        Press("9", at_ms=15_000),       # or at a fixed time
        Hangup(at_ms=30_000),           # or at a fixed time; by default after the script,
    ]                                   # once the app has been quiet for 2 s

Steps with ``at_ms`` happen at that time since the stream started, whatever the sequence is
doing. Inbound audio is mu-law at 8000 Hz; silence is ``0xFF``, as Twilio sends it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np

from ..audio import SILENCE_BYTE, mulaw, to_mulaw

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "Audio",
    "CallerScript",
    "Hangup",
    "Press",
    "Silence",
    "SpeechSpan",
    "Step",
    "WaitForQuiet",
    "default_steps",
    "is_audible",
    "parse_dtmf_option",
]

FRAME_MS = 20
"""Twilio sends the caller's audio in 20 ms frames."""
FRAME_BYTES = 160
"""One 20 ms frame of mu-law/8000."""
DIGIT_MS = 100
"""How long a key press takes in the sequence (the caller hears silence)."""
_SILENCE_FRAME = bytes([SILENCE_BYTE]) * FRAME_BYTES
# A frame is speech when its level is above about -40 dBFS (RMS of 16-bit PCM).
_SPEECH_RMS = 328.0


@dataclass(frozen=True)
class Audio:
    """The caller speaks: an audio file, its bytes, or raw mu-law/8000.

    Attributes:
        source: a path, or the bytes of a file (WAV, MP3, FLAC, Ogg...).
        raw_mulaw: ``source`` is bytes of headerless mu-law at 8000 Hz, used as they are.
    """

    source: str | os.PathLike[str] | bytes
    raw_mulaw: bool = False


@dataclass(frozen=True)
class Silence:
    """The caller says nothing for ``duration_ms`` (frames of ``0xFF`` keep coming)."""

    duration_ms: int


@dataclass(frozen=True)
class Press:
    """The caller presses keys (``0-9 * # A-D``): in sequence, or at ``at_ms``."""

    digits: str
    at_ms: int | None = None

    def __post_init__(self) -> None:
        bad = [d for d in self.digits if d not in "0123456789*#ABCD"]
        if not self.digits or bad:
            raise ValueError(f"{self.digits!r} is not a sequence of DTMF keys (0-9 * # A-D)")


@dataclass(frozen=True)
class WaitForQuiet:
    """The caller waits until the app has spoken and gone quiet for ``quiet_ms``.

    The app is quiet when nothing audible is playing (silence frames are quiet). If it has
    not started to speak within
    ``timeout_ms``, the caller goes on anyway.
    """

    quiet_ms: int = 1000
    timeout_ms: int = 10_000


@dataclass(frozen=True)
class Hangup:
    """The caller hangs up: here in the sequence, or at ``at_ms`` since the stream started."""

    at_ms: int | None = None


Step: TypeAlias = Audio | Silence | Press | WaitForQuiet | Hangup


@dataclass(frozen=True)
class SpeechSpan:
    """Where the caller spoke: the first and the last frame above about -40 dBFS."""

    onset_ms: int
    end_ms: int


@dataclass
class _Loaded:
    step: Step
    mulaw: bytes = b""
    voiced: list[bool] = field(default_factory=list)


class CallerScript:
    """A script, loaded and ready to give one frame per 20 ms tick.

    Args:
        steps: the steps, in order.
        end_quiet_ms: after the last step, hang up once the app has been quiet this long
            (``None``: keep the line open until a timed :class:`Hangup`).

    Raises:
        AudioError: an audio file cannot be read.
    """

    def __init__(self, steps: Iterable[Step], *, end_quiet_ms: int | None = 2000) -> None:
        self._steps: list[_Loaded] = []
        self._timed_digits: list[tuple[int, str]] = []
        self.hangup_at_ms: int | None = None
        for step in steps:
            self._add(step)
        if end_quiet_ms is not None and self.hangup_at_ms is None:
            self._steps.append(_Loaded(WaitForQuiet(end_quiet_ms, end_quiet_ms)))
            self._steps.append(_Loaded(Hangup()))
        self._index = 0
        self._offset = 0
        self._step_started_ms = 0
        self._spoken = False
        self._span_onset: int | None = None
        self._span_end = 0
        self.speech: list[SpeechSpan] = []
        self.done = False

    def _add(self, step: Step) -> None:
        if isinstance(step, Press) and step.at_ms is not None:
            self._timed_digits += [(step.at_ms, digit) for digit in step.digits]
        elif isinstance(step, Hangup) and step.at_ms is not None:
            earlier = self.hangup_at_ms if self.hangup_at_ms is not None else step.at_ms
            self.hangup_at_ms = min(step.at_ms, earlier)
        elif isinstance(step, Audio):
            self._steps.append(_load_audio(step))
        else:
            self._steps.append(_Loaded(step))

    @property
    def total_audio_ms(self) -> int:
        """Milliseconds of audio the script's :class:`Audio` steps hold."""
        return sum(len(s.mulaw) for s in self._steps) // 8

    def tick(self, now_ms: int, *, quiet_ms: int, app_spoke: bool) -> tuple[bytes, str, bool]:
        """The caller's frame for the 20 ms starting at ``now_ms``.

        Args:
            now_ms: time since the stream started.
            quiet_ms: for how long the caller has heard nothing audible from the app.
            app_spoke: whether the caller heard the app in the previous tick.

        Returns:
            ``(frame, digits, hang_up)``: 160 bytes of mu-law, keys pressed now, and whether
            the caller hangs up now (then the frame is not sent).
        """
        digits = "".join(d for at, d in self._timed_digits if now_ms <= at < now_ms + FRAME_MS)
        if self.hangup_at_ms is not None and now_ms >= self.hangup_at_ms:
            return _SILENCE_FRAME, digits, True
        while self._index < len(self._steps):
            loaded = self._steps[self._index]
            result = self._run(loaded, now_ms, quiet_ms, app_spoke)
            if result is not None:
                frame, step_digits, hang_up = result
                return frame, digits + step_digits, hang_up
            self._next_step(now_ms)
        self.done = True
        return _SILENCE_FRAME, digits, False

    def _next_step(self, now_ms: int) -> None:
        self._close_span()
        self._index += 1
        self._offset = 0
        self._step_started_ms = now_ms
        self._spoken = False

    def _run(
        self, loaded: _Loaded, now_ms: int, quiet_ms: int, app_spoke: bool
    ) -> tuple[bytes, str, bool] | None:
        step = loaded.step
        elapsed_ms = now_ms - self._step_started_ms
        if isinstance(step, Audio):
            return self._audio_frame(loaded, now_ms)
        if isinstance(step, Silence):
            return (_SILENCE_FRAME, "", False) if elapsed_ms < step.duration_ms else None
        if isinstance(step, Press):
            if self._offset == 0:  # the first frame of the step carries the keys
                self._offset = 1
                return _SILENCE_FRAME, step.digits, False
            return (_SILENCE_FRAME, "", False) if elapsed_ms < DIGIT_MS * len(step.digits) else None
        if isinstance(step, WaitForQuiet):
            self._spoken = self._spoken or app_spoke
            if self._spoken and quiet_ms >= step.quiet_ms:
                return None
            if not self._spoken and elapsed_ms >= step.timeout_ms:
                return None
            return _SILENCE_FRAME, "", False
        return _SILENCE_FRAME, "", True  # Hangup in sequence

    def _audio_frame(self, loaded: _Loaded, now_ms: int) -> tuple[bytes, str, bool] | None:
        index = self._offset // FRAME_BYTES
        if index >= len(loaded.voiced):
            return None
        frame = loaded.mulaw[self._offset : self._offset + FRAME_BYTES]
        self._offset += FRAME_BYTES
        if loaded.voiced[index]:
            if self._span_onset is None:
                self._span_onset = now_ms
            self._span_end = now_ms + FRAME_MS
        return frame, "", False

    def _close_span(self) -> None:
        if self._span_onset is not None:
            self.speech.append(SpeechSpan(self._span_onset, self._span_end))
        self._span_onset = None

    def finish(self) -> None:
        """The call has ended: close the speech span in progress, if any."""
        self._close_span()


def _load_audio(step: Audio) -> _Loaded:
    if step.raw_mulaw:
        if not isinstance(step.source, bytes):
            raise TypeError("raw_mulaw=True takes bytes")
        mulaw = step.source
    else:
        mulaw = to_mulaw(step.source)
    padding = -len(mulaw) % FRAME_BYTES
    mulaw += bytes([SILENCE_BYTE]) * padding
    return _Loaded(step, mulaw, _voiced_frames(mulaw))


def _voiced_frames(mulaw: bytes) -> list[bool]:
    if not mulaw:
        return []
    codes = np.frombuffer(mulaw, dtype=np.uint8).reshape(-1, FRAME_BYTES)
    rms = np.sqrt(_SQUARES[codes].mean(axis=1))
    return [bool(v) for v in rms > _SPEECH_RMS]


def is_audible(mulaw: bytes) -> bool:
    """Whether a stretch of mu-law is louder than about -40 dBFS (not silence or hiss)."""
    if not mulaw or not mulaw.translate(None, _QUIET_CODES):
        return False  # empty, or nothing but codes too quiet to matter: no numpy call
    codes = np.frombuffer(mulaw, dtype=np.uint8)
    return bool(_SQUARES.take(codes).sum() > _SPEECH_RMS * _SPEECH_RMS * len(mulaw))


_SQUARES = np.frombuffer(mulaw.decode(bytes(range(256))), dtype="<i2").astype(np.float64) ** 2
# Codes whose sample alone is below the speech level: a frame of only these is quiet.
_QUIET_CODES = bytes(code for code in range(256) if _SQUARES[code] <= _SPEECH_RMS**2)


def parse_dtmf_option(text: str) -> Press:
    """``"123#@4.5"`` (keys at 4.5 s) or ``"123#"`` (in sequence) as a :class:`Press`.

    Raises:
        ValueError: the text is not ``DIGITS`` or ``DIGITS@SECONDS``.
    """
    digits, at, seconds = text.partition("@")
    if not at:
        return Press(digits)
    try:
        at_s = float(seconds)
    except ValueError:
        raise ValueError(f"{text!r}: expected DIGITS@SECONDS, such as 1#@2.5") from None
    if at_s < 0:
        raise ValueError(f"{text!r}: the time must not be negative")
    return Press(digits, at_ms=round(at_s * 1000))


def default_steps(audio: Sequence[str | os.PathLike[str]]) -> list[Step]:
    """The CLI's script: each file is a turn, spoken once the app has had its say.

    The first turn waits at most 2 s for a greeting to start; later turns wait up to 10 s
    for the app's answer to start, then until it has been quiet for a second.
    """
    steps: list[Step] = []
    for number, path in enumerate(audio):
        steps.append(WaitForQuiet(timeout_ms=2000 if number == 0 else 10_000))
        steps.append(Audio(path))
    return steps
