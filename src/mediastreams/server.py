"""A ready server that answers real calls: the voice webhook and the Media Stream.

- ``GET``/``POST`` ``/incoming-call`` answers Twilio's voice webhook with TwiML that connects
  the call to ``/media-stream`` (https://www.twilio.com/docs/voice/twiml/stream);
- ``/media-stream`` accepts the WebSocket and runs a handler, ``async def handler(stream)``,
  on a :class:`~mediastreams.session.MediaStream`;
- ``/healthz`` says the server is up and how many streams it carries.

The same :class:`ServerConfig` runs on three backends: :func:`create_app` gives a Starlette
app (served by uvicorn, or mounted in your own app); :func:`serve` also runs it on the
``websockets`` server or on picows, which carry more calls per core (picows about twice
as many: ``docs/server.md``). Those two answer only ``GET`` webhooks: set the number's
webhook method to HTTP GET when using them.

Webhook and upgrade logic is written once, without I/O (:func:`answer_webhook`,
:func:`check_upgrade`); each backend only translates its request to these calls. The limits
(``ServerConfig.limits``) hold the same on every backend: a
:class:`~mediastreams.connections.ConnectionGuard` caps and times connections in front of the
backend, and each backend's own timeouts, pings and frame size are set from the same
:class:`~mediastreams.limits.Limits` (``docs/security.md`` has the table).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import ipaddress
import json
import logging
import socket
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from .connections import (
    ConnectionGuard,
    GuardedBufferedProtocol,
    GuardedProtocol,
    Throttle,
    peer_of,
)
from .exceptions import (
    CapacityError,
    ReplayError,
    SignatureError,
    StreamClosed,
    StreamTimeout,
    TwiMLError,
)
from .limits import DEFAULT_LIMITS, Limits
from .messages import Media
from .security import (
    SIGNATURE_HEADER,
    PublicURL,
    TokenStore,
    check_upgrade_signature,
    check_webhook_signature,
    loggable,
)
from .session import CLOSE_POLICY, MediaStream, Transport
from .twiml import connect_stream

__all__ = [
    "BACKENDS",
    "TOKEN_PARAMETER",
    "Backend",
    "Handler",
    "Reply",
    "ServerConfig",
    "answer_webhook",
    "bind",
    "check_upgrade",
    "create_app",
    "echo_handler",
    "play_handler",
    "run_stream",
    "serve",
]

logger = logging.getLogger("mediastreams.server")

TOKEN_PARAMETER = "streamToken"
"""The ``<Parameter>`` that carries a one-time stream token (see ``ServerConfig``)."""

Handler: TypeAlias = Callable[[MediaStream], Awaitable[None]]
"""What runs on each stream: ``async def handler(stream: MediaStream) -> None``."""

Backend: TypeAlias = Literal["uvicorn", "websockets", "picows"]
BACKENDS: tuple[Backend, ...] = ("uvicorn", "websockets", "picows")


@dataclass(frozen=True)
class ServerConfig:
    """What the server does.

    Attributes:
        handler: runs on each stream once Twilio's ``start`` arrived.
        public_url: the base the world reaches the server at (``https://abc.example``,
            a tunnel or a proxy). Stream URLs and signatures use it. Without it they are
            derived from each request, which suits local runs only.
        parameters: ``<Parameter>`` elements to put in the TwiML; they arrive in
            ``stream.custom_parameters``.
        auth_token: the Twilio auth token; when set, both routes refuse requests that
            Twilio did not sign (HTTP 403).
        incoming_path: the voice webhook's path.
        stream_path: the Media Stream's path.
        stream_options: :class:`~mediastreams.session.MediaStream` pacing options
            (``frame_ms``, ``lead_ms``, ``mark_interval_ms``); bounds go in ``limits``.
        stream_tokens: when set, the webhook mints a one-time token for its ``CallSid``
            into a ``<Parameter name="streamToken">``, and a stream whose ``start`` does not
            carry a valid one is closed (1008) before the handler runs: a replayed upgrade,
            whose signature is the same for every call, gets no further. A replayed webhook
            gets the pending token again, or HTTP 409 once it was used; a full store
            answers 503 (:class:`~mediastreams.security.TokenStore`).
        limits: every bound and deadline per connection (frame size, queues, timeouts);
            see :class:`~mediastreams.limits.Limits`.

    Raises:
        TypeError: the handler is not an ``async def handler(stream)``.
        ValueError: a bad public URL, ``<Parameter>`` or option.
    """

    handler: Handler
    public_url: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    auth_token: str | None = field(default=None, repr=False)
    incoming_path: str = "/incoming-call"
    stream_path: str = "/media-stream"
    stream_options: Mapping[str, Any] = field(default_factory=dict)
    stream_tokens: TokenStore | None = None
    limits: Limits = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        # Fail at start, not on the first call: a bad handler, public URL or <Parameter>.
        self.check_handler(self.handler)
        if "limits" in self.stream_options:
            raise ValueError("give the limits as ServerConfig(limits=...), not in stream_options")
        if self.public_url is not None:
            PublicURL.parse(self.public_url)
        try:
            connect_stream("wss://check.invalid/", parameters=self.parameters)
        except TwiMLError as error:
            raise ValueError(str(error)) from None
        if self.stream_tokens is not None and TOKEN_PARAMETER in self.parameters:
            # The minted token would silently replace the value given.
            raise ValueError(
                f"<Parameter name={TOKEN_PARAMETER!r}> carries the one-time stream token; "
                "give your parameter another name"
            )

    @staticmethod
    def check_handler(handler: object) -> None:
        """Check that ``handler`` can run on a stream: an async callable of one argument.

        Accepted: an ``async def`` function, an object with ``async def __call__``, and a
        ``functools.partial`` of either, that can be called with the stream alone.

        Raises:
            TypeError: it is not, with what to write instead.
        """
        name = getattr(handler, "__name__", None) or type(handler).__name__
        fix = f"write it as `async def {name}(stream): ...`"
        if not callable(handler):
            raise TypeError(f"the handler must be an async function, not {handler!r}; {fix}")
        if not _is_async_callable(handler):
            raise TypeError(f"the handler {name} is not async: it cannot await the stream; {fix}")
        try:
            signature = inspect.signature(handler)
        except (TypeError, ValueError):
            return  # no signature to read (a builtin): the first call will tell
        try:
            signature.bind(object())
        except TypeError:
            bare = signature.replace(  # the parameters as written, without annotations
                parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
                return_annotation=signature.empty,
            )
            raise TypeError(
                f"the handler {name}{bare} must take one argument, the stream; {fix}"
            ) from None


def _is_async_callable(handler: object) -> bool:
    while isinstance(handler, functools.partial):
        handler = handler.func
    if inspect.iscoroutinefunction(handler):
        return True
    # An instance whose __call__ is async; a class is called to make an instance, not awaited.
    call = getattr(handler, "__call__", None)  # noqa: B004 -- the attribute, not callable()
    return not isinstance(handler, type) and inspect.iscoroutinefunction(call)


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, whichever server sends it."""

    status: int
    content_type: str
    body: bytes


