"""The call-control API every instance answers: ``/calls`` and the commands on one call.

``GET /calls``, ``GET /calls/{CallSid}``, ``POST /calls/{CallSid}/play`` (audio in the body,
or ``{"path": ...}`` naming a file this instance can read), ``POST .../clear`` and
``POST .../hangup``. A command goes through the shared state to the instance that holds the
call, which carries it out on its stream (:class:`~mediastreams.control.LocalCalls`).
Requests carry ``Authorization: Bearer <control token>``; without a token configured, only
loopback clients of a server bound to loopback are answered.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from ..control import CommandFailed, Control
from ..exceptions import AudioError
from ..store import CallGone, CallNotFound, CommandTimeout, StateUnavailable

if TYPE_CHECKING:
    from .instance import Instance
    from .routes import Reply, Request

__all__ = ["ControlAPI"]

logger = logging.getLogger("mediastreams.control")

_ACTIONS = ("play", "clear", "hangup")
_TRUE = ("1", "true", "yes")


class ControlAPI:
    """Answers the control routes for one instance.

    Args:
        instance: the running server.
    """

    PREFIX = "/calls"

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.control = Control(instance.state)

    async def answer(self, request: Request, client: str) -> Reply:
        """The reply to a request under ``/calls``."""
        refusal = self._refusal(request)
        if refusal is not None:
            logger.warning(
                "refused a control request from %s: %s", client, refusal.body.decode().strip()
            )
            return refusal
        parts = [unquote(p) for p in request.path[len(self.PREFIX) :].split("/") if p]
        try:
            reply, action = await self._route(request, parts)
        except (CallNotFound, CallGone, CommandTimeout, StateUnavailable, CommandFailed) as error:
            status = _STATUS[type(error)]
            reply, action = _json(status, {"error": str(error)}), parts[1] if len(parts) > 1 else ""
        metrics = self.instance.metrics
        if metrics is not None and action:
            metrics.control_commands.labels(action, str(reply.status)).inc()
        return reply

    def _refusal(self, request: Request) -> Reply | None:
        token = self.instance.config.control_token
        if token:
            given = _bearer(request.header("Authorization"))
            if given is None or not hmac.compare_digest(given.encode(), token.encode()):
                return _json(401, {"error": "send Authorization: Bearer <control token>"})
            return None
        if self.instance.loopback_bind and _is_loopback(request.peer):
            return None
        return _json(
            403,
            {
                "error": "the control API needs a token on this server: "
                "start it with --control-token"
            },
        )

    async def _route(self, request: Request, parts: list[str]) -> tuple[Reply, str]:
        method = request.method
        if not parts:
            if method != "GET":
                return _json(405, {"error": "GET /calls"}), ""
            calls = await self.control.calls()
            return _json(200, {"calls": [c.to_json() for c in calls]}), ""
        call_sid = parts[0]
        if len(parts) == 1:
            if method != "GET":
                return _json(405, {"error": "GET /calls/{CallSid}"}), ""
            return _json(200, (await self.control.call(call_sid)).to_json()), ""
        action = parts[1]
        if len(parts) != 2 or action not in _ACTIONS:
            return _json(
                404, {"error": f"no such route; POST /calls/{{CallSid}}/{'|'.join(_ACTIONS)}"}
            ), ""
        if method != "POST":
            return _json(405, {"error": f"POST /calls/{{CallSid}}/{action}"}), action
        if action == "clear":
            cleared = await self.control.clear(call_sid)
            return _json(200, {"call_sid": call_sid, "cleared": cleared}), action
        if action == "hangup":
            await self.control.hangup(call_sid)
            return _json(200, {"call_sid": call_sid, "hung_up": True}), action
        return await self._play(request, call_sid), action

    async def _play(self, request: Request, call_sid: str) -> Reply:
        wait = parse_qs(request.query).get("wait", [""])[0].lower() in _TRUE
        try:
            mulaw = await _audio(request)
        except (AudioError, ValueError) as error:
            return _json(400, {"error": str(error)})
        result = await self.control.play(call_sid, mulaw, wait=wait)
        body: dict[str, Any] = {
            "call_sid": call_sid,
            "play_id": result.play_id,
            "status": "started",
        }
        if wait:
            body.update(
                status="ended",
                outcome=result.outcome,
                played_ms=result.played_ms,
                sent_ms=result.sent_ms,
            )
        return _json(200 if wait else 202, body)


async def _audio(request: Request) -> bytes:
    """The audio of a play request as mu-law/8000."""
    from ..audio import to_mulaw

    kind = (request.header("Content-Type") or [""])[0].split(";")[0].strip().lower()
    body = request.body
    if kind == "application/json":
        try:
            path = json.loads(body)["path"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                'a JSON body names a file: {"path": "/srv/audio/notice.wav"}'
            ) from None
        return await asyncio.to_thread(to_mulaw, str(path))
    if not body:
        raise ValueError("no audio: send a WAV/MP3 file, audio/basic (mu-law) or a JSON path")
    if kind == "audio/basic":  # RFC 2046: 8-bit mu-law, 8000 Hz, mono: what Twilio plays
        return body
    return await asyncio.to_thread(to_mulaw, body)


def _bearer(values: list[str]) -> str | None:
    if len(values) != 1:
        return None
    scheme, _, token = values[0].partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _is_loopback(peer: str | None) -> bool:
    try:
        return peer is not None and ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


def _json(status: int, body: dict[str, Any]) -> Reply:
    from .routes import Reply

    return Reply(status, "application/json", json.dumps(body).encode())


_STATUS: dict[type[Exception], int] = {
    CallNotFound: 404,
    CallGone: 410,
    CommandTimeout: 504,
    StateUnavailable: 503,
    CommandFailed: 502,
}
