"""The same :class:`~mediastreams.session.MediaStream` over each WebSocket library.

Each adapter wraps one library's connection in the :class:`~mediastreams.session.Transport`
shape (receive text or bytes, send text, close) and offers ``open_stream(...)``, an async
context manager that yields an open :class:`~mediastreams.session.MediaStream` and closes it
(with every task it started) on the way out:

- :mod:`mediastreams.adapters.starlette`: Starlette and FastAPI ``WebSocket``;
- :mod:`mediastreams.adapters.websockets`: the ``websockets`` library's asyncio server;
- :mod:`mediastreams.adapters.aiohttp`: aiohttp ``web`` (the ``aiohttp`` extra);
- :mod:`mediastreams.adapters.picows`: picows (the ``picows`` extra), the fastest;
- :mod:`mediastreams.adapters.memory`: an in-memory pair for tests, no network.

The modules are imported only when used, so an extra that is not installed costs nothing.
"""

from __future__ import annotations

from ..session import Transport

__all__ = ["Transport"]
