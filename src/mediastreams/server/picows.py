"""The picows backend (the ``picows`` extra): the most calls per core, behind the guard."""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Callable
from typing import Any

from picows import WSAutoPingStrategy, WSUpgradeRequest, ws_create_server

from ..adapters.picows import PicowsTransport
from ..limits import Limits
from .base import BackendServer
from .http import front_factory
from .streams import run_stream

__all__ = ["PicowsServer"]


class PicowsServer(BackendServer):
    """picows: its listener factory asks the router; an accepted upgrade becomes a stream."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tasks: set[asyncio.Task[None]] = set()
        # The connections upgraded to a WebSocket, to wait for their close frames at the end.
        self._upgraded: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    async def run(self, stop: asyncio.Event | None, drain: asyncio.Event | None) -> None:
        # picows only parses GET requests without a body and asks its router synchronously:
        # the front (guard, plain HTTP, the router) comes first and hands picows' own protocol
        # the accepted upgrades.
        inner = await _picows_protocol_factory(self._factory, self.config.limits)
        front = front_factory(self.guard, self.router, inner, self._tasks)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(front, sock=self.sock)
        try:
            await self.instance.run_until(stop, drain)
            # picows' close returns before the close frame is written: a stream that ended a
            # moment ago (the drain's last call) would lose it to the loop's end.
            await self.guard.released(list(self._upgraded), self.config.limits.close_timeout_s)
            await self.guard.settle()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    def _factory(self, request: WSUpgradeRequest) -> Any:
        # The front checked the upgrade with the router before handing the connection over.
        connection = self.guard.reading  # picows calls this while reading that connection
        self.guard.request_received(connection)
        if connection is not None:
            self._upgraded.add(connection)
        return PicowsTransport(self._on_connected, limits=self.config.limits)

    def _on_connected(self, transport: PicowsTransport) -> None:
        task = asyncio.get_running_loop().create_task(self._run(transport))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, transport: PicowsTransport) -> None:
        with self.streams.counting():
            await run_stream(self.config, transport, client=transport.peer, instance=self.instance)


async def _picows_protocol_factory(
    listener_factory: Callable[[WSUpgradeRequest], Any], limits: Limits
) -> Callable[[], asyncio.BaseProtocol]:
    """picows' protocol factory, configured by ``ws_create_server`` but not served.

    picows builds its protocol factory inside ``ws_create_server`` and hands it straight to
    ``loop.create_server``, with no hook around it; asyncio's ``Server`` keeps it in a private
    attribute and uvloop's keeps it out of reach. So ``create_server`` is shadowed on the loop
    instance for that one call, which takes the factory and listens on nothing. The shadow
    never yields to the event loop, so no other task sees it.
    """
    loop = asyncio.get_running_loop()
    taken: list[Callable[[], asyncio.BaseProtocol]] = []

    async def take(factory: Callable[[], asyncio.BaseProtocol], *_: Any, **__: Any) -> None:
        taken.append(factory)

    setattr(loop, "create_server", take)  # noqa: B010 (an instance attribute, on purpose)
    try:
        await ws_create_server(
            listener_factory,
            **_without_aiofastnet(ws_create_server),
            max_frame_size=limits.max_frame_bytes,
            websocket_handshake_timeout=limits.header_timeout_s,
            enable_auto_ping=True,
            auto_ping_idle_timeout=limits.ping_interval_s,
            # picows refuses a reply timeout longer than the idle time before a ping.
            auto_ping_reply_timeout=min(limits.ping_timeout_s, limits.ping_interval_s),
            # Twilio sends media every 20 ms: a ping goes out only when the peer falls silent.
            auto_ping_strategy=WSAutoPingStrategy.PING_WHEN_IDLE,
        )
    finally:
        delattr(loop, "create_server")
    if not taken:
        raise RuntimeError(
            "this picows version does not hand its protocol factory to loop.create_server, "
            "which the picows backend needs; use the picows version in uv.lock"
        )
    return taken[0]


def _without_aiofastnet(ws_create_server: Callable[..., Any]) -> dict[str, Any]:
    # aiofastnet 1.2 (picows' default transport when installed) calls a method sockets do not
    # have when accept() runs out of descriptors, so its accept loop raises and logs a
    # traceback on every turn of the event loop, for ever; asyncio's own accept pauses 1 s.
    if "use_aiofastnet" in inspect.signature(ws_create_server).parameters:
        return {"use_aiofastnet": False}
    return {}
