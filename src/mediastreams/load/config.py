"""What a load run is asked to do, checked before anything starts.

:class:`LoadConfig` names the target (a stream URL, or a voice webhook whose TwiML names the
stream), how many calls, over how many processes, started how fast, for how long, and how the
callers talk. :meth:`LoadConfig.check` says what is wrong in words a command line can show.
"""

from __future__ import annotations

import dataclasses
import resource
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .caller import Turns

__all__ = ["MAX_CALLS_PER_PROCESS", "LoadConfig"]

MAX_CALLS_PER_PROCESS = 20_000
_SPARE_FILES = 64  # descriptors a process needs besides its calls' sockets


@dataclass(frozen=True)
class LoadConfig:
    """A load run.

    Attributes:
        target: the stream URL (``ws://``/``wss://``), or the voice webhook
            (``http://``/``https://``) asked for TwiML before each call, as Twilio does.
        calls: how many calls in all.
        processes: how many processes share them (one core each, at best).
        rate: calls started per second (a ramp); 0 starts them all at once.
        duration_s: how long each call streams once it has started.
        turns: how the callers talk (all the time, or in turns).
        auth_token: sign the webhook and the upgrade with ``X-Twilio-Signature``.
        parameters: ``start.customParameters`` for a stream URL target.
        account_sid: the calls' AccountSid (a fresh one when ``None``).
        drain_s: after a call's time is up the caller stops talking; this long at most is
            spent waiting for the echoes of its audio and for the app's audio and marks to
            play out before the ``stop``.
        open_timeout_s: the TCP connect, the webhook and the upgrade, at most.
    """

    target: str
    calls: int = 10
    processes: int = 1
    rate: float = 100.0
    duration_s: float = 30.0
    turns: Turns = field(default_factory=Turns)
    auth_token: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    account_sid: str | None = None
    drain_s: float = 10.0
    open_timeout_s: float = 10.0

    @property
    def webhook(self) -> bool:
        """Whether the target is a voice webhook (``http(s)://``), not a stream URL."""
        return urlsplit(self.target).scheme in ("http", "https")

    def check(self) -> None:
        """Raise :class:`ValueError` saying what is wrong and how to fix it."""
        parts = urlsplit(self.target)
        if parts.scheme not in ("ws", "wss", "http", "https") or not parts.hostname:
            raise ValueError(
                f"{self.target!r} is not a URL the generator can call: give the stream URL "
                "(ws://127.0.0.1:5050/media-stream) or the voice webhook "
                "(http://127.0.0.1:5050/incoming-call)"
            )
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError(f"{self.target!r}: the port is not a number") from None
        if self.calls < 1:
            raise ValueError("--calls must be at least 1")
        if not 1 <= self.processes <= self.calls:
            raise ValueError(f"--processes must be between 1 and the calls ({self.calls})")
        if self.rate < 0:
            raise ValueError("--rate must be 0 (all at once) or more calls a second")
        if self.duration_s <= 0 or self.drain_s < 0 or self.open_timeout_s <= 0:
            raise ValueError("--duration must be above 0 (and the drain and timeouts >= 0)")
        per_process = -(-self.calls // self.processes)
        if per_process > MAX_CALLS_PER_PROCESS:
            raise ValueError(
                f"{per_process:,} calls in one process is more than {MAX_CALLS_PER_PROCESS:,}: "
                "add --processes"
            )
        files = open_files_limit()
        if per_process + _SPARE_FILES > files:
            raise ValueError(
                f"{per_process:,} calls in one process need {per_process + _SPARE_FILES:,} open "
                f"files, and this process may open {files:,}: raise the limit (ulimit -n) or "
                "add --processes"
            )

    def share(self, process: int) -> list[int]:
        """The call numbers (from 0, in start order) process number ``process`` places."""
        return list(range(process, self.calls, self.processes))

    def start_offset_s(self, call: int) -> float:
        """When call number ``call`` starts, in seconds after the run's epoch."""
        return call / self.rate if self.rate else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for :meth:`from_dict` in a worker process."""
        data = dataclasses.asdict(self)
        data["turns"] = dataclasses.asdict(self.turns)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadConfig:
        return cls(**{**data, "turns": Turns(**data["turns"])})

    def public_dict(self) -> dict[str, Any]:
        """What the report shows of the run's options (no auth token)."""
        return {
            "target": self.target,
            "calls": self.calls,
            "processes": self.processes,
            "rate": self.rate,
            "duration_s": self.duration_s,
            "turns": f"{self.turns.talk_ms}/{self.turns.listen_ms}"
            if self.turns.listen_ms
            else None,
            "signed": self.auth_token is not None,
        }


def open_files_limit() -> int:
    """The open files this process may have, after raising the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft
