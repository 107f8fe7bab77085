"""A protocol mistake, in Twilio's terms: the error code, who made it, what is wrong, a hint.

:class:`Violation` is one mistake and :class:`Finding` one mistake found at a place in a
call (a trace line, a time). Every layer that judges frames or TwiML reports these: the
frame reader (:mod:`mediastreams.diagnostics`), both protocol sides, ``inspect`` and the
emulator. Codes and names: https://www.twilio.com/docs/api/errors (31900-31960).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal

from .wireformat import Sender

__all__ = [
    "CODES",
    "Code",
    "Finding",
    "Violation",
    "file_in_payload",
    "local_violation",
]


@dataclass(frozen=True, slots=True)
class Code:
    """One of Twilio's Media Streams error or warning codes."""

    code: int
    name: str
    level: Literal["error", "warning"]


# The Stream range of https://www.twilio.com/docs/api/errors, as far as this toolkit uses it,
# and the two webhook errors the emulator's TwiML leg reports (11200, 12100).
CODES: Mapping[int, Code] = {
    c.code: c
    for c in (
        Code(11200, "HTTP retrieval failure", "error"),
        Code(12100, "Document parse failure", "error"),
        Code(31900, "Unknown Error", "error"),
        Code(31901, "WebSocket - Connection Timeout", "error"),
        Code(31902, "WebSocket - Connection Refused", "error"),
        Code(31903, "WebSocket - Connection Broken Pipe", "error"),
        Code(31904, "WebSocket - Host Unreachable", "error"),
        Code(31910, "WebSocket - SSL Protocol Error", "error"),
        Code(31920, "WebSocket - Handshake Error", "error"),
        Code(31921, "WebSocket - Close Error", "error"),
        Code(31922, "Stream - URL Schema Not Supported", "error"),
        Code(31923, "Stream - Malformed URL", "error"),
        Code(31924, "WebSocket - Protocol Error", "error"),
        Code(31930, "Media - Buffer Overflow", "warning"),
        Code(31931, "Media - Media Discarded", "warning"),
        Code(31940, "Stream - Invalid connectorName", "error"),
        Code(31941, "Stream - Invalid Track configuration", "error"),
        Code(31950, "Protocol - Malformed Message", "warning"),
        Code(31951, "Protocol - Invalid Message", "warning"),
        Code(31953, "Media - RTP timeout", "warning"),
    )
}


@dataclass(frozen=True, slots=True)
class Violation:
    """One protocol mistake.

    Attributes:
        code: Twilio's error code (see :data:`CODES`).
        kind: a stable short name for the mistake, such as ``"unknown-field"``.
        sender: who sent the faulty frame, ``"app"`` or ``"twilio"``.
        message: what is wrong, in a sentence.
        hint: how to fix it.
        frame: the frame as sent (a binary frame as base64), when there is one.
        path: the field at fault, dotted (``"media.payload"``), when there is one.
    """

    code: int
    _: KW_ONLY  # Violation(31951, kind=..., sender=..., message=..., hint=...): five strings
    kind: str  # in a row are too easy to put in the wrong order
    sender: Sender
    message: str
    hint: str
    frame: str | None = field(default=None, repr=False)
    path: str | None = None

    @property
    def name(self) -> str:
        """Twilio's name for the code."""
        known = CODES.get(self.code)
        return known.name if known else "Unknown Error"

    def describe(self) -> str:
        """``"31951 Protocol - Invalid Message: <message>. <hint>"``."""
        stop = "" if self.message.endswith((".", "?", "!")) else "."
        return f"{self.code} {self.name}: {self.message}{stop} {self.hint}".rstrip()

    def __str__(self) -> str:
        """:meth:`describe`, after who sent the frame: ``"app: 31951 Protocol - ..."``."""
        return f"{self.sender}: {self.describe()}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by ``mediastreams inspect --json`` and the emulator's report."""
        return {
            "code": self.code,
            "kind": self.kind,
            "from": self.sender,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass(frozen=True, slots=True)
class Finding:
    """A violation, and where it was: the trace line of the frame, and when (seconds).

    ``line`` and ``t`` are ``None`` for what no frame caused (a refused connection).
    """

    violation: Violation
    line: int | None
    t: float | None

    def __str__(self) -> str:
        """The violation in full, after where it was: ``"line 12, 0.305 s: app: 31951 ..."``."""
        where = [f"line {self.line}"] if self.line is not None else []
        if self.t is not None:
            where.append(f"{self.t:.3f} s")
        return ", ".join(where) + ": " + str(self.violation) if where else str(self.violation)

    def to_dict(self) -> dict[str, Any]:
        """The shape of ``mediastreams inspect --json``: the violation, ``line`` and ``t``."""
        return {**self.violation.to_dict(), "line": self.line, "t": self.t}


def local_violation(kind: str, message: str, hint: str = "", *, code: int = 31951) -> Violation:
    """A mistake of the app's own, caught before the frame left (for LocalProtocolError)."""
    return Violation(
        code, kind=kind, sender="app", message=message, hint=hint or _LOCAL_HINTS.get(kind, "")
    )


_LOCAL_HINTS = {
    "empty-payload": "Send at least one byte of mu-law audio, or send nothing.",
    "missing-stream-sid": "Use the streamSid from the start frame.",
}


def file_in_payload(kind: str, *, sender: Sender, frame: str | None = None) -> Violation:
    """31924: ``media.payload`` starts with a file header (``kind``: ``"WAV"``, ``"MP3"``...)."""
    return Violation(
        31924,
        kind="payload-has-header",
        sender=sender,
        message=f"`media.payload` starts with a {kind} file header, not raw mu-law audio",
        hint="Twilio plays the bytes as mu-law, so the caller hears a click and noise. Convert "
        "the file to headerless mu-law 8000 Hz mono first (mediastreams.audio, or "
        "`mediastreams convert IN -o OUT.ulaw`) and strip the header.",
        frame=frame,
        path="media.payload",
    )
