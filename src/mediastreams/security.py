"""Who is calling: ``X-Twilio-Signature``, the public URL it was computed over, stream tokens.

Twilio signs every webhook and the Media Streams WebSocket upgrade with
base64(HMAC-SHA1(auth token, URL + each POST parameter's name and value, sorted by name)).
The URL is the one *Twilio* requested, so behind a proxy or a tunnel it has to be rebuilt:
:class:`PublicURL` and :func:`public_url_for` do that, from a configured base URL or from
the request's forwarded headers. A signature covers only the URL of the upgrade, so it is
the same for every call; :class:`StreamTokens` adds one token per call, minted when the
webhook is answered (a replayed webhook gets the same pending token or none) and burned when
the stream starts. :func:`loggable` escapes what a peer sent before it goes in a log line.

Nothing here imports a web framework, and no token or signature ever goes into an exception
message.

Reference: https://www.twilio.com/docs/usage/webhooks/webhooks-security and
https://www.twilio.com/docs/voice/media-streams (validate the upgrade's signature).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from .exceptions import CapacityError, ReplayError, SignatureError

__all__ = [
    "SIGNATURE_HEADER",
    "FormParams",
    "PublicURL",
    "StreamTokens",
    "TokenStore",
    "check_upgrade_signature",
    "check_webhook_signature",
    "compute_signature",
    "loggable",
    "public_url_for",
    "validate_signature",
]

#: The header Twilio signs requests with (lowercase on WebSocket upgrades).
SIGNATURE_HEADER = "X-Twilio-Signature"

#: POST parameters: a mapping of names to a value or a list of values (a multi-dict with
#: ``getall``/``getlist``, as aiohttp, Starlette, Flask and Django give, is read in full),
#: or ``(name, value)`` pairs in any order.
FormParams: TypeAlias = Mapping[str, Any] | Iterable[tuple[str, str]]

_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}
_WEBSOCKET_SCHEMES = {"https": "wss", "http": "ws"}


# --- signatures -----------------------------------------------------------------------------


def compute_signature(auth_token: str, url: str, params: FormParams = ()) -> str:
    """Compute the ``X-Twilio-Signature`` Twilio would send for a request.

    Args:
        auth_token: the account's Auth Token.
        url: the full URL Twilio requested, query string included, exactly as Twilio wrote it.
        params: the POST parameters; none for a GET or a WebSocket upgrade.

    Returns:
        The base64 signature, as twilio-python's ``RequestValidator.compute_signature`` gives.

    Raises:
        ValueError: ``auth_token`` is empty.
    """
    return _sign(auth_token, url, _grouped(params))


def _sign(auth_token: str, url: str, grouped: list[tuple[str, list[str]]]) -> str:
    if not auth_token:
        raise ValueError("the auth token is empty; set it from your Twilio console")
    # https://www.twilio.com/docs/usage/webhooks/webhooks-security#validating-signatures-from-twilio:
    # the URL, then each parameter's name and value, sorted by name.
    data = url + "".join(name + value for name, values in grouped for value in values)
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def _grouped(params: FormParams) -> list[tuple[str, list[str]]]:
    # Repeated names follow twilio-python: the distinct values of a name, sorted.
    groups: dict[str, set[str]] = {}
    if isinstance(params, Mapping):
        for name in params:
            groups.setdefault(name, set()).update(_values(params, name))
    else:
        for name, value in params:
            groups.setdefault(name, set()).add(value)
    return [(name, sorted(groups[name])) for name in sorted(groups)]


def _values(params: Mapping[str, Any], name: str) -> list[str]:
    # A multi-dict's mapping view shows one value per name; ask it for all of them.
    for method in ("getall", "getlist"):
        getter = getattr(params, method, None)
        if getter is not None:
            return list(getter(name))
    value = params[name]
    return [value] if isinstance(value, str) else list(value)


def validate_signature(
    auth_token: str, url: str, params: FormParams, signature: str | None
) -> bool:
    """Tell whether ``signature`` is Twilio's for this URL and these parameters.

    Like twilio-python's ``RequestValidator.validate``, the URL is tried with and without
    its port, because Twilio does not always sign the port it connected to. The comparison
    takes constant time.

    Args:
        auth_token: the account's Auth Token.
        url: the full public URL Twilio requested (see :func:`public_url_for`).
        params: the POST parameters; none for a WebSocket upgrade.
        signature: the ``X-Twilio-Signature`` header, or ``None`` if it was missing.

    Returns:
        ``True`` if the signature matches.
    """
    if not signature:
        return False
    try:
        candidates = _with_and_without_port(url)
    except ValueError:
        return False
    expected = signature.encode()
    grouped = _grouped(params)  # once: params may be a one-shot iterator of pairs
    # Both forms are always computed, so the time taken does not tell which one matched.
    matches = [
        hmac.compare_digest(_sign(auth_token, form, grouped).encode(), expected)
        for form in candidates
    ]
    return any(matches)


def _with_and_without_port(url: str) -> tuple[str, str]:
    # twilio-python's request_validator.py tries remove_port(url) and add_port(url). Its
    # add_port picks 443 for https and 80 for anything else (so wss gets :80); here every
    # scheme gets its own default port, and IPv6 hosts and user info are kept intact. The
    # host keeps its case: the signature is over the URL as Twilio wrote it.
    parts = urlsplit(url)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)  # raises ValueError on a bad port
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host = hostport if ":" not in hostport.rpartition("]")[2] else hostport.rpartition(":")[0]
    without_port = parts._replace(netloc=f"{userinfo}{at}{host}").geturl()
    with_port = parts._replace(netloc=f"{userinfo}{at}{host}:{port}").geturl()
    return without_port, with_port


def check_webhook_signature(
    auth_token: str, url: str, params: FormParams, signature: str | None
) -> None:
    """Refuse a webhook (voice, status callback) that Twilio did not sign.

    Args:
        auth_token: the account's Auth Token.
        url: the full public URL Twilio requested, with its query string.
        params: the POST body's parameters (the query string's stay in ``url``).
        signature: the ``X-Twilio-Signature`` header, or ``None`` if it was missing.

    Raises:
        SignatureError: the header is missing or does not match.
    """
    if not signature:
        raise SignatureError(f"no {SIGNATURE_HEADER} header on the request to {_safe(url)}")
    if not validate_signature(auth_token, url, params, signature):
        raise SignatureError(_mismatch(url))


def check_upgrade_signature(auth_token: str, url: str, signature: str | None) -> None:
    """Refuse a Media Streams WebSocket upgrade that Twilio did not sign.

    Twilio signs the ``wss://`` URL it connected to, with no parameters. It strips any query
    string from the ``<Stream url>``, so an upgrade that carries one did not come from
    Twilio and is refused.

    Args:
        auth_token: the account's Auth Token.
        url: the public ``wss://`` URL of the upgrade (see :func:`public_url_for`).
        signature: the ``x-twilio-signature`` header, or ``None`` if it was missing.

    Raises:
        SignatureError: the header is missing or does not match, or the URL is not a
            WebSocket URL or has a query string.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        raise SignatureError("the upgrade URL is malformed") from None
    if parts.scheme not in ("wss", "ws"):
        raise SignatureError(
            f"the upgrade URL {_safe(url)} is not a wss:// URL; Twilio signs the wss:// URL,"
            " so rebuild it with PublicURL.websocket_url()"
        )
    # https://www.twilio.com/docs/voice/twiml/stream#attributes-url: no query strings.
    if parts.query or "?" in url:
        raise SignatureError(
            f"the upgrade to {_safe(url)} has a query string, which Twilio never sends"
        )
    if not signature:
        raise SignatureError(f"no {SIGNATURE_HEADER} header on the upgrade to {_safe(url)}")
    if not validate_signature(auth_token, url, (), signature):
        raise SignatureError(_mismatch(url))


