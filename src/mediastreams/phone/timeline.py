"""The call as it happens, for the page: waveforms, marks, clears, keys, turns, barge-ins.

:class:`LiveTimeline` watches the emulated call through its three live hooks (each frame of
the stream both ways, each 20 ms tick with what the caller said and heard, each finding) and
turns them into small JSON-ready events for the page's timeline. Times are milliseconds
since the call's first ``start``, as in the report.

The live figures follow the report's definitions where they can be known at once: a turn's
latency is from the end of the caller's utterance (300 ms of quiet after it) to the app's
next ``media`` frame; a ``clear`` throws away what Twilio had queued. Twilio's queue is
mirrored frame by frame (each tick plays up to 20 ms of it), so what a ``clear`` discarded is
exact; a reply ends as in the report (:mod:`mediastreams.emulator.measures`): after a long
idle stretch, or where the caller spoke or pressed a key while nothing was queued. A barge-in
is shown when the caller starts to speak while the app's audio is queued or playing; the
report after the hang-up, which sees the whole call, is the reference (the page redraws the
barge-ins from it).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

import numpy as np

from ..audio import mulaw
from ..emulator.measures import REPLY_IDLE_MS
from ..exceptions import ProtocolError
from ..messages import DTMF, Clear, Mark, Media, Start, Stop, parse
from ..violations import Finding
from ..wireformat import FRAME_BYTES, FRAME_MS
from .caller import LiveCaller

__all__ = ["ENVELOPE_POINTS", "Event", "LiveTimeline"]

Event = dict[str, Any]
"""One event for the page: ``{"type": ..., ...}``, JSON-ready."""

ENVELOPE_POINTS = 4
"""Peaks per 20 ms tick and direction in ``tick`` events (one per 5 ms)."""

_FULL_SCALE = 32768.0


def envelope(frame: bytes) -> list[float]:
    """The peaks of a mu-law frame, :data:`ENVELOPE_POINTS` of them, from 0 to 1."""
    samples = np.frombuffer(mulaw.decode(frame), dtype="<i2").astype(np.int32)
    if samples.size < ENVELOPE_POINTS:
        return [0.0] * ENVELOPE_POINTS
    cut = samples[: samples.size - samples.size % ENVELOPE_POINTS]
    peaks = np.abs(cut).reshape(ENVELOPE_POINTS, -1).max(axis=1) / _FULL_SCALE
    return [round(float(p), 3) for p in peaks]


class _Playout:
    """Twilio's queue of the app's audio, mirrored: what is queued, what a reply has played."""

    def __init__(self) -> None:
        self.queued_bytes = 0
        self.reply_played_bytes = 0  # of the reply under way
        self.idle_ms = REPLY_IDLE_MS  # how long nothing has been queued
        self.reply_over = True  # the next audio starts a new reply

    def tick(self, caller_speaking: bool) -> int:
        """Play one tick; the bytes of the app's audio it played."""
        played = min(self.queued_bytes, FRAME_BYTES)
        self.queued_bytes -= played
        if played:
            if self.reply_over:
                self.reply_played_bytes, self.reply_over = 0, False
            self.reply_played_bytes += played
            self.idle_ms = 0
        else:
            self.idle_ms += FRAME_MS
            # The report's boundary between replies: a long idle stretch, or caller speech.
            if self.idle_ms >= REPLY_IDLE_MS or caller_speaking:
                self.reply_over = True
        return played

    def key_pressed(self) -> None:
        """A key ends the caller's turn: pressed while nothing is queued, what the app plays
        next is a new reply (as the report counts replies)."""
        if not self.queued_bytes:
            self.reply_over = True

    def clear(self) -> int:
        discarded, self.queued_bytes = self.queued_bytes, 0
        self.reply_over = True
        return discarded


