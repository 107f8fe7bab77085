"""How the emulator reaches the app: what a connection is, and a real WebSocket.

:class:`AppConnection` is what Twilio's side holds to the app. It has two forms: a real
WebSocket (:class:`WebSocketTransport`, here) and an ASGI app in the same process
(:class:`~mediastreams.emulator.asgi.ASGITransport`, in :mod:`mediastreams.emulator.asgi`).
Both open the socket the way Twilio does (https://www.twilio.com/docs/voice/media-streams):
``User-Agent: Twilio.TmeWs/1.0``, no ``Origin``, and ``X-Twilio-Signature`` (lowercase on
the upgrade) computed over the ``wss://`` URL without parameters. A refused or failed connect
becomes :class:`ConnectFailed` carrying Twilio's code (31901, 31902, 31904, 31910, 31920);
this module also words where a connection went, and the hints for a tunnel or a public URL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.client import ClientConnection

from ..diagnostics import Violation
from ..exceptions import ConnectFailed

__all__ = [
    "IN_PROCESS_BASE_URL",
    "USER_AGENT",
    "AppConnection",
    "Closed",
    "ConnectFailed",
    "WebSocketTransport",
    "connect_failed",
    "connect_to_hint",
    "describe_target",
    "is_loopback",
    "public_url_hint",
    "upgrade_headers",
]

IN_PROCESS_BASE_URL = "https://testserver"
"""Where an in-process app is said to live unless ``public_url`` says otherwise: its webhook
and stream URLs use this host, and the signatures cover them."""

USER_AGENT = "Twilio.TmeWs/1.0"
"""The User-Agent of Twilio's Media Streams client, as seen on real upgrades."""


def public_url_hint(url: str) -> str:
    """For a request refused at the default in-process URL: how to place it at the public one.

    The app's signature check rebuilds the URL from its own configuration, so a call placed
    at ``https://testserver`` fails it; the user found the host only in a 403 message.
    """
    if urlsplit(url).netloc != urlsplit(IN_PROCESS_BASE_URL).netloc:
        return ""
    return (
        f" The app in this process was called at {IN_PROCESS_BASE_URL}: if it checks "
        "signatures against its public URL, place the call there "
        '(place_call(..., public_url="https://abc.ngrok.app")).'
    )


def connect_failed(code: int, kind: str, message: str, hint: str) -> ConnectFailed:
    """A failed connect, as Twilio's code (the app is at fault: ``sender`` is the app)."""
    return ConnectFailed(Violation(code, kind=kind, sender="app", message=message, hint=hint))


@dataclass
class Closed:
    """How the socket ended: who closed it, and the close code."""

    by_app: bool
    code: int | None
    reason: str = ""


class AppConnection(Protocol):
    """One open WebSocket to the app, as Twilio's side holds it: text frames out, the app's
    text (and, wrongly, binary) frames in.

    :class:`WebSocketTransport` (a real socket) and
    :class:`~mediastreams.emulator.asgi.ASGITransport` (an app in this process) are the two.
    Not to be confused with :class:`mediastreams.session.Transport`, the app's side of the
    socket that adapters provide.
    """

    closed: Closed | None

    async def send_text(self, text: str) -> None:
        """Send one text frame; a no-op once the socket is closed."""

    async def receive(self) -> str | bytes | None:
        """The app's next frame, or ``None`` once the socket is closed."""

    async def close(self) -> None:
        """Close the socket (Twilio's side hangs up)."""

    def backlog_bytes(self) -> int:
        """Bytes sent that the app has not read yet (as far as this side can tell)."""


def upgrade_headers(signature: str | None) -> list[tuple[str, str]]:
    """The headers Twilio adds to the upgrade, beyond the WebSocket ones."""
    headers = [("User-Agent", USER_AGENT)]
    if signature is not None:
        headers.append(("x-twilio-signature", signature))
    return headers


# --- a real WebSocket ---------------------------------------------------------------------


