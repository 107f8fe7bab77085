"""``X-Twilio-Signature``: computing it, and refusing a webhook or an upgrade Twilio did not sign.

Twilio signs every webhook and the Media Streams WebSocket upgrade with
base64(HMAC-SHA1(auth token, URL + each POST parameter's name and value, sorted by name)),
over the URL *Twilio* requested (:mod:`mediastreams.security.public_url` rebuilds it behind a
proxy). No signature or token ever goes into an exception message.

Reference: https://www.twilio.com/docs/usage/webhooks/webhooks-security
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from ..exceptions import SignatureError

__all__ = [
    "SIGNATURE_HEADER",
    "FormParams",
    "check_upgrade_signature",
    "check_webhook_signature",
    "compute_signature",
    "validate_signature",
]

#: The header Twilio signs requests with (lowercase on WebSocket upgrades).
SIGNATURE_HEADER = "X-Twilio-Signature"

#: POST parameters: a mapping of names to a value or a list of values (a multi-dict with
#: ``getall``/``getlist``, as aiohttp, Starlette, Flask and Django give, is read in full),
#: or ``(name, value)`` pairs in any order.
FormParams: TypeAlias = Mapping[str, Any] | Iterable[tuple[str, str]]

_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}


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
