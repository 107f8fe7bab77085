"""Who the control API answers: a bearer token, or loopback clients of a loopback server.
The router alone, in process (the fleet tests run it across real instances)."""

from __future__ import annotations

import json

import pytest

from mediastreams.server import ServerConfig, echo_handler
from mediastreams.server.instance import Instance
from mediastreams.server.routes import Request, Router

pytestmark = pytest.mark.anyio


def router(control_token: str | None = None, *, loopback_bind: bool = True) -> Router:
    instance = Instance(ServerConfig(handler=echo_handler, control_token=control_token))
    instance.loopback_bind = loopback_bind
    return Router(instance)


async def status(router: Router, peer: str, headers: list[tuple[str, str]] = []) -> int:  # noqa: B006
    reply = await router.answer(Request("GET", "/calls", headers=headers, peer=peer))
    assert reply is not None
    return reply.status


async def test_without_a_token_only_loopback_clients_of_a_loopback_server() -> None:
    assert await status(router(), "127.0.0.1") == 200
    assert await status(router(), "::1") == 200
    assert await status(router(), "10.0.0.5") == 403
    # Bound beyond loopback (--host 0.0.0.0): a proxy on the same machine would make every
    # client look local, so nobody is answered without a token.
    refused = await router(loopback_bind=False).answer(Request("GET", "/calls", peer="127.0.0.1"))
    assert refused is not None and refused.status == 403
    assert "--control-token" in json.loads(refused.body)["error"]


async def test_with_a_token_every_request_carries_it() -> None:
    guarded = router("s3cret", loopback_bind=False)
    assert await status(guarded, "10.0.0.5", [("Authorization", "Bearer s3cret")]) == 200
    assert await status(guarded, "127.0.0.1") == 401  # loopback too
    assert await status(guarded, "10.0.0.5", [("Authorization", "Bearer wrong")]) == 401
    assert await status(guarded, "10.0.0.5", [("Authorization", "Basic s3cret")]) == 401
    twice = [("Authorization", "Bearer s3cret")] * 2
    assert await status(guarded, "10.0.0.5", twice) == 401


async def test_unknown_calls_and_routes() -> None:
    local = router()
    for method, path, expected in [
        ("GET", "/calls/CAnope", 404),
        ("POST", "/calls/CAnope/clear", 404),
        ("POST", "/calls/CAnope/hangup", 404),
        ("GET", "/calls/CAnope/clear", 405),
        ("POST", "/calls/CAnope/dance", 404),
        ("POST", "/calls", 405),
    ]:
        reply = await local.answer(Request(method, path, peer="127.0.0.1"))
        assert reply is not None and reply.status == expected, (method, path, reply)
