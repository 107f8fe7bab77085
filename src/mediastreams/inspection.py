"""Check a recorded call: replay its frames through both state machines, collect violations.

Twilio's frames go through an :class:`~mediastreams.protocol.AppProtocol` (so a loose Twilio
stand-in is caught too); the app's frames go through a
:class:`~mediastreams.protocol.TwilioProtocol` whose playout buffer drains at the pace of the
trace's timestamps, so an app that buffers more than 10 minutes gets its 31931.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .diagnostics import Finding, Violation
from .exceptions import LocalProtocolError, RemoteProtocolError
from .messages import Clear, Mark, Media, Start, Stop
from .protocol import BYTES_PER_MS, STREAMING, AppProtocol, TwilioProtocol
from .trace import TraceEntry, TraceError, frame_text

__all__ = ["Inspection", "inspect_trace"]


@dataclass
class Inspection:
    """What a trace shows: every violation, unreadable lines, and counts."""

    findings: list[Finding] = field(default_factory=list)
    errors: list[TraceError] = field(default_factory=list)
    frames: Counter[str] = field(default_factory=Counter)
    media_bytes: Counter[str] = field(default_factory=Counter)
    marks_sent: int = 0
    marks_echoed: int = 0
    clears: int = 0
    frames_after_stop: int = 0
    duration_s: float = 0.0

    @property
    def app_findings(self) -> list[Finding]:
        """Violations in what the app sent: these decide the exit code."""
        return [f for f in self.findings if f.violation.sender == "app"]

    def summary(self) -> dict[str, Any]:
        """Counts for the report."""
        return {
            "frames": {"twilio": self.frames["twilio"], "app": self.frames["app"]},
            "audio_ms": {
                side: self.media_bytes[side] // BYTES_PER_MS for side in ("twilio", "app")
            },
            "marks_sent": self.marks_sent,
            "marks_echoed": self.marks_echoed,
            "clears": self.clears,
            "frames_after_stop": self.frames_after_stop,
            "duration_s": round(self.duration_s, 3),
            "violations": {
                "app": len(self.app_findings),
                "twilio": len(self.findings) - len(self.app_findings),
            },
            "by_code": dict(sorted(Counter(f.violation.code for f in self.findings).items())),
            "unreadable_lines": len(self.errors),
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON report of ``mediastreams inspect --json``."""
        return {
            "violations": [f.to_dict() for f in self.findings],
            "summary": self.summary(),
            "unreadable_lines": [{"line": e.line, "message": e.message} for e in self.errors],
        }


class _Replay:
    def __init__(self) -> None:
        self.result = Inspection()
        self.app_side = AppProtocol()  # reads Twilio's frames
        self.twilio_side: TwilioProtocol | None = None  # reads the app's frames
        self.played_until = 0.0

    def feed(self, item: TraceEntry | TraceError) -> None:
        if isinstance(item, TraceError):
            self.result.errors.append(item)
            return
        self.result.frames[item.sender] += 1
        self.result.duration_s = max(self.result.duration_s, item.t)
        if item.sender == "twilio":
            self._from_twilio(item)
        else:
            self._from_app(item)

    def _from_twilio(self, entry: TraceEntry) -> None:
        try:
            if entry.binary is not None:
                self.app_side.receive_bytes(entry.binary)
            message = self.app_side.receive_text(frame_text(entry))
        except RemoteProtocolError as error:
            self._found(error.violation, entry)
            return
        if isinstance(message, Start):
            self._twilio_knows(message)
        elif isinstance(message, Media):
            self.result.media_bytes["twilio"] += len(message.payload)
        elif isinstance(message, Mark):
            self.result.marks_echoed += 1
        elif isinstance(message, Stop) and self.twilio_side is not None:
            self.twilio_side.close()

    def _twilio_knows(self, start: Start) -> None:
        side = TwilioProtocol(stream_sid=start.stream_sid, call_sid=start.call_sid)
        side.send_connected()
        side.send_start()
        side.data_to_send()
        self.twilio_side = side

    def _from_app(self, entry: TraceEntry) -> None:
        side = self.twilio_side or _not_started()
        self._play_until(side, entry.t)
        try:
            if entry.binary is not None:
                side.receive_bytes(entry.binary)
            message = side.receive_text(frame_text(entry))
        except RemoteProtocolError as error:
            if error.violation.kind == "after-stop":
                # Sent before the app learnt of the hang-up: it crossed Twilio's stop on the
                # wire, and Twilio drops it with the socket. Not a mistake.
                self.result.frames_after_stop += 1
                return
            self._found(error.violation, entry)
            return
        finally:
            self._collect_warnings(side, entry)
        self._count_app(message, entry)

    def _count_app(self, message: object, entry: TraceEntry) -> None:
        if isinstance(message, Media):
            self.result.media_bytes["app"] += len(message.payload)
        elif isinstance(message, Mark):
            self.result.marks_sent += 1
            self._expect_echo(message.name)
        elif isinstance(message, Clear):
            self.result.clears += 1

    def _expect_echo(self, name: str) -> None:
        # Let the app side know the mark, so its echo is matched.
        if self.app_side.state is STREAMING:
            try:
                self.app_side.send_mark(name)
            except LocalProtocolError:  # pragma: no cover - the state was just checked
                return
            self.app_side.data_to_send()

    def _play_until(self, side: TwilioProtocol, t: float) -> None:
        if t > self.played_until:
            side.play(int((t - self.played_until) * 1000 * BYTES_PER_MS))
            side.data_to_send()
            self.played_until = t

    def _collect_warnings(self, side: TwilioProtocol, entry: TraceEntry) -> None:
        for warning in side.warnings:
            self._found(warning, entry)
        side.warnings.clear()

    def _found(self, violation: Violation, entry: TraceEntry) -> None:
        self.result.findings.append(Finding(violation, entry.line, entry.t))


def _not_started() -> TwilioProtocol:
    side = TwilioProtocol()
    side.send_connected()  # connected, but no start yet: app frames are "too early"
    return side


def inspect_trace(items: Iterable[TraceEntry | TraceError]) -> Inspection:
    """Replay a trace (from :func:`~mediastreams.trace.read_trace`) and report what is wrong."""
    replay = _Replay()
    for item in items:
        replay.feed(item)
    return replay.result
