"""What the two sides of a stream read, counted, in memory that does not grow with the call.

A :class:`Tally` takes each frame with what a protocol side's ``receive()`` made of it
(:class:`~mediastreams.protocol.Received`) and counts: frames and binary frames each way,
media bytes each way, marks the app sent, marks echoed (and how many by a ``clear``),
clears, app frames that crossed Twilio's ``stop``, and violations grouped by code, kind,
path and sender, each group with its first example and where it was. ``mediastreams inspect``
and the emulator print the same :meth:`Tally.to_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .diagnostics import Finding, Violation
from .messages import Clear, Mark, Media, Message, Sender
from .protocol import BYTES_PER_MS, AfterStop, Received

__all__ = ["MAX_GROUPS", "Tally", "ViolationGroup"]

MAX_GROUPS = 256
"""Distinct (code, kind, path, sender) groups kept; more are counted in ``ungrouped``."""
_SENDERS: tuple[Sender, ...] = ("twilio", "app")
_FRAME_CHARS = 4096


@dataclass
class ViolationGroup:
    """Every violation of one code, kind, path and sender: how many, and the first few.

    Attributes:
        count: how many times it happened.
        examples: the first ones, with their trace line and time (``Tally.examples`` of them,
            or all when that is ``None``).
    """

    count: int = 0
    examples: list[Finding] = field(default_factory=list)

    @property
    def first(self) -> Finding:
        """The first violation of the group."""
        return self.examples[0]

    def to_dict(self) -> dict[str, Any]:
        """The first violation (as :meth:`Finding.to_dict`), ``count``, and ``lines``: the
        trace lines of the examples kept."""
        lines = [f.line for f in self.examples if f.line is not None]
        return {**self.first.to_dict(), "count": self.count, "lines": lines}


class Tally:
    """Counts of what both sides of one stream read.

    Args:
        examples: violations kept per group (the first ones); ``None`` keeps them all (for a
            report that prints every one, at the cost of memory that grows with the call).

    Example::

        tally = Tally()
        received = twilio_side.receive(frame)        # a frame from the app
        tally.read("app", frame, received, line=12, t=0.24)
        tally.to_dict()["marks"]                     # {"sent": 1, "echoed": 0, ...}
    """

    def __init__(self, *, examples: int | None = 1) -> None:
        self.examples = examples
        self.frames: dict[Sender, int] = dict.fromkeys(_SENDERS, 0)
        self.binary_frames: dict[Sender, int] = dict.fromkeys(_SENDERS, 0)
        self.media_bytes: dict[Sender, int] = dict.fromkeys(_SENDERS, 0)
        self.marks_sent = 0
        self.marks_echoed = 0
        self.marks_echoed_by_clear = 0
        self.clears = 0
        self.frames_after_stop = 0
        self.groups: dict[tuple[int, str, str | None, Sender], ViolationGroup] = {}
        self.ungrouped = 0

    def read(
        self,
        sender: Sender,
        frame: str | bytes,
        received: Received[Any],
        *,
        line: int | None = None,
        t: float | None = None,
    ) -> None:
        """Count one frame ``sender`` sent, as the other side's ``receive()`` read it."""
        self.frames[sender] += 1
        if not isinstance(frame, str):
            self.binary_frames[sender] += 1
        if isinstance(received, AfterStop):
            self.frames_after_stop += 1
        elif received.message is not None:
            self._count(sender, received.message)
            if sender == "app" and isinstance(received.message, Clear):
                self.marks_echoed_by_clear += len(received.echoes)
        for violation in received.violations:
            self.found(violation, line=line, t=t)

    def _count(self, sender: Sender, message: Message) -> None:
        if isinstance(message, Media):
            self.media_bytes[sender] += len(message.payload)
        elif isinstance(message, Mark):
            if sender == "app":
                self.marks_sent += 1
            else:
                self.marks_echoed += 1
        elif isinstance(message, Clear):
            self.clears += 1

    def found(
        self, violation: Violation, *, line: int | None = None, t: float | None = None
    ) -> None:
        """Count a violation, from a frame or not (a dropped connection, 31930)."""
        key = (violation.code, violation.kind, violation.path, violation.sender)
        group = self.groups.get(key)
        if group is None:
            if len(self.groups) >= MAX_GROUPS:
                self.ungrouped += 1
                return
            group = self.groups[key] = ViolationGroup()
        group.count += 1
        if self.examples is None or len(group.examples) < self.examples:
            if violation.frame is not None and len(violation.frame) > _FRAME_CHARS:
                # The evidence, not a 64 KiB copy per group.
                violation = replace(violation, frame=violation.frame[:_FRAME_CHARS])
            group.examples.append(Finding(violation, line, t))

    @property
    def violations(self) -> int:
        """How many violations in all."""
        return sum(group.count for group in self.groups.values()) + self.ungrouped

    def violations_by(self, sender: Sender) -> int:
        """How many violations in what ``sender`` sent."""
        return sum(g.count for key, g in self.groups.items() if key[3] == sender)

    def to_dict(self) -> dict[str, Any]:
        """The counts, as ``mediastreams inspect --json`` and the emulator's report print them.

        Keys: ``frames``, ``binary_frames``, ``media_bytes`` and ``audio_ms`` (each
        ``{"twilio": n, "app": n}``), ``marks`` (``sent``, ``echoed``, ``echoed_by_clear``),
        ``clears``, ``frames_after_stop``, ``violations`` (``{"twilio": n, "app": n}``),
        ``by_code`` (``{"31951": n}``) and ``groups`` (the first violation of each group with
        its ``count``, ``line`` and ``t``, in the order first seen).
        """
        by_code: dict[str, int] = {}
        for (code, *_), group in sorted(self.groups.items(), key=lambda item: item[0][0]):
            by_code[str(code)] = by_code.get(str(code), 0) + group.count
        return {
            "frames": dict(self.frames),
            "binary_frames": dict(self.binary_frames),
            "media_bytes": dict(self.media_bytes),
            "audio_ms": {side: n // BYTES_PER_MS for side, n in self.media_bytes.items()},
            "marks": {
                "sent": self.marks_sent,
                "echoed": self.marks_echoed,
                "echoed_by_clear": self.marks_echoed_by_clear,
            },
            "clears": self.clears,
            "frames_after_stop": self.frames_after_stop,
            "violations": {side: self.violations_by(side) for side in _SENDERS},
            "by_code": by_code,
            "groups": [group.to_dict() for group in self.groups.values()],
            "ungrouped_violations": self.ungrouped,
        }
