"""The report's verdict on timing: utterances, barge-ins, heard audio, stalls and pauses.

Each case is a small app in virtual time; what the report says is checked against the
recording of what the caller heard, not against the report's own arithmetic.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import threading
import time
import wave
from typing import Any

import anyio.to_thread
import numpy as np
import pytest
from starlette.websockets import WebSocket

from emulator_apps import (
    SILENCE_MULAW,
    TONE_MULAW,
    agent_app,
    heard_run_ms,
    media,
    paced,
    stream_app,
)
from mediastreams.audio import mulaw
from mediastreams.emulator import (
    Audio,
    Hangup,
    Press,
    Silence,
    WaitForQuiet,
    WaitForReply,
    place_call,
)
from mediastreams.emulator.measures import measure
from mediastreams.emulator.script import Step, Utterance
from mediastreams.emulator.talkback import Talkback


def channels(stereo_wav: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The caller's channel and the app's channel of a stereo recording, as samples."""
    with wave.open(io.BytesIO(stereo_wav)) as file:
        both = np.frombuffer(file.readframes(file.getnframes()), dtype="<i2").reshape(-1, 2)
    return both[:, 0], both[:, 1]


def test_a_pause_inside_queued_audio_is_a_barge_in() -> None:
    # 2 s of tone, 300 ms of silence frames, 2 s of tone, all queued at once; the caller
    # starts 40 ms into the pause and the app clears: a barge-in, though nothing audible
    # played at the onset.
    pause_app = agent_app([TONE_MULAW * 2 + SILENCE_MULAW[:2400] + TONE_MULAW * 2])
    steps: list[Step] = [Silence(2060), Audio(TONE_MULAW, raw_mulaw=True), Hangup(at_ms=5000)]
    result = place_call(pause_app, steps)
    report = result.report
    # The onset is in the pause: the caller had heard silence for 40 ms.
    assert set(result.heard_mulaw[2020 * 8 : 2060 * 8]) == {0xFF}
    assert report.clears == 1
    (barge,) = report.barge_ins
    assert barge.onset_ms == 2060
    assert barge.clear_ms is not None and barge.clear_reaction_ms == barge.clear_ms - 2060
    assert 0 < barge.clear_reaction_ms <= 100
    # Played from 20 ms (the app answers start within the first tick) to the clear, the
    # tick at the clear's time included (it plays before the app hears that frame).
    assert barge.heard_ms == barge.clear_ms
    assert barge.discarded_ms == 4300 - barge.heard_ms
    assert report.discarded_by_clear_ms == barge.discarded_ms
    assert report.to_dict()["audio"]["discarded_by_clear_ms"] == barge.discarded_ms


def test_a_pause_inside_queued_audio_talked_over_is_a_barge_in_without_clear() -> None:
    pause_app = agent_app([TONE_MULAW * 2 + SILENCE_MULAW[:2400] + TONE_MULAW * 2], clears=False)
    steps: list[Step] = [Silence(2060), Audio(TONE_MULAW, raw_mulaw=True), Hangup(at_ms=5000)]
    report = place_call(pause_app, steps).report
    (barge,) = report.barge_ins
    assert (barge.onset_ms, barge.clear_ms, barge.heard_ms) == (2060, None, None)
    assert any("at 2060 ms and the app never sent clear" in note for note in report.notes)
    # Only silence left in the queue at the onset: the caller talks over nothing.
    tail_app = agent_app([TONE_MULAW * 2 + SILENCE_MULAW * 2], clears=False)
    steps = [Silence(2200), Audio(TONE_MULAW, raw_mulaw=True), Hangup(at_ms=5000)]
    assert place_call(tail_app, steps).report.barge_ins == []