class WebSocketTransport:
    """A WebSocket client connection made with ``websockets``."""

    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection
        self.closed: Closed | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        signature: str | None = None,
        connect_to: tuple[str, int] | None = None,
        open_timeout_s: float = 10.0,
    ) -> WebSocketTransport:
        """Open the socket to ``url`` as Twilio would.

        Args:
            url: the stream URL from the TwiML (``wss://``, or ``ws://`` for a local run).
            signature: the ``X-Twilio-Signature`` to send, if any.
            connect_to: ``(host, port)`` to open the TCP connection to instead of the URL's
                host (a local server behind a tunnel); the request still names the URL's host,
                and the connection is plain ``ws``.
            open_timeout_s: how long the TCP connect and the handshake may take.

        Raises:
            ConnectFailed: the connection or the handshake failed (31901-31920).
        """
        target = url
        headers = upgrade_headers(signature)[1:]  # less the User-Agent, set below
        options: dict[str, Any] = {}
        if connect_to is not None:
            target, forwarded = _routed(url)
            headers.append(("X-Forwarded-Proto", forwarded))
            options = {"host": connect_to[0], "port": connect_to[1]}
        try:
            connection = await websockets.connect(
                target,
                additional_headers=headers,
                user_agent_header=USER_AGENT,
                origin=None,
                compression=None,
                open_timeout=open_timeout_s,
                proxy=None,
                max_size=2**24,
                # Let a slow reader's backlog show in the write buffer instead of blocking
                # the 20 ms pacing (see backlog_bytes and warning 31930).
                write_limit=2**20,
                **options,
            )
        except Exception as error:
            raise _connect_error(error, url, connect_to) from None
        return cls(connection)

    def backlog_bytes(self) -> int:
        """Bytes in the socket's write buffer, not yet taken by the app's side."""
        transport = self._connection.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    async def send_text(self, text: str) -> None:
        """Send one text frame; a no-op once the socket is closed."""
        if self.closed is not None:
            return
        try:
            await self._connection.send(text)
        except websockets.ConnectionClosed as closed:
            self._note_close(closed)

    async def receive(self) -> str | bytes | None:
        """The app's next frame, or ``None`` once the socket is closed."""
        if self.closed is not None:
            return None
        try:
            return await self._connection.recv()
        except websockets.ConnectionClosed as closed:
            self._note_close(closed)
            return None

    def _note_close(self, closed: websockets.ConnectionClosed) -> None:
        # Twilio's side sets `closed` before it closes, so any other close is the app's (or
        # the network's, when no close frame came: then the code is None).
        if self.closed is None:
            received = closed.rcvd
            self.closed = Closed(
                by_app=True,
                code=received.code if received is not None else None,
                reason=received.reason if received is not None else "",
            )

    async def close(self) -> None:
        """Close the socket with 1000 (Twilio's side hangs up)."""
        if self.closed is None:
            self.closed = Closed(by_app=False, code=1000)
        await self._connection.close()


def _routed(url: str) -> tuple[str, str]:
    """The plain-ws URL to ask a local server for, and the scheme a tunnel would forward.

    The request keeps the public host in its ``Host`` header (with the port only when it is
    not the scheme's default, as Twilio writes it), and carries ``X-Forwarded-Proto`` as a
    tunnel such as ngrok adds it, so a server that rebuilds its public URL finds ``wss``.
    """
    parts = urlsplit(url)
    secure = parts.scheme in ("wss", "https")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != (443 if secure else 80):
        host += f":{parts.port}"
    # websockets writes no port for ws:// on 80 itself; any other port is in `host`.
    return f"ws://{host}{parts.path or '/'}", "https" if secure else "http"


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` names this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def describe_target(url: str, connect_to: tuple[str, int] | None = None) -> str:
    """``url`` and where the connection went: ``"ws://h:5061/s (h port 5061)"``."""
    parts = urlsplit(url)
    if connect_to is not None:
        return f"{url} (tried {connect_to[0]} port {connect_to[1]}, from --connect-to)"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme in ("wss", "https") else 80
    return f"{url} ({parts.hostname} port {port})"


def connect_to_hint(url: str, connect_to: tuple[str, int] | None = None) -> str:
    """For a public host reached directly: how to reach a local server behind a tunnel."""
    if connect_to is not None or is_loopback(urlsplit(url).hostname):
        return ""
    return (
        f" {urlsplit(url).hostname} is a public host: if your server runs on this machine "
        "behind a tunnel, pass --connect-to 127.0.0.1:PORT (connect_to=('127.0.0.1', PORT) "
        "in Python) to reach it directly."
    )


def _connect_error(
    error: Exception, url: str, connect_to: tuple[str, int] | None = None
) -> ConnectFailed:
    target = describe_target(url, connect_to)
    tunnel = connect_to_hint(url, connect_to)
    if isinstance(error, websockets.InvalidStatus):
        status = error.response.status_code
        return connect_failed(
            31920,
            "handshake-refused",
            f"the upgrade to {target} was answered with HTTP {status}, not 101",
            "Check the path, that the route accepts WebSockets, and, if it checks "
            "X-Twilio-Signature, the auth token and the public URL it rebuilds.",
        )
    if isinstance(error, ConnectionRefusedError):
        return connect_failed(
            31902,
            "connection-refused",
            f"connection refused: {target}",
            "Is the server running, on this port?" + tunnel,
        )
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return connect_failed(
            31901,
            "connection-timeout",
            f"no answer to the WebSocket upgrade: {target}",
            "The server accepted the TCP connection but never answered, or the host is "
            "unreachable: check the host, the port and any tunnel or firewall." + tunnel,
        )
    if isinstance(error, socket.gaierror):
        return connect_failed(
            31904, "host-unreachable", f"cannot resolve the host of {target}", "Check the host."
        )
    if isinstance(error, ssl.SSLError):
        return connect_failed(
            31910,
            "tls-error",
            f"TLS failed: {target}: {error}",
            "Is the port serving TLS?" + (tunnel or " A local plain-ws server takes ws://."),
        )
    if isinstance(error, websockets.InvalidHandshake | websockets.InvalidURI):
        return connect_failed(
            31920, "handshake-error", f"WebSocket handshake failed: {target}: {error}", ""
        )
    if isinstance(error, OSError):
        return connect_failed(31903, "connection-broken", f"{target}: {error}", tunnel.strip())
    raise error
