"""The public URL Twilio requested, rebuilt behind a proxy or a tunnel.

Twilio signs the URL it requested, which a proxy or a tunnel changes before the server sees
it: :class:`PublicURL` holds the public origin (configured, or read from a trusted proxy's
forwarded headers) and :func:`public_url_for` rebuilds the URL to check a signature against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["PublicURL", "public_url_for"]

_WEBSOCKET_SCHEMES = {"https": "wss", "http": "ws"}


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
