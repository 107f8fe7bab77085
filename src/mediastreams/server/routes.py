"""The one router: what every backend answers to a request, written once and without I/O.

A backend turns its request into a :class:`Request` and asks :class:`Router` for the
answer: a :class:`Reply` to send, or ``None`` to accept the WebSocket on the stream path.
:func:`answer_webhook` and :func:`check_upgrade` are the two decisions Twilio's requests
need (TwiML for the voice webhook, the upgrade's signature).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl

from ..connections import Throttle
from ..exceptions import CapacityError, ReplayError, SignatureError, TwiMLError
from ..security import (
    SIGNATURE_HEADER,
    PublicURL,
    check_upgrade_signature,
    check_webhook_signature,
    loggable,
)
from ..store import CallContext, StateUnavailable
from ..twiml import connect_stream
from .config import TOKEN_PARAMETER, ServerConfig

if TYPE_CHECKING:
    from .instance import Instance

__all__ = [
    "Reply",
    "Request",
    "Router",
    "Signature",
    "answer_webhook",
    "check_upgrade",
    "client_of",
    "peer_ip",
]

logger = logging.getLogger("mediastreams.server")


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, whichever server sends it."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class Request:
    """An HTTP request as any backend received it.

    Attributes:
        method: ``GET``, ``POST``...
        path: the path, without the query string.
        query: the query string, without ``?``.
        headers: every header as received, names in any case.
        scheme: ``http``/``https`` for a request, ``ws``/``wss`` for an upgrade.
        client: the peer's ``host:port``, escaped for log lines.
        peer: the peer's IP address (to decide whether its forwarded headers count).
        body: the request body, as far as it was read.
    """

    method: str
    path: str
    query: str = ""
    headers: Sequence[tuple[str, str]] = ()
    scheme: str = "http"
    client: str = "?"
    peer: str | None = None
    body: bytes = b""

    def header(self, name: str) -> list[str]:
        """Every value of the header ``name`` (any case)."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    @property
    def host(self) -> str:
        """The ``Host`` header; empty when missing or given twice, which names no host."""
        values = self.header("Host")
        return values[0] if len(values) == 1 else ""

    @property
    def form(self) -> list[tuple[str, str]]:
        """The parameters of a form body (``application/x-www-form-urlencoded``)."""
        if self.method != "POST" or not self.body:
            return []
        return parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True)


Signature: TypeAlias = str | Sequence[str] | None
"""An ``X-Twilio-Signature``: the header's value, or every value received (or ``None``)."""

NOT_FOUND = Reply(404, "text/plain", b"not found\n")
FORBIDDEN = Reply(403, "text/plain", b"invalid signature\n")
_HOOK_TIMEOUT_S = 10.0  # Twilio waits 15 s for a webhook's answer