def inline_greeting(greeting: bytes) -> Any:
    """An app that sends ``greeting`` from its own receive loop the moment ``start`` comes:
    the audio is queued before the call's first tick, and plays in it."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            frame = json.loads(message["text"])
            if frame["event"] == "start":
                await send({"type": "websocket.send", "text": media(frame["streamSid"], greeting)})

    return app


@pytest.mark.parametrize("frames", [1, 50])
@pytest.mark.parametrize(
    ("wait", "onset_after_reply"),
    [
        # Quiet for 200 ms after the greeting: not the 5 s of the timeout.
        (WaitForQuiet(quiet_ms=200, timeout_ms=5000), lambda reply: reply.end_ms + 200),
        # The reply started in the first tick; the caller's next frame is the earliest.
        (WaitForReply(after_ms=0, timeout_ms=5000), lambda reply: 20),
        (WaitForReply(after_ms=100, timeout_ms=5000), lambda reply: 100),
    ],
    ids=["quiet", "reply", "reply-100"],
)
def test_audio_queued_before_the_first_tick_is_the_app_speaking(
    frames: int, wait: Step, onset_after_reply: Any
) -> None:
    greeting = TONE_MULAW[: frames * 160]
    steps: list[Step] = [wait, Audio(TONE_MULAW[:1600], raw_mulaw=True), Hangup(at_ms=6000)]
    result = place_call(inline_greeting(greeting), steps)
    report = result.report
    (reply, *_) = report.replies
    assert report.time_to_first_audio_ms == 0
    assert (reply.start_ms, reply.end_ms) == (0, frames * 20)  # played from the first tick
    assert result.heard_mulaw[: len(greeting)] == greeting
    (utterance,) = report.utterances
    assert utterance.onset_ms == onset_after_reply(reply)


def test_two_utterances_in_one_step_are_two_turns_and_two_barge_ins() -> None:
    app = agent_app([TONE_MULAW * 5] * 3)
    speech = TONE_MULAW + SILENCE_MULAW + SILENCE_MULAW[:4000] + TONE_MULAW  # 1 s, 1.5 s, 1 s
    steps: list[Step] = [Silence(1000), Audio(speech, raw_mulaw=True), Hangup(at_ms=8000)]
    result = place_call(app, steps)
    report = result.report
    assert [(u.onset_ms, u.end_ms) for u in report.utterances] == [(1000, 2000), (3500, 4500)]
    assert [t.speech_end_ms for t in report.turns] == [2000, 4500]
    assert all(t.latency_ms is not None for t in report.turns)
    assert [b.onset_ms for b in report.barge_ins] == [1000, 3500]
    caller, app_side = channels(result.recorder.stereo_wav())
    # The onsets, from the caller's channel: loud samples after more than 300 ms of quiet.
    loud = np.flatnonzero(np.abs(caller) > 1000)
    onsets = [loud[0]] + [b for a, b in itertools.pairwise(loud) if b - a > 300 * 8]
    assert [int(onset) // 8 for onset in onsets] == [b.onset_ms for b in report.barge_ins]
    heard = result.heard_mulaw
    for barge in report.barge_ins:
        # What the caller heard of the reply: the tone in the app's channel around the onset.
        start_ms, end_ms = heard_run_ms(heard, barge.onset_ms)
        assert np.all(np.abs(app_side[start_ms * 8 : end_ms * 8]) > 1000)
        assert barge.heard_ms is not None and abs(barge.heard_ms - (end_ms - start_ms)) <= 40
        assert barge.clear_ms is not None and abs(barge.clear_ms - end_ms) <= 40
        assert barge.discarded_ms > 0 and barge.audio_after_clear_ms == 0
    assert report.notes == []


def test_an_app_that_talks_over_the_caller_is_a_barge_in_without_clear() -> None:
    app = agent_app([TONE_MULAW * 4], clears=False)
    steps: list[Step] = [Silence(1000), Audio(TONE_MULAW, raw_mulaw=True), Hangup(at_ms=5000)]
    report = place_call(app, steps).report
    (barge,) = report.barge_ins
    assert (barge.onset_ms, barge.clear_ms, barge.heard_ms) == (1000, None, None)
    assert report.clears == 0 and report.discarded_by_clear_ms == 0
    assert any("never sent clear" in note for note in report.notes)
    as_json = report.to_dict()["barge_ins"][0]
    assert as_json["clear_ms"] is None and as_json["heard_ms"] is None


def test_the_caller_speaking_after_the_reply_or_over_silence_is_no_barge_in() -> None:
    # The reply plays out at 1020 ms; then the app sends silence frames (a quiet line),
    # and the caller speaks over them: nothing audible was queued.
    app = stream_app(paced(TONE_MULAW, 1.5, SILENCE_MULAW * 2))
    steps: list[Step] = [Silence(1600), Audio(TONE_MULAW, raw_mulaw=True), Hangup(at_ms=4000)]
    report = place_call(app, steps).report
    assert [u.onset_ms for u in report.utterances] == [1600]
    assert report.barge_ins == []


def test_a_stall_inside_a_reply_is_reported_with_its_time() -> None:
    # One reply whose second half comes 1.5 s after the first: the playout runs dry for
    # about 500 ms while the caller listens.
    app = stream_app(paced(TONE_MULAW, 1.5, TONE_MULAW))
    report = place_call(app, [Hangup(at_ms=4000)]).report
    assert len(report.replies) == 1 and report.pauses == []
    assert report.stall_at_ms == 1020
    assert report.stall_max_ms is not None and 480 <= report.stall_max_ms <= 520
    assert [(s.at_ms, s.duration_ms) for s in report.stalls] == [(1020, report.stall_max_ms)]
    playout = report.to_dict()["playout"]
    assert playout["stall_at_ms"] == 1020 and playout["stalls"][0]["at_ms"] == 1020


def test_pauses_between_replies_are_not_stalls() -> None:
    # After a clear, the next reply comes 3 s later (as pipecat and openai-agents do); a
    # reply after the caller spoke; and one after the app was quiet for 2.5 s.
    app = agent_app([TONE_MULAW * 3, TONE_MULAW, TONE_MULAW], reply_delay_s=2.8)
    steps: list[Step] = [Silence(1000), Audio(TONE_MULAW, raw_mulaw=True), Hangup(at_ms=9000)]
    report = place_call(app, steps).report
    assert report.stalls == [] and report.stall_max_ms is None
    (pause,) = report.pauses
    # Cleared at 1040 ms; the caller stops at 2000, the app hears it 200 ms later and
    # answers 2.8 s after that.
    assert pause.cause == "clear" and pause.at_ms == 1060  # the end of the clear's tick
    assert 3900 <= pause.duration_ms <= 4000
    assert report.pause_max_ms == pause.duration_ms

    quiet_then_again = stream_app(paced(TONE_MULAW, 3.5, TONE_MULAW))
    report = place_call(quiet_then_again, [Hangup(at_ms=6000)]).report
    assert report.stalls == []
    assert [p.cause for p in report.pauses] == ["idle"]

    answers = stream_app(paced(TONE_MULAW, 2.6, TONE_MULAW))  # the caller spoke meanwhile
    steps = [
        Silence(1200),
        Audio(TONE_MULAW[:4000], raw_mulaw=True),
        Hangup(at_ms=5000),
    ]
    report = place_call(answers, steps).report
    assert report.stalls == [] and report.barge_ins == []
    assert [p.cause for p in report.pauses] == ["caller"]


def test_silence_the_app_sends_inside_a_reply_is_played_not_a_stall() -> None:
    app = stream_app(paced(TONE_MULAW + SILENCE_MULAW[:4000] + TONE_MULAW))
    report = place_call(app, [Hangup(at_ms=3000)]).report
    (reply,) = report.replies
    assert reply.played_ms == 2500 and report.stalls == [] and report.stalled_ms == 0


def test_timestamps_jump_over_inbound_frames_dropped_for_congestion() -> None:
    received: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(9)  # does not read: Twilio drops the caller's audio meanwhile
        while (message := await receive())["type"] != "websocket.disconnect":
            received.append(json.loads(message["text"]))

    report = place_call(app, [Hangup(at_ms=12_000)]).report
    assert report.inbound_dropped_ms > 0
    stamps = [int(f["media"]["timestamp"]) for f in received if f["event"] == "media"]
    steps = {b - a for a, b in itertools.pairwise(stamps)}
    assert min(steps) == 20 and max(steps) == 20 + report.inbound_dropped_ms
    chunks = [int(f["media"]["chunk"]) for f in received if f["event"] == "media"]
    assert chunks == sorted(chunks) and len(set(chunks)) == len(chunks)
    assert (stamps[-1] - stamps[0]) // 20 + 1 == len(stamps) + report.inbound_dropped_ms // 20


def test_barge_in_scripted_after_the_reply_starts() -> None:
    # The caller waits for the app's second reply, and 700 ms into it talks over it.
    app = agent_app([TONE_MULAW, TONE_MULAW * 4], reply_delay_s=0.5)
    steps: list[Step] = [
        Silence(1500),
        Audio(TONE_MULAW[:4000], raw_mulaw=True),  # 1.5-2 s; the second reply from ~2.7 s
        WaitForReply(after_ms=700),
        Audio(TONE_MULAW, raw_mulaw=True),
        Hangup(at_ms=7000),
    ]
    report = place_call(app, steps).report
    (barge,) = report.barge_ins
    second = report.replies[1]
    assert barge.onset_ms - second.start_ms == 700
    assert barge.heard_ms is not None and 700 <= barge.heard_ms <= 800


def test_timed_audio_is_spoken_at_its_time_whatever_the_app_does() -> None:
    app = agent_app([TONE_MULAW * 4], clears=False)
    steps: list[Step] = [Audio(TONE_MULAW[:4000], raw_mulaw=True, at_ms=1500), Hangup(at_ms=4000)]
    report = place_call(app, steps).report
    assert [(u.onset_ms, u.end_ms) for u in report.utterances] == [(1500, 2000)]
    assert [b.onset_ms for b in report.barge_ins] == [1500]


def test_measures_from_a_recorded_timeline() -> None:
    # Two stretches of playout 300 ms apart (a stall), then a clear, then one after 2.4 s.
    talkback = Talkback(
        playout_runs=[(20, 1020, 0, 8000), (1320, 2020, 8000, 13600), (4420, 5420, 16000, 24000)],
        audible_runs=[(20, 1020), (1320, 2020), (4420, 5420)],
        clears_ms=[1900.0],
        clears_after_media=[2],
        clears_played_bytes=[12800],
        clears_discarded_bytes=[1200],
        media_ms=[0.0, 1300.0, 4400.0],
        media_bytes=[8000, 6000, 8000],
        duration_ms=6000,
    )
    found = measure(talkback, [Utterance(1700, 2500)])
    assert [(r.start_ms, r.end_ms, r.played_ms, r.clear_ms) for r in found.replies] == [
        (20, 1920, 1600.0, 1900.0),
        (1920, 2020, 100.0, None),
        (4420, 5420, 1000.0, None),
    ]
    assert [(s.at_ms, s.duration_ms) for s in found.stalls] == [(1020, 300)]
    assert [(p.at_ms, p.duration_ms, p.cause) for p in found.pauses] == [
        (1920, 0, "clear"),
        (2020, 2400, "caller"),
    ]
    (barge,) = found.barge_ins
    assert (barge.onset_ms, barge.clear_ms, barge.heard_ms, barge.discarded_ms) == (
        1700,
        1900.0,
        1600.0,
        150.0,
    )
    assert [(t.speech_end_ms, t.first_reply_ms) for t in found.turns] == [(2500, 4400.0)]


def test_the_recording_matches_the_report_for_a_cut_reply() -> None:
    # The caller hears the reply up to the clear, then silence: the recording shows it.
    result = place_call(
        agent_app([TONE_MULAW * 3]),
        [Silence(1200), Audio(TONE_MULAW[:2400], raw_mulaw=True), Hangup(at_ms=3000)],
    )
    (barge,) = result.report.barge_ins
    start_ms, end_ms = heard_run_ms(result.heard_mulaw, 1000)
    assert barge.heard_ms == end_ms - start_ms
    assert set(result.heard_mulaw[end_ms * 8 :]) == {0xFF}
    pcm = np.frombuffer(mulaw.decode(result.heard_mulaw), dtype="<i2")
    assert np.all(np.abs(pcm[start_ms * 8 : end_ms * 8]) > 1000)


def test_heard_ms_counts_every_tick_played_up_to_the_clear() -> None:
    async def behaviour(websocket: WebSocket, start: dict[str, Any]) -> None:
        await paced(TONE_MULAW * 3)(websocket, start)
        await websocket.send_text(
            json.dumps({"event": "mark", "streamSid": start["streamSid"], "mark": {"name": "a"}})
        )
        await asyncio.sleep(1.51)  # between two ticks
        await websocket.send_text(json.dumps({"event": "clear", "streamSid": start["streamSid"]}))

    steps: list[Step] = [Silence(1200), Audio(TONE_MULAW, raw_mulaw=True), Hangup(at_ms=4000)]
    report = place_call(stream_app(behaviour), steps).report
    (barge,) = report.barge_ins
    # The ticks at 20, 40, ... 1500 ms played: 1500 ms heard, 1500 ms of the 3 s discarded.
    assert (barge.clear_ms, barge.heard_ms, barge.discarded_ms) == (1510, 1500, 1500)
    assert report.marks_echoed_by_clear == 1


async def thread_sleeper(websocket: WebSocket, start: dict[str, Any]) -> None:
    """A thread of the app's own at work while the app waits: virtual time jumps meanwhile."""
    done = threading.Event()
    worker = threading.Thread(target=done.wait, args=(5.0,))
    worker.start()
    await asyncio.sleep(0.5)
    done.set()
    worker.join()
    await websocket.send_text(media(start["streamSid"], TONE_MULAW))