# --- public URLs and signatures --------------------------------------------------------------


def _origin(config: ServerConfig, scheme: str, host: str) -> PublicURL:
    if config.public_url is not None:
        return PublicURL.parse(config.public_url)
    # No forwarded headers: anyone can send them; behind a proxy, configure public_url.
    return PublicURL.from_request(scheme, host)


Signature: TypeAlias = str | Sequence[str] | None
"""An ``X-Twilio-Signature``: the header's value, or every value received (or ``None``)."""


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
            return Reply(403, "text/plain", b"invalid signature\n")
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


# --- running a stream ------------------------------------------------------------------------


class _Streams:
    """The streams a server carries, so /healthz can count them and shutdown can end them.

    A backend runs each stream inside ``with streams.counting():``, in the task that runs
    :func:`run_stream`. ``active`` reports only the live ones: a stream that has ended while
    its handler finishes other work (saving a transcript, say) no longer counts.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def active(self) -> int:
        """The streams that have not ended."""
        return sum(1 for task in self._tasks if _live(task))

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """Count the stream that the current task runs, until the block ends."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)


_STREAM_OF_TASK: weakref.WeakKeyDictionary[asyncio.Task[Any], MediaStream] = (
    weakref.WeakKeyDictionary()
)
"""The stream :func:`run_stream` runs in each task, for :class:`_Streams`."""


