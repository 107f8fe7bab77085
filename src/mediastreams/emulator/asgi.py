"""An ASGI app in the same process, reached the way Twilio reaches a server, with no socket.

:class:`ASGITransport` runs the app's WebSocket endpoint with a scope as a server would build
it for Twilio's upgrade, and passes frames through in-memory queues; :func:`asgi_lifespan`
runs the app's startup and shutdown around the call. What the app sends through ASGI is read
once, at the edge, into typed events (:class:`Accepted`, :class:`Sent`, :class:`Closing`,
:class:`Refused`, :class:`Ended`); the rest of the emulator decides on their types.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from ..exceptions import ConnectFailed, EmulatorError
from .transport import Closed, connect_failed, public_url_hint, upgrade_headers

__all__ = [
    "ASGIApp",
    "ASGITransport",
    "Accepted",
    "Closing",
    "Ended",
    "Refused",
    "Sent",
    "asgi_lifespan",
]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Accepted:
    """The app accepted the WebSocket (``websocket.accept``)."""


@dataclass(frozen=True)
class Sent:
    """The app sent a frame (``websocket.send``): text, or (wrongly) binary."""

    frame: str | bytes


@dataclass(frozen=True)
class Closing:
    """The app closed the socket (``websocket.close``)."""

    code: int
    reason: str


@dataclass(frozen=True)
class Refused:
    """The app answered the upgrade with HTTP instead (``websocket.http.response.start``)."""

    status: int


@dataclass(frozen=True)
class Ended:
    """The endpoint returned (``error`` is ``None``) or raised (the error, described)."""

    error: str | None = None


Event: TypeAlias = Accepted | Sent | Closing | Refused | Ended


def _event(message: Message) -> Event | None:
    """An ASGI message the app sent, as a typed event (``None``: nothing Twilio sees)."""
    kind = message.get("type")
    if kind == "websocket.send":
        text = message.get("text")
        return Sent(text if text is not None else bytes(message.get("bytes") or b""))
    if kind == "websocket.accept":
        return Accepted()
    if kind == "websocket.close":
        return Closing(int(message.get("code", 1000)), str(message.get("reason") or ""))
    if kind == "websocket.http.response.start":
        return Refused(int(message.get("status", 500)))
    return None  # a response body: the status already said it all


class ASGITransport:
    """The app's ASGI WebSocket endpoint, driven through in-memory queues (no sockets)."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Event] = asyncio.Queue()
        self._unread_bytes = 0
        self._task = asyncio.create_task(self._run(app, scope))
        self.closed: Closed | None = None
        self.crash: str | None = None

    @classmethod
    async def open(
        cls,
        app: ASGIApp,
        url: str,
        *,
        signature: str | None = None,
        open_timeout_s: float = 10.0,
    ) -> ASGITransport:
        """Run the app's WebSocket endpoint for ``url``'s path and wait for it to accept.

        Raises:
            ConnectFailed: the app closed or answered with HTTP before accepting (31920), or
                never answered (31901).
        """
        transport = cls(app, _websocket_scope(url, signature))
        await transport._to_app.put({"type": "websocket.connect"})
        try:
            await transport._await_accept(url, open_timeout_s)
        except (ConnectFailed, asyncio.CancelledError):
            # Given up (or the call was cancelled meanwhile): the handler must not linger.
            await transport._end_app()
            raise
        return transport

    async def _run(self, app: ASGIApp, scope: Scope) -> None:
        async def receive() -> Message:
            message = await self._to_app.get()
            self._unread_bytes -= len(message.get("text") or "")
            return message

        async def send(message: Message) -> None:
            event = _event(message)
            if event is not None:
                await self._from_app.put(event)

        try:
            await app(scope, receive, send)
        except Exception as error:
            # The socket drops, as when a server's handler crashes; the call reports it.
            await self._from_app.put(Ended(_describe(error)))
            return
        await self._from_app.put(Ended())

    async def _end_app(self) -> None:
        # The socket is gone: the handler gets a disconnect, and a stuck one is cancelled.
        await self._to_app.put({"type": "websocket.disconnect", "code": 1000})
        try:
            async with asyncio.timeout(5.0):
                await asyncio.wait([self._task])
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _await_accept(self, url: str, open_timeout_s: float) -> None:
        try:
            async with asyncio.timeout(open_timeout_s):
                event = await self._from_app.get()
        except TimeoutError:
            raise connect_failed(
                31901,
                "connection-timeout",
                f"the app did not accept the WebSocket at {url} within {open_timeout_s:g} s",
                "Accept the WebSocket (await websocket.accept()) before doing slow work.",
            ) from None
        if isinstance(event, Accepted):
            return
        status = 500  # it returned, raised or sent before accepting: a server answers 500
        if isinstance(event, Refused):
            status = event.status
        elif isinstance(event, Closing):
            status = 403  # ASGI: a close before accept is an HTTP 403
        message = f"the upgrade to {url} was answered with HTTP {status}, not 101"
        hint = (
            "Check the route's path and, if it checks X-Twilio-Signature, the auth token "
            "and the public URL it rebuilds." + public_url_hint(url)
        )
        if isinstance(event, Ended) and event.error is not None:
            # A server answers 500 to a handler that crashed before accepting; Twilio sees
            # only that, but here the error is known.
            message += f": the handler raised {event.error} before accepting"
            hint = "Fix the error in the WebSocket handler; a server logs its traceback."
        raise connect_failed(31920, "handshake-refused", message, hint)

    def backlog_bytes(self) -> int:
        """Bytes of text frames the handler has not received yet."""
        return self._unread_bytes

    async def send_text(self, text: str) -> None:
        """Hand one text frame to the handler's ``receive()``."""
        if self.closed is None:
            self._unread_bytes += len(text)
            await self._to_app.put({"type": "websocket.receive", "text": text})

    async def receive(self) -> str | bytes | None:
        """What the handler sent next, or ``None`` once it closed or ended."""
        while self.closed is None:
            event = await self._from_app.get()
            if isinstance(event, Sent):
                return event.frame
            if self.closed is not None:  # Twilio's side hung up meanwhile
                break
            if isinstance(event, Closing):
                self.closed = Closed(by_app=True, code=event.code, reason=event.reason)
            elif isinstance(event, Ended):
                # The handler returned without closing: a server closes normally (1000); it
                # raised: a server closes with 1011 (internal error), as uvicorn does.
                self.crash = event.error
                code = 1000 if event.error is None else 1011
                self.closed = Closed(by_app=True, code=code, reason=event.error or "")
        return None

    async def close(self) -> None:
        """Send the handler a disconnect and wait for it to end (cancel it after 5 s)."""
        if self.closed is None:
            self.closed = Closed(by_app=False, code=1000)
        await self._end_app()