async def anyio_sleeper(websocket: WebSocket, start: dict[str, Any]) -> None:
    """Starlette's run_in_threadpool: anyio's worker threads, outside the loop's executor."""
    await anyio.to_thread.run_sync(time.sleep, 0.2)
    await websocket.send_text(media(start["streamSid"], TONE_MULAW))


async def executor_sleeper(websocket: WebSocket, start: dict[str, Any]) -> None:
    """``asyncio.to_thread``: the loop's executor, waited for with the clock stopped."""
    await asyncio.to_thread(time.sleep, 0.5)
    await websocket.send_text(media(start["streamSid"], TONE_MULAW))


@pytest.mark.parametrize(
    ("behaviour", "cause"),
    [
        (thread_sleeper, "thread(s) of the app's own"),
        (anyio_sleeper, "thread(s) of the app's own"),
        (executor_sleeper, "a thread of the loop's executor (time.sleep) took up to"),
    ],
)
def test_an_app_that_works_in_threads_gets_the_virtual_time_note(
    behaviour: Any, cause: str
) -> None:
    report = place_call(stream_app(behaviour), [Hangup(at_ms=3000)]).report
    (note,) = [n for n in report.notes if "virtual time" in n]
    assert cause in note and "--clock real" in note
    assert report.violations == []