def _live(task: asyncio.Task[Any]) -> bool:
    stream = _STREAM_OF_TASK.get(task)
    return stream is None or not stream.ended  # no stream yet: it is opening


async def run_stream(config: ServerConfig, transport: Transport, *, client: str = "?") -> None:
    """Open a stream on an accepted WebSocket, run the handler on it, then close it.

    This is the server's I/O boundary: a stream that never starts is logged here and closed;
    a handler that raises is logged here with its traceback, once, and its stream closes
    with 1011 and the error as the reason (what any server does for a crashed handler, and
    what Twilio reports as error 31921). Either way only this stream ends.
    """
    stream = MediaStream(transport, limits=config.limits, **config.stream_options)
    task = asyncio.current_task()
    if task is not None:
        _STREAM_OF_TASK[task] = stream
    try:
        await _run_handler(config, stream, client)
    finally:
        await stream.close()
        if task is not None:
            _STREAM_OF_TASK.pop(task, None)


async def _run_handler(config: ServerConfig, stream: MediaStream, client: str) -> None:
    try:
        await stream.open()
    except (StreamTimeout, StreamClosed) as error:
        logger.warning("stream from %s did not start: %s", client, loggable(error))
        return
    # SIDs come from the wire: escaped before they reach a log line.
    stream_sid, call_sid = loggable(stream.stream_sid), loggable(stream.call_sid)
    extra = {"stream_sid": stream_sid, "call_sid": call_sid}
    if config.stream_tokens is not None:
        try:
            token = stream.custom_parameters.get(TOKEN_PARAMETER)
            config.stream_tokens.redeem(token, stream.call_sid)
        except SignatureError as error:
            logger.warning("refused the stream from %s: %s", client, loggable(error), extra=extra)
            await stream.close(CLOSE_POLICY)
            return
    try:
        await config.handler(stream)
    except Exception as error:
        if isinstance(error, StreamClosed) and stream.ended:
            # The caller hung up while the handler was still using the stream: no crash.
            logger.warning(
                "the handler used stream %s after it ended: %s",
                stream_sid,
                loggable(error),
                extra=extra,
            )
            return
        logger.exception(
            "the handler failed on stream %s (call %s)", stream_sid, call_sid, extra=extra
        )
        await stream.fail(error)


def play_handler(mulaw: bytes, *, hangup_after_play: bool = False) -> Handler:
    """A handler that plays audio when the stream starts, then waits for the caller.

    Args:
        mulaw: headerless mu-law/8000 (convert files once, with ``mediastreams.audio``).
        hangup_after_play: end the stream once the audio played, instead of waiting.
    """

    async def play(stream: MediaStream) -> None:
        handle = await stream.play(mulaw)
        logger.info(
            "played %.0f ms of %.0f ms (%s)",
            handle.played_ms,
            handle.sent_ms,
            handle.outcome.value,
            extra={"stream_sid": stream.stream_sid, "call_sid": stream.call_sid},
        )
        if hangup_after_play:
            return
        async for _ in stream:  # wait for the caller to hang up
            pass

    return play


async def echo_handler(stream: MediaStream) -> None:
    """A handler that plays the caller's audio back to them, frame by frame.

    When playout falls behind (the caller's side does not confirm the audio as fast as it
    sends it), at most ``stream.limits.max_echo_backlog_ms`` of it waits; older audio is
    dropped, so the caller hears the present. What was dropped is logged at the end.
    """

    async def caller_audio() -> Any:
        async for event in stream:
            if type(event) is Media:
                yield event.payload

    handle = await stream.play(caller_audio(), max_backlog_ms=stream.limits.max_echo_backlog_ms)
    if handle.dropped_ms:
        logger.warning(
            "echo: dropped %.0f ms of the caller's audio that playout fell behind on",
            handle.dropped_ms,
            extra={"stream_sid": stream.stream_sid, "call_sid": stream.call_sid},
        )


# --- Starlette (uvicorn) ---------------------------------------------------------------------


