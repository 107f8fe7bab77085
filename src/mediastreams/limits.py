"""Every bound a server puts on one connection, and every deadline, in one place.

A Media Streams server listens on a public ``wss://`` URL, so anyone can open a socket to it.
Each limit below has a size or a deadline, the same on every backend (uvicorn, websockets,
picows) and adapter, so that no peer can hold memory, a file descriptor or a task forever.

The defaults sit next to python-websockets' own (``max_size`` 1 MiB, ``open_timeout`` 10 s,
``ping_interval`` and ``ping_timeout`` 20 s, ``max_queue`` 16 frames, ``write_limit``
32 KiB); where they differ, the field's comment says why. ``docs/security.md`` has the table
per backend.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "Limits"]


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Sizes and deadlines for one connection (all positive; ``None`` only where stated).

    Attributes:
        max_frame_bytes: an inbound WebSocket message above this ends the stream (close
            1009). Twilio's largest frame (``start``) is well under 2 KiB and a 20 ms
            ``media`` frame is about 330 bytes; websockets' default is 1 MiB.
        max_queued_frames: inbound events kept for a handler that does not read them; past
            this the oldest media frame is dropped (and counted), never a control frame.
            3000 frames is 60 s of 20 ms audio.
        max_queued_bytes: the same bound in bytes, so that large frames cannot multiply it.
        max_outbound_bytes: text waiting to be written to a peer that does not read; past
            this the writer waits (backpressure) and, if the peer still does not read within
            ``send_timeout_s``, the stream ends.
        send_timeout_s: how long one write may wait on a full outbound buffer.
        max_echo_backlog_ms: audio the echo handler holds for a caller whose playout falls
            behind; past this the oldest is dropped (and counted), so the caller hears the
            present, not a growing delay.
        header_timeout_s: time for a client to send a whole HTTP request head (slowloris).
        handshake_timeout_s: time from TCP accept to an open WebSocket (websockets'
            ``open_timeout``).
        start_timeout_s: time from the open WebSocket to Twilio's ``start`` frame.
        idle_timeout_s: after ``start``, no frame at all for this long means the peer is gone
            (Twilio sends ``media`` every 20 ms for the whole call).
        ping_interval_s: a WebSocket ping goes out this often.
        ping_timeout_s: a ping unanswered this long closes the connection.
        close_timeout_s: how long a close handshake may take before the socket is dropped.
        max_connections: open connections (HTTP and WebSocket) one process accepts; past this
            new ones get HTTP 503. ``None`` derives it from the process's file limit.
        max_webhook_bytes: the largest voice-webhook request body read (a real one is about
            1 KiB).
        max_control_bytes: the largest call-control request body read (the audio of a
            ``POST /calls/{CallSid}/play``: 16 MiB is half an hour of mu-law).
    """

    max_frame_bytes: int = 64 * 1024
    max_queued_frames: int = 3000
    max_queued_bytes: int = 1024 * 1024
    max_outbound_bytes: int = 1024 * 1024
    send_timeout_s: float = 10.0
    max_echo_backlog_ms: int = 2000
    header_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0
    start_timeout_s: float = 5.0
    idle_timeout_s: float = 10.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    close_timeout_s: float = 10.0
    max_connections: int | None = None
    max_webhook_bytes: int = 64 * 1024
    max_control_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value is None and name == "max_connections":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive number, not {value!r}")


DEFAULT_LIMITS = Limits()
"""The limits a server uses unless given others."""
