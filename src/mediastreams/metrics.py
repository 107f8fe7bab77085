"""Prometheus metrics of a server (the ``metrics`` extra): ``serve --metrics`` at ``/metrics``.

What a stream does is read off its frames as they pass (:class:`MeteredTransport`), without
parsing the audio frames as JSON: the event name, the payload's length and Twilio's
timestamp are found in the text. Per-frame counts are kept per stream and added to the
shared counters about once a second, so the cost per frame stays a few string searches.

With ``serve --workers N`` every worker writes its figures to the directory named by
``PROMETHEUS_MULTIPROC_DIR`` (the supervisor sets it), and ``/metrics`` on any worker
answers for them all (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from .diagnostics import Violation
from .server.streams import CallOutcome
from .session import MediaStream, Transport
from .wireformat import FRAME_MS, SAMPLE_RATE

__all__ = ["CONTENT_TYPE", "MeteredTransport", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_FLUSH_EVERY_FRAMES = 50  # about a second of audio each way
_LEAD_SAMPLE_EVERY_FRAMES = 25
_MAX_MARKS_TIMED = 1000
_EVENT = re.compile(r'"event"\s*:\s*"(\w+)"')
_TIMESTAMP = re.compile(r'"timestamp"\s*:\s*"?(\d+)')
_MS_BUCKETS = (5, 10, 20, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 5000)
_S_BUCKETS = tuple(b / 1000 for b in _MS_BUCKETS)


class Metrics:
    """The figures of one server process, for Prometheus.

    Attributes:
        draining: 1 while the server drains (``/readyz`` answers 503).
    """

    def __init__(self) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise ImportError(
                "metrics need the prometheus-client package: pip install 'mediastreams[metrics]'"
            ) from None
        self._multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.calls_live = prom.Gauge(
            "mediastreams_calls_live",
            "Streams running now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.calls_started = prom.Counter(
            "mediastreams_calls_started", "Streams whose handler started.", registry=r
        )
        self.calls_ended = prom.Counter(
            "mediastreams_calls_ended",
            "Streams ended, by outcome: completed, handler-error, refused, not-started.",
            ["outcome"],
            registry=r,
        )
        self.frames = prom.Counter(
            "mediastreams_frames", "Media frames, by direction.", ["direction"], registry=r
        )
        self.audio_seconds = prom.Counter(
            "mediastreams_audio_seconds", "Audio carried, by direction.", ["direction"], registry=r
        )
        self.inbound_gaps = prom.Counter(
            "mediastreams_inbound_gaps",
            "Holes in Twilio's inbound media timestamps (audio Twilio did not send).",
            registry=r,
        )
        self.inbound_gap_seconds = prom.Counter(
            "mediastreams_inbound_gap_seconds", "Audio missing in those holes.", registry=r
        )
        self.outbound_lead_ms = prom.Histogram(
            "mediastreams_outbound_lead_ms",
            "Audio sent ahead of what Twilio confirmed playing, sampled twice a second.",
            buckets=_MS_BUCKETS,
            registry=r,
        )
        self.mark_round_trip = prom.Histogram(
            "mediastreams_mark_round_trip_seconds",
            "From a mark sent to its echo from Twilio.",
            buckets=_S_BUCKETS,
            registry=r,
        )
        self.clear_reaction = prom.Histogram(
            "mediastreams_clear_reaction_seconds",
            "From a clear sent to the first mark echo after it.",
            buckets=_S_BUCKETS,
            registry=r,
        )
        self.violations = prom.Counter(
            "mediastreams_violations",
            "Protocol violations, by Twilio error code and sender: frames from Twilio's side "
            "the session refused (twilio), and the app's own mistakes that ended its handler "
            "(app).",
            ["code", "sender"],
            registry=r,
        )
        self.handler_errors = prom.Counter(
            "mediastreams_handler_errors", "Handlers that raised.", registry=r
        )
        self.draining = prom.Gauge(
            "mediastreams_draining",
            "1 while the server drains.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.control_commands = prom.Counter(
            "mediastreams_control_commands",
            "Call control commands answered, by action and HTTP status.",
            ["action", "status"],
            registry=r,
        )

    def exposition(self) -> bytes:
        """The Prometheus text of every figure (of every worker, in multiprocess mode)."""
        import prometheus_client as prom

        if not self._multiprocess:
            return prom.generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return prom.generate_latest(registry)

    def call_started(self, stream: MediaStream) -> None:
        """A stream's handler starts."""
        self.calls_started.inc()
        self.calls_live.inc()

    def violation(self, violation: Violation) -> None:
        """One protocol violation (a frame refused, or the app's mistake)."""
        self.violations.labels(str(violation.code), violation.sender).inc()

    def call_ended(self, outcome: CallOutcome, stream: MediaStream) -> None:
        """A stream ended; ``outcome`` is what :func:`~mediastreams.server.run_stream` saw."""
        if outcome in (CallOutcome.COMPLETED, CallOutcome.HANDLER_ERROR):
            self.calls_live.dec()  # those two were counted in by call_started()
        if outcome is CallOutcome.HANDLER_ERROR:
            self.handler_errors.inc()
        self.calls_ended.labels(outcome).inc()
        transport = stream.transport
        if isinstance(transport, MeteredTransport):
            transport.flush()


class MeteredTransport:
    """A :class:`~mediastreams.session.Transport` that counts what passes for :class:`Metrics`.

    Args:
        inner: the WebSocket's transport.
        metrics: where the figures go.
    """

    def __init__(self, inner: Transport, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.stream: MediaStream | None = None
        self._in = _Direction(metrics, "inbound")
        self._out = _Direction(metrics, "outbound")
        self._last_timestamp_ms: int | None = None
        self._marks_sent: dict[str, float] = {}
        self._cleared_at: float | None = None
        self._out_frames = 0
        self._violations_counted: dict[int, int] = {}
        self._frames_in = 0

    async def receive(self) -> str | bytes | None:
        data = await self.inner.receive()
        if isinstance(data, str):
            self._inbound(data)
        return data

    async def send(self, text: str) -> None:
        self._outbound(text)
        await self.inner.send(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.flush()
        await self.inner.close(code, reason)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # the adapter's own attributes (peer...)

    def flush(self) -> None:
        """Add what this stream counted to the shared counters."""
        self._in.flush()
        self._out.flush()
        self._count_violations()

    def _count_violations(self) -> None:
        if self.stream is None:
            return
        # The session counts the frames it refused: add what is new since the last time.
        for code, count in self.stream.violations_by_code.items():
            new = count - self._violations_counted.get(code, 0)
            if new > 0:
                self.metrics.violations.labels(str(code), "twilio").inc(new)
                self._violations_counted[code] = count

    def _inbound(self, text: str) -> None:
        self._frames_in += 1
        if self._frames_in % _FLUSH_EVERY_FRAMES == 0:
            self._count_violations()  # the frames before this one: the session checked them
        event = _event(text)
        if event == "media":
            self._in.frame(_payload_bytes(text))
            self._gap(text)
        elif event == "mark":
            self._echo(text)

    def _outbound(self, text: str) -> None:
        event = _event(text)
        if event == "media":
            self._out.frame(_payload_bytes(text))
            self._out_frames += 1
            if self.stream is not None and self._out_frames % _LEAD_SAMPLE_EVERY_FRAMES == 0:
                self.metrics.outbound_lead_ms.observe(self.stream.pacer.lead_ms)
        elif event == "mark":
            name = _mark_name(text)
            if name is not None and len(self._marks_sent) < _MAX_MARKS_TIMED:
                self._marks_sent[name] = time.monotonic()
        elif event == "clear":
            self._cleared_at = time.monotonic()

    def _gap(self, text: str) -> None:
        found = _TIMESTAMP.search(text)
        if found is None:
            return
        timestamp_ms = int(found.group(1))
        last, self._last_timestamp_ms = self._last_timestamp_ms, timestamp_ms
        if last is not None and timestamp_ms - last > FRAME_MS * 1.5:
            self.metrics.inbound_gaps.inc()
            self.metrics.inbound_gap_seconds.inc((timestamp_ms - last - FRAME_MS) / 1000)

    def _echo(self, text: str) -> None:
        now = time.monotonic()
        if self._cleared_at is not None:
            self.metrics.clear_reaction.observe(now - self._cleared_at)
            self._cleared_at = None
        name = _mark_name(text)
        sent_at = self._marks_sent.pop(name, None) if name is not None else None
        if sent_at is not None:
            self.metrics.mark_round_trip.observe(now - sent_at)


class _Direction:
    """Frames and audio bytes of one direction of one stream, added up about once a second."""

    def __init__(self, metrics: Metrics, direction: str) -> None:
        self._frames_counter = metrics.frames.labels(direction)
        self._seconds_counter = metrics.audio_seconds.labels(direction)
        self._frames = 0
        self._bytes = 0

    def frame(self, payload_bytes: int) -> None:
        self._frames += 1
        self._bytes += payload_bytes
        if self._frames >= _FLUSH_EVERY_FRAMES:
            self.flush()

    def flush(self) -> None:
        if self._frames:
            self._frames_counter.inc(self._frames)
            self._seconds_counter.inc(self._bytes / SAMPLE_RATE)  # one byte a sample
            self._frames = self._bytes = 0


def _event(text: str) -> str | None:
    found = _EVENT.search(text, 0, 64)  # "event" comes first in Twilio's frames and the app's
    if found is None:
        found = _EVENT.search(text)
    return found.group(1) if found else None


def _payload_bytes(text: str) -> int:
    key = text.find('"payload"')
    if key < 0:
        return 0
    start = text.find('"', key + 9) + 1
    end = text.find('"', start)
    if start <= 0 or end < 0:
        return 0
    length = end - start
    padding = (text[end - 1] == "=") + (text[end - 2] == "=") if length >= 2 else 0
    return length * 3 // 4 - padding


def _mark_name(text: str) -> str | None:
    try:
        return str(json.loads(text)["mark"]["name"])
    except (ValueError, KeyError, TypeError):
        return None