class LiveTimeline:
    """Turns the hooks of a live call into events for the page.

    Args:
        emit: called with each event, in order, from the call's event loop.
        caller: the call's caller (for its utterances).
    """

    def __init__(self, emit: Callable[[Event], None], caller: LiveCaller) -> None:
        self._emit = emit
        self._caller = caller
        self._playout = _Playout()
        self.now_ms = 0.0
        self._utterances_seen = 0
        self._onset_seen: int | None = None
        self._turn_ends: list[int] = []  # utterance ends waiting for the app's next media
        self._media_ms: list[float] = []  # when each of the app's media frames arrived
        self._marks_sent = 0
        self._marks_echoed = 0
        self._barge_in: Event | None = None  # open, waiting for the app's clear

    # --- the hooks -------------------------------------------------------------------------

    def frame(self, t_s: float, sender: str, frame: str | bytes) -> None:
        """A frame of the stream, ``t_s`` seconds after the call's first ``start``."""
        self.now_ms = max(self.now_ms, t_s * 1000)
        t = round(t_s * 1000, 1)
        if isinstance(frame, bytes):
            return  # a binary frame from the app: the finding says what is wrong with it
        try:
            message = parse(frame, sender="twilio" if sender == "twilio" else "app")
        except ProtocolError:
            return  # an invalid frame: its finding comes through finding()
        if sender == "twilio":
            self._from_twilio(message, t)
        else:
            self._from_app(message, t)

    def tick(self, now_ms: int, caller_frame: bytes, heard_frame: bytes) -> None:
        """One 20 ms tick: what the caller said, and what the caller heard."""
        self.now_ms = max(self.now_ms, now_ms)
        self._emit(
            {
                "type": "tick",
                "t": now_ms,
                "caller": envelope(caller_frame),
                "heard": envelope(heard_frame),
            }
        )
        speaking = self._caller.speaking_since_ms
        self._playout.tick(caller_speaking=speaking is not None)
        self._speech(speaking)

    def finding(self, finding: Finding) -> None:
        """A violation or warning, as it is found."""
        v = finding.violation
        self._emit(
            {
                "type": "violation",
                "t": round(self.now_ms, 1),
                "code": v.code,
                "kind": v.kind,
                "sender": v.sender,
                "message": v.message,
                "hint": v.hint,
            }
        )

    # --- frames ----------------------------------------------------------------------------

    def _from_twilio(self, message: object, t: float) -> None:
        if isinstance(message, Start):
            self._emit(
                {
                    "type": "start",
                    "t": t,
                    "stream_sid": message.stream_sid,
                    "parameters": message.custom_parameters,
                }
            )
        elif isinstance(message, DTMF):
            self._playout.key_pressed()
            self._emit({"type": "dtmf", "t": t, "digit": message.digit})
        elif isinstance(message, Mark):
            self._marks_echoed += 1
            self._emit({"type": "mark", "t": t, "name": message.name, "echo": True})
        elif isinstance(message, Stop):
            self._emit({"type": "stop", "t": t})

    def _from_app(self, message: object, t: float) -> None:
        if isinstance(message, Media):
            self._playout.queued_bytes += len(message.payload)
            self._media_ms.append(t)
            self._answer_turns(t)
        elif isinstance(message, Mark):
            self._marks_sent += 1
            self._emit({"type": "mark", "t": t, "name": message.name, "echo": False})
        elif isinstance(message, Clear):
            discarded = self._playout.clear()
            heard_ms = self._playout.reply_played_bytes / 8
            self._emit(
                {
                    "type": "clear",
                    "t": t,
                    "discarded_ms": discarded / 8,
                    "heard_ms": heard_ms,
                    # A clear echoes every mark still pending, at once.
                    "marks_echoed": self._marks_sent - self._marks_echoed,
                }
            )
            barge = self._barge_in
            if barge is not None:
                self._barge_in = None
                barge.update(
                    clear_ms=t,
                    clear_reaction_ms=round(t - barge["onset_ms"], 1),
                    heard_ms=heard_ms,
                    discarded_ms=discarded / 8,
                )
                self._emit(dict(barge))

    # --- the caller's speech ---------------------------------------------------------------

    def _speech(self, speaking_since_ms: int | None) -> None:
        if speaking_since_ms is not None and speaking_since_ms != self._onset_seen:
            self._onset_seen = speaking_since_ms
            self._emit({"type": "speech-start", "t": speaking_since_ms})
            if self._playout.queued_bytes:  # the app's audio is queued or playing
                self._barge_in = {
                    "type": "barge-in",
                    "onset_ms": speaking_since_ms,
                    "clear_ms": None,
                    "clear_reaction_ms": None,
                    "heard_ms": None,
                    "heard_before_ms": self._playout.reply_played_bytes / 8,
                    "discarded_ms": None,
                }
                self._emit(dict(self._barge_in))
        speech = self._caller.speech
        for utterance in speech[self._utterances_seen :]:
            self._emit(
                {"type": "speech", "onset_ms": utterance.onset_ms, "end_ms": utterance.end_ms}
            )
            # The utterance is known to be over 300 ms after its end: the app may have
            # answered meanwhile.
            index = bisect.bisect_left(self._media_ms, utterance.end_ms)
            if index < len(self._media_ms):
                self._emit_turn(utterance.end_ms, self._media_ms[index])
            else:
                self._turn_ends.append(utterance.end_ms)
        self._utterances_seen = len(speech)

    def _answer_turns(self, media_ms: float) -> None:
        """The app's ``media`` at ``media_ms`` answers every utterance that ended before it."""
        answered = [end for end in self._turn_ends if end <= media_ms]
        if not answered:
            return
        self._turn_ends = [end for end in self._turn_ends if end > media_ms]
        for end in answered:
            self._emit_turn(end, media_ms)

    def _emit_turn(self, speech_end_ms: int, reply_ms: float) -> None:
        self._emit(
            {
                "type": "turn",
                "speech_end_ms": speech_end_ms,
                "first_reply_ms": reply_ms,
                "latency_ms": round(reply_ms - speech_end_ms, 1),
            }
        )
