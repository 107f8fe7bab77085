"""A stream's deadlines after ``start``: a peer gone silent, a peer that stopped reading.

One :class:`Watchdog` per stream, one timer ticking four times per deadline, so a frame costs
a counter, not a timer: a deadline fires between 1 and 1.5 times its length after the last
sign of life. When the app blocks the event loop for longer than that, the time it was
blocked does not count against the peer.

Part of :mod:`mediastreams.session`: what that module exports is public, the rest of this
module may change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .limits import Limits

__all__ = ["Progress", "Watchdog"]

Progress = Callable[[], tuple[int, int, bool]]
"""``() -> (frames received, frames sent, a send is under way)``, read at each tick."""


class Watchdog:
    """Ends a stream whose peer went silent or stopped reading.

    Args:
        limits: ``idle_timeout_s`` (no frame received) and ``send_timeout_s`` (a send that
            makes no progress).
        progress: the stream's counters, read at each tick.
        on_timeout: called once, as ``on_timeout(reason, text)`` with the reason
            ``"idle"`` or ``"send-timeout"`` and a sentence for the log.
    """

    def __init__(
        self, limits: Limits, progress: Progress, on_timeout: Callable[[str, str], None]
    ) -> None:
        self._limits = limits
        self._progress = progress
        self._on_timeout = on_timeout
        self._period = min(limits.idle_timeout_s, limits.send_timeout_s) / 4
        self._timer: asyncio.TimerHandle | None = None
        self._in_seen = self._out_seen = 0
        self._last_in = self._last_out = 0.0

    def start(self) -> None:
        """Start watching, from now."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._in_seen, self._out_seen, _ = self._progress()
        self._last_in = self._last_out = now
        self._timer = loop.call_at(now + self._period, self._tick)

    def cancel(self) -> None:
        """Stop watching (the stream ended)."""
        if self._timer is not None:
            self._timer.cancel()

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = self._timer.when() if self._timer is not None else now
        if now - due > self._period:
            # The loop itself was blocked: frames may be waiting unread. Judge from now on.
            self._last_in = self._last_out = now
        frames_in, frames_out, sending = self._progress()
        if frames_in != self._in_seen:
            self._in_seen, self._last_in = frames_in, now
        if not sending or frames_out != self._out_seen:
            self._out_seen, self._last_out = frames_out, now
        limits = self._limits
        if now - self._last_in >= limits.idle_timeout_s:
            # Twilio sends a media frame every 20 ms for the whole call
            # (https://www.twilio.com/docs/voice/media-streams/websocket-messages#media-message):
            # silence this long means the peer is gone.
            self._on_timeout("idle", f"no frame from the peer for {limits.idle_timeout_s:g} s")
        elif now - self._last_out >= limits.send_timeout_s:
            self._on_timeout(
                "send-timeout", f"the peer read nothing for {limits.send_timeout_s:g} s"
            )
        else:
            self._timer = loop.call_at(now + self._period, self._tick)
