"""What the instances of one server share: stream tokens, call contexts, live calls, control.

One process keeps it in memory (:class:`LocalState`); workers and machines share it on Redis
(:class:`RedisState`, the ``redis`` extra, imported only when used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    CALL_TTL_S,
    HEARTBEAT_S,
    CallContext,
    CallGone,
    CallNotFound,
    CallRecord,
    CommandHandler,
    CommandTimeout,
    SharedState,
    StateUnavailable,
)
from .local import LocalState

if TYPE_CHECKING:
    from .redis import RedisState

__all__ = [
    "CALL_TTL_S",
    "HEARTBEAT_S",
    "CallContext",
    "CallGone",
    "CallNotFound",
    "CallRecord",
    "CommandHandler",
    "CommandTimeout",
    "LocalState",
    "RedisState",
    "SharedState",
    "StateUnavailable",
]


def __getattr__(name: str) -> Any:
    if name == "RedisState":
        from .redis import RedisState

        return RedisState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