class Router:
    """Maps a request to its answer, the same on every backend.

    Args:
        instance: the running server (its configuration, streams, shared state, drain).
    """

    def __init__(self, instance: Instance) -> None:
        from .control import ControlAPI

        self.instance = instance
        self.config = instance.config
        self.streams = instance.streams
        self.control = ControlAPI(instance)
        self._refused = Throttle(
            lambda message, count: logger.error(
                "refused %d webhook%s (HTTP 503): %s; new calls are refused until it answers",
                count,
                "" if count == 1 else "s",
                message,
            )
        )

    def max_body_bytes(self, path: str) -> int:
        """How much of a request body to read for ``path``."""
        if path.startswith(self.control.PREFIX):
            return self.config.limits.max_control_bytes
        return self.config.limits.max_webhook_bytes

    async def answer(self, request: Request) -> Reply | None:
        """The reply to send, or ``None`` when the WebSocket upgrade is to be accepted."""
        with self.instance.request():
            return await self._answer(request)

    async def _answer(self, request: Request) -> Reply | None:
        config, path = self.config, request.path
        if path == config.stream_path:
            return self.upgrade(request)
        if path == config.incoming_path:
            if request.method not in ("GET", "POST"):
                return Reply(405, "text/plain", b"the voice webhook takes GET or POST\n")
            return await self.webhook(request)
        if path == "/healthz":
            return Reply(200, "application/json", self.health())
        if path == "/readyz":
            return self.readiness()
        if path == "/metrics" and self.instance.metrics is not None:
            from ..metrics import CONTENT_TYPE

            return Reply(200, CONTENT_TYPE, self.instance.metrics.exposition())
        if path.startswith(self.control.PREFIX):
            return await self.control.answer(request, self.seen(request)[2])
        return NOT_FOUND

    def seen(self, request: Request) -> tuple[str, str, str]:
        """The scheme, host and client Twilio used: forwarded ones from a trusted proxy."""
        if not self.instance.trusts(request.peer):
            return request.scheme, request.host, request.client
        scheme = _first(request.header("X-Forwarded-Proto")).lower() or request.scheme
        if request.scheme in ("ws", "wss"):
            scheme = {"https": "wss", "http": "ws"}.get(scheme, scheme)
        host = _first(request.header("X-Forwarded-Host")) or request.host
        forwarded_for = _first(request.header("X-Forwarded-For"))
        client = loggable(forwarded_for) if forwarded_for else request.client
        return scheme, host, client

    def upgrade(self, request: Request) -> Reply | None:
        """The answer to an upgrade on the stream path: ``None`` to accept it."""
        scheme, host, client = self.seen(request)
        if check_upgrade(
            self.config,
            scheme=scheme,
            host=host,
            signature=request.header(SIGNATURE_HEADER),
            query=request.query,
            client=client,
        ):
            return None
        return FORBIDDEN

    async def webhook(self, request: Request) -> Reply:
        """TwiML for the voice webhook, with the call's token and context kept."""
        config, instance = self.config, self.instance
        scheme, host, client = self.seen(request)
        form = request.form
        checked = _verify_webhook(
            config,
            scheme=scheme,
            host=host,
            query=request.query,
            form=form,
            signature=request.header(SIGNATURE_HEADER),
            client=client,
        )
        if isinstance(checked, Reply):
            return checked
        parameters = dict(form) if request.method == "POST" else dict(parse_qsl(request.query))
        call_sid = parameters.get("CallSid")
        twiml_parameters = dict(config.parameters)
        try:
            if config.stream_tokens is not None:
                if not call_sid:
                    return _NO_CALL_SID
                twiml_parameters[TOKEN_PARAMETER] = await instance.state.mint_token(call_sid)
            if instance.keeps_context and call_sid:
                data = await self._app_data(parameters)
                if data is None:
                    return _HOOK_FAILED
                await instance.state.save_context(call_sid, CallContext(parameters, data))
        except ReplayError:
            assert config.stream_tokens is not None
            _token_refusals(config.stream_tokens).replayed(
                f"for call {loggable(call_sid, max_chars=64)} from {loggable(client)}"
            )
            return _REPLAYED
        except CapacityError as error:
            _token_refusals(instance.state).full(str(error))
            return _BUSY
        except StateUnavailable as error:
            self._refused(str(error))
            return _BUSY
        return _twiml_reply(config, checked, twiml_parameters)

    async def _app_data(self, parameters: dict[str, str]) -> dict[str, Any] | None:
        """What ``on_webhook`` keeps for the call; ``None`` if it failed (logged)."""
        hook = self.config.on_webhook
        if hook is None:
            return {}
        try:
            async with asyncio.timeout(_HOOK_TIMEOUT_S):
                data = hook(parameters)
                if inspect.isawaitable(data):
                    data = await data
            data = dict(data or {})
            json.dumps(data)
        except Exception:
            logger.exception("on_webhook failed; the webhook is answered with HTTP 500")
            return None
        return data

    def readiness(self) -> Reply:
        """``/readyz``: 200 while this instance can take new calls, 503 otherwise."""
        if self.instance.draining:
            return Reply(503, "application/json", b'{"status": "draining"}')
        if not self.instance.state.available:
            # A webhook would get 503: let the balancer send new calls elsewhere until the
            # store answers again (checked at least every heartbeat, 2 s).
            return Reply(503, "application/json", b'{"status": "shared state unavailable"}')
        return Reply(200, "application/json", b'{"status": "ready"}')

    def health(self) -> bytes:
        """The body of ``/healthz``."""
        return json.dumps({"status": "ok", "streams": self.streams.active}).encode()


_NO_CALL_SID = Reply(400, "text/plain", b"no CallSid: is this Twilio's voice webhook?\n")
_REPLAYED = Reply(409, "text/plain", b"this call already has its stream\n")
_BUSY = Reply(503, "text/plain", b"server busy, try again\n")
_HOOK_FAILED = Reply(500, "text/plain", b"the app could not take the call\n")


def _first(values: list[str]) -> str:
    # With several proxies in a row, the first value is the one the client used.
    return values[0].split(",")[0].strip() if values else ""


def client_of(address: Any) -> str:
    """``host:port`` of a peer address tuple, escaped for log lines (``?`` if unknown)."""
    return loggable(f"{address[0]}:{address[1]}") if address else "?"


def peer_ip(address: Any) -> str | None:
    """The IP address of a peer address tuple."""
    return str(address[0]) if address else None


# --- public URLs and signatures --------------------------------------------------------------


def _origin(config: ServerConfig, scheme: str, host: str) -> PublicURL:
    if config.public_url is not None:
        return PublicURL.parse(config.public_url)
    # No forwarded headers: anyone can send them; behind a proxy, configure public_url.
    return PublicURL.from_request(scheme, host)