def test_an_app_that_blocks_the_loop_gets_the_virtual_time_note() -> None:
    async def behaviour(websocket: WebSocket, start: dict[str, Any]) -> None:
        time.sleep(0.3)  # a blocking call in a coroutine
        await websocket.send_text(media(start["streamSid"], TONE_MULAW))

    report = place_call(stream_app(behaviour), [Hangup(at_ms=3000)]).report
    (note,) = [n for n in report.notes if "virtual time" in n]
    assert "blocked the event loop" in note and "--clock real" in note


def test_no_virtual_time_note_for_plain_apps_the_server_and_the_demo() -> None:
    from mediastreams.cli.demo import _steps
    from mediastreams.demo import handler
    from mediastreams.server import ServerConfig, create_app, echo_handler

    hello: list[Step] = [Silence(500), Audio(TONE_MULAW, raw_mulaw=True), WaitForQuiet()]
    results = [
        place_call(agent_app([TONE_MULAW * 3] * 2), [*hello, Hangup()]),
        place_call(create_app(ServerConfig(handler=echo_handler)), hello),
        place_call(
            create_app(ServerConfig(handler=handler)), _steps(), webhook_path="/incoming-call"
        ),
    ]
    for result in results:
        assert result.ok
        assert not [n for n in result.report.notes if "virtual time" in n]
    # The echo of the caller's own voice is no reply the caller talked over.
    assert results[1].report.barge_ins == []


