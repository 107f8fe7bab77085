"""What instances of one server share, whatever keeps it: the interface and its records.

:class:`SharedState` is the one interface; :class:`~.local.LocalState` keeps it in the
process (one server process), :class:`~.redis.RedisState` on Redis (workers and machines).
Every method is async and bounded in time, so a store that does not answer turns into
:class:`StateUnavailable` rather than a hang.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import MediaStreamsError

__all__ = [
    "CALL_TTL_S",
    "HEARTBEAT_S",
    "CallContext",
    "CallGone",
    "CallNotFound",
    "CallRecord",
    "CommandHandler",
    "CommandTimeout",
    "SharedState",
    "StateUnavailable",
]

#: How often an instance says its calls are still live.
HEARTBEAT_S = 2.0
#: A call not refreshed for this long (its instance died) leaves the registry; commands for
#: it get HTTP 410.
CALL_TTL_S = 10.0


class StateUnavailable(MediaStreamsError):
    """The shared store did not answer in time, or refused the connection."""


class CallNotFound(MediaStreamsError, LookupError):
    """No live call has this ``CallSid``: unknown, or it has ended (HTTP 404)."""


class CallGone(MediaStreamsError, LookupError):
    """The instance that held this call stopped answering: the call is lost (HTTP 410)."""


class CommandTimeout(MediaStreamsError, TimeoutError):
    """The instance that holds the call took the command but did not answer in time."""


@dataclass(frozen=True)
class CallContext:
    """What the voice webhook knew about a call, readable wherever its stream lands.

    Attributes:
        parameters: the webhook's parameters (the POST form, or the query string of a GET):
            ``CallSid``, ``From``, ``To``, ``AccountSid``...
        data: what the app returned from ``ServerConfig.on_webhook`` (JSON values).
    """

    parameters: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The context as JSON-ready data."""
        return {"parameters": dict(self.parameters), "data": dict(self.data)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> CallContext:
        """The context back from :meth:`to_json`."""
        return cls(dict(value.get("parameters", {})), dict(value.get("data", {})))


@dataclass(frozen=True)
class CallRecord:
    """A live call in the registry.

    Attributes:
        call_sid: the call.
        stream_sid: its stream.
        instance: the id of the server instance that holds its socket.
        started_at: when the stream started, in seconds since the epoch.
    """

    call_sid: str
    stream_sid: str
    instance: str
    started_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data (what ``GET /calls`` lists)."""
        return {
            "call_sid": self.call_sid,
            "stream_sid": self.stream_sid,
            "instance": self.instance,
            "started_at": self.started_at,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> CallRecord:
        """The record back from :meth:`to_json`."""
        return cls(
            str(value["call_sid"]),
            str(value["stream_sid"]),
            str(value["instance"]),
            float(value["started_at"]),
        )


CommandHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Acts on a command for a call this instance holds, and says what happened."""


class SharedState(ABC):
    """Stream tokens, call contexts, the registry of live calls and call control.

    The token rules are :class:`~mediastreams.security.TokenStore`'s, on every store: one
    token per call (a replayed webhook gets the pending token, or :class:`ReplayError`
    once it was used or expired), a bounded number pending (:class:`CapacityError` past
    it, never evicting), and a token redeemed once, for its call, before it expires.

    Attributes:
        instance: this instance's id in the registry.
        available: whether the store answered its latest request (a store in the process
            always does); ``/readyz`` answers 503 while it is ``False``.
    """

    instance: str
    available: bool = True

    async def start(self, on_command: CommandHandler | None = None) -> None:  # noqa: B027
        """Connect, and take the commands sent to this instance's calls."""

    async def close(self) -> None:  # noqa: B027 -- optional
        """Stop the heartbeat and the command listener; release the connection."""

    # --- tokens -------------------------------------------------------------------------------

    @abstractmethod
    async def mint_token(self, call_sid: str) -> str:
        """The stream token of ``call_sid``: a new one, or the one still pending.

        Raises:
            ReplayError: this call's token was already used or has expired.
            CapacityError: the store is full of pending tokens.
            StateUnavailable: the store did not answer.
        """

    @abstractmethod
    async def redeem_token(self, token: str | None, call_sid: str) -> None:
        """Accept and burn the pending token of ``call_sid``, once.

        Raises:
            SignatureError: the token is missing, not this call's, used or expired.
            StateUnavailable: the store did not answer.
        """

    # --- contexts -----------------------------------------------------------------------------

    @abstractmethod
    async def save_context(self, call_sid: str, context: CallContext) -> None:
        """Keep what the webhook learned about ``call_sid`` until its stream reads it.

        Raises:
            CapacityError: too many contexts are kept (an in-process store).
            StateUnavailable: the store did not answer.
        """

    @abstractmethod
    async def load_context(self, call_sid: str) -> CallContext | None:
        """The context the webhook saved for ``call_sid``, if any.

        Raises:
            StateUnavailable: the store did not answer.
        """

    # --- the registry -------------------------------------------------------------------------

    @abstractmethod
    async def register(self, record: CallRecord) -> None:
        """A call's stream started on this instance; it stays listed while this one lives.

        Raises:
            StateUnavailable: the store did not answer.
        """

    @abstractmethod
    async def unregister(self, call_sid: str) -> None:
        """The call's stream ended; its context goes too.

        Raises:
            StateUnavailable: the store did not answer.
        """

    @abstractmethod
    async def calls(self) -> list[CallRecord]:
        """Every live call, on every instance.

        Raises:
            StateUnavailable: the store did not answer.
        """

    @abstractmethod
    async def lookup(self, call_sid: str) -> CallRecord:
        """The live call ``call_sid``.

        Raises:
            CallNotFound: no such call, or it has ended.
            CallGone: its instance stopped answering within the last hour.
            StateUnavailable: the store did not answer.
        """

    # --- control ------------------------------------------------------------------------------

    @abstractmethod
    async def send_command(
        self, call_sid: str, command: dict[str, Any], *, timeout_s: float
    ) -> dict[str, Any]:
        """Deliver ``command`` to the instance that holds ``call_sid``; its answer.

        Raises:
            CallNotFound: no such call, or it has ended.
            CallGone: its instance does not answer.
            CommandTimeout: no answer within ``timeout_s``.
            StateUnavailable: the store did not answer.
        """
