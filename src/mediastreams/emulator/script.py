"""What the caller does: speak audio files, stay silent, press keys, wait, hang up.

A script is a list of steps run in order, one 20 ms frame at a time::

    script = [
        WaitForQuiet(),                 # let the greeting play out
        Audio("question.wav"),          # any format mediastreams' audio module reads
        WaitForReply(after_ms=800),     # the app answers; 800 ms into its reply...
        Audio("stop.wav"),              # ...the caller talks over it (a barge-in)
        WaitForQuiet(),                 # wait until the app is done
        Press("42#"),                   # keys, in sequence (100 ms each)
        Press("9", at_ms=15_000),       # or at a fixed time
        Audio("hello.wav", at_ms=20_000),  # speech at a fixed time, whatever the app does
        Hangup(at_ms=30_000),           # or at a fixed time; by default after the script,
    ]                                   # once the app has been quiet for 2 s

Steps with ``at_ms`` happen at that time since the stream started, whatever the sequence is
doing (a timed :class:`Audio` holds the sequence while it plays). Inbound audio is mu-law at
8000 Hz; silence is ``0xFF``, as Twilio sends it.

The caller's speech is cut into utterances on silence, whatever the steps: an utterance
ends after :data:`UTTERANCE_END_QUIET_MS` of frames below the speech level (about -40 dBFS,
:mod:`mediastreams.emulator.loudness`).

The module's seams, one reader's worth each: the steps (:class:`Audio` to :class:`Hangup`);
cutting speech into utterances (:class:`UtteranceCutter`); the caller that runs the steps
(:class:`CallerScript`, or any :class:`Caller`); and the command line's ``--audio`` and
``--dtmf`` read into steps (:func:`cli_steps`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from ..audio import SILENCE_BYTE, to_mulaw
from ..audio.frames import FRAME_BYTES, FRAME_MS
from ..protocol import BYTES_PER_MS
from .loudness import voiced_frames

__all__ = [
    "UTTERANCE_END_QUIET_MS",
    "Audio",
    "Caller",
    "CallerScript",
    "Hangup",
    "Press",
    "Silence",
    "Step",
    "Utterance",
    "UtteranceCutter",
    "WaitForQuiet",
    "WaitForReply",
    "cli_steps",
    "default_steps",
    "parse_audio_option",
    "parse_dtmf_option",
]

DIGIT_MS = 100
"""How long a key press takes in the sequence (the caller hears silence)."""
UTTERANCE_END_QUIET_MS = 300
"""The caller's utterance ends after this much silence (frames below the speech level)."""
_REPLY_QUIET_MS = 500  # the app's audio, quiet this long, ends the stretch WaitForReply times
_SILENCE_FRAME = bytes([SILENCE_BYTE]) * FRAME_BYTES