def stuttering(chunk_ms: int, every_s: float, chunks: int, *, clear: bool = True) -> Any:
    """An app that streams its reply slower than real time (``chunk_ms`` of audio every
    ``every_s``), so the playout runs dry between chunks, and clears 100 ms after its last
    chunk (unless ``clear`` is false)."""
    parts: list[bytes | float] = []
    for _ in range(chunks):
        parts += [TONE_MULAW[: chunk_ms * 8], every_s]
    slow = paced(*parts[:-1], 0.1)

    async def behaviour(websocket: WebSocket, start: dict[str, Any]) -> None:
        await slow(websocket, start)
        if clear:
            frame = {"event": "clear", "streamSid": start["streamSid"]}
            await websocket.send_text(json.dumps(frame))

    return stream_app(behaviour)


@pytest.mark.parametrize(
    ("onset_ms", "where"), [(1440, "while audio plays"), (1540, "in a hole of the reply")]
)
def test_holes_in_a_slow_reply_under_caller_speech_are_stalls_and_the_clear_counts(
    onset_ms: int, where: str
) -> None:
    # 300 ms every 400 ms: the playout runs dry for about 100 ms after each chunk. The caller
    # talks over the reply from onset_ms; the app clears at 1.7 s, after the fifth chunk.
    # The holes while the caller speaks do not end the reply, so the clear cuts it and the
    # barge-in has it (it was reported as never cleared); an onset in a hole is a barge-in.
    steps: list[Step] = [Audio(TONE_MULAW, raw_mulaw=True, at_ms=onset_ms), Hangup(at_ms=4000)]
    report = place_call(stuttering(300, 0.4, 5), steps).report
    (barge,) = report.barge_ins
    assert barge.onset_ms == onset_ms and barge.clear_ms is not None, where
    assert 1700 <= barge.clear_ms <= 1720
    assert not any("never sent clear" in note for note in report.notes)
    (reply,) = report.replies
    assert reply.clear_ms == barge.clear_ms
    # Four holes of about 100 ms before the clear, each a stall of the reply.
    assert len(report.stalls) == 4 and 360 <= report.stalled_ms <= 440
    assert barge.heard_ms == reply.played_ms


