"""What a call is placed to: a voice webhook or stream URL, an ASGI app, or ``module:app``.

:func:`load_app` imports an app named ``"package.module:attribute"`` (and says "did you mean
http://...?" for a URL without its scheme); :func:`choose_clock` picks the clock a target can
run on; :func:`base_url` checks the public URL an in-process app is said to live at.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..exceptions import EmulatorError
from .asgi import ASGIApp
from .clock import ClockName

__all__ = ["app_name", "base_url", "choose_clock", "is_url", "load_app"]


def is_url(target: str | ASGIApp) -> bool:
    """Whether ``target`` is a URL (``scheme://...``), not an app or ``module:app``."""
    return isinstance(target, str) and "://" in target


def load_app(spec: str) -> ASGIApp:
    """Import ``"package.module:attribute"`` (an ASGI app, or a factory with ``()``).

    Raises:
        EmulatorError: the module or attribute cannot be found, or ``spec`` is a URL
            without its scheme (``127.0.0.1:5050/incoming-call``).
    """
    url = _url_meant(spec)
    if url is not None:
        raise EmulatorError(
            f"{spec!r} is not module:app; did you mean {url}? A URL needs its scheme: "
            "http(s):// for a voice webhook, ws(s):// for a stream"
        )
    module_name, _, attribute = spec.partition(":")
    factory = attribute.endswith("()")
    attribute = attribute.removesuffix("()")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # whatever the module raised, it is reported in one line
        raise EmulatorError(
            f"cannot import {module_name!r}: {type(error).__name__}: {error}"
        ) from error
    try:
        app: Any = module
        for part in (attribute or "app").split("."):
            app = getattr(app, part)
    except AttributeError:
        raise EmulatorError(f"{module_name!r} has no attribute {attribute!r}") from None
    if factory:
        app = app()
    if not callable(app):
        raise EmulatorError(f"{spec} is not an ASGI app")
    return app  # type: ignore[no-any-return]


_HOST = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d+))?(?P<path>/.*)?")


def _url_meant(spec: str) -> str | None:
    """The URL ``spec`` names without its scheme, if it cannot be ``module:attribute``."""
    match = _HOST.fullmatch(spec)
    if match is None:
        return None
    host, port, path = match["host"], match["port"], match["path"]
    if port is None and path is None and all(part.isidentifier() for part in host.split(".")):
        return None  # "package.module": a module name, not a host
    local = host in ("localhost", "[::1]") or host.replace(".", "").isdigit()
    return ("http://" if local else "https://") + spec


def choose_clock(
    target: str | ASGIApp, clock: ClockName | None, options: Mapping[str, Any]
) -> ClockName:
    """The clock a call to ``target`` runs on: ``clock`` if given and possible, else the
    default (virtual for an in-process app without a REST port or a live caller, real
    otherwise).

    Raises:
        EmulatorError: virtual time asked for a URL or a live caller.
    """
    app_target = not is_url(target)
    live = options.get("caller") is not None
    virtual_ok = app_target and not live
    default: ClockName = "virtual" if virtual_ok and options.get("rest_port") is None else "real"
    chosen: ClockName = clock or default
    if chosen == "virtual" and not app_target:
        raise EmulatorError("virtual time needs an in-process ASGI app; use clock='real'")
    if chosen == "virtual" and live:
        raise EmulatorError(
            "a live caller speaks in real time, which virtual time cannot follow; use clock='real'"
        )
    return chosen


def base_url(public_url: str) -> str:
    """``public_url`` as ``scheme://host[:port]``.

    Raises:
        EmulatorError: it is not ``http(s)://host``, or it has a path or a query.
    """
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EmulatorError(
            f"public_url {public_url!r}: expected https://host (the address Twilio would "
            "reach the app at, such as https://abc.ngrok.app)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise EmulatorError(
            f"public_url {public_url!r}: give the scheme and host only, such as "
            f"{parts.scheme}://{parts.netloc}; the paths come from webhook_path and stream_path"
        )
    return f"{parts.scheme}://{parts.netloc}"


def app_name(app: object) -> str:
    """How the report names an app object: its type's module and name."""
    return f"{type(app).__module__}.{type(app).__qualname__}"
