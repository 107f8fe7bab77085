"""A small HTTP/1.1 server on 127.0.0.1 that answers each request with JSON.

The REST stand-in (:mod:`mediastreams.emulator.rest`) is served by it: it reads requests
with ``Content-Length`` bodies (no chunked uploads: 411), keeps connections alive as
HTTP/1.1 does, bounds the head (64 KiB) and the body (1 MiB), and hands each request to an
async handler that returns a status and a JSON object. A request it cannot read is answered
with 400, 411 or 413 and its connection closed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from ..exceptions import EmulatorError

__all__ = ["Handler", "JSONServer", "Request"]

_MAX_HEAD_BYTES = 64 * 1024
_MAX_BODY_BYTES = 1024 * 1024
_MAX_HEADERS = 100


@dataclass
class Request:
    """One request: its method (upper case), target (path and query), headers (names in
    lower case), body, and whether the connection stays open after it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


Handler = Callable[[Request], Awaitable[tuple[HTTPStatus, dict[str, Any]]]]
"""Answers a request: the status, and the JSON object to send."""


class _BadRequest(Exception):
    """A request this server cannot read; answered with ``status`` and the connection closed."""

    def __init__(self, status: HTTPStatus) -> None:
        super().__init__(status.phrase)
        self.status = status


class JSONServer:
    """Serves ``handler`` on 127.0.0.1.

    Args:
        handler: answers each request.
        port: where to listen (0: any free port; see :attr:`url`).
        what: how errors name the server (``"the REST stand-in"``).
        port_option: the option that sets the port, for errors (``"--rest-port"``).
        headers: extra response headers by status (``WWW-Authenticate`` on 401).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        port: int = 0,
        what: str = "the server",
        port_option: str = "",
        headers: dict[HTTPStatus, list[str]] | None = None,
    ) -> None:
        self._handler = handler
        self._port = port
        self._what = what
        self._port_option = port_option
        self._headers = headers or {}
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._connections: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        """Listen on 127.0.0.1.

        Raises:
            EmulatorError: the port cannot be used.
        """
        try:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self._port, limit=_MAX_HEAD_BYTES
            )
        except OSError as error:
            option = f" ({self._port_option})" if self._port_option else ""
            raise EmulatorError(
                f"cannot serve {self._what} on 127.0.0.1 port {self._port}: "
                f"{error.strerror or error}; choose another port{option}"
            ) from None
        self._port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._connections:  # each ends once its socket is closed
            await asyncio.wait(set(self._connections))
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except _BadRequest as bad:
                    writer.write(self._response(bad.status, {"message": bad.status.phrase}, False))
                    break
                if request is None:
                    break
                status, answer = await self._handler(request)
                writer.write(self._response(status, answer, request.keep_alive))
                await writer.drain()
                if not request.keep_alive:
                    break
        except ConnectionError:
            pass  # the client went away: nothing to answer
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._connections.discard(task)
            writer.close()

    def _response(self, status: HTTPStatus, answer: dict[str, Any], keep_alive: bool) -> bytes:
        body = json.dumps(answer).encode()
        head = [
            f"HTTP/1.1 {status.value} {status.phrase}",
            "Content-Type: application/json; charset=utf-8",
            f"Content-Length: {len(body)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
            *self._headers.get(status, []),
        ]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    """One HTTP/1.1 request (``Content-Length`` bodies only), or ``None`` at the end."""
    try:
        line = await reader.readline()
        if not line:
            return None
        method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ")
        headers: dict[str, str] = {}
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, colon, value = header.decode("latin-1").partition(":")
            if not colon or len(headers) > _MAX_HEADERS:
                raise _BadRequest(HTTPStatus.BAD_REQUEST)
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
    except (ValueError, asyncio.LimitOverrunError):
        raise _BadRequest(HTTPStatus.BAD_REQUEST) from None
    if "transfer-encoding" in headers:
        raise _BadRequest(HTTPStatus.LENGTH_REQUIRED)
    if not 0 <= length <= _MAX_BODY_BYTES:
        raise _BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return None
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
    return Request(method.upper(), target, headers, body, keep_alive)
