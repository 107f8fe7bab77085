"""The ready server end to end on 127.0.0.1: a real server, Twilio's side over a real socket."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest

from fake_twilio import TwilioClient
from mediastreams.limits import Limits
from mediastreams.messages import DTMF
from mediastreams.server import (
    BACKENDS,
    ServerConfig,
    answer_webhook,
    check_upgrade,
    echo_handler,
    play_handler,
)
from mediastreams.session import MediaStream, Outcome, PlayHandle
from serving import TOKEN, running, sign
from waiting import DEADLINE_S

pytestmark = pytest.mark.anyio

SOURCE = bytes(range(256)) * 20  # 5120 bytes = 640 ms of mu-law


async def health(port: int) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
        reply = await client.get(f"http://127.0.0.1:{port}/healthz")
    assert reply.status_code == 200
    return reply.json()  # type: ignore[no-any-return]


# --- calls -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_play_reaches_the_caller_exactly(backend: str) -> None:
    config = ServerConfig(handler=play_handler(SOURCE, hangup_after_play=True))
    async with running(config, backend) as port:
        async with TwilioClient(f"ws://127.0.0.1:{port}/media-stream") as twilio:
            await twilio.open()
            await twilio.run_until(lambda: False)  # the app hangs up after the play
        assert bytes(twilio.heard) == SOURCE
        payloads = [
            base64.b64decode(json.loads(f)["media"]["payload"])
            for f in twilio.received
            if '"event":"media"' in f
        ]
        assert {len(p) for p in payloads} == {160}  # 5120 is 32 whole frames
        assert twilio.protocol.pending_marks == ()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_echo_plays_the_caller_back(backend: str) -> None:
    spoken = [bytes([i]) * 160 for i in range(1, 40)]
    async with running(ServerConfig(handler=echo_handler), backend) as port:
        async with TwilioClient(f"ws://127.0.0.1:{port}/media-stream") as twilio:
            await twilio.open()
            for frame in spoken:
                await twilio.tick(frame)
            await twilio.run_until(lambda: len(twilio.heard) >= len(spoken) * 160)
            twilio.protocol.send_stop()
            await twilio.flush()
            await asyncio.wait_for(twilio.closed.wait(), DEADLINE_S)
        assert bytes(twilio.heard) == b"".join(spoken)


async def test_clear_after_all_audio_was_sent_and_cleared_echoes() -> None:
    outcomes: list[PlayHandle] = []

    async def barge_in(stream: MediaStream) -> None:
        handle = stream.play(SOURCE)
        async for event in stream:
            if isinstance(event, DTMF):
                assert handle.sent_ms == 640  # all of it inside the 5 s lead
                stream.clear()
                outcomes.append(await handle)
                await stream.play(b"\x01" * 320)  # sending again after a clear works
                return

    config = ServerConfig(handler=barge_in, stream_options={"lead_ms": 5000})
    async with running(config) as port:
        async with TwilioClient(f"ws://127.0.0.1:{port}/media-stream") as twilio:
            await twilio.open()
            async with asyncio.timeout(DEADLINE_S):  # Twilio holds all of it, nothing played yet
                while twilio.protocol.buffered_bytes < len(SOURCE):
                    await asyncio.sleep(0.005)
            for _ in range(12):  # 240 ms heard: the 200 ms mark is echoed as played
                await twilio.tick()
            twilio.protocol.send_dtmf("1")
            await twilio.flush()
            async with asyncio.timeout(DEADLINE_S):  # the caller hears nothing more until the clear
                while not any('"event":"clear"' in f for f in twilio.received):
                    await asyncio.sleep(0.005)
            await twilio.flush()  # the echoes of the cleared marks
            await twilio.run_until(lambda: False)
        assert twilio.protocol.marks_echoed_by_clear == 3  # 400, 600 and the end (640)
    (handle,) = outcomes
    assert handle.outcome is Outcome.INTERRUPTED
    assert handle.played_ms == 200
    assert bytes(twilio.heard) == SOURCE[: 12 * 160] + b"\x01" * 320


async def test_an_app_handler_that_raises_ends_only_its_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(stream: MediaStream) -> None:
        raise RuntimeError("boom")

    async with running(ServerConfig(handler=broken)) as port:
        async with TwilioClient(f"ws://127.0.0.1:{port}/media-stream") as twilio:
            await twilio.open()
            await asyncio.wait_for(twilio.closed.wait(), DEADLINE_S)
        assert "the handler failed" in caplog.text
        assert (await health(port))["streams"] == 0


# --- bad input from the peer -------------------------------------------------------------------


async def wait_streams_zero(port: int) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while (await health(port))["streams"]:
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "bad", ["garbage", "binary", "huge", "media-before-start", "wrong-sid", "drop-mid-play"]
)
async def test_bad_input_never_crashes_the_server(backend: str, bad: str) -> None:
    # start comes at once: its deadline is a slow machine's, not the behaviour under test.
    limits = Limits(start_timeout_s=DEADLINE_S)
    config = ServerConfig(handler=play_handler(SOURCE * 4), limits=limits)
    async with running(config, backend) as port:
        tasks_before = len(asyncio.all_tasks())
        url = f"ws://127.0.0.1:{port}/media-stream"
        async with TwilioClient(url) as twilio:
            if bad == "media-before-start":
                twilio.protocol.send_connected()
                await twilio.flush()
                sid = twilio.protocol.stream_sid
                await twilio.send_raw(
                    '{"event":"media","sequenceNumber":"1","streamSid":"' + sid + '","media":'
                    '{"track":"inbound","chunk":"1","timestamp":"5","payload":"/w=="}}'
                )
                twilio.protocol.send_start()
                await twilio.flush()
            else:
                await twilio.open()
            if bad == "garbage":
                await twilio.send_raw("{{{ not json")
            elif bad == "binary":
                await twilio.send_raw(b"\x00\x01\x02")
            elif bad == "huge":
                await twilio.send_raw("x" * (10 * 1024 * 1024))
            elif bad == "wrong-sid":
                await twilio.send_raw(
                    '{"event":"dtmf","sequenceNumber":"2","streamSid":"MZother",'
                    '"dtmf":{"track":"inbound_track","digit":"1"}}'
                )
            for _ in range(5):
                await twilio.tick()
            if bad == "drop-mid-play":
                twilio.ws.transport.abort()  # no close handshake
            elif bad != "huge":
                assert not twilio.closed.is_set()  # ignored, like Twilio ignores bad frames
                twilio.protocol.send_stop()
                await twilio.flush()
            await asyncio.wait_for(twilio.closed.wait(), DEADLINE_S)
        await wait_streams_zero(port)
        async with asyncio.timeout(DEADLINE_S):  # every stream task ended
            while len(asyncio.all_tasks()) > tasks_before:
                await asyncio.sleep(0.02)
        # and the server still answers calls
        async with TwilioClient(url) as twilio:
            await twilio.open()
            await twilio.run_until(lambda: len(twilio.heard) >= 320)
        assert bytes(twilio.heard[:320]) == SOURCE[:320]


async def test_no_start_in_time_closes_the_socket() -> None:
    config = ServerConfig(handler=echo_handler, limits=Limits(start_timeout_s=0.1))
    async with running(config) as port:
        async with TwilioClient(f"ws://127.0.0.1:{port}/media-stream") as twilio:
            await asyncio.wait_for(twilio.closed.wait(), DEADLINE_S)
        assert twilio.ws.close_code == 1008


# --- webhook and signatures --------------------------------------------------------------------


async def test_webhook_twiml_from_the_request() -> None:
    config = ServerConfig(handler=echo_handler, parameters={"tenant": "a&b"})
    async with running(config) as port, httpx.AsyncClient(timeout=DEADLINE_S) as client:
        for method in ("GET", "POST"):
            reply = await client.request(method, f"http://127.0.0.1:{port}/incoming-call")
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/xml")
            assert reply.text == (
                '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
                f'<Stream url="ws://127.0.0.1:{port}/media-stream">'
                '<Parameter name="tenant" value="a&amp;b" /></Stream></Connect></Response>'
            )


def test_webhook_on_the_public_url() -> None:
    config = ServerConfig(handler=echo_handler, public_url="https://abc.example/")
    reply = answer_webhook(config, scheme="http", host="127.0.0.1:5050")
    assert b'<Stream url="wss://abc.example/media-stream" />' in reply.body


def test_webhook_refuses_ws_on_a_public_host() -> None:
    reply = answer_webhook(ServerConfig(handler=echo_handler), scheme="http", host="abc.example")
    assert reply.status == 500


def test_bad_public_url_is_refused() -> None:
    with pytest.raises(ValueError):
        ServerConfig(handler=echo_handler, public_url="abc.example")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_signatures_on_both_routes(backend: str, caplog: pytest.LogCaptureFixture) -> None:
    config = ServerConfig(
        handler=play_handler(b"\x01" * 160, hangup_after_play=True),
        public_url="https://abc.example",
        auth_token=TOKEN,
    )
    webhook = "https://abc.example/incoming-call"
    async with running(config, backend) as port, httpx.AsyncClient(timeout=DEADLINE_S) as client:
        local = f"http://127.0.0.1:{port}/incoming-call"
        assert (await client.get(local)).status_code == 403
        bad = {"X-Twilio-Signature": "bm9wZQ=="}
        assert (await client.get(local, headers=bad)).status_code == 403
        good = {"X-Twilio-Signature": sign(webhook + "?CallSid=CA1")}
        assert (await client.get(local + "?CallSid=CA1", headers=good)).status_code == 200
        # POST (Twilio's default), on every backend: the form parameters are signed too.
        form = {"CallSid": "CA1", "From": "+15550100"}
        signed = {"X-Twilio-Signature": sign(webhook, form)}
        assert (await client.post(local, data=form, headers=signed)).status_code == 200
        assert (await client.post(local, data=form, headers=good)).status_code == 403

        from websockets.exceptions import InvalidStatus

        url = f"ws://127.0.0.1:{port}/media-stream"
        with pytest.raises(InvalidStatus) as refused:
            async with TwilioClient(url):
                pass
        assert refused.value.response.status_code == 403
        headers = {"X-Twilio-Signature": sign("wss://abc.example/media-stream")}
        async with TwilioClient(url, headers) as twilio:
            await twilio.open()
            await twilio.run_until(lambda: False)
        assert bytes(twilio.heard) == b"\x01" * 160
    assert TOKEN not in caplog.text
    assert "refused" in caplog.text


def test_check_upgrade_without_token_accepts() -> None:
    config = ServerConfig(handler=echo_handler)
    assert check_upgrade(config, scheme="ws", host="127.0.0.1", signature=None)


async def test_healthz_and_unknown_paths() -> None:
    async with running(ServerConfig(handler=echo_handler), "picows") as port:
        assert await health(port) == {"status": "ok", "streams": 0}
        async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
            assert (await client.get(f"http://127.0.0.1:{port}/nope")).status_code == 404


def test_webhook_with_a_bad_host_is_a_400() -> None:
    reply = answer_webhook(ServerConfig(handler=echo_handler), scheme="http", host="a/b")
    assert reply.status == 400


def test_parameters_twilio_would_refuse_fail_at_start() -> None:
    with pytest.raises(ValueError, match="500"):
        ServerConfig(handler=echo_handler, parameters={"k": "v" * 600})


def test_a_parameter_named_like_the_stream_token_fails_at_start() -> None:
    from mediastreams.security import StreamTokens

    with pytest.raises(ValueError, match="streamToken"):
        ServerConfig(
            handler=echo_handler, parameters={"streamToken": "mine"}, stream_tokens=StreamTokens()
        )


async def test_an_upgrade_with_a_query_string_is_refused() -> None:
    config = ServerConfig(handler=echo_handler, public_url="https://abc.example", auth_token=TOKEN)
    signature = sign("wss://abc.example/media-stream")
    assert check_upgrade(config, scheme="ws", host="x", signature=signature)
    assert not check_upgrade(config, scheme="ws", host="x", signature=signature, query="a=1")


async def test_one_time_stream_tokens() -> None:
    from mediastreams.security import StreamTokens
    from mediastreams.server import TOKEN_PARAMETER
    from mediastreams.twiml import parse_twiml

    config = ServerConfig(
        handler=play_handler(b"\x01" * 160, hangup_after_play=True),
        stream_tokens=StreamTokens(),
    )
    async with running(config) as port, httpx.AsyncClient(timeout=DEADLINE_S) as client:
        webhook = f"http://127.0.0.1:{port}/incoming-call"
        assert (await client.post(webhook)).status_code == 400  # no CallSid
        reply = await client.post(webhook, data={"CallSid": "CA1"})
        (connect,) = parse_twiml(reply.text).verbs
        (parameter,) = connect.stream.parameters  # type: ignore[attr-defined]
        assert parameter.name == TOKEN_PARAMETER
        url = f"ws://127.0.0.1:{port}/media-stream"
        params = {TOKEN_PARAMETER: parameter.value}
        async with TwilioClient(url, call_sid="CA1", custom_parameters=params) as twilio:
            await twilio.open()
            await twilio.run_until(lambda: False)
        assert bytes(twilio.heard) == b"\x01" * 160
        for call_sid, custom in (("CA1", params), ("CA1", {}), ("CA2", params)):  # replayed
            async with TwilioClient(url, call_sid=call_sid, custom_parameters=custom) as twilio:
                await twilio.open()
                await asyncio.wait_for(twilio.closed.wait(), DEADLINE_S)
            assert twilio.ws.close_code == 1008
            assert not twilio.heard