@dataclass(frozen=True)
class Audio:
    """The caller speaks: an audio file, its bytes, or raw mu-law/8000.

    Attributes:
        source: a path, or the bytes of a file (WAV, MP3, FLAC, Ogg...).
        raw_mulaw: ``source`` is bytes of headerless mu-law at 8000 Hz, used as they are.
        at_ms: speak at this time since the stream started, whatever the app is doing,
            instead of in sequence. The sequence holds while a timed audio plays; a timed
            audio due while another plays follows it.
    """

    source: str | os.PathLike[str] | bytes
    raw_mulaw: bool = False
    at_ms: int | None = None

    def __post_init__(self) -> None:
        if self.at_ms is not None and self.at_ms < 0:
            raise ValueError(f"Audio(at_ms={self.at_ms}): the time must not be negative")


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
    not started to speak within ``timeout_ms``, the caller goes on anyway.
    """

    quiet_ms: int = 1000
    timeout_ms: int = 10_000


@dataclass(frozen=True)
class WaitForReply:
    """The caller waits until the app's reply has been playing for ``after_ms``.

    Put it before an :class:`Audio` to talk over the app (a barge-in). The reply is the one
    the caller hears when the step begins, or else the next one: it starts with the first
    audible audio after at least 500 ms of quiet. If the app does not start to speak within
    ``timeout_ms``, the caller goes on anyway.
    """

    after_ms: int = 0
    timeout_ms: int = 10_000

    def __post_init__(self) -> None:
        if self.after_ms < 0 or self.timeout_ms < 0:
            raise ValueError("WaitForReply: after_ms and timeout_ms must not be negative")


@dataclass(frozen=True)
class Hangup:
    """The caller hangs up: here in the sequence, or at ``at_ms`` since the stream started."""

    at_ms: int | None = None


Step: TypeAlias = Audio | Silence | Press | WaitForQuiet | WaitForReply | Hangup


@dataclass(frozen=True)
class Utterance:
    """One stretch of the caller's speech: its first voiced frame, and the end of its last.

    Attributes:
        onset_ms: when the first frame above about -40 dBFS started.
        end_ms: when the last one ended; 300 ms of quiet after it ended the utterance.
    """

    onset_ms: int
    end_ms: int


@dataclass
class _Loaded:
    step: Step
    mulaw: bytes = b""
    voiced: list[bool] = field(default_factory=list)
    ends_script: bool = False  # the automatic wait for quiet before the final hang-up


class UtteranceCutter:
    """Cuts the frames the caller sends into utterances on 300 ms of quiet.

    Feed it every tick's frame with :meth:`add` (``voiced``: :func:`~.loudness.is_audible`);
    :attr:`found` holds the utterances ended so far, :attr:`onset_ms` the one in progress.
    """

    _END_FRAMES = math.ceil(UTTERANCE_END_QUIET_MS / FRAME_MS)

    def __init__(self) -> None:
        self.found: list[Utterance] = []
        self._onset: int | None = None
        self._end = 0
        self._quiet_frames = 0

    @property
    def onset_ms(self) -> int | None:
        """The onset of the utterance in progress (``None``: the caller is quiet)."""
        return self._onset

    def add(self, now_ms: int, voiced: bool) -> None:
        """The caller's frame for the tick at ``now_ms``: speech or not."""
        if voiced:
            if self._onset is None:
                self._onset = now_ms
            self._end = now_ms + FRAME_MS
            self._quiet_frames = 0
        elif self._onset is not None:
            self._quiet_frames += 1
            if self._quiet_frames >= self._END_FRAMES:
                self.close()

    def close(self) -> None:
        """End the utterance in progress, if any (the call has ended)."""
        if self._onset is not None:
            self.found.append(Utterance(self._onset, self._end))
        self._onset = None
        self._quiet_frames = 0


class _TimedAudio:
    """The caller's timed :class:`Audio` steps, in order of time."""

    def __init__(self) -> None:
        self.pending: list[_Loaded] = []
        self._offset = 0

    def add(self, loaded: _Loaded) -> None:
        self.pending.append(loaded)
        self.pending.sort(key=_at_ms)

    def frame(self, now_ms: int) -> tuple[bytes, bool] | None:
        """The next frame of the timed audio due now, with whether it is voiced."""
        while self.pending and _at_ms(self.pending[0]) <= now_ms:
            loaded = self.pending[0]
            index = self._offset // FRAME_BYTES
            if index < len(loaded.voiced):
                self._offset += FRAME_BYTES
                return loaded.mulaw[index * FRAME_BYTES : self._offset], loaded.voiced[index]
            self.pending.pop(0)
            self._offset = 0
        return None


def _at_ms(loaded: _Loaded) -> int:
    assert isinstance(loaded.step, Audio) and loaded.step.at_ms is not None
    return loaded.step.at_ms


