"""A ready server that answers real calls: the voice webhook and the Media Stream.

- ``GET``/``POST`` ``/incoming-call`` answers Twilio's voice webhook with TwiML that connects
  the call to ``/media-stream`` (https://www.twilio.com/docs/voice/twiml/stream);
- ``/media-stream`` accepts the WebSocket and runs a handler, ``async def handler(stream)``,
  on a :class:`~mediastreams.session.MediaStream`;
- ``/healthz`` says the server is up and how many streams it carries.

The same :class:`ServerConfig` runs on three backends: :func:`create_app` gives a Starlette
app (served by uvicorn, or mounted in your own app); :func:`serve` also runs it on the
``websockets`` server or on picows, which carry more calls per core (picows about twice
as many: ``docs/server.md``). Every backend answers ``GET`` and ``POST`` webhooks.

The package's seams: ``config`` (what the server does), ``routes`` (the one router every
backend asks, without I/O: :func:`answer_webhook`, :func:`check_upgrade`), ``streams``
(running a handler on a stream), ``base`` (the socket, the guard, :func:`serve`), and one
module per backend (``app`` and ``uvicorn``, ``websockets``, ``picows``) that only
translates its library's requests and connections. The limits (``ServerConfig.limits``)
hold the same on every backend: a :class:`~mediastreams.connections.ConnectionGuard` caps
and times connections in front of the backend, and each backend's own timeouts, pings and
frame size are set from the same :class:`~mediastreams.limits.Limits` (``docs/security.md``).
"""

from __future__ import annotations

from .app import create_app
from .base import bind, serve
from .config import BACKENDS, TOKEN_PARAMETER, Backend, Handler, ServerConfig
from .routes import Reply, answer_webhook, check_upgrade
from .streams import CallLogFilter, context_of, echo_handler, play_handler, run_stream

__all__ = [
    "BACKENDS",
    "TOKEN_PARAMETER",
    "Backend",
    "CallLogFilter",
    "Handler",
    "Reply",
    "ServerConfig",
    "answer_webhook",
    "bind",
    "check_upgrade",
    "context_of",
    "create_app",
    "echo_handler",
    "play_handler",
    "run_stream",
    "serve",
]
