"""The session over an in-memory transport: opening, events, pacing, marks, clear, closing."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fake_twilio import FakeTwilio, settle
from mediastreams.adapters.memory import MemoryTransport, PushMemoryTransport
from mediastreams.exceptions import LocalProtocolError, StreamClosed, StreamTimeout
from mediastreams.limits import Limits
from mediastreams.messages import DTMF, Media, Stop, UnknownMessage
from mediastreams.protocol import AppProtocol
from mediastreams.session import AudioFeed, MediaStream, Outcome, Pacer
from waiting import DEADLINE_S

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["read", "push"])
def transport(request: pytest.FixtureRequest) -> MemoryTransport:
    """Every test on both paths: frames read by a task, and frames pushed by the transport."""
    return MemoryTransport() if request.param == "read" else PushMemoryTransport()


SOURCE = bytes(range(256)) * 25  # 6400 bytes = 800 ms of mu-law


async def opened(transport: MemoryTransport, **options: object) -> tuple[FakeTwilio, MediaStream]:
    twilio = FakeTwilio(transport, custom_parameters={"tenant": "acme"})
    twilio.open()
    stream = await MediaStream(transport, **options).open()  # type: ignore[arg-type]
    return twilio, stream


def media_payloads(frames: list[str]) -> list[bytes]:
    import base64

    return [
        base64.b64decode(json.loads(f)["media"]["payload"])
        for f in frames
        if '"event":"media"' in f
    ]


def mark_names(frames: list[str]) -> list[str]:
    return [json.loads(f)["mark"]["name"] for f in frames if '"event":"mark"' in f]


def assert_no_tasks_left(stream: MediaStream) -> None:
    assert not stream._tasks, stream._tasks


# --- opening -----------------------------------------------------------------------------------


async def test_open_exposes_start(transport: MemoryTransport) -> None:
    twilio, stream = await opened(transport)
    assert stream.stream_sid == twilio.protocol.stream_sid
    assert stream.call_sid == twilio.protocol.start.call_sid
    assert stream.custom_parameters == {"tenant": "acme"}
    assert stream.start.media_format.sample_rate == 8000
    assert stream.start.tracks == ("inbound",)
    await stream.close()
    assert_no_tasks_left(stream)


async def test_open_times_out_without_start(transport: MemoryTransport) -> None:
    transport.peer.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')
    with pytest.raises(StreamTimeout):
        await MediaStream(transport, limits=Limits(start_timeout_s=0.02)).open()
    assert transport.close_code == 1008


async def test_open_fails_when_socket_closes_first(transport: MemoryTransport) -> None:
    transport.peer.drop()
    with pytest.raises(StreamClosed):
        await MediaStream(transport).open()


async def test_start_before_open_is_a_local_error(transport: MemoryTransport) -> None:
    with pytest.raises(LocalProtocolError):
        MediaStream(transport).start  # noqa: B018


async def test_media_before_start_is_ignored(
    transport: MemoryTransport, caplog: pytest.LogCaptureFixture
) -> None:
    twilio = FakeTwilio(transport)
    twilio.protocol.send_connected()
    twilio.flush()
    early = twilio.protocol.stream_sid
    transport.peer.send(
        json.dumps(
            {
                "event": "media",
                "sequenceNumber": "1",
                "streamSid": early,
                "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": "/w=="},
            }
        )
    )
    twilio.protocol.send_start()
    twilio.flush()
    with caplog.at_level(logging.WARNING, "mediastreams.session"):
        stream = await MediaStream(transport).open()
    assert "before start" in caplog.text
    await stream.close()


# --- events ------------------------------------------------------------------------------------


async def test_events_in_order_and_end_at_stop(transport: MemoryTransport) -> None:
    twilio, stream = await opened(transport)
    twilio.protocol.send_media(b"\x7f" * 160)
    twilio.protocol.send_dtmf("5")
    twilio.flush()
    transport.peer.send('{"event":"future","streamSid":"' + stream.stream_sid + '"}')
    twilio.protocol.send_stop()
    twilio.flush()
    events = [event async for event in stream]
    assert [type(e) for e in events] == [Media, DTMF, UnknownMessage, Stop]
    assert events[0].payload == b"\x7f" * 160  # type: ignore[union-attr]
    await stream.wait_closed()
    assert stream.end_reason == "stop"
    await stream.close()
    assert_no_tasks_left(stream)


async def test_bad_frames_are_logged_once_and_ignored(
    transport: MemoryTransport, caplog: pytest.LogCaptureFixture
) -> None:
    twilio, stream = await opened(transport)
    with caplog.at_level(logging.WARNING, "mediastreams.session"):
        for _ in range(3):
            transport.peer.send("not json at all")
        transport.peer.send(b"\x00\x01binary")
        wrong = '{"event":"dtmf","sequenceNumber":"9","streamSid":"MZwrong",'
        transport.peer.send(wrong + '"dtmf":{"track":"inbound_track","digit":"1"}}')
        twilio.protocol.send_dtmf("2")
        twilio.flush()
        event = await anext(aiter(stream))
    assert isinstance(event, DTMF) and event.digit == "2"
    assert not stream.ended
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 3  # once per kind: not JSON, binary, wrong streamSid
    assert "31950" in caplog.text
    assert "differs" in caplog.text
    # Counted by Twilio code, every one: three not JSON and the wrong streamSid, one binary.
    assert dict(stream.violations_by_code) == {31951: 4, 31950: 1}
    await stream.close()
    assert dict(stream.violations_by_code) == {31951: 4, 31950: 1}


async def test_violations_by_code_is_read_only_and_empty_for_a_clean_stream(
    transport: MemoryTransport,
) -> None:
    twilio, stream = await opened(transport)
    twilio.protocol.send_media(b"\xff" * 160)
    twilio.flush()
    event = await anext(aiter(stream))
    assert isinstance(event, Media)
    assert dict(stream.violations_by_code) == {}
    with pytest.raises(TypeError):
        stream.violations_by_code[31951] = 1  # type: ignore[index]
    await stream.close()


async def test_on_media_takes_media_from_the_iterator_and_audio_readers_keep_theirs(
    transport: MemoryTransport,
) -> None:
    twilio, stream = await opened(transport)
    pcm = stream.audio()
    taken: list[bytes] = []
    stream.on_media(lambda media: taken.append(media.payload))
    twilio.protocol.send_media(b"\x01" * 160)
    twilio.protocol.send_dtmf("5")
    twilio.flush()
    event = await anext(aiter(stream))
    assert isinstance(event, DTMF)  # the media frame went to the callback, not here
    assert taken == [b"\x01" * 160]
    assert len(await anext(pcm)) == 320  # audio() readers still get every frame
    stream.on_media(None)
    twilio.protocol.send_media(b"\x02" * 160)
    twilio.flush()
    event = await anext(aiter(stream))
    assert isinstance(event, Media) and event.payload == b"\x02" * 160
    assert taken == [b"\x01" * 160]
    await stream.close()


async def test_a_media_callback_that_raises_ends_the_stream_with_1011(
    transport: MemoryTransport, caplog: pytest.LogCaptureFixture
) -> None:
    twilio, stream = await opened(transport)

    def boom(media: Media) -> None:
        raise RuntimeError("callback failed")

    stream.on_media(boom)
    with caplog.at_level(logging.ERROR, "mediastreams.session"):
        twilio.protocol.send_media(b"\x01" * 160)
        twilio.flush()
        async with asyncio.timeout(30):
            await stream.wait_closed()
    assert (stream.end_reason, stream.close_code) == ("error", 1011)
    assert transport.close_code == 1011
    assert "callback failed" in caplog.text
    await stream.close()
    assert_no_tasks_left(stream)


async def test_an_audio_feed_plays_what_is_written_in_order(transport: MemoryTransport) -> None:
    twilio, stream = await opened(transport)
    feed = AudioFeed()
    feed.write(b"\x01" * 100)  # before the play: kept for it
    handle = stream.play(feed)
    for value in (2, 3):
        feed.write(bytes([value]) * 160)
    await settle()
    feed.end()
    feed.end()  # twice is fine
    await twilio.play_all(handle)
    assert handle.outcome is Outcome.PLAYED
    assert handle.sent_ms == handle.played_ms == 420 / 8
    assert bytes(twilio.heard) == b"\x01" * 100 + b"\x02" * 160 + b"\x03" * 160
    with pytest.raises(ValueError, match="already playing"):
        stream.play(feed)
    feed.write(b"\x04" * 160)  # after the play resolved: dropped
    await stream.close()


async def test_an_audio_feed_is_interrupted_by_clear_and_later_writes_are_dropped(
    transport: MemoryTransport,
) -> None:
    _twilio, stream = await opened(transport)
    feed = AudioFeed()
    handle = stream.play(feed)
    feed.write(b"\x01" * 1600)
    await settle()
    assert stream.clear() == [handle]
    feed.write(b"\x02" * 1600)
    await settle()
    assert handle.outcome is Outcome.INTERRUPTED
    assert handle.sent_ms == 200
    await stream.close()


async def test_frame_over_the_limit_ends_the_stream(transport: MemoryTransport) -> None:
    _twilio, stream = await opened(transport)
    handle = stream.play(SOURCE)
    transport.peer.send("x" * (10 * 1024 * 1024))
    await stream.wait_closed()
    assert stream.end_reason == "too-big"
    assert transport.close_code == 1009
    assert (await handle).outcome is Outcome.ENDED
    await stream.close()
    assert_no_tasks_left(stream)


# --- pacing ------------------------------------------------------------------------------------


async def test_play_goes_out_in_frames_within_the_lead(transport: MemoryTransport) -> None:
    twilio, stream = await opened(transport, lead_ms=400, mark_interval_ms=100)
    handle = stream.play(SOURCE)
    frames = await twilio.take()
    payloads = media_payloads(frames)
    assert sum(map(len, payloads)) == 400 * 8  # the lead, not the whole 800 ms
    assert {len(p) for p in payloads} == {160}
    assert handle.sent_ms == 400 and handle.played_ms == 0
    await twilio.play_all()
    assert (await handle).outcome is Outcome.PLAYED
    assert bytes(twilio.heard) == SOURCE
    assert handle.played_ms == handle.sent_ms == 800
    await stream.close()


async def test_marks_every_interval_and_played_ms_follows_echoes(
    transport: MemoryTransport,
) -> None:
    twilio, stream = await opened(transport, lead_ms=1000, mark_interval_ms=200)
    handle = stream.play(SOURCE)
    frames = await twilio.take()
    assert mark_names(frames) == ["_ms:1:200", "_ms:1:400", "_ms:1:600", "_ms:1:800"]
    for _ in range(10):  # 200 ms of playout
        await twilio.play(160)
    assert handle.played_ms == 200
    assert not handle.done()
    await twilio.play_all()
    assert handle.outcome is Outcome.PLAYED and handle.played_ms == 800


async def test_last_frame_is_not_padded(transport: MemoryTransport) -> None:
    twilio, stream = await opened(transport)
    stream.play(b"\x01" * 170)
    payloads = media_payloads(await twilio.take())
    assert [len(p) for p in payloads] == [160, 10]
    await stream.close()


async def test_plays_queue_in_order(transport: MemoryTransport) -> None:
    twilio, stream = await opened(transport, lead_ms=200, mark_interval_ms=100)
    first = stream.play(b"\x01" * 2400)
    second = stream.play(b"\x02" * 800)
    await twilio.play_all()
    assert (await first).outcome is Outcome.PLAYED
    assert (await second).outcome is Outcome.PLAYED
    assert bytes(twilio.heard) == b"\x01" * 2400 + b"\x02" * 800
    await stream.close()


async def test_async_iterator_source(transport: MemoryTransport) -> None:
    twilio, stream = await opened(transport)

    async def tts() -> object:
        for i in range(5):
            await asyncio.sleep(0)
            yield bytes([i + 1]) * 100  # chunks of any size

    handle = stream.play(tts())
    await twilio.play_all()
    assert (await handle).outcome is Outcome.PLAYED
    assert bytes(twilio.heard) == b"".join(bytes([i + 1]) * 100 for i in range(5))
    assert {len(p) for p in media_payloads(twilio.frames)[:-1]} == {160}
    await stream.close()


async def test_a_failing_source_fails_its_handle_only(transport: MemoryTransport) -> None:
    twilio, stream = await opened(transport)

    async def broken() -> object:
        yield b"\x01" * 160
        raise ValueError("TTS went away")

    bad = stream.play(broken())
    good = stream.play(b"\x02" * 320)
    with pytest.raises(ValueError, match="TTS went away"):
        await bad
    assert bad.outcome is Outcome.FAILED
    await twilio.play_all()
    assert (await good).outcome is Outcome.PLAYED
    await stream.close()


def test_pacer_refuses_inconsistent_settings() -> None:
    with pytest.raises(ValueError):
        Pacer(frame_ms=20, mark_interval_ms=10, lead_ms=1000)


# --- clear -------------------------------------------------------------------------------------


async def test_clear_interrupts_and_cleared_echoes_do_not_count(
    transport: MemoryTransport,
) -> None:
    twilio, stream = await opened(transport, lead_ms=1000, mark_interval_ms=200)
    first = stream.play(SOURCE)
    queued = stream.play(b"\x02" * 800)
    for _ in range(15):  # 300 ms played: one mark (200 ms) confirmed
        await twilio.play(160)
    interrupted = stream.clear()
    assert interrupted == [first, queued]
    await twilio.take()  # Twilio empties its buffer and echoes the pending marks
    assert twilio.protocol.marks_echoed_by_clear == 4  # 400, 600, 800 and the second's end
    await settle()
    assert (await first).outcome is Outcome.INTERRUPTED
    assert first.played_ms == 200  # the cleared echoes (400, 600, 800) were not counted
    assert first.sent_ms == 800
    assert (await queued).outcome is Outcome.INTERRUPTED
    assert queued.sent_ms == 100 and queued.played_ms == 0  # sent within the lead, dropped
    after = stream.play(b"\x03" * 480)
    await twilio.play_all()
    assert (await after).outcome is Outcome.PLAYED
    assert bytes(twilio.heard) == SOURCE[:2400] + b"\x03" * 480  # nothing stale
    await stream.close()


async def test_clear_after_all_audio_was_sent(transport: MemoryTransport) -> None:
    twilio, stream = await opened(transport)
    handle = stream.play(b"\x01" * 1600)  # 200 ms, all inside the lead
    await twilio.take()
    assert handle.sent_ms == 200 and not handle.done()
    stream.clear()
    frames = await twilio.take()
    assert any('"event":"clear"' in f for f in frames)
    assert twilio.protocol.buffered_bytes == 0
    assert (await handle).outcome is Outcome.INTERRUPTED
    assert handle.played_ms == 0
    await stream.close()


async def test_clear_with_nothing_playing_and_after_the_end(transport: MemoryTransport) -> None:
    twilio, stream = await opened(transport)
    assert stream.clear() == []
    await twilio.take()
    await stream.close()
    assert stream.clear() == []


# --- marks and DTMF ----------------------------------------------------------------------------


async def test_send_mark_resolves_on_echo(transport: MemoryTransport) -> None:
    twilio, stream = await opened(transport)
    stream.play(b"\x01" * 320)
    mark = stream.send_mark("after-hello")
    await twilio.take()
    assert not mark.done()
    await twilio.play_all()
    assert (await mark).outcome is Outcome.PLAYED
    await stream.close()


async def test_send_mark_cleared_is_interrupted(transport: MemoryTransport) -> None:
    twilio, stream = await opened(transport)
    stream.play(b"\x01" * 320)
    mark = stream.send_mark("after-hello")
    await twilio.take()
    stream.clear()
    await twilio.take()
    assert (await mark).outcome is Outcome.INTERRUPTED
    await stream.close()


async def test_send_mark_refuses_reserved_names(transport: MemoryTransport) -> None:
    _, stream = await opened(transport)
    with pytest.raises(LocalProtocolError):
        stream.send_mark("_ms:1:20")
    await stream.close()


async def test_collect_digits(transport: MemoryTransport) -> None:
    twilio, stream = await opened(transport)
    task = asyncio.create_task(stream.collect_digits(3))
    await settle()
    for digit in "1234":
        twilio.protocol.send_dtmf(digit)
    twilio.flush()
    assert await task == "123"
    task = asyncio.create_task(stream.collect_digits(5, finish_on="#"))
    await settle()
    for digit in "9#":
        twilio.protocol.send_dtmf(digit)
    twilio.flush()
    assert await task == "9"
    assert await stream.collect_digits(2, timeout_ms=10) == ""
    await stream.close()
    assert await stream.collect_digits(2) == ""


def press(twilio: FakeTwilio, digits: str) -> None:
    for digit in digits:
        twilio.protocol.send_dtmf(digit)
    twilio.flush()


async def test_digits_a_collector_takes_never_reach_the_menu_loop(
    transport: MemoryTransport,
) -> None:
    """The README pattern: collect_digits inside ``async for``; the PIN is not menu keys."""
    twilio, stream = await opened(transport)
    menu_keys: list[str] = []
    pins: list[str] = []

    async def menu() -> None:
        async for event in stream:
            if not isinstance(event, DTMF):
                continue
            menu_keys.append(event.digit)
            if event.digit == "9":
                pins.append(await stream.collect_digits(4, timeout_ms=5000))

    task = asyncio.create_task(menu())
    press(twilio, "9")
    await settle()  # the menu took the 9 and now waits in collect_digits
    press(twilio, "1234")
    await settle()
    press(twilio, "2")
    twilio.protocol.send_stop()
    twilio.flush()
    await asyncio.wait_for(task, 30)
    assert pins == ["1234"]
    assert menu_keys == ["9", "2"]  # not 9, 1, 2, 3, 4, 2
    await stream.close()


async def test_while_digits_are_collected_other_events_flow_and_later_keys_return(
    transport: MemoryTransport,
) -> None:
    twilio, stream = await opened(transport)
    pin = asyncio.create_task(stream.collect_digits(3, finish_on="#"))
    await settle()
    twilio.protocol.send_media(b"\x01" * 160)
    press(twilio, "12#")  # the finish key is taken too, not passed on
    press(twilio, "45")  # the collector has returned: these are the loop's
    twilio.protocol.send_stop()
    twilio.flush()
    assert await pin == "12"
    events = [event async for event in stream]
    assert [type(e) for e in events] == [Media, DTMF, DTMF, Stop]
    assert [e.digit for e in events if isinstance(e, DTMF)] == ["4", "5"]


async def test_a_collector_takes_only_the_digits_it_asked_for(
    transport: MemoryTransport,
) -> None:
    twilio, stream = await opened(transport)
    first = asyncio.create_task(stream.collect_digits(2))
    await settle()
    second = asyncio.create_task(stream.collect_digits(2))
    await settle()
    press(twilio, "12345")  # all at once: the first takes two, the second two, one is left
    assert (await first, await second) == ("12", "34")
    twilio.protocol.send_stop()
    twilio.flush()
    assert [e.digit for e in [e async for e in stream] if isinstance(e, DTMF)] == ["5"]


async def test_after_a_collector_times_out_keys_reach_the_loop_again(
    transport: MemoryTransport,
) -> None:
    twilio, stream = await opened(transport)
    assert await stream.collect_digits(4, timeout_ms=10) == ""
    press(twilio, "7")
    event = await asyncio.wait_for(anext(aiter(stream)), 30)
    assert isinstance(event, DTMF) and event.digit == "7"
    await stream.close()


# --- ending ------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["stop", "drop", "close"])
async def test_every_end_resolves_everything(transport: MemoryTransport, how: str) -> None:
    twilio, stream = await opened(transport)
    playing = stream.play(SOURCE)
    queued = stream.play(SOURCE)
    mark = stream.send_mark("m")
    events = asyncio.create_task(anext(aiter(stream.events()), None))
    digits = asyncio.create_task(stream.collect_digits(4))
    await twilio.take()
    if how == "stop":
        twilio.protocol.send_stop()
        twilio.flush()
    elif how == "drop":
        transport.peer.drop()
    else:
        await stream.close()
    await asyncio.wait_for(stream.wait_closed(), DEADLINE_S)
    for handle in (playing, queued):
        assert (await handle).outcome is Outcome.ENDED
    assert (await mark).outcome is Outcome.ENDED
    assert await digits == ""
    assert type(await events) in (Stop, type(None))
    await stream.close()
    assert_no_tasks_left(stream)
    assert transport.close_code is not None
    with pytest.raises(StreamClosed):
        stream.play(b"\x01")


async def test_a_socket_dropped_while_sending_ends_the_stream(transport: MemoryTransport) -> None:
    _twilio, stream = await opened(transport)
    transport.peer.dropped = True  # sends fail before the reader notices
    handle = stream.play(SOURCE)
    assert (await asyncio.wait_for(handle, DEADLINE_S)).outcome is Outcome.ENDED
    assert stream.end_reason == "dropped"
    await stream.close()
    assert_no_tasks_left(stream)


async def test_a_hanging_source_is_cancelled_at_the_end(transport: MemoryTransport) -> None:
    _, stream = await opened(transport)

    async def forever() -> object:
        yield b"\x01" * 160
        await asyncio.Event().wait()

    handle = stream.play(forever())
    await settle()
    await stream.close()
    assert handle.outcome is Outcome.ENDED
    assert_no_tasks_left(stream)


async def test_context_manager(transport: MemoryTransport) -> None:
    twilio = FakeTwilio(transport)
    twilio.open()
    async with MediaStream(transport) as stream:
        assert stream.protocol.state.value == "streaming"
    assert stream.end_reason == "closed"
    assert isinstance(stream.protocol, AppProtocol)


# --- audio conversion (mediastreams.audio) -----------------------------------------------------


def tone_pcm16(sample_rate: int, duration_ms: int) -> bytes:
    import numpy as np

    t = np.arange(sample_rate * duration_ms // 1000) / sample_rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


async def test_play_a_wav_file_and_wav_bytes(transport: MemoryTransport, tmp_path: Path) -> None:
    from mediastreams.audio import to_mulaw, wav_bytes

    twilio, stream = await opened(transport)
    data = wav_bytes(tone_pcm16(16000, 300), encoding="pcm", sample_rate=16000)
    path = tmp_path / "tone.wav"
    path.write_bytes(data)
    from_path = stream.play(path)
    from_bytes = stream.play(data)
    await twilio.play_all(from_path, from_bytes)
    assert (await from_path).outcome is Outcome.PLAYED
    assert (await from_bytes).outcome is Outcome.PLAYED
    expected = to_mulaw(path)
    assert bytes(twilio.heard) == expected + expected
    assert from_path.played_ms == len(expected) / 8
    await stream.close()


async def test_play_a_numpy_array(transport: MemoryTransport) -> None:
    import numpy as np

    from mediastreams.audio import to_mulaw

    twilio, stream = await opened(transport)
    samples = np.frombuffer(tone_pcm16(24000, 200), dtype="<i2")
    handle = stream.play(samples, sample_rate=24000)
    await twilio.play_all(handle)
    assert (await handle).outcome is Outcome.PLAYED
    assert bytes(twilio.heard) == to_mulaw(samples, sample_rate=24000)
    await stream.close()


async def test_play_a_pcm_stream_from_tts(transport: MemoryTransport) -> None:
    import numpy as np

    from mediastreams.audio import AudioFormat, MulawEncoder, mulaw_to_pcm

    twilio, stream = await opened(transport)
    pcm = tone_pcm16(24000, 300)
    chunks = [pcm[i : i + 999] for i in range(0, len(pcm), 999)]  # splits samples too

    async def tts() -> AsyncIterator[bytes]:
        for chunk in chunks:
            await asyncio.sleep(0)
            yield chunk

    handle = stream.play(tts(), format=AudioFormat(24000))
    await twilio.play_all(handle)
    assert (await handle).outcome is Outcome.PLAYED
    encoder = MulawEncoder(AudioFormat(24000))
    expected = b"".join(encoder.push(c) for c in chunks) + encoder.flush()
    assert len(twilio.heard) == len(expected)
    # soxr dithers int16 output at random, so two conversions differ in the last bit.
    heard = np.frombuffer(mulaw_to_pcm(bytes(twilio.heard)), dtype="<i2").astype(int)
    reference = np.frombuffer(mulaw_to_pcm(expected), dtype="<i2").astype(int)
    assert np.abs(heard - reference).mean() < 50
    await stream.close()


async def test_unreadable_audio_fails_the_handle(transport: MemoryTransport) -> None:
    from mediastreams.exceptions import AudioError

    _, stream = await opened(transport)
    handle = stream.play("/no/such/file.wav")
    with pytest.raises(AudioError):
        await handle
    assert handle.outcome is Outcome.FAILED
    await stream.close()


async def test_inbound_audio_as_pcm_with_gaps_filled(transport: MemoryTransport) -> None:
    import numpy as np

    twilio, stream = await opened(transport)
    pcm_8k = stream.audio(sample_rate=8000)
    pcm_16k = stream.audio(sample_rate=16000)
    first = asyncio.create_task(anext(pcm_8k))
    await settle()
    twilio.protocol.send_media(b"\x80" * 160, timestamp_ms=20)
    twilio.protocol.send_media(b"\x80" * 160, timestamp_ms=40)
    twilio.protocol.send_media(b"\x80" * 160, timestamp_ms=100)  # 40 ms lost
    twilio.protocol.send_stop()
    twilio.flush()
    chunks = [await first] + [chunk async for chunk in pcm_8k]
    pcm = np.frombuffer(b"".join(chunks), dtype="<i2")
    assert pcm.size == (60 + 40) * 8  # three frames and the gap, in samples
    assert not pcm[320:640].any()  # the gap is silence
    assert pcm[:320].all() and pcm[640:].all()
    wide = b"".join([chunk async for chunk in pcm_16k])
    assert abs(len(wide) // 2 - 100 * 16) <= 16  # the same 100 ms at 16 kHz


async def test_clear_stops_pulling_from_a_tts_stream(transport: MemoryTransport) -> None:
    twilio, stream = await opened(transport)
    pulled = 0
    cancelled = asyncio.Event()

    async def tts() -> AsyncIterator[bytes]:
        nonlocal pulled
        try:
            while True:
                pulled += 1
                yield b"\x01" * 160
                await asyncio.sleep(0.001)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    handle = stream.play(tts())
    await twilio.play(160)
    stream.clear()
    await asyncio.wait_for(cancelled.wait(), DEADLINE_S)
    assert (await handle).outcome is Outcome.INTERRUPTED
    await stream.close()
    assert_no_tasks_left(stream)


async def test_unread_media_is_capped(
    transport: MemoryTransport, caplog: pytest.LogCaptureFixture
) -> None:
    twilio, stream = await opened(transport, limits=Limits(max_queued_frames=10))
    with caplog.at_level(logging.WARNING, "mediastreams.session"):
        for i in range(25):
            twilio.protocol.send_media(bytes([i]) * 160)
        twilio.protocol.send_dtmf("1")
        twilio.flush()
        await settle()
    assert "nothing reads" in caplog.text
    events = []
    async for event in stream:
        events.append(event)
        if isinstance(event, DTMF):
            break
    assert len(events) == 10  # the 9 newest media, and the DTMF, which media make way for
    assert events[0].payload == bytes([16]) * 160  # type: ignore[union-attr]
    await stream.close()


async def test_the_lead_holds_and_the_buffer_never_runs_dry(transport: MemoryTransport) -> None:
    twilio, stream = await opened(transport, lead_ms=400, mark_interval_ms=100)
    handle = stream.play(b"\x01" * 8 * 5000)  # 5 s
    await twilio.take()
    while not handle.done():
        buffered_ms = twilio.protocol.buffered_ms
        assert buffered_ms <= 400  # never more than the lead in Twilio's buffer
        if handle.sent_ms < 5000:
            assert buffered_ms >= 400 - 100 - 20  # refilled at each echo, never dry
        await twilio.play(160)
    assert handle.outcome is Outcome.PLAYED and handle.played_ms == 5000
    await stream.close()


def test_public_names_resolve() -> None:
    from mediastreams import session

    for name in session.__all__:
        assert hasattr(session, name), name
