"""A server on a free loopback port for a test, on any backend, and Twilio's signatures."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator

import httpx

from mediastreams.server import ServerConfig, bind, serve
from waiting import DEADLINE_S

TOKEN = "test-auth-token"


@contextlib.asynccontextmanager
async def running(config: ServerConfig, backend: str = "uvicorn") -> AsyncIterator[int]:
    """A server on a free loopback port, stopped (and every stream closed) on exit."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    server = asyncio.create_task(serve(config, sock, backend=backend, stop=stop))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(DEADLINE_S):
            while True:  # wait until it answers
                with contextlib.suppress(httpx.HTTPError):
                    async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
                        await client.get(f"http://127.0.0.1:{port}/healthz")
                        break
                await asyncio.sleep(0.02)
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(server, DEADLINE_S)
        sock.close()


def sign(url: str, params: dict[str, str] | None = None, token: str = TOKEN) -> str:
    """``X-Twilio-Signature`` of ``url`` and its POST parameters, as Twilio computes it."""
    data = url + "".join(k + v for k, v in sorted((params or {}).items()))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()