def test_an_onset_in_a_stall_of_a_reply_that_goes_on_is_a_barge_in() -> None:
    # The same stuttering reply, never cleared: the caller starts in a hole, the reply
    # resumes and talks over the caller.
    steps: list[Step] = [Audio(TONE_MULAW, raw_mulaw=True, at_ms=1540), Hangup(at_ms=4000)]
    report = place_call(stuttering(300, 0.4, 8, clear=False), steps).report
    (barge,) = [b for b in report.barge_ins if b.onset_ms == 1540]
    assert barge.clear_ms is None
    assert any("at 1540 ms and the app never sent clear" in note for note in report.notes)


def test_a_key_press_between_two_replies_makes_a_pause_not_a_stall() -> None:
    # A reply, then the caller presses a key in the quiet after it, and the app answers it
    # 300 ms later: a pause caused by the caller (it was a 700 ms stall inside one reply).
    async def on_key(websocket: WebSocket, start: dict[str, Any]) -> None:
        await websocket.send_text(media(start["streamSid"], TONE_MULAW))

    received: list[dict[str, Any]] = []

    async def behaviour(websocket: WebSocket, start: dict[str, Any]) -> None:
        await on_key(websocket, start)
        while not any(frame["event"] == "dtmf" for frame in received):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        await on_key(websocket, start)

    steps: list[Step] = [Press("9", at_ms=1400), Hangup(at_ms=4000)]
    report = place_call(stream_app(behaviour, received=received), steps).report
    assert report.stalls == [] and report.stalled_ms == 0
    (pause,) = report.pauses
    assert pause.cause == "caller" and 600 <= pause.duration_ms <= 800