def _mismatch(url: str) -> str:
    return (
        f"{SIGNATURE_HEADER} does not match {_safe(url)} and the parameters received: check the"
        " auth token, and that this is the exact public URL Twilio requested (configure the"
        " public base URL when behind a proxy or tunnel)"
    )


def _safe(url: str) -> str:
    """The URL without user info or query string, which may hold secrets."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "a malformed URL"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# --- public URLs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicURL:
    """The public origin Twilio reaches your server at, such as ``https://abc.example``.

    Twilio signs the URL it requested, which a proxy or a tunnel changes before your server
    sees it (``http`` for ``https``, an internal host). The webhook and stream URLs are
    rebuilt from this origin instead: ``https`` for webhooks, ``wss`` for the stream.

    Attributes:
        scheme: ``"https"`` or ``"http"``.
        netloc: the host, with a port if it is not the default.
        prefix: a path the proxy strips before the request reaches you (``""`` if none).
    """

    scheme: str
    netloc: str
    prefix: str = ""

    @classmethod
    def parse(cls, base_url: str) -> PublicURL:
        """Read a configured base URL such as ``https://abc.example`` or ``wss://abc.example``.

        Args:
            base_url: an absolute URL with no query string; a path, if any, is a prefix
                that the proxy strips before the request reaches your server.

        Returns:
            The origin.

        Raises:
            ValueError: the URL is not absolute http(s)/ws(s), or has a query or fragment.
        """
        parts = urlsplit(base_url)
        scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
        if scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(
                f"public base URL {base_url!r} must be absolute, such as https://abc.example"
            )
        if parts.query or parts.fragment or "?" in base_url:
            raise ValueError(f"public base URL {base_url!r} must have no query or fragment")
        parts.port  # noqa: B018 - raises ValueError on a bad port
        return cls(scheme, parts.netloc, parts.path.rstrip("/"))

    @classmethod
    def from_request(
        cls,
        request_scheme: str,
        host: str,
        forwarded_headers: Mapping[str, str] | None = None,
    ) -> PublicURL:
        """Derive the origin from a request, when no public base URL is configured.

        Args:
            request_scheme: the scheme the server saw: ``http``/``https`` for a webhook,
                ``ws``/``wss`` for an upgrade (as in an ASGI scope).
            host: the ``Host`` header.
            forwarded_headers: the request's headers (any case), if a proxy you trust sets
                ``X-Forwarded-Proto``/``X-Forwarded-Host``; they override the scheme and
                host. Leave this out otherwise: anyone can send these headers.

        Returns:
            The origin.

        Raises:
            ValueError: no host, or a scheme that is not http(s)/ws(s).
        """
        forwarded = {key.lower(): value for key, value in (forwarded_headers or {}).items()}
        # With several proxies in a row, the first value is the one the client used.
        scheme = _first(forwarded.get("x-forwarded-proto")) or request_scheme
        host = _first(forwarded.get("x-forwarded-host")) or host
        if not host or any(c in host for c in "/?#@\\ "):
            raise ValueError(f"the request's host {host!r} is not a host name")
        return cls.parse(f"{scheme.lower()}://{host}")

    def http_url(self, path: str) -> str:
        """The public webhook URL for ``path``, such as ``https://abc.example/incoming-call``."""
        return f"{self.scheme}://{self.netloc}{self.prefix}{_rooted(path)}"

    def websocket_url(self, path: str) -> str:
        """The public stream URL for ``path``, such as ``wss://abc.example/media-stream``."""
        scheme = _WEBSOCKET_SCHEMES[self.scheme]
        return f"{scheme}://{self.netloc}{self.prefix}{_rooted(path)}"