def create_app(config: ServerConfig) -> Starlette:
    """The server as a Starlette app: serve it with uvicorn, or mount it in yours."""
    streams = _Streams()

    async def incoming_call(request: Request) -> Response:
        form: list[tuple[str, str]] = []
        if request.method == "POST":
            # Twilio posts application/x-www-form-urlencoded; parsed here, without the
            # python-multipart package that Starlette's request.form() needs.
            try:
                # Bounded here too for apps that mount this one without the guard in front.
                async with asyncio.timeout(config.limits.header_timeout_s):
                    body = await _read_body(request, config.limits.max_webhook_bytes)
            except TimeoutError:
                return _plain(b"request body too slow\n", 408)
            if body is None:
                return _plain(b"request too large\n", 413)
            form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        reply = answer_webhook(
            config,
            scheme=request.url.scheme,
            host=_single(request.headers.getlist("host")),
            query=request.url.query,
            form=form,
            signature=request.headers.getlist(SIGNATURE_HEADER),
            client=_client(request.client),
        )
        return _plain(reply.body, reply.status, reply.content_type)

    async def media_stream(websocket: WebSocket) -> None:
        from .adapters.starlette import StarletteTransport

        client = _client(websocket.client)
        if not check_upgrade(
            config,
            scheme=websocket.url.scheme,
            host=_single(websocket.headers.getlist("host")),
            signature=websocket.headers.getlist(SIGNATURE_HEADER),
            query=websocket.url.query,
            client=client,
        ):
            await websocket.close(1008)  # before accept: the server answers HTTP 403
            return
        await websocket.accept()
        with streams.counting():
            await run_stream(config, StarletteTransport(websocket), client=client)

    async def healthz(request: Request) -> Response:
        return _plain(_health(streams), 200, "application/json")

    return Starlette(
        routes=[
            Route(config.incoming_path, incoming_call, methods=["GET", "POST"]),
            Route("/healthz", healthz),
            WebSocketRoute(config.stream_path, media_stream),
        ]
    )


def _plain(body: bytes, status: int, content_type: str = "text/plain") -> Response:
    # One request per connection, as on the other two backends: the header deadline then
    # bounds each request, and a proxy that keeps connections open is told to reconnect
    # rather than have one cut under it.
    return Response(body, status, media_type=content_type, headers={"Connection": "close"})


async def _read_body(request: Request, max_bytes: int) -> bytes | None:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            return None
    return bytes(body)


def _client(address: Any) -> str:
    return loggable(f"{address[0]}:{address[1]}") if address else "?"


def _single(values: Sequence[str]) -> str:
    # Two Host headers name no host: the request gets a 400 (or a refused upgrade).
    return values[0] if len(values) == 1 else ""


def _health(streams: _Streams) -> bytes:
    return json.dumps({"status": "ok", "streams": streams.active}).encode()


