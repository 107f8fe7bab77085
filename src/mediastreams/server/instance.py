"""One running server: its streams, its calls, the shared state, metrics and the drain.

Every backend of a process builds one :class:`Instance` and hands it to the router and to
:func:`~.streams.run_stream`; nothing here knows which backend carries the bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..control import LocalCalls
from ..exceptions import LocalProtocolError
from ..security import loggable
from ..session import MediaStream
from ..store import LocalState, SharedState, StateUnavailable
from .config import ServerConfig, trusted_network
from .streams import Streams

if TYPE_CHECKING:
    from ..metrics import Metrics

__all__ = ["CLOSE_GOING_AWAY", "Instance"]

logger = logging.getLogger("mediastreams.server")

#: RFC 6455 7.4.1: the server is going away (a deploy); Twilio ends the call normally.
CLOSE_GOING_AWAY = 1001
_IDLE_POLL_S = 0.05


class Instance:
    """The state of one server process that its backend, router and streams share.

    Args:
        config: what the server does.
        shared: whether this process is one of several (``serve --workers``): then a context
            is kept only on a shared store, never in this process's memory alone.
    """

    def __init__(self, config: ServerConfig, *, shared: bool = False) -> None:
        self.config = config
        self.streams = Streams()
        self.calls = LocalCalls()
        self.state: SharedState
        if config.redis_url is not None:
            from ..store.redis import RedisState

            self.state = RedisState(config.redis_url, tokens=config.stream_tokens)
        else:
            self.state = LocalState(config.stream_tokens)
        self.keeps_context = config.redis_url is not None or not shared
        self.metrics: Metrics | None = None
        if config.metrics:
            from ..metrics import Metrics

            self.metrics = Metrics()
        self.draining = False
        #: Whether the server listens on loopback only (the control API without a token).
        self.loopback_bind = True
        self._in_flight = 0
        self._trusted = [trusted_network(a) for a in config.forwarded_allow_ips]
        self._trust_all = any(a.strip() == "*" for a in config.forwarded_allow_ips)

    async def start(self) -> None:
        """Connect the shared state (a Redis that does not answer yet is logged, not fatal)."""
        try:
            await self.state.start(self.calls.execute)
        except StateUnavailable as error:
            logger.error(
                "%s; the server starts anyway: webhooks get HTTP 503 until it answers", error
            )

    async def close(self) -> None:
        """Release the shared state."""
        await self.state.close()

    # --- proxies --------------------------------------------------------------------------------

    def trusts(self, peer: str | None) -> bool:
        """Whether ``peer`` (an IP address) is a proxy whose forwarded headers count."""
        if not peer or not (self._trusted or self._trust_all):
            return False
        if self._trust_all:
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    # --- in-flight requests and the drain ----------------------------------------------------

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Count an HTTP request being answered: a drain waits for it."""
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    @property
    def idle(self) -> bool:
        """No live stream and no request being answered."""
        return self._in_flight == 0 and self.streams.active == 0

    def start_draining(self) -> None:
        """``/readyz`` answers 503 from now on; calls and requests go on."""
        if self.draining:
            return
        self.draining = True
        if self.metrics is not None:
            self.metrics.draining.set(1)
        logger.info(
            "draining: /readyz answers 503; waiting for %d live call%s (at most %g s)",
            self.streams.active,
            "" if self.streams.active == 1 else "s",
            self.config.drain_timeout_s,
        )

    async def run_until(self, stop: asyncio.Event | None, drain: asyncio.Event | None) -> None:
        """Wait until ``stop`` is set, or ``drain`` is set and the calls ended (or its time
        ran out); then close the streams still open with 1001, so none is cut by a backend's
        own shutdown (uvicorn's 1012)."""
        stop = stop or asyncio.Event()
        waiters = {asyncio.ensure_future(stop.wait())}
        if drain is not None:
            waiters.add(asyncio.ensure_future(drain.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if not stop.is_set() and drain is not None and drain.is_set():
                self.start_draining()
                await self._drain(stop)
        finally:
            for waiter in waiters:
                waiter.cancel()
        await self.close_streams("going away")

    async def _drain(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_timeout_s
        while not self.idle and not stop.is_set():
            if loop.time() >= deadline:
                logger.warning(
                    "drain: %d call%s still live after %g s (--drain-timeout): closing them "
                    "with 1001 (going away)",
                    self.streams.active,
                    "" if self.streams.active == 1 else "s",
                    self.config.drain_timeout_s,
                )
                return
            await asyncio.sleep(_IDLE_POLL_S)
        if not stop.is_set():
            logger.info("drain: no live call left; exiting")

    async def close_streams(self, reason: str) -> None:
        """Close every live stream with 1001 and wait (bounded) for them to end."""
        streams = self.streams.live()
        for stream in streams:
            logger.info(
                "closing stream %s with 1001 (%s)",
                _sids(stream).get("stream_sid", "?"),
                reason,
                extra=_sids(stream),
            )
        closing = [asyncio.ensure_future(s.close(CLOSE_GOING_AWAY, reason)) for s in streams]
        if closing:
            await asyncio.wait(closing, timeout=self.config.limits.close_timeout_s)


def _sids(stream: MediaStream) -> dict[str, Any]:
    try:
        return {"stream_sid": loggable(stream.stream_sid), "call_sid": loggable(stream.call_sid)}
    except LocalProtocolError:  # not started: no SIDs yet
        return {}