def answer_webhook(
    config: ServerConfig,
    *,
    scheme: str,
    host: str,
    query: str = "",
    form: Sequence[tuple[str, str]] = (),
    signature: Signature = None,
    client: str = "?",
) -> Reply:
    """The answer to Twilio's voice webhook: TwiML that connects the call to the stream.

    This is the webhook without shared state (``config.stream_tokens`` is used as it is);
    a running server's :class:`Router` also keeps the call's context.

    Args:
        config: the server's configuration.
        scheme: the request's scheme as the server saw it (``http`` or ``https``).
        host: its ``Host`` header.
        query: its query string, without ``?`` (Twilio signs it with the URL).
        form: its POST parameters (none for GET).
        signature: its ``X-Twilio-Signature`` header (every value, if it came more than once).
        client: the peer's address, for the log.

    Returns:
        200 with TwiML; 400 for a request with no usable host (or no ``CallSid`` when
        stream tokens are on); 403 when the signature is required and wrong or given twice;
        409 for a replayed webhook whose stream token was already used or expired; 503 when
        the token store is full; 500 when the stream URL would be an insecure ``ws://`` URL
        on a public host.
    """
    checked = _verify_webhook(
        config,
        scheme=scheme,
        host=host,
        query=query,
        form=form,
        signature=signature,
        client=client,
    )
    if isinstance(checked, Reply):
        return checked
    parameters = dict(config.parameters)
    if config.stream_tokens is not None:
        call_sid = dict(form).get("CallSid") or dict(parse_qsl(query)).get("CallSid")
        if not call_sid:
            return _NO_CALL_SID
        try:
            parameters[TOKEN_PARAMETER] = config.stream_tokens.mint_for(call_sid)
        except ReplayError:
            refusals = _token_refusals(config.stream_tokens)
            refusals.replayed(
                f"for call {loggable(call_sid, max_chars=64)} from {loggable(client)}"
            )
            return _REPLAYED
        except CapacityError as error:
            _token_refusals(config.stream_tokens).full(str(error))
            return _BUSY
    return _twiml_reply(config, checked, parameters)


def _verify_webhook(
    config: ServerConfig,
    *,
    scheme: str,
    host: str,
    query: str,
    form: Sequence[tuple[str, str]],
    signature: Signature,
    client: str,
) -> PublicURL | Reply:
    """The public origin of a webhook whose signature holds, or the reply refusing it."""
    try:
        origin = _origin(config, scheme, host)
    except ValueError as error:
        return Reply(400, "text/plain", f"{error}\n".encode())
    if config.auth_token:
        url = origin.http_url(config.incoming_path + (f"?{query}" if query else ""))
        try:
            check_webhook_signature(config.auth_token, url, form, _one(signature))
        except SignatureError as error:
            logger.warning("refused the webhook from %s: %s", loggable(client), loggable(error))
            return FORBIDDEN
    return origin


def _twiml_reply(config: ServerConfig, origin: PublicURL, parameters: dict[str, str]) -> Reply:
    stream_url = origin.websocket_url(config.stream_path)
    try:
        # https://www.twilio.com/docs/voice/twiml/stream#url: wss only (error 31922); ws://
        # is let through for a loopback host, where a local emulator calls.
        twiml = connect_stream(stream_url, parameters=parameters, allow_insecure_loopback=True)
    except TwiMLError as error:
        logger.error(
            "cannot answer the webhook: %s; start the server with --public-url "
            "https://<public host>",
            loggable(error),
        )
        return Reply(500, "text/plain", b"set the public URL (https) of this server\n")
    return Reply(200, "text/xml", twiml.encode())


def check_upgrade(
    config: ServerConfig,
    *,
    scheme: str,
    host: str,
    signature: Signature,
    query: str = "",
    client: str = "?",
) -> bool:
    """Whether to accept a WebSocket upgrade on the stream path.

    Twilio signs the ``wss://`` URL it connected to, with no parameters, and strips any
    query string, so an upgrade with one is refused, and so is one with two signatures.
    Without an auth token every upgrade is accepted.
    """
    if not config.auth_token:
        return True
    try:
        origin = _origin(config, scheme, host)
        url = origin.websocket_url(config.stream_path + (f"?{query}" if query else ""))
        check_upgrade_signature(config.auth_token, url, _one(signature))
    except (ValueError, SignatureError) as error:
        logger.warning(
            "refused the WebSocket upgrade from %s: %s", loggable(client), loggable(error)
        )
        return False
    return True


def _one(signature: Signature) -> str | None:
    if signature is None or isinstance(signature, str):
        return signature
    if len(signature) > 1:
        # Servers differ on which of two headers they read; Twilio sends one.
        raise SignatureError(f"{len(signature)} {SIGNATURE_HEADER} headers; Twilio sends one")
    return signature[0] if signature else None


class _TokenRefusals:
    """One log line a second, at most, for each kind of refused mint of one token store."""

    def __init__(self) -> None:
        self.replayed = Throttle(
            lambda message, count: logger.warning(
                "refused %d replayed webhook%s (HTTP 409): its call's stream token was "
                "already used or expired; the latest %s",
                count,
                "" if count == 1 else "s",
                message,
            )
        )
        self.full = Throttle(
            lambda message, count: logger.warning(
                "refused %d webhook%s (HTTP 503): %s", count, "" if count == 1 else "s", message
            )
        )


_REFUSALS: weakref.WeakKeyDictionary[object, _TokenRefusals] = weakref.WeakKeyDictionary()


def _token_refusals(store: object) -> _TokenRefusals:
    refusals = _REFUSALS.get(store)
    if refusals is None:
        refusals = _REFUSALS[store] = _TokenRefusals()
    return refusals