# --- serving ---------------------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket, so a port in use is reported before any server starts.

    Raises:
        OSError: the address cannot be bound (in use, not local, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(
    config: ServerConfig,
    sock: socket.socket,
    *,
    backend: Backend = "uvicorn",
    stop: asyncio.Event | None = None,
) -> None:
    """Serve on a bound socket until ``stop`` is set (or, with uvicorn, SIGINT/SIGTERM).

    Every backend applies ``config.limits`` the same way: a connection cap answered with
    HTTP 503, a header deadline for the HTTP phase, the WebSocket handshake timeout, pings,
    the close timeout and the frame size (``docs/security.md``). While it runs, asyncio's
    out-of-descriptor accept errors are logged once a second instead of once per attempt.

    Args:
        config: what the server does.
        sock: a listening socket (see :func:`bind`).
        backend: ``"uvicorn"`` (Starlette; GET and POST webhooks), ``"websockets"`` or
            ``"picows"`` (faster; GET webhooks only).
        stop: set it to shut down; every stream is closed before this returns.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    _warn_if_open_to_all(config, sock)
    guard = ConnectionGuard(config.limits)
    with guard.quiet_accept_errors():
        if backend == "uvicorn":
            await _serve_uvicorn(config, sock, stop, guard)
        elif backend == "websockets":
            await _serve_websockets(config, sock, stop or asyncio.Event(), guard)
        else:
            await _serve_picows(config, sock, stop or asyncio.Event(), guard)


def _warn_if_open_to_all(config: ServerConfig, sock: socket.socket) -> None:
    if config.auth_token:
        return
    host = sock.getsockname()[0]
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:  # not an IP address: a Unix socket path
        loopback = True
    if not loopback:
        logger.warning(
            "listening on %s without an auth token: anyone who reaches this address can "
            "start streams; set --auth-token (or TWILIO_AUTH_TOKEN) to check Twilio's "
            "signatures",
            host,
        )


async def _serve_uvicorn(
    config: ServerConfig, sock: socket.socket, stop: asyncio.Event | None, guard: ConnectionGuard
) -> None:
    import uvicorn

    limits = config.limits
    http_protocol, ws_protocol = _uvicorn_protocols(guard, limits)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            log_level="warning",
            access_log=False,
            lifespan="off",
            http=http_protocol,
            ws=ws_protocol,
            ws_max_size=limits.max_frame_bytes,
            ws_ping_interval=limits.ping_interval_s,
            ws_ping_timeout=limits.ping_timeout_s,
        )
    )
    if stop is None:
        await server.serve(sockets=[sock])
        return
    task = asyncio.create_task(server.serve(sockets=[sock]))
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    await guard.settle()
    server.should_exit = True
    waiter.cancel()
    await task


def _uvicorn_protocols(
    guard: ConnectionGuard, limits: Limits
) -> tuple[type[asyncio.Protocol], type[asyncio.Protocol]]:
    """uvicorn's HTTP protocol behind the guard, and its WebSocket protocol with our limits.

    The WebSocket protocol is uvicorn's ``websockets-sansio``, the fastest of its three.

    uvicorn hands an upgraded connection from its HTTP protocol to its WebSocket protocol
    (``transport.set_protocol``), so the WebSocket protocol is the one that ends the header
    deadline and releases the connection.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    class HTTPProtocol(GuardedProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(guard, AutoHTTPProtocol(*args, **kwargs))

    class WebSocketProtocol(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.close_timeout = limits.close_timeout_s

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            guard.request_received(transport)
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            guard.release(self.transport)
            super().connection_lost(exc)

        def send_receive_event_to_app(self) -> None:
            # uvicorn logs a traceback for a text frame that is not UTF-8; close it here.
            if self.curr_msg_data_type == "text" and not self.close_sent:
                try:
                    b"".join(self.frames).decode()
                except UnicodeDecodeError:
                    self.frames = []
                    _log_invalid_text(peer_of(self.transport))
                    self.conn.send_close(_CLOSE_INVALID_TEXT, "text frame is not UTF-8")
                    self.handle_parser_exception()
                    return
            super().send_receive_event_to_app()

    return HTTPProtocol, WebSocketProtocol


# RFC 6455 7.4.1: data inconsistent with the message type (text that is not UTF-8).
_CLOSE_INVALID_TEXT = 1007


def _log_invalid_text(client: str) -> None:
    logger.warning("closed the WebSocket from %s with 1007: a text frame is not UTF-8", client)


async def _serve_websockets(
    config: ServerConfig, sock: socket.socket, stop: asyncio.Event, guard: ConnectionGuard
) -> None:
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as ws_serve
    from websockets.datastructures import Headers
    from websockets.http11 import Request as WsRequest
    from websockets.http11 import Response as WsResponse

    from .adapters.websockets import WebsocketsTransport

    streams = _Streams()
    limits = config.limits

    class GuardedConnection(ServerConnection):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if guard.admit(transport):
                super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            guard.release(self.transport)
            super().connection_lost(exc)

    def respond(reply: Reply) -> WsResponse:
        headers = Headers(
            [
                ("Content-Type", reply.content_type),
                ("Content-Length", str(len(reply.body))),
                ("Connection", "close"),  # websockets closes after an HTTP answer: say so
            ]
        )
        return WsResponse(reply.status, _REASONS.get(reply.status, "OK"), headers, reply.body)

    def process_request(connection: ServerConnection, request: WsRequest) -> WsResponse | None:
        guard.request_received(connection.transport)
        path, _, query = request.path.partition("?")
        host = _single(request.headers.get_all("Host"))
        signature = request.headers.get_all(SIGNATURE_HEADER)
        client = _client(connection.remote_address)
        if path == config.incoming_path:
            reply = answer_webhook(
                config, scheme="http", host=host, query=query, signature=signature, client=client
            )
            return respond(reply)
        if path == "/healthz":
            return respond(Reply(200, "application/json", _health(streams)))
        if path != config.stream_path:
            return respond(Reply(404, "text/plain", b"not found\n"))
        if not check_upgrade(
            config, scheme="ws", host=host, signature=signature, query=query, client=client
        ):
            return respond(Reply(403, "text/plain", b"invalid signature\n"))
        return None

    async def handler(connection: ServerConnection) -> None:
        with streams.counting():
            transport = WebsocketsTransport(connection)
            await run_stream(config, transport, client=_client(connection.remote_address))

    async with ws_serve(
        handler,
        sock=sock,
        process_request=process_request,
        create_connection=GuardedConnection,
        open_timeout=limits.handshake_timeout_s,
        ping_interval=limits.ping_interval_s,
        ping_timeout=limits.ping_timeout_s,
        close_timeout=limits.close_timeout_s,
        max_size=limits.max_frame_bytes,
    ) as server:
        await stop.wait()
        await guard.settle()
        server.close(close_connections=True)
        await server.wait_closed()


async def _serve_picows(
    config: ServerConfig, sock: socket.socket, stop: asyncio.Event, guard: ConnectionGuard
) -> None:
    from picows import (
        WSAutoPingStrategy,
        WSUpgradeRequest,
        WSUpgradeResponse,
        WSUpgradeResponseWithListener,
        ws_create_server,
    )

    from .adapters.picows import PicowsTransport

    streams = _Streams()
    tasks: set[asyncio.Task[None]] = set()
    limits = config.limits

    def respond(reply: Reply) -> WSUpgradeResponseWithListener:
        headers = {"Content-Type": reply.content_type}
        if reply.status < 400:
            response = WSUpgradeResponse.create_ok_response(reply.body, headers)
        else:
            response = WSUpgradeResponse.create_error_response(reply.status, reply.body, headers)
        return WSUpgradeResponseWithListener(response, None)

    async def run(transport: PicowsTransport) -> None:
        with streams.counting():
            await run_stream(config, transport, client=transport.peer)

    def on_connected(transport: PicowsTransport) -> None:
        task = asyncio.get_running_loop().create_task(run(transport))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def factory(request: WSUpgradeRequest) -> Any:
        connection = guard.reading  # picows calls this while reading that connection
        client = peer_of(connection)
        path, _, query = request.path.decode("latin-1").partition("?")
        host = _single(request.headers.getall("Host", []))
        signature = request.headers.getall(SIGNATURE_HEADER, [])
        if path == config.incoming_path:
            return respond(
                answer_webhook(
                    config,
                    scheme="http",
                    host=host,
                    query=query,
                    signature=signature,
                    client=client,
                )
            )
        if path == "/healthz":
            return respond(Reply(200, "application/json", _health(streams)))
        if path != config.stream_path:
            return respond(Reply(404, "text/plain", b"not found\n"))
        if not check_upgrade(
            config, scheme="ws", host=host, signature=signature, query=query, client=client
        ):
            return respond(Reply(403, "text/plain", b"invalid signature\n"))
        guard.request_received(connection)
        return PicowsTransport(on_connected, limits=limits)

    server = await ws_create_server(
        factory,
        sock=sock,
        start_serving=False,
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
    # picows builds its protocol inside ws_create_server and offers no hook around it; the
    # guard wraps the factory that asyncio's Server keeps, before serving starts.
    server._protocol_factory = _guarded_factory(guard, server._protocol_factory)  # type: ignore[attr-defined]
    await server.start_serving()
    try:
        await stop.wait()
        await guard.settle()
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def _without_aiofastnet(ws_create_server: Callable[..., Any]) -> dict[str, Any]:
    # aiofastnet 1.2 (picows' default transport when installed) calls a method sockets do not
    # have when accept() runs out of descriptors, so its accept loop raises and logs a
    # traceback on every turn of the event loop, for ever; asyncio's own accept pauses 1 s.
    if "use_aiofastnet" in inspect.signature(ws_create_server).parameters:
        return {"use_aiofastnet": False}
    return {}


def _guarded_factory(
    guard: ConnectionGuard, factory: Callable[[], asyncio.BufferedProtocol]
) -> Callable[[], asyncio.BufferedProtocol]:
    def guarded() -> asyncio.BufferedProtocol:
        return GuardedBufferedProtocol(guard, factory())

    return guarded


_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
