"""What the server does: :class:`ServerConfig`, checked once at start-up."""

from __future__ import annotations

import functools
import inspect
import ipaddress
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from ..exceptions import TwiMLError
from ..limits import DEFAULT_LIMITS, Limits
from ..security import PublicURL, TokenStore
from ..session import MediaStream
from ..twiml import connect_stream

__all__ = ["BACKENDS", "TOKEN_PARAMETER", "Backend", "Handler", "ServerConfig", "WebhookHook"]

TOKEN_PARAMETER = "streamToken"
"""The ``<Parameter>`` that carries a one-time stream token (see ``ServerConfig``)."""

Handler: TypeAlias = Callable[[MediaStream], Awaitable[None]]
"""What runs on each stream: ``async def handler(stream: MediaStream) -> None``."""

WebhookHook: TypeAlias = Callable[
    [Mapping[str, str]], Mapping[str, Any] | Awaitable[Mapping[str, Any] | None] | None
]
"""``on_webhook(parameters)``: what the app keeps for the call, given the webhook's parameters."""

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
        redis_url: share the call state between instances on Redis (``redis://host:6379/0``;
            the ``redis`` extra): stream tokens, contexts, the registry of live calls and
            call control work whichever instance a call's webhook and socket reach.
        on_webhook: called with the webhook's parameters (``CallSid``, ``From``, ``To``...)
            when it is answered; the JSON-ready mapping it returns (or awaits) is kept for
            the call and readable by the handler as ``stream.context.data``, wherever the
            stream lands. ``stream.context.parameters`` holds the parameters themselves.
        control_token: the bearer token of the control API (``/calls``); without it the API
            answers loopback clients of a loopback server only.
        metrics: serve Prometheus metrics at ``/metrics`` (the ``metrics`` extra).
        forwarded_allow_ips: addresses or networks (``10.0.0.0/8``, ``*``) of proxies whose
            ``X-Forwarded-Proto``/``-Host``/``-For`` headers are trusted; none by default.
        drain_timeout_s: after a drain starts (SIGTERM), the longest live calls are waited
            for; then they close with 1001 (going away).

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
    redis_url: str | None = field(default=None, repr=False)
    on_webhook: WebhookHook | None = None
    control_token: str | None = field(default=None, repr=False)
    metrics: bool = False
    forwarded_allow_ips: Sequence[str] = ()
    drain_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        # Fail at start, not on the first call: a bad handler, public URL or <Parameter>.
        self.check_handler(self.handler)
        if "limits" in self.stream_options:
            raise ValueError("give the limits as ServerConfig(limits=...), not in stream_options")
        if self.public_url is not None:
            check_public_url(self.public_url)
        for address in self.forwarded_allow_ips:
            trusted_network(address)
        if self.drain_timeout_s < 0:
            raise ValueError(f"drain_timeout_s must be 0 or more, not {self.drain_timeout_s!r}")
        if self.redis_url is not None:
            check_redis_url(self.redis_url)
        if self.on_webhook is not None and not callable(self.on_webhook):
            raise TypeError(f"on_webhook must be a function, not {self.on_webhook!r}")
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


def check_public_url(url: str) -> PublicURL:
    """The public base URL, checked: https (or wss), a host, no query; a path prefix once.

    ``http`` is accepted for a loopback host only (a local emulator), since Twilio opens
    streams on ``wss://`` alone (https://www.twilio.com/docs/voice/twiml/stream#url).

    Raises:
        ValueError: what is wrong, and how to write it.
    """
    origin = PublicURL.parse(url)
    host = origin.netloc.rsplit("@", 1)[-1]
    hostname = host.rsplit(":", 1)[0].strip("[]") if not host.endswith("]") else host.strip("[]")
    if origin.scheme != "https" and not _is_loopback(hostname):
        raise ValueError(
            f"public URL {url!r} must be https:// (Twilio streams only to wss://), "
            "such as https://abc.example"
        )
    if "//" in origin.prefix:
        raise ValueError(f"public URL {url!r} has an empty path segment (//)")
    return origin


def check_redis_url(url: str) -> str:
    """The Redis URL, checked: ``redis://``, ``rediss://`` or ``unix://``.

    Raises:
        ValueError: another scheme, with how to write it.
    """
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(
            f"the Redis URL must start with redis://, rediss:// or unix:// "
            f"(redis://host:6379/0), not {url.split(':')[0]!r}"
        )
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def trusted_network(address: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """One entry of ``forwarded_allow_ips`` as a network (``*`` is every address).

    Raises:
        ValueError: not an address or a network.
    """
    if address.strip() == "*":
        return ipaddress.ip_network("0.0.0.0/0")
    try:
        return ipaddress.ip_network(address.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"forwarded-allow-ips: {address!r} is not an address or a network "
            "(such as 10.0.0.1, 10.0.0.0/8 or *)"
        ) from None