def _first(header: str | None) -> str:
    return (header or "").split(",")[0].strip()


def _rooted(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def public_url_for(
    request_scheme: str,
    host: str,
    path: str,
    forwarded_headers: Mapping[str, str] | None = None,
    configured_base: str | PublicURL | None = None,
) -> str:
    """The URL Twilio requested, to validate its signature against.

    A webhook (``http``/``https`` request) gets an ``https``/``http`` URL; an upgrade
    (``ws``/``wss``) gets a ``wss``/``ws`` URL.

    Args:
        request_scheme: the scheme the server saw (the ASGI scope's ``scheme``).
        host: the ``Host`` header.
        path: the path as received, still percent-encoded (ASGI ``raw_path``), with
            ``?`` and the query string if there is one; an exact copy matters.
        forwarded_headers: headers from a proxy you trust; see
            :meth:`PublicURL.from_request`. Ignored when ``configured_base`` is given.
        configured_base: the public base URL, such as ``https://abc.example``; preferred
            over anything derived from the request, which the client controls.

    Returns:
        The public URL.

    Raises:
        ValueError: the base URL or the request's scheme or host cannot make a URL.
    """
    if isinstance(configured_base, PublicURL):
        origin = configured_base
    elif configured_base is not None:
        origin = PublicURL.parse(configured_base)
    else:
        origin = PublicURL.from_request(request_scheme, host, forwarded_headers)
    if request_scheme.lower() in ("ws", "wss"):
        return origin.websocket_url(path)
    return origin.http_url(path)


# --- one-time stream tokens -----------------------------------------------------------------


class TokenStore(Protocol):
    """Where stream tokens are kept: the rules below hold for every store.

    - **One token per call.** :meth:`mint_for` gives a ``CallSid`` one token; asked again
      while that token is pending (a webhook retried or replayed), it gives the same token,
      and once the token was used or expired it refuses (:class:`ReplayError`), never
      minting a second one.
    - **Bounded, never evicting.** When the pending tokens reach the store's bound, new
      mints are refused (:class:`CapacityError`); a pending token is never dropped to make
      room, so no flood of webhooks can take another call's token away.
    - **Once, for that call, in time.** :meth:`redeem` accepts the call's pending token
      once, before it expires.

    :class:`StreamTokens` keeps them in memory, for one process; a store shared by several
    processes (Redis) implements the same two methods with the same rules.
    """

    def mint_for(self, call_sid: str) -> str:
        """The token for ``call_sid``: a new one, or the one still pending.

        Raises:
            ReplayError: this call's token was already used or has expired.
            CapacityError: the store is full of pending tokens.
        """
        ...

    def redeem(self, token: str | None, call_sid: str) -> None:
        """Accept and burn the pending token of ``call_sid``.

        Raises:
            SignatureError: the token is missing, was never issued to this call, was
                already used, or has expired.
        """
        ...


@dataclass(slots=True)
class _Spent:
    forget_at: float
    reason: str  # "used" or "expired"


class StreamTokens:
    """One-time tokens that tie a stream to the webhook that asked for it, kept in memory.

    The upgrade's signature covers only its URL, so it is the same for every call and can
    be replayed. Mint a token while answering the (signed) voice webhook, put it in a
    ``<Parameter>``, and redeem it when ``start`` arrives with the token in
    ``customParameters``: it works once, for that call, before it expires. The rules are
    :class:`TokenStore`'s.

    A call whose token was used or expired is remembered for ``remember_seconds``, so a
    replay of its webhook mints nothing; past ``max_remembered`` calls the oldest memory is
    dropped (that only lets a very old replay mint again, and a signed replay is the only
    kind that reaches the store when signatures are checked).

    Use one instance per process, from one thread or event loop.

    Args:
        ttl_seconds: how long a token stays valid; a stream starts within seconds.
        max_pending: how many unredeemed tokens are kept; past that, mints are refused.
        remember_seconds: how long a call whose token was used or expired stays refused.
        max_remembered: how many such calls are remembered.
        clock: seconds from an arbitrary origin (``time.monotonic``); injectable for tests.
    """

    def __init__(
        self,
        ttl_seconds: float = 60.0,
        *,
        max_pending: int = 10_000,
        remember_seconds: float = 4 * 3600.0,
        max_remembered: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        settings = {
            "ttl_seconds": ttl_seconds,
            "max_pending": max_pending,
            "remember_seconds": remember_seconds,
            "max_remembered": max_remembered,
        }
        for name, value in settings.items():
            if value <= 0:
                raise ValueError(f"StreamTokens {name} must be positive, not {value!r}")
        self.ttl_seconds = ttl_seconds
        self.max_pending = max_pending
        self.remember_seconds = remember_seconds
        self.max_remembered = max_remembered
        self._clock = clock
        # CallSid -> (token, expiry); CallSid -> what became of its token. One TTL each and a
        # monotonic clock make insertion order expiry order: what is due is at the front.
        self._pending: dict[str, tuple[str, float]] = {}
        self._spent: dict[str, _Spent] = {}

    @property
    def pending(self) -> int:
        """How many tokens wait to be redeemed (expired ones not yet swept included)."""
        return len(self._pending)

    def mint_for(self, call_sid: str) -> str:
        """The token for ``call_sid``, to send in a ``<Parameter>``.

        Args:
            call_sid: the ``CallSid`` of the webhook being answered.

        Returns:
            An unguessable URL-safe token (43 characters); the same one while it is pending.

        Raises:
            ReplayError: this call's token was already used or has expired: the webhook was
                replayed.
            CapacityError: ``max_pending`` tokens are pending.
        """
        now = self._clock()
        self._sweep(now)
        entry = self._pending.get(call_sid)
        if entry is not None:
            return entry[0]
        spent = self._spent.get(call_sid)
        if spent is not None:
            raise ReplayError(
                f"the stream token of call {_sid(call_sid)} was already {spent.reason}; "
                "a replayed webhook gets no new one"
            )
        if len(self._pending) >= self.max_pending:
            raise CapacityError(
                f"{len(self._pending)} stream tokens are pending, the most this store keeps "
                "(StreamTokens max_pending): new calls are refused until some start or expire"
            )
        token = secrets.token_urlsafe(32)
        self._pending[call_sid] = (token, now + self.ttl_seconds)
        return token

    def redeem(self, token: str | None, call_sid: str) -> None:
        """Check and burn the token received in ``start.customParameters``.

        A wrong token leaves the call's pending token in place: whoever knows a ``CallSid``
        cannot burn the token of that call by guessing.

        Args:
            token: the token received, or ``None`` if the parameter was missing.
            call_sid: ``start.callSid``.

        Raises:
            SignatureError: the token is missing, was not issued to this call, was already
                used, or has expired.
        """
        if not token:
            raise SignatureError("the stream carries no token")
        now = self._clock()
        self._sweep(now)
        entry = self._pending.get(call_sid)
        if entry is None:
            spent = self._spent.get(call_sid)
            if spent is None:
                raise SignatureError(f"no stream token was issued to call {_sid(call_sid)}")
            raise SignatureError(
                f"the stream token of call {_sid(call_sid)} was already {spent.reason}"
            )
        if not hmac.compare_digest(entry[0].encode(), token.encode()):
            raise SignatureError(f"the stream token is not the one issued to call {_sid(call_sid)}")
        del self._pending[call_sid]
        self._remember(call_sid, "used", now)

    def _sweep(self, now: float) -> None:
        while self._pending:
            call_sid, (_, expires_at) = next(iter(self._pending.items()))
            if expires_at > now:
                break
            del self._pending[call_sid]
            self._remember(call_sid, "expired", now)
        while self._spent:
            call_sid, spent = next(iter(self._spent.items()))
            if spent.forget_at > now:
                break
            del self._spent[call_sid]

    def _remember(self, call_sid: str, reason: str, now: float) -> None:
        while len(self._spent) >= self.max_remembered:
            del self._spent[next(iter(self._spent))]
        self._spent[call_sid] = _Spent(now + self.remember_seconds, reason)


# --- log lines ------------------------------------------------------------------------------

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def loggable(value: object, *, max_chars: int = 200) -> str:
    """``value`` made safe for a log line: what a peer sends cannot forge or flood the log.

    Every character that is not printable (line breaks, other control and format
    characters, lone surrogates) is escaped as in a Python literal (``\\n``, ``\\x1b``,
    ``\\u2028``), backslashes are doubled so an escape cannot be faked, and the text is cut
    at ``max_chars`` with the full length said. Use it on every value from the wire: SIDs,
    paths, headers, peer strings, error texts that quote a frame.

    Args:
        value: anything; it is converted with ``str()``.
        max_chars: the longest text kept, escapes included.

    Returns:
        One line of printable text, at most ``max_chars`` plus a short suffix.
    """
    text = value if isinstance(value, str) else str(value)
    head = text[:max_chars]
    if not (head.isprintable() and "\\" not in head):
        head = "".join(_escaped(char) for char in head)
    if len(head) <= max_chars and len(text) <= max_chars:
        return head
    return f"{head[:max_chars]}...({len(text)} chars)"


def _sid(call_sid: str) -> str:
    # A CallSid comes from the peer (a webhook's form, a start frame) and these messages
    # end up in log lines.
    return loggable(call_sid, max_chars=64)


def _escaped(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
