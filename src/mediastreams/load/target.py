"""Where each call goes (a stream URL, or the one a voice webhook's TwiML names), and why a
call failed, in Twilio's codes.

A ``ws://``/``wss://`` target is the stream itself: every call opens it, with the run's custom
parameters. An ``http://``/``https://`` target is the number's voice webhook: before each call
it is asked for TwiML as Twilio asks (signed, with a fresh CallSid), and the call opens the
``<Connect><Stream>`` it names, with its ``<Parameter>`` values. Failures become Twilio's
codes: 11200 for the webhook, 31901-31920 for the connection (as the emulator words them),
31921 for an abnormal close and 31903 for a connection dropped without one.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from ..emulator.transport import USER_AGENT, connect_failed, connect_to_hint, describe_target
from ..emulator.webhook import NO_CODE, TwilioRequests, call_parameters
from ..exceptions import ConnectFailed, TwiMLError, WebhookFailed
from ..security import compute_signature
from ..twiml import Connect, parse_twiml, resolve_stream_url
from ..violations import Violation
from .wire import Upgrade

__all__ = [
    "CallFailed",
    "StreamAddress",
    "close_error",
    "dropped",
    "handshake_error",
    "open_error",
    "stream_for_call",
]


class CallFailed(Exception):
    """A call could not be placed or ended badly; ``violation`` says why, with Twilio's code."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(violation.message)
        self.violation = violation


@dataclass(frozen=True)
class StreamAddress:
    """Where one call's WebSocket goes, and the upgrade request it sends.

    Attributes:
        url: the stream URL (without its query, as Twilio signs it).
        host, port: where the TCP connection goes.
        tls: a ``wss://`` URL: TLS, with the URL's host as the server name.
        parameters: ``start.customParameters``.
    """

    url: str
    host: str
    port: int
    tls: bool
    request_target: str
    host_header: str
    parameters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, url: str, parameters: dict[str, str]) -> StreamAddress:
        parts = urlsplit(url)
        tls = parts.scheme == "wss"
        default_port = 443 if tls else 80
        port = parts.port or default_port
        hostname = parts.hostname or ""
        host_header = f"[{hostname}]" if ":" in hostname else hostname
        if port != default_port:
            host_header += f":{port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        bare = parts._replace(query="", fragment="").geturl()
        return cls(bare, hostname, port, tls, target, host_header, dict(parameters))

    def upgrade(self, auth_token: str | None) -> Upgrade:
        """The upgrade request Twilio sends: its User-Agent, and the signature when signed."""
        headers = [("User-Agent", USER_AGENT)]
        if auth_token is not None:
            # https://www.twilio.com/docs/voice/media-streams: the upgrade is signed over the
            # wss URL Twilio connected to, with no parameters (a GET).
            headers.append(("x-twilio-signature", compute_signature(auth_token, self.url)))
        return Upgrade(self.host_header, self.request_target, headers)

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context() if self.tls else None


async def stream_for_call(
    client: httpx.AsyncClient,
    webhook_url: str,
    *,
    call_sid: str,
    account_sid: str,
    auth_token: str | None,
) -> StreamAddress:
    """Ask the voice webhook for TwiML, as Twilio does for a new call; the stream it names.

    Raises:
        CallFailed: the webhook failed (11200), or its TwiML has no ``<Connect><Stream>``.
    """
    parameters = call_parameters(call_sid=call_sid, account_sid=account_sid)
    requests = TwilioRequests(client, parameters, auth_token=auth_token)
    try:
        twiml = await requests.answer(webhook_url)
    except WebhookFailed as error:
        raise CallFailed(error.violation) from None
    try:
        response = parse_twiml(twiml)
    except TwiMLError as error:
        raise CallFailed(_no_stream(webhook_url, f"its TwiML does not parse: {error}")) from None
    for verb in response.verbs:
        if isinstance(verb, Connect) and verb.stream is not None and verb.stream.url:
            url = resolve_stream_url(verb.stream.url, webhook_url)
            values = {p.name: p.value for p in verb.stream.parameters}
            return StreamAddress.of(url, values)
    raise CallFailed(_no_stream(webhook_url, "its TwiML has no <Connect><Stream url>"))


def _no_stream(webhook_url: str, why: str) -> Violation:
    return Violation(
        NO_CODE,
        kind="no-stream",
        sender="app",
        message=f"the voice webhook {webhook_url} answered, but {why}",
        hint='Answer with <Response><Connect><Stream url="wss://..."/></Connect></Response>.',
    )


def open_error(error: BaseException, url: str) -> CallFailed:
    """A failed TCP or TLS connect as Twilio's code (31901-31910)."""
    target = describe_target(url)
    tunnel = connect_to_hint(url)
    if isinstance(error, ConnectionRefusedError):
        failed = connect_failed(
            31902,
            "connection-refused",
            f"connection refused: {target}",
            "Is the server running, on this port?" + tunnel,
        )
    elif isinstance(error, TimeoutError | asyncio.TimeoutError):
        failed = connect_failed(
            31901,
            "connection-timeout",
            f"no answer to the WebSocket upgrade: {target}",
            "The server did not answer in time: it may be saturated, or the host, port or a "
            "firewall may be wrong.",
        )
    elif isinstance(error, socket.gaierror):
        failed = connect_failed(
            31904, "host-unreachable", f"cannot resolve the host of {target}", "Check the host."
        )
    elif isinstance(error, ssl.SSLError):
        failed = connect_failed(
            31910, "tls-error", f"TLS failed: {target}: {error}", "Is the port serving TLS?"
        )
    else:
        failed = connect_failed(31903, "connection-broken", f"{target}: {error}", tunnel.strip())
    return _failed(failed)


def handshake_error(problem: str, url: str) -> CallFailed:
    """The server answered the upgrade with something other than a proper 101 (31920)."""
    status = Upgrade.status(problem)
    target = describe_target(url)
    message = (
        f"the upgrade to {target} was answered with HTTP {status}, not 101"
        if status is not None
        else f"WebSocket handshake failed: {target}: {problem}"
    )
    return _failed(
        connect_failed(
            31920,
            "handshake-refused" if status is not None else "handshake-error",
            message,
            "Check the path, that the route accepts WebSockets, and, if it checks "
            "X-Twilio-Signature, the auth token and the public URL it rebuilds.",
        )
    )


def _failed(error: ConnectFailed) -> CallFailed:
    return CallFailed(error.violation)


def close_error(code: int | None) -> CallFailed:
    """The app closed with an abnormal code: 31921, as the emulator reports it."""
    return CallFailed(
        Violation(
            31921,
            kind="close-error",
            sender="app",
            message=f"the app closed the WebSocket with code {code}"
            if code is not None
            else "the app closed the WebSocket with no status code",
            hint="Close with 1000 (normal closure) when the call is done; a handler that "
            "raises closes the call with 1011.",
        )
    )


def dropped(exc: Exception | None, opening: bool, url: str) -> CallFailed:
    """The connection ended with no close frame: 31903."""
    what = "before answering the upgrade" if opening else "without a close frame"
    return CallFailed(
        Violation(
            31903,
            kind="connection-dropped",
            sender="app",
            message=f"the app dropped the WebSocket {what} ({url})" + (f": {exc}" if exc else ""),
            hint="Close the socket cleanly (code 1000) when the call is done; a crashed "
            "handler ends the call for the caller.",
        )
    )