def _describe(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def _websocket_scope(url: str, signature: str | None) -> Scope:
    parts = urlsplit(url)
    secure = parts.scheme in ("wss", "https")
    port = parts.port or (443 if secure else 80)
    host = parts.hostname or "localhost"
    host_header = parts.netloc.rpartition("@")[2]
    headers = [
        (b"host", host_header.encode()),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", secrets.token_urlsafe(16).encode()),
        (b"sec-websocket-version", b"13"),
    ]
    headers += [
        (name.lower().encode(), value.encode()) for name, value in upgrade_headers(signature)
    ]
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "wss" if secure else "ws",
        "server": (host, port),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": parts.path or "/",
        "raw_path": (parts.path or "/").encode(),
        "query_string": b"",
        "headers": headers,
        "subprotocols": [],
        "state": {},
        "extensions": {"websocket.http.response": {}},
    }


@contextlib.asynccontextmanager
async def asgi_lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run the app's lifespan startup before the call and its shutdown after.

    An app that does not speak the lifespan protocol (it raises) is used as it is.

    Raises:
        EmulatorError: the app reported that its startup failed.
    """
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(_run_lifespan(app, scope, to_app, from_app))
    await to_app.put({"type": "lifespan.startup"})
    answer = await from_app.get()
    if answer["type"] == "lifespan.startup.failed":
        raise EmulatorError(f"the app's startup failed: {answer.get('message', '')}")
    supported = answer["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        if supported:
            await to_app.put({"type": "lifespan.shutdown"})
            await from_app.get()
        await task


async def _run_lifespan(
    app: ASGIApp, scope: Scope, to_app: asyncio.Queue[Message], from_app: asyncio.Queue[Message]
) -> None:
    async def receive() -> Message:
        return await to_app.get()

    async def send(message: Message) -> None:
        await from_app.put(message)

    try:
        await app(scope, receive, send)
    except Exception:  # ASGI: an app without lifespan support raises here
        await from_app.put({"type": "lifespan.unsupported"})
        return
    await from_app.put({"type": "lifespan.ended"})
