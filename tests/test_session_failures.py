"""The session's bounds and failures, in memory: a task that raises, a silent peer, a peer
that does not read, queues nobody reads, a live source that runs ahead, plays that fail unseen.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from fake_twilio import FakeTwilio, settle
from mediastreams.adapters.memory import MemoryTransport, PushMemoryTransport
from mediastreams.limits import Limits
from mediastreams.messages import DTMF
from mediastreams.session import (
    MAX_CLOSE_REASON_BYTES,
    MediaStream,
    Outcome,
    close_reason,
)
from mediastreams.websocket import Receiver
from waiting import await_for

pytestmark = pytest.mark.anyio

MARKER = "crash-here"


class Recording(MemoryTransport):
    """The in-memory transport, keeping the close reason and failing where a test says."""

    def __init__(self) -> None:
        super().__init__()
        self.close_reason: str | None = None
        self.fail_receive_on: str | None = None
        self.fail_send: BaseException | None = None
        self.block_sends = False

    async def receive(self) -> str | bytes | None:
        frame = await super().receive()
        marker = self.fail_receive_on
        if marker is not None and isinstance(frame, str) and marker in frame:
            raise RecursionError("maximum recursion depth exceeded")
        return frame

    async def send(self, text: str) -> None:
        if self.fail_send is not None:
            raise self.fail_send
        if self.block_sends:
            await asyncio.Event().wait()  # a peer that never reads: the write never drains
        await super().send(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.close_code is None:
            self.close_reason = reason
        await super().close(code, reason)


class _Unreadable(str):
    """A frame whose reading raises, as a parser bug would."""

    def __len__(self) -> int:
        raise RecursionError("maximum recursion depth exceeded")


class PushRecording(PushMemoryTransport, Recording):
    """:class:`Recording` as a transport that pushes frames to the session."""

    def set_receiver(self, receiver: Receiver | None) -> None:
        if receiver is None:
            super().set_receiver(None)
            return

        def receive(frame: str | bytes | None) -> None:
            marker = self.fail_receive_on
            if marker is not None and isinstance(frame, str) and marker in frame:
                frame = _Unreadable(frame)
            receiver(frame)

        super().set_receiver(receive)

    def send_now(self, data: bytes) -> bool:
        if self.fail_send is not None:
            raise self.fail_send
        if self.block_sends:
            return False
        return super().send_now(data)


TRANSPORTS = {"read": Recording, "push": PushRecording}


@pytest.fixture(params=list(TRANSPORTS), autouse=True)
def transport_class(request: pytest.FixtureRequest) -> Iterator[type[Recording]]:
    """Every test on both paths: frames read by a task, and frames pushed by the transport."""
    global Transport
    Transport = TRANSPORTS[request.param]
    yield Transport
    Transport = Recording


Transport: type[Recording] = Recording


async def opened(limits: Limits | None = None, **options: object) -> tuple[FakeTwilio, MediaStream]:
    transport = Transport()
    twilio = FakeTwilio(transport)
    twilio.open()
    stream = MediaStream(transport, limits=limits, **options)  # type: ignore[arg-type]
    return twilio, await stream.open()


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info]


async def wait_for(predicate: object, timeout_s: float = 30) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


# --- the close reason --------------------------------------------------------------------------


def test_close_reason_names_the_error_and_fits_a_close_frame() -> None:
    assert close_reason(RuntimeError("boom")) == "RuntimeError: boom"
    assert close_reason(KeyError()) == "KeyError"
    long = close_reason(ValueError("é" * 200))  # two bytes each: cut mid-character
    data = long.encode("utf-8")
    assert len(data) <= MAX_CLOSE_REASON_BYTES == 123
    assert long.startswith("ValueError: éé") and long.endswith("...")
    assert data.decode("utf-8") == long


# --- a task that raises ends the stream ---------------------------------------------------------


async def test_a_reader_that_raises_ends_everything(caplog: pytest.LogCaptureFixture) -> None:
    twilio, stream = await opened()
    transport = stream.transport
    assert isinstance(transport, Recording)
    transport.fail_receive_on = MARKER
    play = stream.play(b"\x01" * 8000)
    mark = stream.send_mark("after")
    events: list[object] = []

    async def handler() -> None:
        async for event in stream:
            events.append(event)

    reading = asyncio.create_task(handler())
    twilio.protocol.send_dtmf("1")
    twilio.flush()
    transport.peer.send('{"event":"' + MARKER + '"}')
    with caplog.at_level(logging.ERROR, "mediastreams.session"):
        async with asyncio.timeout(30):
            await stream.wait_closed()
            await reading  # the handler's loop ends with the stream
    assert stream.end_reason == "error" and stream.close_code == 1011
    assert transport.close_code == 1011
    assert transport.close_reason == "RecursionError: maximum recursion depth exceeded"
    assert [type(e) for e in events] == [DTMF]
    assert (await play).outcome is Outcome.ENDED
    assert (await mark).outcome is Outcome.ENDED
    (record,) = tracebacks(caplog)  # logged once, with the traceback
    assert "RecursionError" in record.getMessage()
    await stream.close()
    assert not stream._tasks


async def test_a_send_that_raises_ends_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    _twilio, stream = await opened()
    transport = stream.transport
    assert isinstance(transport, Recording)
    transport.fail_send = KeyError("adapter bug")
    with caplog.at_level(logging.ERROR, "mediastreams.session"):
        play = stream.play(b"\x01" * 800)
        async with asyncio.timeout(30):
            await stream.wait_closed()
    assert stream.end_reason == "error"
    assert transport.close_code == 1011
    assert transport.close_reason == "KeyError: 'adapter bug'"
    assert (await play).outcome is Outcome.ENDED
    assert len(tracebacks(caplog)) == 1
    await stream.close()


async def test_an_exception_in_the_async_with_block_closes_with_1011() -> None:
    transport = Recording()
    FakeTwilio(transport).open()
    with pytest.raises(RuntimeError, match="boom"):
        async with MediaStream(transport) as stream:
            raise RuntimeError("boom")
    assert stream.end_reason == "error"
    assert (transport.close_code, transport.close_reason) == (1011, "RuntimeError: boom")


async def test_a_reader_that_raises_before_start_is_a_stream_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mediastreams.exceptions import StreamClosed

    transport = Transport()
    transport.fail_receive_on = MARKER
    transport.peer.send('{"event":"' + MARKER + '"}')
    with caplog.at_level(logging.ERROR, "mediastreams.session"), pytest.raises(StreamClosed):
        await MediaStream(transport).open()
    assert transport.close_code == 1011
    assert len(tracebacks(caplog)) == 1


# --- deadlines ---------------------------------------------------------------------------------


async def test_a_silent_peer_is_closed_after_the_idle_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "mediastreams.session"):
        _twilio, stream = await opened(Limits(idle_timeout_s=0.2))
        play = stream.play(b"\x01" * 80_000)  # 10 s, never confirmed
        async with asyncio.timeout(30):
            await stream.wait_closed()
    assert stream.end_reason == "idle"
    assert stream.transport.close_code == 1011  # type: ignore[attr-defined]
    assert "no frame from the peer for 0.2 s" in caplog.text
    assert caplog.text.count("no frame from the peer") == 1
    assert (await play).outcome is Outcome.ENDED
    await stream.close()
    assert not stream._tasks


async def test_frames_keep_the_stream_alive() -> None:
    twilio, stream = await opened(Limits(idle_timeout_s=0.2))
    loop = asyncio.get_running_loop()
    until = loop.time() + 0.8  # four idle timeouts of frames every 20 ms
    while loop.time() < until:
        twilio.protocol.send_media(b"\xff" * 160)
        twilio.flush()
        await asyncio.sleep(0.02)
        assert not stream.ended
    await stream.close()


async def test_a_blocked_loop_is_not_a_silent_peer() -> None:
    twilio, stream = await opened(Limits(idle_timeout_s=0.2))
    loop = asyncio.get_running_loop()
    twilio.protocol.send_media(b"\xff" * 160)
    frames = twilio.protocol.data_to_send()
    # The frame arrives while the app blocks the loop for longer than the idle timeout, so
    # the overdue watchdog runs before the reader can take it.
    arrives = threading.Thread(
        target=loop.call_soon_threadsafe, args=(twilio.peer.send_all, frames)
    )
    arrives.start()
    time.sleep(0.5)  # the point: a handler that blocks the loop
    arrives.join()
    await settle()
    assert not stream.ended
    await stream.close()


async def test_a_peer_that_does_not_read_ends_the_stream_after_the_send_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    twilio, stream = await opened(Limits(send_timeout_s=0.2))
    transport = stream.transport
    assert isinstance(transport, Recording)
    transport.block_sends = True
    loop = asyncio.get_running_loop()
    with caplog.at_level(logging.WARNING, "mediastreams.session"):
        play = stream.play(b"\x01" * 1600)
        async with asyncio.timeout(30):
            while not stream.ended:  # the peer still sends media: it is not idle
                twilio.protocol.send_media(b"\xff" * 160)
                twilio.flush()
                await asyncio.sleep(0.02)
    assert stream.end_reason == "send-timeout"
    # The close goes out from its own task, which may not have run yet.
    await await_for(lambda: transport.close_code is not None, "the close")
    assert transport.close_code == 1011
    assert "the peer read nothing for 0.2 s" in caplog.text
    assert (await play).outcome is Outcome.ENDED
    started = loop.time()
    await stream.close()
    assert loop.time() - started < 5  # the blocked send was cancelled, not waited on
    assert not stream._tasks


# --- bounded queues ----------------------------------------------------------------------------


async def test_unread_events_are_bounded_in_bytes(caplog: pytest.LogCaptureFixture) -> None:
    twilio, stream = await opened(Limits(max_queued_bytes=20_000))
    with caplog.at_level(logging.WARNING, "mediastreams.session"):
        for i in range(100):
            twilio.protocol.send_media(bytes([i]) * 1600)  # frames of about 2.2 KB
        twilio.protocol.send_dtmf("5")
        twilio.flush()
        await settle()
    assert caplog.text.count("nothing reads the stream's events") == 1
    assert stream._inbound.events._bytes <= 20_000
    events = []
    async for event in stream:
        events.append(event)
        if isinstance(event, DTMF):
            break
    assert 5 <= len(events) <= 10  # the newest media that fit, then the key press
    assert events[-2].payload == bytes([99]) * 1600  # type: ignore[union-attr]
    assert stream._inbound.events.dropped_media == 100 - (len(events) - 1)
    await stream.close()


async def test_an_audio_iterator_nobody_reads_is_bounded() -> None:
    twilio, stream = await opened(Limits(max_queued_frames=20))
    audio = stream.audio()
    for _ in range(500):
        twilio.protocol.send_media(b"\xff" * 160)
    twilio.flush()
    await settle()
    queue = stream._inbound._audio_queues[-1]
    assert len(queue._media) + len(queue._others) <= 20
    assert queue.dropped_media >= 480
    await stream.close()
    pcm = b"".join([chunk async for chunk in audio])
    assert len(pcm) <= 20 * 160 * 2  # what was kept, decoded, and nothing after the end


async def test_only_control_events_make_way_when_there_is_no_media() -> None:
    twilio, stream = await opened(Limits(max_queued_frames=5))
    for digit in "0123456789":
        twilio.protocol.send_dtmf(digit)
    twilio.flush()
    await settle()
    events = []
    await stream.close()
    async for event in stream:
        events.append(event)
    assert [e.digit for e in events if isinstance(e, DTMF)] == list("56789")


async def test_order_holds_across_media_and_control_events() -> None:
    twilio, stream = await opened()
    twilio.protocol.send_media(b"\x01" * 160)
    twilio.protocol.send_dtmf("1")
    twilio.protocol.send_media(b"\x02" * 160)
    twilio.protocol.send_dtmf("2")
    twilio.protocol.send_stop()
    twilio.flush()
    kinds = [type(event).__name__ for event in [e async for e in stream]]
    assert kinds == ["Media", "DTMF", "Media", "DTMF", "Stop"]
    await stream.close()


# --- live sources: the backlog -----------------------------------------------------------------


async def test_a_live_source_keeps_at_most_its_backlog() -> None:
    twilio, stream = await opened(lead_ms=200, mark_interval_ms=100)
    fed = asyncio.Event()

    async def live() -> AsyncIterator[bytes]:
        for _ in range(100):  # 2 s of caller audio, arriving faster than it plays
            yield b"\x01" * 160
            await asyncio.sleep(0)
        fed.set()
        await asyncio.Event().wait()  # a live source does not end by itself

    with pytest.raises(ValueError, match="max_backlog_ms must be positive"):
        stream.play(live(), max_backlog_ms=0)
    handle = stream.play(live(), max_backlog_ms=300)
    async with asyncio.timeout(30):
        await fed.wait()
    await twilio.take()
    assert handle.sent_ms == 200  # the lead; Twilio has confirmed nothing yet
    assert handle.dropped_ms == 2000 - 200 - 300
    await twilio.play_all(max_frames=100)  # the present: the newest 300 ms, then nothing
    assert bytes(twilio.heard) == b"\x01" * (500 * 8)
    await stream.close()
    assert handle.outcome is Outcome.ENDED


async def test_an_echo_that_falls_behind_drops_the_oldest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mediastreams.server import echo_handler

    twilio, stream = await opened(Limits(max_echo_backlog_ms=400))
    echo = asyncio.create_task(echo_handler(stream))
    for i in range(250):  # 5 s from the caller; nothing plays, no echo comes back
        twilio.protocol.send_media(bytes([i]) * 160)
    twilio.flush()
    await wait_for(lambda: not stream._inbound.events._media)  # the echo has taken every frame
    await settle()
    with caplog.at_level(logging.WARNING, "mediastreams.server"):
        twilio.protocol.send_stop()
        twilio.flush()
        async with asyncio.timeout(30):
            await echo
    assert "echo: dropped 3600 ms of the caller's audio" in caplog.text  # 5 s - 1 s - 0.4 s
    await stream.close()


# --- plays that fail with nobody watching ------------------------------------------------------


async def test_a_failed_play_nobody_awaited_is_logged_at_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _twilio, stream = await opened()
    unseen = stream.play("nosuch.mp3")
    awaited = stream.play("other-missing.wav")
    with pytest.raises(Exception, match=r"other-missing\.wav"):
        await awaited
    async with asyncio.timeout(30):
        while not unseen.done():
            await asyncio.sleep(0.005)
    with caplog.at_level(logging.ERROR, "mediastreams.session"):
        await stream.close()
        await stream.close()  # once only
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith("play 1 (nosuch.mp3) failed and nothing awaited it: ")
    assert unseen.outcome is Outcome.FAILED


async def test_reading_the_error_counts_as_seen(caplog: pytest.LogCaptureFixture) -> None:
    _twilio, stream = await opened()
    handle = stream.play("nosuch.mp3")
    assert await handle.wait() is Outcome.FAILED
    with caplog.at_level(logging.ERROR, "mediastreams.session"):
        await stream.close()
    assert not caplog.records


# --- options -----------------------------------------------------------------------------------


async def test_deprecated_options_still_work_with_a_warning() -> None:
    transport = MemoryTransport()
    with pytest.warns(DeprecationWarning, match=r"limits=Limits\(start_timeout_s=...\)"):
        stream = MediaStream(transport, start_timeout_ms=1500)
    assert stream.limits.start_timeout_s == 1.5
    with pytest.warns(DeprecationWarning, match="max_queued_frames"):
        stream = MediaStream(transport, limits=Limits(max_frame_bytes=1000), max_queued_media=7)
    assert (stream.limits.max_queued_frames, stream.limits.max_frame_bytes) == (7, 1000)
