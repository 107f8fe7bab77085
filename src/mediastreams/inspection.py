"""Check a recorded call: replay its frames through both state machines, count and collect.

The frames are read by a :class:`~mediastreams.tally.StreamReader`, as the emulator reads them
during a call: Twilio's through an :class:`~mediastreams.protocol.AppProtocol` (so a loose
Twilio stand-in is caught too), the app's through a
:class:`~mediastreams.protocol.TwilioProtocol` whose playout buffer drains at the pace of the
trace's timestamps, so an app that buffers more than 10 minutes gets its 31931. What each side
reads goes into one :class:`~mediastreams.tally.Tally`, the counts the emulator prints too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .diagnostics import Finding
from .messages import Start, Stop
from .tally import StreamReader, Tally
from .trace import TraceEntry, TraceError, frame_text
from .twilio_side import TwilioProtocol
from .wireformat import BYTES_PER_MS

__all__ = ["MAX_UNREADABLE_KEPT", "Inspection", "inspect_trace"]

MAX_UNREADABLE_KEPT = 1000
"""Unreadable lines kept with their message (all are counted)."""


@dataclass
class Inspection:
    """What a trace shows: the tally of both sides, unreadable lines, and how long it ran.

    Attributes:
        tally: frames, audio, marks and violations (grouped, with their first examples).
        errors: the first unreadable lines (all when the trace was inspected with
            ``examples=None``); :attr:`unreadable` counts them all.
        unreadable: how many lines could not be read.
        duration_s: the time of the last frame.
    """

    tally: Tally = field(default_factory=Tally)
    errors: list[TraceError] = field(default_factory=list)
    unreadable: int = 0
    duration_s: float = 0.0

    @property
    def findings(self) -> list[Finding]:
        """The violations kept as examples, in trace order."""
        return sorted(self.tally.findings, key=lambda f: (f.line is None, f.line or 0))

    @property
    def app_findings(self) -> list[Finding]:
        """Kept violations in what the app sent."""
        return [f for f in self.findings if f.violation.sender == "app"]

    @property
    def app_violations(self) -> int:
        """How many violations the app's frames carried: these decide the exit code."""
        return self.tally.violations_by("app")

    @property
    def frames(self) -> int:
        """Frames read, both ways."""
        return sum(self.tally.frames.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON report of ``mediastreams inspect --json``: the tally's keys, then
        ``duration_s`` and ``unreadable_lines`` (``count`` and the first ``lines``)."""
        return {
            **self.tally.to_dict(),
            "duration_s": round(self.duration_s, 3),
            "unreadable_lines": {
                "count": self.unreadable,
                "lines": [{"line": e.line, "message": e.message} for e in self.errors],
            },
        }

    def summary(self) -> dict[str, Any]:
        """The counts in the flat shape of earlier versions (``marks_sent``...).

        Kept for code written against it; :meth:`to_dict` has the tally's keys.
        """
        tally = self.tally
        return {
            "frames": dict(tally.frames),
            "audio_ms": {side: n // BYTES_PER_MS for side, n in tally.media_bytes.items()},
            "marks_sent": tally.marks_sent,
            "marks_echoed": tally.marks_echoed,
            "clears": tally.clears,
            "frames_after_stop": tally.frames_after_stop,
            "duration_s": round(self.duration_s, 3),
            "violations": {side: tally.violations_by(side) for side in ("app", "twilio")},
            "by_code": tally.by_code(),
            "unreadable_lines": self.unreadable,
        }


class _Replay:
    def __init__(self, examples: int | None) -> None:
        self.result = Inspection(tally=Tally(examples=examples))
        self.keep_errors = MAX_UNREADABLE_KEPT if examples is not None else None
        self.reader = StreamReader(self.result.tally)
        self.played_until = 0.0

    def feed(self, item: TraceEntry | TraceError) -> None:
        if isinstance(item, TraceError):
            self.result.unreadable += 1
            if self.keep_errors is None or len(self.result.errors) < self.keep_errors:
                self.result.errors.append(item)
            return
        self.result.duration_s = max(self.result.duration_s, item.t)
        frame = item.binary if item.binary is not None else frame_text(item)
        if item.sender == "twilio":
            self._from_twilio(item, frame)
        else:
            self._from_app(item, frame)

    def _from_twilio(self, entry: TraceEntry, frame: str | bytes) -> None:
        received = self.reader.from_twilio(frame, line=entry.line, t=entry.t)
        if isinstance(received.message, Start):
            self.reader.twilio_side = _twilio_knows(received.message)
        elif isinstance(received.message, Stop):
            self.reader.twilio_side.close()

    def _from_app(self, entry: TraceEntry, frame: str | bytes) -> None:
        self._play_until(self.reader.twilio_side, entry.t)
        self.reader.from_app(frame, line=entry.line, t=entry.t)
        self.reader.twilio_side.data_to_send()  # echoes: the trace has Twilio's own

    def _play_until(self, side: TwilioProtocol, t: float) -> None:
        if t > self.played_until:
            # No more than is buffered: a trace's times can be anything, 1e300 s included.
            elapsed_bytes = (t - self.played_until) * 1000 * BYTES_PER_MS
            side.play(int(min(elapsed_bytes, side.buffered_bytes)))
            side.data_to_send()
            self.played_until = t


def _twilio_knows(start: Start) -> TwilioProtocol:
    """Twilio's side of the stream the trace's ``start`` announced."""
    side = TwilioProtocol(stream_sid=start.stream_sid, call_sid=start.call_sid)
    side.send_connected()
    side.send_start()
    side.data_to_send()
    return side


def inspect_trace(
    items: Iterable[TraceEntry | TraceError], *, examples: int | None = 3
) -> Inspection:
    """Replay a trace (from :func:`~mediastreams.trace.read_trace`) and report what is wrong.

    Args:
        items: the trace's lines.
        examples: violations kept per group, and (with ``None``) every unreadable line too;
            ``None`` keeps them all. Memory does not grow with the trace otherwise.
    """
    replay = _Replay(examples)
    for item in items:
        replay.feed(item)
    return replay.result
