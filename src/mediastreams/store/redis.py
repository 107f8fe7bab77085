"""The shared state on Redis (the ``redis`` extra): workers of one machine, and many machines.

Every rule that must hold across instances runs inside Redis, in one Lua script per
operation, so it is atomic whoever calls: a token is minted once per call and redeemed once
even when two sockets race for it; a call's registry entry expires unless its instance keeps
refreshing it. Times come from Redis's own clock (``TIME``), so instances' clocks need not
agree. Commands go to the instance that holds a call over pub/sub, and its answer comes back
on the sender's own channel.

Keys, under the namespace (``mediastreams`` by default): ``tokens`` and ``tokens:expiry``
(pending tokens and when they expire), ``spent`` and ``spent:forget`` (calls whose token was
used or expired), ``calls`` and ``calls:live`` (the registry and each call's expiry),
``ended:<CallSid>``, ``context:<CallSid>``; channels ``control:<instance>``.

The module's seams: the Lua scripts (each rule, atomic, at the top) and :class:`RedisState`,
which runs them and keeps the instance alive in the registry (heartbeat, pub/sub listener,
reconnection). A script is read beside the method that runs it, so they stay in one module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..connections import Throttle
from ..exceptions import CapacityError, ReplayError, SignatureError
from ..security import StreamTokens, TokenStore, loggable
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

__all__ = ["RedisState"]

logger = logging.getLogger("mediastreams.store")

T = TypeVar("T")

# Shared by the token scripts: the current time in ms, expired tokens moved to "spent", old
# memories of spent calls forgotten, and at most max_remembered of them kept (the oldest go).
_SWEEP = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local remember_ms, max_remembered = tonumber(ARGV[3]), tonumber(ARGV[4])
local function remember(sid, reason)
  redis.call('HSET', KEYS[3], sid, reason)
  redis.call('ZADD', KEYS[4], now + remember_ms, sid)
  local excess = redis.call('ZCARD', KEYS[4]) - max_remembered
  if excess > 0 then
    local popped = redis.call('ZPOPMIN', KEYS[4], excess)
    for i = 1, #popped, 2 do redis.call('HDEL', KEYS[3], popped[i]) end
  end
end
for _, sid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('HDEL', KEYS[1], sid)
  redis.call('ZREM', KEYS[2], sid)
  remember(sid, 'expired')
end
for _, sid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('HDEL', KEYS[3], sid)
  redis.call('ZREM', KEYS[4], sid)
end
"""

# KEYS: tokens, tokens:expiry, spent, spent:forget.
# ARGV: CallSid, a fresh token, remember_ms, max_remembered, ttl_ms, max_pending.
_MINT = (
    _SWEEP
    + """
local pending = redis.call('HGET', KEYS[1], ARGV[1])
if pending then return {'pending', pending} end
local spent = redis.call('HGET', KEYS[3], ARGV[1])
if spent then return {'spent', spent} end
local count = redis.call('ZCARD', KEYS[2])
if count >= tonumber(ARGV[6]) then return {'full', tostring(count)} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[1])
return {'new', ARGV[2]}
"""
)