class Caller(Protocol):
    """What the line asks of the caller: one frame per 20 ms tick, and what was said.

    A :class:`CallerScript` is one; a live source (a microphone, a page:
    :class:`mediastreams.phone.LiveCaller`) is another, given to
    :func:`~mediastreams.emulator.place_call_async` as ``caller=``. The line calls
    :meth:`tick` from the event loop every 20 ms of the call's clock, so it must return at
    once (hand over what is buffered, silence if nothing is).
    """

    key_presses_ms: list[int]
    """When the caller pressed keys (the tick's time), in order."""

    @property
    def speech(self) -> list[Utterance]:
        """The caller's utterances so far, in order (cut with an :class:`UtteranceCutter`)."""
        ...

    def tick(self, now_ms: int, *, quiet_ms: int, app_spoke: bool) -> tuple[bytes, str, bool]:
        """The caller's frame for the 20 ms starting at ``now_ms`` (see
        :meth:`CallerScript.tick`): ``(frame, digits, hang_up)``."""
        ...

    def finish(self) -> None:
        """The call has ended: close the utterance in progress, if any."""
        ...


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
        self._timed_audio = _TimedAudio()
        self.hangup_at_ms: int | None = None
        for step in steps:
            self._add(step)
        if end_quiet_ms is not None and self.hangup_at_ms is None:
            wait = WaitForQuiet(end_quiet_ms, end_quiet_ms)
            self._steps.append(_Loaded(wait, ends_script=True))
            self._steps.append(_Loaded(Hangup()))
        self._index = 0
        self._offset = 0
        self._step_started_ms = 0
        self._spoken = False
        self._reply_started_ms: int | None = None  # when the app's current reply was first heard
        self._heard_quiet_ms = 0
        self._utterances = UtteranceCutter()
        self.key_presses_ms: list[int] = []
        """When the caller pressed keys (the tick's time), in order."""
        self.done = False

    @property
    def speech(self) -> list[Utterance]:
        """The caller's utterances so far, in order (the one in progress once closed)."""
        return self._utterances.found

    def _add(self, step: Step) -> None:
        if isinstance(step, Press) and step.at_ms is not None:
            self._timed_digits += [(step.at_ms, digit) for digit in step.digits]
        elif isinstance(step, Hangup) and step.at_ms is not None:
            earlier = self.hangup_at_ms if self.hangup_at_ms is not None else step.at_ms
            self.hangup_at_ms = min(step.at_ms, earlier)
        elif isinstance(step, Audio) and step.at_ms is not None:
            self._timed_audio.add(_load_audio(step))
        elif isinstance(step, Audio):
            self._steps.append(_load_audio(step))
        else:
            self._steps.append(_Loaded(step))

    @property
    def total_audio_ms(self) -> int:
        """Milliseconds of audio the script's :class:`Audio` steps hold."""
        loaded = self._steps + self._timed_audio.pending
        return sum(len(s.mulaw) for s in loaded) // BYTES_PER_MS

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
        # The app's reply as the caller hears it (for WaitForReply): it starts with audible
        # audio after at least 500 ms of quiet, and ends once the app has been quiet that long.
        if app_spoke:
            if self._reply_started_ms is None or self._heard_quiet_ms >= _REPLY_QUIET_MS:
                self._reply_started_ms = now_ms - FRAME_MS
        elif quiet_ms >= _REPLY_QUIET_MS:
            self._reply_started_ms = None
        self._heard_quiet_ms = quiet_ms
        frame, digits, hang_up = self._tick(now_ms, quiet_ms, app_spoke)
        if digits and not hang_up:
            self.key_presses_ms.append(now_ms)
        return frame, digits, hang_up

    def _tick(self, now_ms: int, quiet_ms: int, app_spoke: bool) -> tuple[bytes, str, bool]:
        digits = "".join(d for at, d in self._timed_digits if now_ms <= at < now_ms + FRAME_MS)
        if self.hangup_at_ms is not None and now_ms >= self.hangup_at_ms:
            return _SILENCE_FRAME, digits, True
        timed = self._timed_audio.frame(now_ms) if self._timed_audio.pending else None
        if timed is not None:
            self._step_started_ms += FRAME_MS  # the sequence holds while the caller speaks
            frame, voiced = timed
            self._utterances.add(now_ms, voiced)
            return frame, digits, False
        while self._index < len(self._steps):
            result = self._run(self._steps[self._index], now_ms, quiet_ms, app_spoke)
            if result is not None:
                frame, step_digits, hang_up, voiced = result
                if not hang_up:
                    self._utterances.add(now_ms, voiced)
                return frame, digits + step_digits, hang_up
            self._next_step(now_ms)
        self.done = True
        self._utterances.add(now_ms, False)
        return _SILENCE_FRAME, digits, False

    def _next_step(self, now_ms: int) -> None:
        self._index += 1
        self._offset = 0
        self._step_started_ms = now_ms
        self._spoken = False

    def _run(
        self, loaded: _Loaded, now_ms: int, quiet_ms: int, app_spoke: bool
    ) -> tuple[bytes, str, bool, bool] | None:
        step = loaded.step
        elapsed_ms = now_ms - self._step_started_ms
        quiet = (_SILENCE_FRAME, "", False, False)
        if isinstance(step, Audio):
            return self._audio_frame(loaded)
        if isinstance(step, Silence):
            return quiet if elapsed_ms < step.duration_ms else None
        if isinstance(step, Press):
            if self._offset == 0:  # the first frame of the step carries the keys
                self._offset = 1
                return _SILENCE_FRAME, step.digits, False, False
            return quiet if elapsed_ms < DIGIT_MS * len(step.digits) else None
        if isinstance(step, WaitForQuiet):
            if loaded.ends_script and self._timed_audio.pending:
                # Timed speech is still to come: the wait for the end starts after it.
                self._step_started_ms, self._spoken = now_ms + FRAME_MS, False
                return quiet
            self._spoken = self._spoken or app_spoke
            if self._spoken and quiet_ms >= step.quiet_ms:
                return None
            if not self._spoken and elapsed_ms >= step.timeout_ms:
                return None
            return quiet
        if isinstance(step, WaitForReply):
            started = self._reply_started_ms
            if started is None:
                return quiet if elapsed_ms < step.timeout_ms else None
            return quiet if now_ms < started + step.after_ms else None
        return _SILENCE_FRAME, "", True, False  # Hangup in sequence

    def _audio_frame(self, loaded: _Loaded) -> tuple[bytes, str, bool, bool] | None:
        index = self._offset // FRAME_BYTES
        if index >= len(loaded.voiced):
            return None
        frame = loaded.mulaw[self._offset : self._offset + FRAME_BYTES]
        self._offset += FRAME_BYTES
        return frame, "", False, loaded.voiced[index]

    def finish(self) -> None:
        """The call has ended: close the utterance in progress, if any."""
        self._utterances.close()


