"""What a call showed: every violation, and how the app's timing felt to the caller.

Times are milliseconds since Twilio sent ``start``. The figures (see
:mod:`mediastreams.emulator.measures` for how replies, barge-ins, stalls and pauses are
found):

- ``time_to_first_audio_ms``: when the app's first ``media`` frame arrived.
- ``utterances``: the caller's speech, cut on 300 ms of silence.
- ``turns``: for each utterance, from its end to the first audio the app sent after it
  (``latency_ms``; ``None`` if the app never answered).
- ``replies``: the app's audio as Twilio played it, reply by reply.
- ``barge_ins``: utterances that began during a reply; the app's ``clear`` (``None`` if it
  talked over the caller), how much of the reply the caller had heard (``heard_ms``), the
  queued audio the clear threw away, and the audio the app still sent after it.
- ``stalls``: the playout running dry inside a reply; ``pauses``: quiet between replies.
- ``marks``: sent, echoed, and echoed because a ``clear`` dropped their audio.
- ``audio``: received, played, dropped inbound (31930), discarded by ``clear``.

The counts of the frames and the violations are a :class:`~mediastreams.tally.Tally`, as
``mediastreams inspect`` keeps them. :mod:`mediastreams.emulator.render` draws a report for
the terminal.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..audio.frames import FRAME_MS
from ..diagnostics import Finding
from ..exceptions import ViolationsFound
from ..protocol import BYTES_PER_MS
from ..tally import Tally
from .clock import clock_note, time_doubts
from .measures import STALL_LISTED_MS, BargeIn, Pause, Reply, Stall, Turn, measure
from .rest import RestRequest
from .script import Utterance
from .streams import EndedBy, StreamSummary
from .talkback import Talkback

__all__ = [
    "BargeIn",
    "CallReport",
    "Pause",
    "Reply",
    "Stall",
    "Turn",
]


@dataclass
class CallReport:
    """Everything a call showed. :meth:`to_dict` is the ``--json`` form.

    What the frames of the call's bidirectional streams were (counts, marks, clears) and every
    violation of the call are its :attr:`tally`, the one ``mediastreams inspect`` keeps of a
    trace: memory does not grow with a long call, however many mistakes it holds. Each kind of
    mistake is kept once (its first occurrence) with how often it happened.
    """

    target: str
    clock: str
    placed: bool = True
    stream_url: str | None = None
    stream_sid: str | None = None
    call_sid: str | None = None
    tally: Tally = field(default_factory=Tally)
    notes: list[str] = field(default_factory=list)
    twiml_verbs: list[str] = field(default_factory=list)
    prelude_ms: int = 0
    duration_ms: int = 0
    ended_by: EndedBy = "caller"
    time_to_first_audio_ms: float | None = None
    utterances: list[Utterance] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    barge_ins: list[BargeIn] = field(default_factory=list)
    stalls: list[Stall] = field(default_factory=list)
    stall_max_ms: int | None = None
    stall_at_ms: int | None = None
    stalled_ms: int = 0
    pauses: list[Pause] = field(default_factory=list)
    max_buffered_ms: float = 0.0
    audio_received_ms: float = 0.0
    audio_played_ms: float = 0.0
    inbound_dropped_ms: float = 0.0
    discarded_by_clear_ms: float = 0.0
    wall_s: float = 0.0
    streams: list[StreamSummary] = field(default_factory=list)
    rest_url: str | None = None
    rest_requests: list[RestRequest] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        """Every kind of mistake found in the call, the app's and Twilio's side's, each once:
        its first occurrence (``tally`` counts them all), in the order first seen."""
        return self.tally.findings

    @property
    def violations(self) -> list[Finding]:
        """The app's mistakes, each kind once (its first occurrence): ``[]`` when the app
        made none. :attr:`violation_count` counts every occurrence."""
        return [f for f in self.tally.findings if f.violation.sender == "app"]

    @property
    def violation_count(self) -> int:
        """How many mistakes the app made, every occurrence counted: these decide the exit code."""
        return self.tally.violations_by("app")

    @property
    def ok(self) -> bool:
        """The call was placed and the app made no mistake."""
        return self.placed and not self.violation_count

    @property
    def exit_code(self) -> int:
        """0: no mistake; 1: the app made one; 2: the call could not be placed; 130: it was
        interrupted (Ctrl-C) before it was placed."""
        if not self.placed:
            return 130 if self.ended_by == "interrupted" else 2
        return 1 if self.violation_count else 0

    def raise_for_violations(self) -> None:
        """Raise if the app made a mistake (or the call could not be placed); else nothing.

        The message lists every kind of mistake once, readably, with how often it happened:
        what a failing test should show.

        Raises:
            ViolationsFound: with :attr:`violations`; an ``AssertionError`` too.
        """
        if self.ok:
            return
        raise ViolationsFound(self._verdict(), self.violations)

    def _verdict(self) -> str:
        head = f"{self.target}: "
        if not self.placed and self.ended_by == "interrupted":
            head += "the call was interrupted before it was placed"
        elif not self.placed:
            head += "the call could not be placed"
        else:
            kinds = len(self.violations)
            head += f"the app made {self.violation_count} mistake(s), {kinds} kind(s)"
        lines = [head]
        for group in self.tally.groups.values():
            if group.first.violation.sender == "app":
                more = f", and {group.count - 1} more like it" if group.count > 1 else ""
                lines.append(f"- {group.first}{more}")
        if self.tally.ungrouped:
            lines.append(f"- and {self.tally.ungrouped} more of other kinds")
        return "\n".join(lines)

    @property
    def marks_sent(self) -> int:
        """Marks the app sent on its bidirectional streams."""
        return self.tally.marks_sent

    @property
    def marks_echoed(self) -> int:
        """Mark echoes Twilio sent back."""
        return self.tally.marks_echoed

    @property
    def marks_echoed_by_clear(self) -> int:
        """Of those, the echoes a ``clear`` caused (their audio was thrown away)."""
        return self.tally.marks_echoed_by_clear

    @property
    def clears(self) -> int:
        """``clear`` frames the app sent."""
        return self.tally.clears

    @property
    def frames_after_stop(self) -> int:
        """App frames that crossed the caller's ``stop`` on the wire (dropped, not a mistake)."""
        return self.tally.frames_after_stop

    @property
    def pause_max_ms(self) -> float | None:
        """The longest pause between two replies (``None``: fewer than two replies)."""
        return max((p.duration_ms for p in self.pauses), default=None)

    def codes(self) -> list[int]:
        """The distinct Twilio codes found, in order of first appearance."""
        return list(dict.fromkeys(code for code, *_ in self.tally.groups))

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data.

        The counts of the frames and the violations are the tally's keys, as
        ``mediastreams inspect --json`` prints them for the call's trace: ``frames``,
        ``binary_frames``, ``media_bytes``, ``audio_ms``, ``marks``, ``clears``,
        ``frames_after_stop``, ``violations`` (per side), ``by_code``, ``groups``.
        """
        return {
            "target": self.target,
            "clock": self.clock,
            "placed": self.placed,
            "exit_code": self.exit_code,
            "stream_url": self.stream_url,
            "stream_sid": self.stream_sid,
            "call_sid": self.call_sid,
            **self.tally.to_dict(),
            "notes": self.notes,
            "twiml": {"verbs": self.twiml_verbs, "prelude_ms": self.prelude_ms},
            "duration_ms": self.duration_ms,
            "ended_by": self.ended_by,
            **self._timing_dict(),
            "streams": [stream.to_dict() for stream in self.streams],
            "rest": None
            if self.rest_url is None
            else {
                "url": self.rest_url,
                "requests": [request.to_dict() for request in self.rest_requests],
            },
            "wall_s": round(self.wall_s, 4),
        }

    def _timing_dict(self) -> dict[str, Any]:
        return {
            "time_to_first_audio_ms": _round(self.time_to_first_audio_ms),
            "utterances": [{"onset_ms": u.onset_ms, "end_ms": u.end_ms} for u in self.utterances],
            "turns": [
                {
                    "speech_end_ms": t.speech_end_ms,
                    "first_reply_ms": _round(t.first_reply_ms),
                    "latency_ms": _round(t.latency_ms),
                }
                for t in self.turns
            ],
            "replies": [
                {
                    "start_ms": r.start_ms,
                    "end_ms": _round(r.end_ms),
                    "played_ms": _round(r.played_ms),
                    "clear_ms": _round(r.clear_ms),
                }
                for r in self.replies
            ],
            "barge_ins": [
                {
                    "onset_ms": b.onset_ms,
                    "clear_ms": _round(b.clear_ms),
                    "clear_reaction_ms": _round(b.clear_reaction_ms),
                    "heard_ms": _round(b.heard_ms),
                    "discarded_ms": _round(b.discarded_ms),
                    "audio_after_clear_ms": _round(b.audio_after_clear_ms),
                }
                for b in self.barge_ins
            ],
            "playout": {
                "stall_max_ms": self.stall_max_ms,
                "stall_at_ms": self.stall_at_ms,
                "stalled_ms": self.stalled_ms,
                "stalls": [{"at_ms": s.at_ms, "duration_ms": s.duration_ms} for s in self.stalls],
                "pause_max_ms": _round(self.pause_max_ms),
                "pauses": [
                    {
                        "at_ms": _round(p.at_ms),
                        "duration_ms": _round(p.duration_ms),
                        "cause": p.cause,
                    }
                    for p in self.pauses
                ],
                "max_buffered_ms": _round(self.max_buffered_ms),
            },
            "audio": {
                "received_ms": _round(self.audio_received_ms),
                "played_ms": _round(self.audio_played_ms),
                "inbound_dropped_ms": _round(self.inbound_dropped_ms),
                "discarded_by_clear_ms": _round(self.discarded_by_clear_ms),
            },
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as one line of JSON."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def add_measures(
        self, talkback: Talkback, speech: list[Utterance], keys_ms: Sequence[int] = ()
    ) -> None:
        """Fill the timing figures from what the bidirectional streams recorded, the
        caller's utterances and when the caller pressed keys."""
        self.duration_ms = talkback.duration_ms
        self.time_to_first_audio_ms = talkback.media_ms[0] if talkback.media_ms else None
        self.max_buffered_ms = talkback.max_buffered_ms
        self.audio_received_ms = talkback.received_bytes / BYTES_PER_MS
        self.audio_played_ms = talkback.played_bytes / BYTES_PER_MS
        self.inbound_dropped_ms = talkback.inbound_dropped * FRAME_MS
        self.discarded_by_clear_ms = talkback.discarded_by_clear_ms
        self.utterances = list(speech)
        found = measure(talkback, speech, keys_ms)
        self.turns, self.replies, self.barge_ins = found.turns, found.replies, found.barge_ins
        self.pauses = found.pauses
        self.stalls = [s for s in found.stalls if s.duration_ms >= STALL_LISTED_MS]
        self.stalled_ms = sum(s.duration_ms for s in found.stalls)
        longest = max(found.stalls, key=lambda s: s.duration_ms, default=None)
        if longest is not None:
            self.stall_max_ms, self.stall_at_ms = longest.duration_ms, longest.at_ms
        self.notes += _advice(self)
        if talkback.started_at_s is not None:
            until_s = talkback.started_at_s + talkback.duration_ms / 1000
            doubts = time_doubts(talkback.started_at_s, until_s)
            if doubts:
                self.notes.append(clock_note(doubts))


def _advice(report: CallReport) -> list[str]:
    """What the figures say about the app's habits; not protocol violations."""
    advice = []
    if report.audio_received_ms and not report.marks_sent:
        advice.append(
            f"the app sent {report.audio_received_ms:,.0f} ms of audio and no mark: it cannot "
            "know what the caller has heard (send a mark after each reply; Twilio echoes it "
            "once the audio before it has played)"
        )
    for barge in report.barge_ins:
        if barge.clear_ms is None:
            advice.append(
                f"the caller spoke over the app at {barge.onset_ms} ms and the app never sent "
                "clear: the caller kept hearing the audio already queued"
            )
        elif barge.audio_after_clear_ms:
            advice.append(
                f"after its clear at {barge.clear_ms:,.0f} ms the app still sent "
                f"{barge.audio_after_clear_ms:,.0f} ms of audio while the caller was speaking"
            )
    return advice


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
