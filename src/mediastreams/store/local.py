"""The shared state of a single server process, kept in its memory."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from ..exceptions import CapacityError
from ..security import StreamTokens, TokenStore
from .base import CallContext, CallNotFound, CallRecord, CommandHandler, SharedState

__all__ = ["LocalState"]


class LocalState(SharedState):
    """:class:`SharedState` in one process: what one ``serve`` without ``--redis`` uses.

    Args:
        tokens: the stream token store (``ServerConfig.stream_tokens``); ``None`` when
            tokens are off.
        max_contexts: contexts kept for calls whose stream has not started yet; past it,
            webhooks are refused (HTTP 503) rather than another call's context dropped.
        context_ttl_s: how long a context waits for its stream.
    """

    def __init__(
        self,
        tokens: TokenStore | None = None,
        *,
        max_contexts: int = 10_000,
        context_ttl_s: float = 3600.0,
    ) -> None:
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.tokens = tokens if tokens is not None else StreamTokens()
        self.max_contexts = max_contexts
        self.context_ttl_s = context_ttl_s
        self._contexts: dict[str, tuple[CallContext, float]] = {}
        self._calls: dict[str, CallRecord] = {}
        self._on_command: CommandHandler | None = None

    async def start(self, on_command: CommandHandler | None = None) -> None:
        self._on_command = on_command

    async def mint_token(self, call_sid: str) -> str:
        return self.tokens.mint_for(call_sid)

    async def redeem_token(self, token: str | None, call_sid: str) -> None:
        self.tokens.redeem(token, call_sid)

    async def save_context(self, call_sid: str, context: CallContext) -> None:
        now = time.monotonic()
        # One TTL for all: insertion order is expiry order.
        while self._contexts and next(iter(self._contexts.values()))[1] <= now:
            del self._contexts[next(iter(self._contexts))]
        if call_sid not in self._contexts and len(self._contexts) >= self.max_contexts:
            raise CapacityError(
                f"{len(self._contexts)} call contexts wait for their stream, the most this "
                "process keeps: new calls are refused until some start or expire"
            )
        self._contexts.pop(call_sid, None)
        self._contexts[call_sid] = (context, now + self.context_ttl_s)

    async def load_context(self, call_sid: str) -> CallContext | None:
        entry = self._contexts.get(call_sid)
        return entry[0] if entry is not None and entry[1] > time.monotonic() else None

    async def register(self, record: CallRecord) -> None:
        self._calls[record.call_sid] = record

    async def unregister(self, call_sid: str) -> None:
        self._calls.pop(call_sid, None)
        self._contexts.pop(call_sid, None)

    async def calls(self) -> list[CallRecord]:
        return list(self._calls.values())

    async def lookup(self, call_sid: str) -> CallRecord:
        record = self._calls.get(call_sid)
        if record is None:
            raise CallNotFound(f"no live call {call_sid!r} on this server")
        return record

    async def send_command(
        self, call_sid: str, command: dict[str, Any], *, timeout_s: float
    ) -> dict[str, Any]:
        await self.lookup(call_sid)
        if self._on_command is None:
            raise CallNotFound("this server takes no commands")
        return await self._on_command({**command, "call_sid": call_sid})