def _load_audio(step: Audio) -> _Loaded:
    if step.raw_mulaw:
        if not isinstance(step.source, bytes):
            raise TypeError("raw_mulaw=True takes bytes")
        mulaw = step.source
    else:
        mulaw = to_mulaw(step.source)
    padding = -len(mulaw) % FRAME_BYTES
    mulaw += bytes([SILENCE_BYTE]) * padding
    return _Loaded(step, mulaw, voiced_frames(mulaw))


def _seconds_ms(text: str, whole: str, form: str) -> int:
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"{whole!r}: expected {form}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{whole!r}: the time must be a number of seconds, not negative")
    return round(seconds * 1000)


def parse_dtmf_option(text: str) -> Press:
    """``"123#@4.5"`` (keys at 4.5 s) or ``"123#"`` (in sequence) as a :class:`Press`.

    Raises:
        ValueError: the text is not ``DIGITS`` or ``DIGITS@SECONDS``.
    """
    digits, at, seconds = text.partition("@")
    if not at:
        return Press(digits)
    return Press(digits, at_ms=_seconds_ms(seconds, text, "DIGITS@SECONDS, such as 1#@2.5"))


def parse_audio_option(text: str) -> Audio:
    """``"hello.wav@4.5"`` (spoken at 4.5 s) or ``"hello.wav"`` (in turn) as an :class:`Audio`.

    A file whose name holds an ``@`` is named as it is when what follows the last ``@`` is
    not a number.

    Raises:
        ValueError: the time after ``@`` is negative.
    """
    path, at, seconds = text.rpartition("@")
    if not at or not path:
        return Audio(text)
    try:
        float(seconds)
    except ValueError:
        return Audio(text)  # "me@home.wav": an @ in the name
    return Audio(path, at_ms=_seconds_ms(seconds, text, "FILE@SECONDS, such as hello.wav@2.5"))


def default_steps(audio: Sequence[str | os.PathLike[str]]) -> list[Step]:
    """The CLI's script: each file is a turn, spoken once the app has had its say.

    The first turn waits at most 2 s for a greeting to start; later turns wait up to 10 s
    for the app's answer to start, then until it has been quiet for a second.
    """
    return cli_steps([Audio(path) for path in audio])


def cli_steps(
    audio: Sequence[Audio],
    barge_in_after_ms: Sequence[int | None] = (),
    keys: Sequence[Press] = (),
) -> list[Step]:
    """The CLI's script from its ``--audio``, ``--barge-in-after`` and ``--dtmf`` options.

    An untimed file is a turn: spoken once the app has had its say (the first waits at most
    2 s for a greeting, later ones up to 10 s for the answer to start, then for a second of
    quiet), or, with ``barge_in_after_ms[i]``, that long after the app's reply starts. A
    timed file (``at_ms``) is spoken at its time whatever the app is doing. Keys without a
    time are turns too, after the files: pressed once the app has had its say.

    Raises:
        ValueError: a barge-in is asked for a timed file.
    """
    steps: list[Step] = []
    turns = 0
    for number, step in enumerate(audio):
        barge_ms = barge_in_after_ms[number] if number < len(barge_in_after_ms) else None
        if step.at_ms is not None:
            if barge_ms is not None:
                raise ValueError(
                    "--barge-in-after applies to the next --audio without @SECONDS, "
                    f"not to one spoken at {step.at_ms / 1000:g} s"
                )
        elif barge_ms is not None:
            steps.append(WaitForReply(after_ms=barge_ms))
        else:
            steps.append(WaitForQuiet(timeout_ms=2000 if turns == 0 else 10_000))
        turns += step.at_ms is None
        steps.append(step)
    for press in keys:
        if press.at_ms is None:
            steps.append(WaitForQuiet(timeout_ms=2000 if turns == 0 else 10_000))
            turns += 1
        steps.append(press)
    return steps
