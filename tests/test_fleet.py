"""Several serve instances on one Redis, behind a round-robin proxy: a call's webhook and its
socket land on different instances. Real processes, a real redis-server, loopback only."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from fleet import RedisServer, instances, redis_server, round_robin
from mediastreams.emulator import Silence, place_call_async
from waiting import DEADLINE_S, await_for

pytestmark = pytest.mark.anyio

CONTROL = "control-secret"
AUTH = {"Authorization": f"Bearer {CONTROL}"}
APP = """
import json, os, pathlib

OUT = pathlib.Path(os.environ["FLEET_OUT"])


def on_webhook(parameters):
    return {"tenant": "acme", "caller": parameters.get("From")}


async def handler(stream):
    context = stream.context
    record = {"context": context.to_json() if context else None, "pid": os.getpid()}
    partial = OUT / f"{stream.call_sid}.tmp"
    partial.write_text(json.dumps(record))
    partial.rename(partial.with_suffix(".json"))  # whole, or not there
    async for _ in stream:
        pass
"""


def tone_mulaw(seconds: float) -> bytes:
    from mediastreams.audio import mulaw

    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    return bytes(mulaw.encode_array(pcm).tobytes())


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "fleetapp.py").write_text(APP)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("FLEET_OUT", str(out))
    return tmp_path


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def fleet_args(redis: RedisServer, backend: str) -> list[str]:
    return [
        "--app", "fleetapp:handler", "--on-webhook", "fleetapp:on_webhook", "--stream-token",
        "--redis", redis.url, "--control-token", CONTROL, "--backend", backend,
        "--log-level", "debug",
    ]  # fmt: skip


async def calls_on(url: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
        reply = await client.get(f"{url}/calls", headers=AUTH)
    assert reply.status_code == 200, reply.text
    return reply.json()["calls"]  # type: ignore[no-any-return]


def record_of(app_dir: Path, call_sid: str) -> dict[str, object]:
    return json.loads((app_dir / "out" / f"{call_sid}.json").read_text())  # type: ignore[no-any-return]


async def test_token_and_context_cross_instances(app_dir: Path, redis: RedisServer) -> None:
    specs = [fleet_args(redis, "uvicorn"), fleet_args(redis, "picows")]
    with instances(specs, app_dir) as (first, second):
        async with round_robin([first.port, second.port]) as proxy:
            result = await place_call_async(
                f"http://127.0.0.1:{proxy}/incoming-call", [Silence(400)], end_quiet_ms=300
            )
        assert result.report.ok, result.report.findings
        call_sid = result.report.call_sid
        assert call_sid is not None
        record = record_of(app_dir, call_sid)
        # The webhook was the proxy's first connection (the first instance), the socket its
        # second: the token minted there was redeemed here, and the context came along.
        assert record["pid"] == second.process.pid
        context = record["context"]
        assert isinstance(context, dict)
        assert context["data"] == {"tenant": "acme", "caller": context["parameters"]["From"]}
        assert context["parameters"]["CallSid"] == call_sid


async def test_a_token_is_redeemed_once_when_two_instances_race(redis: RedisServer) -> None:
    from mediastreams.exceptions import SignatureError
    from mediastreams.store import RedisState

    states = [RedisState(redis.url, namespace="race") for _ in range(2)]
    for state in states:
        await state.start()
    try:
        for n in range(30):
            call_sid = f"CA{n:032x}"
            token = await states[0].mint_token(call_sid)
            outcomes = await asyncio.gather(
                *(s.redeem_token(token, call_sid) for s in states), return_exceptions=True
            )
            assert sorted(type(o).__name__ for o in outcomes) == ["NoneType", "SignatureError"]
            with pytest.raises(SignatureError):
                await states[1].redeem_token(token, call_sid)
    finally:
        for state in states:
            await state.close()


async def test_two_sockets_racing_for_one_token_on_two_instances(
    app_dir: Path, redis: RedisServer
) -> None:
    from fake_twilio import TwilioClient
    from mediastreams.server import TOKEN_PARAMETER
    from mediastreams.twiml import parse_twiml

    specs = [fleet_args(redis, "picows"), fleet_args(redis, "websockets")]
    with instances(specs, app_dir) as pair:
        for round_ in range(5):
            call_sid = f"CA{round_:032x}"
            async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
                reply = await client.post(
                    f"{pair[round_ % 2].url}/incoming-call", data={"CallSid": call_sid}
                )
            assert reply.status_code == 200, reply.text
            (connect,) = parse_twiml(reply.text).verbs
            token = {p.name: p.value for p in connect.stream.parameters}[TOKEN_PARAMETER]
            sockets = [
                TwilioClient(
                    f"ws://127.0.0.1:{instance.port}/media-stream",
                    call_sid=call_sid,
                    custom_parameters={TOKEN_PARAMETER: token},
                )
                for instance in pair
            ]
            async with sockets[0], sockets[1]:
                await asyncio.gather(*(twilio.open() for twilio in sockets))
                record = app_dir / "out" / f"{call_sid}.json"
                await await_for(
                    lambda r=record, s=sockets: r.exists() and any(t.closed.is_set() for t in s),
                    "one socket refused, the other's handler running",
                )
                (lost,) = [t for t in sockets if t.closed.is_set()]
                (won,) = [t for t in sockets if t is not lost]
                assert lost.ws.close_code == 1008
                assert not won.closed.is_set()
                winner = pair[sockets.index(won)]
                assert json.loads(record.read_text())["pid"] == winner.process.pid
                won.protocol.send_stop()
                await won.flush()
        assert sum(i.text().count("refused the stream") for i in pair) == 5


async def test_readyz_is_503_while_redis_is_down(app_dir: Path, redis: RedisServer) -> None:
    with instances([fleet_args(redis, "picows")], app_dir) as (instance,):
        async with httpx.AsyncClient(base_url=instance.url, timeout=15) as client:
            assert (await client.get("/readyz")).status_code == 200
            redis.stop()
            await await_for(lambda: _status(client, "/readyz", 503), "/readyz to say 503")
            assert (await client.get("/readyz")).json() == {"status": "shared state unavailable"}
            assert (await client.get("/healthz")).status_code == 200  # alive all the same
            webhook = await client.post("/incoming-call", data={"CallSid": "CA" + "2" * 32})
            assert webhook.status_code == 503
            redis.start()
            await await_for(lambda: _status(client, "/readyz", 200), "/readyz to say 200 again")
        result = await place_call_async(
            f"{instance.url}/incoming-call", [Silence(300)], end_quiet_ms=300
        )
        assert result.report.ok, result.report.findings
        assert record_of(app_dir, str(result.report.call_sid))["context"] is not None


async def test_an_instance_started_before_redis_is_ready_once_it_answers(
    app_dir: Path, redis: RedisServer
) -> None:
    redis.stop()
    with instances([fleet_args(redis, "websockets")], app_dir) as (instance,):
        async with httpx.AsyncClient(base_url=instance.url, timeout=15) as client:
            assert (await client.get("/readyz")).status_code == 503
            redis.start()
            await await_for(lambda: _status(client, "/readyz", 200), "/readyz to say 200")
            call = asyncio.create_task(
                place_call_async(
                    f"{instance.url}/incoming-call",
                    [Silence(20_000)],
                    end_quiet_ms=None,
                    max_duration_s=40,
                )
            )
            await await_for(lambda: calls_on(instance.url), "the call in the registry")
            (listed,) = await calls_on(instance.url)
            # Commands reach it: the instance subscribed once Redis answered.
            hung_up = await client.post(f"/calls/{listed['call_sid']}/hangup", headers=AUTH)
            assert hung_up.status_code == 200, hung_up.text
            result = await asyncio.wait_for(call, 30)
        assert result.report.ok, result.report.findings
        assert result.report.duration_ms < 15_000
    assert "the server starts anyway" in instance.text()


async def _status(client: httpx.AsyncClient, path: str, status: int) -> bool:
    return (await client.get(path)).status_code == status


async def test_a_redis_restart_fails_no_operation_once_it_answers(redis: RedisServer) -> None:
    from mediastreams.store import RedisState

    state = RedisState(redis.url, namespace="restart")
    await state.start()
    try:
        # Several operations at once: several pooled connections, each stale after a restart.
        await asyncio.gather(*(state.mint_token(f"CA{n:032x}") for n in range(4)))
        redis.stop()
        redis.start()
        for n in range(4):
            await state.mint_token(f"CB{n:032x}")
        assert state.available
    finally:
        await state.close()


async def test_control_from_one_instance_acts_on_a_call_held_by_another(
    app_dir: Path, redis: RedisServer
) -> None:
    specs = [fleet_args(redis, "websockets"), fleet_args(redis, "uvicorn")]
    with instances(specs, app_dir) as (first, second):
        async with round_robin([first.port, second.port]) as proxy:
            call = asyncio.create_task(
                place_call_async(
                    f"http://127.0.0.1:{proxy}/incoming-call",
                    [Silence(25_000)],
                    end_quiet_ms=None,
                    max_duration_s=40,
                )
            )
            await await_for(lambda: calls_on(first.url), "the call in the registry")
            (listed,) = await calls_on(first.url)
            assert listed["instance"] != "" and isinstance(listed["call_sid"], str)
            call_sid = listed["call_sid"]
            # The socket is on the second instance; every command goes to the first.
            assert record_of(app_dir, call_sid)["pid"] == second.process.pid
            async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
                assert (await client.get("/calls")).status_code == 401
                assert (await client.get("/calls/CAnope", headers=AUTH)).status_code == 404
                played = await client.post(
                    f"/calls/{call_sid}/play?wait=true",
                    content=tone_mulaw(1.0),
                    headers={**AUTH, "Content-Type": "audio/basic"},
                )
                assert played.status_code == 200, played.text
                assert played.json()["outcome"] == "played"
                assert played.json()["played_ms"] >= 900
                started = await client.post(
                    f"/calls/{call_sid}/play",
                    content=tone_mulaw(5.0),
                    headers={**AUTH, "Content-Type": "audio/basic"},
                )
                assert started.status_code == 202, started.text
                assert started.json()["play_id"]
                cleared = await client.post(f"/calls/{call_sid}/clear", headers=AUTH)
                assert cleared.status_code == 200 and cleared.json()["cleared"] >= 1
                hung_up = await client.post(f"/calls/{call_sid}/hangup", headers=AUTH)
                assert hung_up.status_code == 200, hung_up.text
            result = await asyncio.wait_for(call, 30)
        report = result.report
        assert report.ok, report.findings
        assert report.clears >= 1
        assert 900 <= report.audio_played_ms < 5000
        assert report.duration_ms < 20_000  # the hang-up ended it, not the caller's script
        await await_for(lambda: _no_calls(first.url), "the call to leave the registry")
        async with httpx.AsyncClient(base_url=first.url) as client:
            gone = await client.post(f"/calls/{call_sid}/clear", headers=AUTH)
        assert gone.status_code == 404


async def _no_calls(url: str) -> bool:
    return not await calls_on(url)


async def test_kill_9_its_calls_expire_and_get_410_others_go_on(
    app_dir: Path, redis: RedisServer
) -> None:
    specs = [fleet_args(redis, b) for b in ("uvicorn", "websockets", "picows")]
    with instances(specs, app_dir) as (a, b, c):
        async with round_robin([a.port, b.port, c.port]) as proxy:
            url = f"http://127.0.0.1:{proxy}/incoming-call"
            # Webhook on a, socket on b; then webhook on c, socket on a.
            doomed = asyncio.create_task(
                place_call_async(url, [Silence(20_000)], end_quiet_ms=None, max_duration_s=40)
            )
            await await_for(lambda: _count(a.url, 1), "the first call in the registry")
            kept = asyncio.create_task(
                place_call_async(url, [Silence(18_000)], end_quiet_ms=300, max_duration_s=40)
            )
            await await_for(lambda: _count(a.url, 2), "both calls in the registry")
            holders = {r["call_sid"]: r["instance"] for r in await calls_on(a.url)}
            sids = {record_of(app_dir, s)["pid"]: s for s in holders}
            doomed_sid, kept_sid = sids[b.process.pid], sids[a.process.pid]
            killed_at = time.monotonic()
            b.process.send_signal(signal.SIGKILL)
            await await_for(
                lambda: _absent(a.url, doomed_sid), "the dead instance's call to expire", 20
            )
            assert time.monotonic() - killed_at <= 15.0
            async with httpx.AsyncClient(base_url=c.url) as client:
                reply = await client.post(f"/calls/{doomed_sid}/clear", headers=AUTH)
                assert reply.status_code == 410, reply.text
                assert (await client.get(f"/calls/{kept_sid}", headers=AUTH)).status_code == 200
            result = await asyncio.wait_for(kept, 30)
            assert result.report.ok, result.report.findings
            doomed.cancel()
            await asyncio.gather(doomed, return_exceptions=True)


async def _count(url: str, n: int) -> bool:
    return len(await calls_on(url)) == n


async def _absent(url: str, call_sid: object) -> bool:
    return all(r["call_sid"] != call_sid for r in await calls_on(url))


async def test_redis_stopped_mid_call_live_calls_finish_new_ones_get_503(
    app_dir: Path, redis: RedisServer
) -> None:
    specs = [fleet_args(redis, "uvicorn"), fleet_args(redis, "picows")]
    with instances(specs, app_dir) as (first, second):
        async with round_robin([first.port, second.port]) as proxy:
            call = asyncio.create_task(
                place_call_async(
                    f"http://127.0.0.1:{proxy}/incoming-call", [Silence(4_000)], end_quiet_ms=300
                )
            )
            await await_for(lambda: calls_on(first.url), "the call in the registry")
            redis.stop()
            result = await asyncio.wait_for(call, 30)
        assert result.report.ok, result.report.findings
        for instance in (first, second):
            started = time.monotonic()
            async with httpx.AsyncClient(base_url=instance.url, timeout=15) as client:
                reply = await client.post("/incoming-call", data={"CallSid": "CA" + "1" * 32})
            assert reply.status_code == 503
            assert time.monotonic() - started < 10  # bounded: no hang on a dead Redis
        await await_for(lambda: "did not answer" in first.text(), "a log line saying why")


def test_workers_without_redis_refuse_shared_state(app_dir: Path) -> None:
    from mediastreams.cli import main

    code = main(["serve", "--echo", "--workers", "2", "--stream-token"])
    assert code == 2
