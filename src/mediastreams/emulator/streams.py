"""What a stream of a call is: the plan Twilio opens it from, and its line in the report.

A :class:`StreamPlan` comes from a ``<Stream>`` (``<Connect>`` or ``<Start>``) or a REST
``Streams.json`` create; a :class:`StreamSummary` is the stream as the report lists it, from
the moment it is asked for to its end. :class:`~mediastreams.emulator.call.StreamRun` drives
one; :class:`~mediastreams.emulator.line.Line` holds them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from ..messages import Sender, new_sid
from ..violations import Finding

__all__ = [
    "TRACKS_BY_ATTRIBUTE",
    "EndedBy",
    "FindingObserver",
    "FrameObserver",
    "StreamPlan",
    "StreamSummary",
    "TickObserver",
]

FrameObserver = Callable[[float, Sender, "str | bytes"], None]
"""Sees each frame as it goes: seconds since ``start``, who sent it, the frame."""

TickObserver = Callable[[int, bytes, bytes], None]
"""Sees each 20 ms tick of the call: its time (ms since ``start``), the caller's frame (what
the caller said) and the frame the caller heard, 160 bytes of mu-law each."""

FindingObserver = Callable[[Finding], None]
"""Sees each violation of the call as it is found (every one, not only the report's
examples)."""

EndedBy: TypeAlias = Literal[
    "caller",
    "app",
    "twiml",
    "stop",
    "rest",
    "redirect",
    "interrupted",
    "failed",
    "refused",
    "error",
]
"""What ended a stream, or the call (see :class:`StreamSummary`; ``"error"``: a failure of the
emulator itself, raised after the call)."""

# https://www.twilio.com/docs/voice/twiml/stream#attributes-track: the attribute, and the
# `tracks` of `start` and the `media.track` values it gives (protocol.md §1.2).
TRACKS_BY_ATTRIBUTE: Mapping[str, tuple[str, ...]] = {
    "inbound_track": ("inbound",),
    "outbound_track": ("outbound",),
    "both_tracks": ("inbound", "outbound"),
}


@dataclass
class StreamPlan:
    """A stream Twilio is to open, from a ``<Stream>`` or a REST ``Streams.json`` create.

    Attributes:
        url: the URL Twilio connects to (absolute, without a query string).
        parameters: ``<Parameter>`` values, for ``start.customParameters``.
        bidirectional: ``<Connect>`` (``True``), or ``<Start>`` and REST (``False``).
        name: the stream's name, unique in the call (``<Stop>`` and REST stop by it).
        tracks: the tracks streamed: ``("inbound",)``, ``("outbound",)`` or both.
        status_callback, status_callback_method: where Twilio reports ``stream-started``,
            ``stream-stopped`` and ``stream-error``.
        stream_sid: the SID the stream will have (a REST create answers with it at once).
    """

    url: str
    parameters: dict[str, str]
    bidirectional: bool = True
    name: str | None = None
    tracks: tuple[str, ...] = ("inbound",)
    status_callback: str | None = None
    status_callback_method: str = "POST"
    stream_sid: str = field(default_factory=lambda: new_sid("MZ"))

    def summary(self) -> StreamSummary:
        """The stream's line in the report, before it opens."""
        return StreamSummary(self.url, self.name, self.bidirectional, self.tracks, self.stream_sid)


@dataclass
class StreamSummary:
    """One stream of the call, as the report lists it.

    Times are milliseconds of the call (since its first stream's ``start``). ``ended_by`` is
    ``None`` while the stream runs, then ``"caller"``, ``"app"`` (it closed the socket),
    ``"twiml"`` (the TwiML ended the call), ``"stop"`` (``<Stop><Stream>``), ``"rest"``,
    ``"redirect"`` (a REST update replaced the TwiML), ``"interrupted"``, ``"failed"``
    (never opened) or ``"refused"`` (over Twilio's limits).
    """

    url: str
    name: str | None
    bidirectional: bool
    tracks: tuple[str, ...]
    stream_sid: str
    started_ms: float | None = None
    ended_ms: float | None = None
    ended_by: EndedBy | None = None
    close_code: int | None = None
    frames_sent: int = 0
    frames_received: int = 0
    error: str | None = None

    @property
    def running(self) -> bool:
        """Opening or open: not ended yet."""
        return self.ended_by is None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as in the report's ``streams``."""
        return {
            "url": self.url,
            "name": self.name,
            "bidirectional": self.bidirectional,
            "tracks": list(self.tracks),
            "stream_sid": self.stream_sid if self.started_ms is not None else None,
            "started_ms": _round(self.started_ms),
            "ended_ms": _round(self.ended_ms),
            "ended_by": self.ended_by,
            "close_code": self.close_code,
            "frames_sent": self.frames_sent,
            "frames_received": self.frames_received,
            "error": self.error,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
