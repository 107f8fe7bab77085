"""``/metrics``: what one server process counts, read back from its Prometheus text. A real
server on 127.0.0.1 and Twilio's side over a real socket. (Several workers answering for
each other: ``test_workers.py``.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from fake_twilio import TwilioClient
from mediastreams.server import BACKENDS, ServerConfig
from mediastreams.session import MediaStream
from serving import running
from waiting import DEADLINE_S

pytest.importorskip("prometheus_client")
pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
FIRST_PLAY = b"\x01" * 1600  # 200 ms
SECOND_PLAY = b"\x02" * 16000  # 2 s: cut by the clear
CALL_SID = "CA" + "7" * 32


def parse(text: str) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
        reply = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return parse(reply.text)


async def scrape_until(port: int, done: Callable[[Samples], bool], what: str) -> Samples:
    give_up = time.monotonic() + 30
    while not done(samples := await scrape(port)):
        assert time.monotonic() < give_up, f"timed out waiting for {what}: {samples}"
        await asyncio.sleep(0.05)
    return samples


async def handler(stream: MediaStream) -> None:
    if stream.custom_parameters.get("mode") == "fail":
        stream.send_mark("")  # the app's own protocol mistake: the handler raises
    await stream.play(FIRST_PLAY)
    stream.play(SECOND_PLAY)
    async for _ in stream:  # until Twilio's stop
        pass


async def test_metrics_off_is_a_404() -> None:
    async with (
        running(ServerConfig(handler=handler)) as port,
        httpx.AsyncClient(timeout=DEADLINE_S) as client,
    ):
        assert (await client.get(f"http://127.0.0.1:{port}/metrics")).status_code == 404


@pytest.mark.parametrize("backend", BACKENDS)
async def test_what_a_call_does_is_counted(backend: str) -> None:
    config = ServerConfig(handler=handler, metrics=True)
    async with running(config, backend) as port:
        before = await scrape(port)
        assert value(before, "mediastreams_calls_live") == 0
        assert value(before, "mediastreams_draining") == 0
        url = f"ws://127.0.0.1:{port}/media-stream"
        async with TwilioClient(url, call_sid=CALL_SID) as twilio:
            await twilio.open()
            # Three frames Twilio's side should not send: the session refuses and counts them.
            for frame in ("{not json", "{not json either"):
                await twilio.send_raw(frame)
            await twilio.send_raw(b"\x00\x01")
            # Two inbound media frames with 100 ms missing between them.
            twilio.protocol.send_media(b"\xff" * 160, timestamp_ms=20)
            twilio.protocol.send_media(b"\xff" * 160, timestamp_ms=140)
            await twilio.flush()
            await twilio.run_until(lambda: len(twilio.heard) >= len(FIRST_PLAY) + 320)
            live = await scrape(port)
            assert value(live, "mediastreams_calls_live") == 1
            # Loopback: no control token needed.
            async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
                reply = await client.post(f"http://127.0.0.1:{port}/calls/{CALL_SID}/clear")
            assert reply.status_code == 200, reply.text
            await twilio.run_until(lambda: any('"clear"' in f for f in twilio.received))
            for _ in range(5):  # the marks a clear flushes are echoed
                await twilio.tick()
            twilio.protocol.send_stop()
            await twilio.flush()
            await asyncio.wait_for(twilio.closed.wait(), 10)
        after = await scrape_until(
            port,
            lambda s: value(s, "mediastreams_calls_ended_total", outcome="completed") == 1,
            "the call to end",
        )
    assert value(after, "mediastreams_calls_started_total") == 1
    assert value(after, "mediastreams_calls_live") == 0
    assert value(after, "mediastreams_violations_total", code="31951", sender="twilio") == 2
    assert value(after, "mediastreams_violations_total", code="31950", sender="twilio") == 1
    assert value(after, "mediastreams_inbound_gaps_total") == 1
    assert value(after, "mediastreams_inbound_gap_seconds_total") == pytest.approx(0.1)
    assert value(after, "mediastreams_frames_total", direction="inbound") == 2
    assert value(after, "mediastreams_audio_seconds_total", direction="inbound") == 0.04
    outbound_s = value(after, "mediastreams_audio_seconds_total", direction="outbound")
    assert 0.2 < outbound_s < 2.2  # the first play, and the second until the clear
    assert value(after, "mediastreams_frames_total", direction="outbound") == outbound_s * 50
    assert value(after, "mediastreams_mark_round_trip_seconds_count") >= 1
    assert value(after, "mediastreams_clear_reaction_seconds_count") == 1
    assert value(after, "mediastreams_outbound_lead_ms_count") >= 1
    assert value(after, "mediastreams_control_commands_total", action="clear", status="200") == 1
    assert value(after, "mediastreams_handler_errors_total") == 0


async def test_a_failing_handler_and_its_protocol_mistake_are_counted() -> None:
    config = ServerConfig(handler=handler, metrics=True)
    async with running(config, "picows") as port:
        url = f"ws://127.0.0.1:{port}/media-stream"
        async with TwilioClient(url, custom_parameters={"mode": "fail"}) as twilio:
            await twilio.open()
            await asyncio.wait_for(twilio.closed.wait(), 10)
        assert twilio.ws.close_code == 1011
        after = await scrape_until(
            port,
            lambda s: value(s, "mediastreams_calls_ended_total", outcome="handler-error") == 1,
            "the call to end",
        )
    assert value(after, "mediastreams_handler_errors_total") == 1
    assert value(after, "mediastreams_calls_live") == 0
    app_mistakes = [k for k in after if k[0] == "mediastreams_violations_total"]
    assert app_mistakes and all(dict(labels)["sender"] == "app" for _, labels in app_mistakes)
    assert sum(after[k] for k in app_mistakes) == 1


async def test_a_refused_stream_is_counted_apart() -> None:
    from mediastreams.security import StreamTokens

    config = ServerConfig(handler=handler, metrics=True, stream_tokens=StreamTokens())
    async with running(config) as port:
        async with TwilioClient(f"ws://127.0.0.1:{port}/media-stream") as twilio:
            await twilio.open()  # no token
            await asyncio.wait_for(twilio.closed.wait(), 10)
        after = await scrape_until(
            port,
            lambda s: value(s, "mediastreams_calls_ended_total", outcome="refused") == 1,
            "the refusal",
        )
    assert value(after, "mediastreams_calls_started_total") == 0
    assert value(after, "mediastreams_calls_live") == 0
