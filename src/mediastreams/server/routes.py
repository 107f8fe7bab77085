"""The one router: what every backend answers to a request, written once and without I/O.

A backend turns its request into a :class:`Request` and asks :class:`Router` for the
answer: a :class:`Reply` to send, or ``None`` to accept the WebSocket on the stream path.
:func:`answer_webhook` and :func:`check_upgrade` are the two decisions Twilio's requests
need (TwiML for the voice webhook, the upgrade's signature).
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import parse_qsl

from ..connections import Throttle
from ..exceptions import CapacityError, ReplayError, SignatureError, TwiMLError
from ..security import (
    SIGNATURE_HEADER,
    PublicURL,
    TokenStore,
    check_upgrade_signature,
    check_webhook_signature,
    loggable,
)
from ..twiml import connect_stream
from .config import TOKEN_PARAMETER, ServerConfig
from .streams import Streams

__all__ = ["Reply", "Request", "Router", "Signature", "answer_webhook", "check_upgrade"]

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
        form: the POST parameters of a form body.
    """

    method: str
    path: str
    query: str = ""
    headers: Sequence[tuple[str, str]] = ()
    scheme: str = "http"
    client: str = "?"
    form: Sequence[tuple[str, str]] = ()

    def header(self, name: str) -> list[str]:
        """Every value of the header ``name`` (any case)."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    @property
    def host(self) -> str:
        """The ``Host`` header; empty when missing or given twice, which names no host."""
        values = self.header("Host")
        return values[0] if len(values) == 1 else ""


Signature: TypeAlias = str | Sequence[str] | None
"""An ``X-Twilio-Signature``: the header's value, or every value received (or ``None``)."""

NOT_FOUND = Reply(404, "text/plain", b"not found\n")
FORBIDDEN = Reply(403, "text/plain", b"invalid signature\n")


class Router:
    """Maps a request to its answer, the same on every backend.

    Args:
        config: the server's configuration.
        streams: the streams the server carries (``/healthz`` counts them).
    """

    def __init__(self, config: ServerConfig, streams: Streams) -> None:
        self.config = config
        self.streams = streams

    def answer(self, request: Request) -> Reply | None:
        """The reply to send, or ``None`` when the WebSocket upgrade is to be accepted."""
        config = self.config
        if request.path == config.incoming_path:
            return answer_webhook(
                config,
                scheme=request.scheme,
                host=request.host,
                query=request.query,
                form=request.form,
                signature=request.header(SIGNATURE_HEADER),
                client=request.client,
            )
        if request.path == "/healthz":
            return Reply(200, "application/json", self.health())
        if request.path != config.stream_path:
            return NOT_FOUND
        if not check_upgrade(
            config,
            scheme=request.scheme,
            host=request.host,
            signature=request.header(SIGNATURE_HEADER),
            query=request.query,
            client=request.client,
        ):
            return FORBIDDEN
        return None

    def health(self) -> bytes:
        """The body of ``/healthz``."""
        return json.dumps({"status": "ok", "streams": self.streams.active}).encode()


def client_of(address: Any) -> str:
    """``host:port`` of a peer address tuple, escaped for log lines (``?`` if unknown)."""
    return loggable(f"{address[0]}:{address[1]}") if address else "?"


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
    parameters = dict(config.parameters)
    if config.stream_tokens is not None:
        call_sid = dict(form).get("CallSid") or dict(parse_qsl(query)).get("CallSid")
        if not call_sid:
            return Reply(400, "text/plain", b"no CallSid: is this Twilio's voice webhook?\n")
        try:
            parameters[TOKEN_PARAMETER] = config.stream_tokens.mint_for(call_sid)
        except ReplayError:
            refusals = _token_refusals(config.stream_tokens)
            refusals.replayed(
                f"for call {loggable(call_sid, max_chars=64)} from {loggable(client)}"
            )
            return Reply(409, "text/plain", b"this call already has its stream\n")
        except CapacityError as error:
            _token_refusals(config.stream_tokens).full(str(error))
            return Reply(503, "text/plain", b"server busy, try again\n")
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


_REFUSALS: weakref.WeakKeyDictionary[TokenStore, _TokenRefusals] = weakref.WeakKeyDictionary()


def _token_refusals(store: TokenStore) -> _TokenRefusals:
    refusals = _REFUSALS.get(store)
    if refusals is None:
        refusals = _REFUSALS[store] = _TokenRefusals()
    return refusals
