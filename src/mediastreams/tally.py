"""What the two sides of a stream read, counted, in memory that does not grow with the call.

A :class:`Tally` takes each frame with what a protocol side's ``receive()`` made of it
(:class:`~mediastreams.protocol.Received`) and counts: frames and binary frames each way,
media bytes each way, marks the app sent, marks echoed (and how many by a ``clear``),
clears, app frames that crossed Twilio's ``stop``, and violations grouped by code, kind,
path and sender, each group with its first example and where it was.

A :class:`StreamReader` is the one place a frame of a stream is read: the app's frames through
Twilio's side (:class:`~mediastreams.protocol.TwilioProtocol`), Twilio's through an
:class:`~mediastreams.protocol.AppProtocol`, both into one tally. ``mediastreams inspect``
(replaying a trace) and the emulator (during the call) read through it, so a protocol rule
lives in one place and both print the same :meth:`Tally.to_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .diagnostics import Finding, Violation
from .exceptions import LocalProtocolError
from .messages import AppMessage, Clear, Mark, Media, Message, TwilioMessage
from .protocol import STREAMING, AfterStop, AppProtocol, Received
from .twilio_side import TwilioProtocol
from .wireformat import BYTES_PER_MS, Sender

__all__ = ["FRAME_CHARS_SHOWN", "MAX_GROUPS", "StreamReader", "Tally", "ViolationGroup"]

MAX_GROUPS = 256
"""Distinct (code, kind, path, sender) groups kept; more are counted in ``ungrouped``."""
_SENDERS: tuple[Sender, ...] = ("twilio", "app")
_FRAME_CHARS = 4096
FRAME_CHARS_SHOWN = 1000
"""Characters of a group's first faulty frame in :meth:`ViolationGroup.to_dict` (a payload may
be megabytes)."""


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
        """The first violation (as :meth:`Finding.to_dict`), its ``frame`` (the first
        :data:`FRAME_CHARS_SHOWN` characters, or ``None``), ``count``, and ``lines``: the trace
        lines of the examples kept."""
        lines = [f.line for f in self.examples if f.line is not None]
        frame = (self.first.violation.frame or "")[:FRAME_CHARS_SHOWN] or None
        return {**self.first.to_dict(), "frame": frame, "count": self.count, "lines": lines}


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
    def findings(self) -> list[Finding]:
        """The violations kept as examples, the first of each group first, in the order the
        groups were first seen."""
        return [finding for group in self.groups.values() for finding in group.examples]

    @property
    def violations(self) -> int:
        """How many violations in all."""
        return sum(group.count for group in self.groups.values()) + self.ungrouped

    def violations_by(self, sender: Sender) -> int:
        """How many violations in what ``sender`` sent."""
        return sum(g.count for key, g in self.groups.items() if key[3] == sender)

    def by_code(self) -> dict[int, int]:
        """How many violations of each Twilio code, in the order of the codes."""
        counts: dict[int, int] = {}
        for (code, *_), group in sorted(self.groups.items(), key=lambda item: item[0][0]):
            counts[code] = counts.get(code, 0) + group.count
        return counts

    def to_dict(self) -> dict[str, Any]:
        """The counts, as ``mediastreams inspect --json`` and the emulator's report print them.

        Keys: ``frames``, ``binary_frames``, ``media_bytes`` and ``audio_ms`` (each
        ``{"twilio": n, "app": n}``), ``marks`` (``sent``, ``echoed``, ``echoed_by_clear``),
        ``clears``, ``frames_after_stop``, ``violations`` (``{"twilio": n, "app": n}``),
        ``by_code`` (``{"31951": n}``) and ``groups`` (the first violation of each group with
        its ``count``, ``line`` and ``t``, in the order first seen).
        """
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
            "by_code": {str(code): count for code, count in self.by_code().items()},
            "groups": [group.to_dict() for group in self.groups.values()],
            "ungrouped_violations": self.ungrouped,
        }


class StreamReader:
    """Reads every frame of one stream, both ways, into a :class:`Tally`.

    The app's frames go through Twilio's side (``twilio_side``: what Twilio does with them,
    its playout buffer and mark echoes included), Twilio's frames through an
    :class:`~mediastreams.protocol.AppProtocol` (what an app makes of them: a loose Twilio
    stand-in is caught too). A mark the app sends is made known to the app's side, so that its
    echo is matched.

    Args:
        tally: where the counts go (several streams may share one).
        twilio_side: Twilio's side of the stream; by default one that has sent ``connected``
            and is waiting to send ``start`` (set :attr:`twilio_side` once it is known).

    Example::

        reader = StreamReader(Tally(), twilio)
        reader.from_twilio(frame_twilio_sent, line=1, t=0.0)
        received = reader.from_app(frame_the_app_sent, line=2, t=0.02)
    """

    def __init__(self, tally: Tally, twilio_side: TwilioProtocol | None = None) -> None:
        self.tally = tally
        self.app_side = AppProtocol()
        if twilio_side is None:
            twilio_side = TwilioProtocol()
            twilio_side.send_connected()  # no start yet: app frames are "too early"
            twilio_side.data_to_send()
        self.twilio_side = twilio_side

    def from_twilio(
        self, frame: str | bytes, *, line: int | None = None, t: float | None = None
    ) -> Received[TwilioMessage]:
        """Read and count a frame Twilio sent."""
        received = self.app_side.receive(frame)
        self.tally.read("twilio", frame, received, line=line, t=t)
        return received

    def from_app(
        self, frame: str | bytes, *, line: int | None = None, t: float | None = None
    ) -> Received[AppMessage]:
        """Read, act on (as Twilio would) and count a frame the app sent.

        The frames Twilio's side answers with (mark echoes) wait in its ``data_to_send()``.
        """
        received = self.twilio_side.receive(frame)
        self.tally.read("app", frame, received, line=line, t=t)
        if type(received.message) is Mark and self.app_side.state is STREAMING:
            # The app's side did not send it (the app did): let it expect the echo.
            try:
                self.app_side.send_mark(received.message.name)
            except LocalProtocolError:
                # A name the app's side refuses to send (empty): its echo is then reported
                # as an unknown mark in Twilio's frames, which does not count against the app.
                return received
            self.app_side.data_to_send()
        return received