# KEYS: as _MINT. ARGV: CallSid, the token received, remember_ms, max_remembered.
# Redis's Lua interns every string, so comparing two is one pointer comparison whatever
# their content: no timing tells how much of a guess was right.
_REDEEM = (
    _SWEEP
    + """
local pending = redis.call('HGET', KEYS[1], ARGV[1])
if not pending then
  local spent = redis.call('HGET', KEYS[3], ARGV[1])
  if spent then return {'spent', spent} end
  return {'none', ''}
end
if pending ~= ARGV[2] then return {'wrong', ''} end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
remember(ARGV[1], 'used')
return {'ok', ''}
"""
)

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# KEYS: calls, calls:live, ended:<sid>. ARGV: CallSid, the record, ttl_ms.
_REGISTER = (
    _NOW
    + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('DEL', KEYS[3])
return 1
"""
)

# KEYS: calls:live. ARGV: ttl_ms, then the CallSids this instance holds (only live ones
# are refreshed: XX never brings back a call that was declared gone).
_HEARTBEAT = (
    _NOW
    + """
local expires = now + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', 'GT', expires, ARGV[i]) end
return #ARGV - 1
"""
)

# KEYS: calls, calls:live, ended:<sid>, context:<sid>. ARGV: CallSid, how long to remember.
_UNREGISTER = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], '1', 'EX', ARGV[2])
redis.call('DEL', KEYS[4])
return 1
"""

# KEYS: calls, calls:live. ARGV: how long (ms) a gone call is still answered 410.
_LIST = (
    _NOW
    + """
local forget = now - tonumber(ARGV[1])
for _, sid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', forget, 'LIMIT', 0, 1000)) do
  redis.call('HDEL', KEYS[1], sid)
  redis.call('ZREM', KEYS[2], sid)
end
local live = redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')
if #live == 0 then return {} end
return redis.call('HMGET', KEYS[1], unpack(live))
"""
)

# KEYS: calls, calls:live, ended:<sid>. ARGV: CallSid.
_LOOKUP = (
    _NOW
    + """
local expires = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not expires then
  if redis.call('EXISTS', KEYS[3]) == 1 then return {'ended', ''} end
  return {'unknown', ''}
end
local record = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if tonumber(expires) < now then return {'gone', record} end
return {'live', record}
"""
)


class RedisState(SharedState):
    """:class:`SharedState` on Redis, shared by every instance that names the same server.

    Args:
        url: ``redis://host:port/db`` (``rediss://`` for TLS; a password in the URL).
        tokens: the token settings (``ttl_seconds``, ``max_pending``, ``remember_seconds``,
            ``max_remembered``) when it is a :class:`~mediastreams.security.StreamTokens`;
            the tokens themselves live on Redis.
        namespace: the prefix of every key and channel: servers that share a Redis but not
            their calls take different ones.
        timeout_s: the longest any one Redis operation may take.
        call_ttl_s: a call whose instance stopped refreshing it leaves the registry after
            this long.
        heartbeat_s: how often this instance refreshes its calls.
        context_ttl_s: how long a webhook's context waits for its stream.
    """

    def __init__(
        self,
        url: str,
        *,
        tokens: TokenStore | None = None,
        namespace: str = "mediastreams",
        timeout_s: float = 2.0,
        call_ttl_s: float = CALL_TTL_S,
        heartbeat_s: float = HEARTBEAT_S,
        context_ttl_s: float = 3600.0,
    ) -> None:
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        settings = tokens if isinstance(tokens, StreamTokens) else StreamTokens()
        self.url = url
        self.where = _safe_url(url)
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.timeout_s = timeout_s
        self.call_ttl_s = call_ttl_s
        self.heartbeat_s = heartbeat_s
        self.context_ttl_s = context_ttl_s
        self._token_args = [
            int(settings.remember_seconds * 1000),
            settings.max_remembered,
            int(settings.ttl_seconds * 1000),
            settings.max_pending,
        ]
        self._ns = namespace
        self.available = False  # until Redis answered
        self._client = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            decode_responses=True,
            # A pooled connection that Redis closed (a restart, a failover) fails once, at
            # its next use: that use reconnects and tries again. Not on a timeout, after
            # which the command may have run.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        scripts = {
            "mint": _MINT,
            "redeem": _REDEEM,
            "register": _REGISTER,
            "heartbeat": _HEARTBEAT,
            "unregister": _UNREGISTER,
            "list": _LIST,
            "lookup": _LOOKUP,
        }
        self._scripts = {name: self._client.register_script(s) for name, s in scripts.items()}
        self._local: set[str] = set()  # the calls this instance holds
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._on_command: CommandHandler | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listening = asyncio.Event()
        self._warn = Throttle(lambda message, count: logger.warning("%s", message), interval_s=5)

    def _key(self, *parts: str) -> str:
        return ":".join((self._ns, *parts))

    @property
    def _control_channel(self) -> str:
        return self._key("control", self.instance)

    # --- life ---------------------------------------------------------------------------------

    async def start(self, on_command: CommandHandler | None = None) -> None:
        """Refresh this instance's calls and take commands; check that Redis answers.

        Raises:
            StateUnavailable: Redis does not answer (yet: the listener and the heartbeat
                keep trying until :meth:`close`).
        """
        self._on_command = on_command
        if not self._tasks:
            # Started first: if Redis does not answer yet, both retry until it does (and
            # the heartbeat then makes this instance available again).
            for work in (self._listen(), self._beat()):
                task = asyncio.create_task(work)
                self._tasks.add(task)
        await self._call(self._client.ping())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeout_s):
                await self._listening.wait()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for future in self._replies.values():
            future.cancel()
        with contextlib.suppress(Exception):
            await self._client.aclose()

    async def _call(self, work: Awaitable[T]) -> T:
        import redis.exceptions

        try:
            async with asyncio.timeout(self.timeout_s):
                result = await work
        except (redis.exceptions.RedisError, OSError, TimeoutError) as error:
            self.available = False
            detail = str(error) or type(error).__name__
            raise StateUnavailable(
                f"Redis at {self.where} did not answer: {loggable(detail)}"
            ) from None
        self.available = True
        return result

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._call(self._scripts[name](keys=keys, args=args))

    # --- tokens -------------------------------------------------------------------------------

    def _token_keys(self) -> list[str]:
        return [
            self._key("tokens"),
            self._key("tokens", "expiry"),
            self._key("spent"),
            self._key("spent", "forget"),
        ]

    async def mint_token(self, call_sid: str) -> str:
        remember_ms, max_remembered, ttl_ms, max_pending = self._token_args
        status, value = await self._run(
            "mint",
            self._token_keys(),
            [call_sid, secrets.token_urlsafe(32), remember_ms, max_remembered, ttl_ms, max_pending],
        )
        if status in ("new", "pending"):
            return str(value)
        if status == "spent":
            raise ReplayError(
                f"the stream token of call {_sid(call_sid)} was already {value}; "
                "a replayed webhook gets no new one"
            )
        raise CapacityError(
            f"{value} stream tokens are pending, the most this store keeps "
            "(StreamTokens max_pending): new calls are refused until some start or expire"
        )

    async def redeem_token(self, token: str | None, call_sid: str) -> None:
        if not token:
            raise SignatureError("the stream carries no token")
        remember_ms, max_remembered, _, _ = self._token_args
        status, value = await self._run(
            "redeem", self._token_keys(), [call_sid, token, remember_ms, max_remembered]
        )
        if status == "ok":
            return
        if status == "spent":
            raise SignatureError(f"the stream token of call {_sid(call_sid)} was already {value}")
        if status == "none":
            raise SignatureError(f"no stream token was issued to call {_sid(call_sid)}")
        raise SignatureError(f"the stream token is not the one issued to call {_sid(call_sid)}")

    # --- contexts -----------------------------------------------------------------------------

    async def save_context(self, call_sid: str, context: CallContext) -> None:
        key = self._key("context", call_sid)
        text = json.dumps(context.to_json())
        await self._call(self._client.set(key, text, ex=int(self.context_ttl_s)))

    async def load_context(self, call_sid: str) -> CallContext | None:
        text = await self._call(self._client.get(self._key("context", call_sid)))
        return None if text is None else CallContext.from_json(json.loads(text))

    # --- the registry -------------------------------------------------------------------------

    def _call_keys(self, call_sid: str) -> list[str]:
        return [self._key("calls"), self._key("calls", "live"), self._key("ended", call_sid)]

    async def register(self, record: CallRecord) -> None:
        self._local.add(record.call_sid)
        await self._run(
            "register",
            self._call_keys(record.call_sid),
            [record.call_sid, json.dumps(record.to_json()), int(self.call_ttl_s * 1000)],
        )

    async def unregister(self, call_sid: str) -> None:
        self._local.discard(call_sid)
        keys = [*self._call_keys(call_sid), self._key("context", call_sid)]
        await self._run("unregister", keys, [call_sid, 3600])

    async def calls(self) -> list[CallRecord]:
        records = await self._run("list", self._call_keys("")[:2], [3600 * 1000])
        return [CallRecord.from_json(json.loads(r)) for r in records if r]

    async def lookup(self, call_sid: str) -> CallRecord:
        status, record = await self._run("lookup", self._call_keys(call_sid), [call_sid])
        if status == "live":
            return CallRecord.from_json(json.loads(record))
        if status == "gone":
            owner = json.loads(record)["instance"] if record else "?"
            raise CallGone(
                f"call {_sid(call_sid)} was on instance {loggable(owner)}, which stopped "
                f"answering: the call is lost"
            )
        if status == "ended":
            raise CallNotFound(f"call {_sid(call_sid)} has ended")
        raise CallNotFound(f"no live call {_sid(call_sid)}")

    async def _beat(self) -> None:
        # Also with no call to refresh: it tells whether Redis answers (``available``).
        ttl_ms = int(self.call_ttl_s * 1000)
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self._run("heartbeat", [self._key("calls", "live")], [ttl_ms, *self._local])
            except StateUnavailable as error:
                self._warn(
                    f"{error}; {len(self._local)} live calls go on, but leave the registry "
                    f"after {self.call_ttl_s:g} s unless it answers again"
                )

    # --- control ------------------------------------------------------------------------------

    async def send_command(
        self, call_sid: str, command: dict[str, Any], *, timeout_s: float
    ) -> dict[str, Any]:
        record = await self.lookup(call_sid)
        if not self._listening.is_set():
            raise StateUnavailable(f"not subscribed to Redis at {self.where} for answers")
        command_id = uuid.uuid4().hex
        message = {**command, "id": command_id, "call_sid": call_sid, "reply_to": self.instance}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[command_id] = future
        try:
            receivers = await self._call(
                self._client.publish(self._key("control", record.instance), json.dumps(message))
            )
            if not receivers:
                raise CallGone(
                    f"call {_sid(call_sid)} is on instance {loggable(record.instance)}, which "
                    "does not listen for commands: it has stopped"
                )
            try:
                async with asyncio.timeout(timeout_s):
                    return await future
            except TimeoutError:
                raise CommandTimeout(
                    f"instance {loggable(record.instance)} took the command for call "
                    f"{_sid(call_sid)} but did not answer within {timeout_s:g} s"
                ) from None
        finally:
            self._replies.pop(command_id, None)

    async def _listen(self) -> None:
        """Take commands for this instance's calls and answers to its own commands."""
        while True:
            try:
                async with self._subscribed() as pubsub:
                    self._listening.set()
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                        if message is not None:
                            self._dispatch(json.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._listening.clear()
                self._warn(
                    f"Redis at {self.where}: lost the command channel "
                    f"({loggable(str(error) or type(error).__name__)}); retrying every second"
                )
                await asyncio.sleep(1.0)

    @contextlib.asynccontextmanager
    async def _subscribed(self) -> AsyncIterator[Any]:
        pubsub = self._client.pubsub()
        try:
            await self._call(pubsub.subscribe(self._control_channel))
            yield pubsub
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "result" in message:  # an answer to a command this instance sent
            future = self._replies.get(str(message.get("id")))
            if future is not None and not future.done():
                future.set_result(message["result"])
            return
        task = asyncio.create_task(self._act(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _act(self, command: dict[str, Any]) -> None:
        if self._on_command is None:
            result = {"status": 404, "error": "this instance takes no commands"}
        else:
            result = await self._on_command(command)
        answer = {"id": command.get("id"), "result": result}
        channel = self._key("control", str(command.get("reply_to")))
        try:
            await self._call(self._client.publish(channel, json.dumps(answer)))
        except StateUnavailable as error:
            self._warn(f"{error}; the answer to a command was lost")


def _safe_url(url: str) -> str:
    """The Redis URL without its password, for log lines."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _sid(call_sid: str) -> str:
    return loggable(call_sid, max_chars=64)
