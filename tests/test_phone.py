"""The phone without a browser: its resampler, caller and timeline, and its page server on
127.0.0.1 driven over the WebSocket as the page drives it."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from emulator_apps import TONE_MULAW, mark, media, plays, sends, stream_app
from mediastreams.audio import FRAME_BYTES, SILENCE_BYTE, resample_int16
from mediastreams.emulator.asgi import ASGIApp
from mediastreams.phone import LiveCaller, LiveTimeline, Phone, run_phone
from mediastreams.phone.caller import (
    INBOUND_HEADROOM_BYTES,
    INBOUND_PREFILL_BYTES,
)
from mediastreams.phone.resampler import LiveResampler
from mediastreams.server import ServerConfig, create_app, echo_handler
from mediastreams.violations import Finding, Violation
from phone_harness import best_correlation, mediastreams, prompt_pcm
from waiting import DEADLINE_S, wait_for

SILENCE = bytes([SILENCE_BYTE]) * FRAME_BYTES


# --- the resampler ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("input_rate", "output_rate", "chunk"),
    [(48_000, 8000, 480), (44_100, 8000, 441), (44_100, 8000, 128), (8000, 48_000, 160)],
)
def test_live_resampling_matches_resampling_the_whole(
    input_rate: int, output_rate: int, chunk: int
) -> None:
    speech = resample_int16(prompt_pcm("caller-request"), 8000, input_rate)
    whole = resample_int16(speech, input_rate, output_rate).astype(np.float64)
    resampler = LiveResampler(input_rate, output_rate)
    pieces = [resampler.process(speech[i : i + chunk]) for i in range(0, len(speech), chunk)]
    live = np.concatenate(pieces).astype(np.float64)
    # Up to the last 20 ms (still waiting for what follows), sample for sample.
    assert len(whole) - len(live) <= output_rate // 50 + chunk * output_rate // input_rate
    error = live - whole[: len(live)]
    assert 10 * np.log10((whole[: len(live)] ** 2).sum() / (error**2).sum()) > 60


def test_live_resampling_keeps_up_block_by_block() -> None:
    resampler = LiveResampler(48_000, 8000)
    sizes = [len(resampler.process(np.zeros(480, dtype=np.int16))) for _ in range(10)]
    # One 10 ms block of delay: nothing for the first chunk, then 10 ms for each.
    assert sizes == [0] + [80] * 9


@pytest.mark.parametrize(("rate", "problem"), [(0, "positive"), (44_056, "share no period")])
def test_live_resampling_refuses_rates_it_cannot_step(rate: int, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        LiveResampler(rate, 8000)


# --- the caller ---------------------------------------------------------------------------


def tone(duration_ms: int, rate: int = 16_000, level: float = 0.3) -> bytes:
    t = np.arange(duration_ms * rate // 1000) / rate
    return (np.sin(2 * np.pi * 440 * t) * level * 32767).astype("<i2").tobytes()


def run_ticks(caller: LiveCaller, start_ms: int, count: int) -> list[tuple[bytes, str, bool]]:
    return [caller.tick(start_ms + 20 * n, quiet_ms=0, app_spoke=False) for n in range(count)]


def test_the_caller_sends_the_microphone_once_a_frame_and_the_prefill_are_in() -> None:
    caller = LiveCaller(16_000)
    assert run_ticks(caller, 0, 1)[0] == (SILENCE, "", False)
    caller.feed(tone(20))  # 10 ms of it still waits in the resampler: not enough yet
    assert run_ticks(caller, 20, 1)[0][0] == SILENCE
    caller.feed(tone(20))
    frame, _, _ = run_ticks(caller, 40, 1)[0]
    assert frame != SILENCE and len(frame) == FRAME_BYTES
    assert caller.underruns == 0


def test_the_caller_fills_up_again_after_running_dry() -> None:
    caller = LiveCaller(16_000)
    caller.feed(tone(50))
    frames = [frame for frame, _, _ in run_ticks(caller, 0, 4)]
    assert [f == SILENCE for f in frames] == [False, False, True, True]
    assert caller.underruns == 1
    caller.feed(tone(10))  # less than a frame and the prefill: it waits
    assert run_ticks(caller, 80, 1)[0][0] == SILENCE


def test_the_caller_drops_what_lags_too_far_behind() -> None:
    caller = LiveCaller(16_000)
    caller.feed(tone(800))
    assert caller.dropped_ms == pytest.approx(800 - 10 - (FRAME_BYTES + INBOUND_PREFILL_BYTES) / 8)
    assert len(caller._inbound) <= INBOUND_PREFILL_BYTES + INBOUND_HEADROOM_BYTES


def test_running_dry_grows_the_prefill_to_the_dry_spell_and_steady_seconds_shrink_it() -> None:
    caller = LiveCaller(16_000)
    caller.feed(tone(50))
    run_ticks(caller, 0, 2)  # 40 ms out, 10 ms wait in the buffer
    assert caller.underruns == 0
    run_ticks(caller, 40, 6)  # runs dry for 6 ticks (120 ms) before audio comes again
    caller.feed(tone(20))
    assert caller.underruns == 1 and caller.prefill_bytes == 7 * FRAME_BYTES  # and a frame
    for n in range(20):  # a short dry spell: a frame more at least
        caller.feed(tone(20))
        run_ticks(caller, 200 + 40 * n, 2)
    assert caller.prefill_bytes >= 8 * FRAME_BYTES
    caller.feed(tone(400))
    grown, sent = caller.prefill_bytes, []
    for n in range(600):  # then 12 s of a steady flow: two steps back
        caller.feed(tone(20))
        sent.append(run_ticks(caller, 1000 + 20 * n, 1)[0][0])
    assert caller.prefill_bytes == grown - 2 * FRAME_BYTES
    assert all(frame != SILENCE for frame in sent[50:])


def test_the_caller_trims_delay_that_lasts_at_a_quiet_frame() -> None:
    caller = LiveCaller(16_000)
    caller.feed(tone(70))  # a burst: 60 ms buffered
    sent = []
    for n in range(60):  # then a steady flow, 20 ms per tick: 60 ms stay buffered
        caller.feed(tone(20) if n < 50 else bytes(640))
        frame, _, _ = caller.tick(20 * n, quiet_ms=0, app_spoke=False)
        sent.append(frame)
        if n < 52:  # a second has passed at n = 49, but the caller is speaking
            assert caller.dropped_ms == 0
    # At the first quiet frame, all but the prefill (as a steady flow leaves it) is dropped.
    assert caller.dropped_ms == 60 - INBOUND_PREFILL_BYTES / 8
    assert all(frame != SILENCE for frame in sent)  # and nothing ran dry


def test_keys_mute_and_hang_up() -> None:
    caller = LiveCaller(16_000)
    caller.press("1#")
    caller.press("5")
    assert run_ticks(caller, 0, 2) == [(SILENCE, "1#5", False), (SILENCE, "", False)]
    with pytest.raises(ValueError, match="keypad"):
        caller.press("A")
    caller.mute(True)
    caller.feed(tone(200))
    assert run_ticks(caller, 40, 10) == [(SILENCE, "", False)] * 10
    caller.mute(False)
    caller.hang_up()
    assert run_ticks(caller, 240, 1)[0][2] is True
    with pytest.raises(ValueError, match="half a sample"):
        caller.feed(b"\x00")


def test_the_caller_speech_is_cut_into_utterances() -> None:
    caller = LiveCaller(16_000)
    for n in range(50):  # 400 ms of speech, then silence, 20 ms per tick
        caller.feed(tone(20, level=0.5) if n < 20 else bytes(640))
        caller.tick(20 * n, quiet_ms=0, app_spoke=False)
        if n == 10:
            assert caller.speaking_since_ms is not None and caller.speech == []
    assert caller.speaking_since_ms is None
    [utterance] = caller.speech
    # 400 ms, and the resampler's last ringing above the speech level.
    assert 400 <= utterance.end_ms - utterance.onset_ms <= 440


# --- the timeline -------------------------------------------------------------------------


class Recorded:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(json.loads(json.dumps(event)))  # as the page gets it

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


def test_a_clear_shows_what_it_discarded_and_the_marks_it_echoed() -> None:
    events = Recorded()
    caller = LiveCaller(16_000)
    timeline = LiveTimeline(events, caller)
    timeline.frame(0.001, "app", media("MZ1", TONE_MULAW[:800]))  # 100 ms
    timeline.frame(0.002, "app", mark("MZ1", "a"))
    timeline.frame(0.003, "app", mark("MZ1", "b"))
    for n in range(2):
        timeline.tick(20 * n, SILENCE, TONE_MULAW[:FRAME_BYTES])
    timeline.frame(0.045, "app", json.dumps({"event": "clear", "streamSid": "MZ1"}))
    [clear] = events.of("clear")
    assert clear == {
        "type": "clear",
        "t": 45.0,
        "discarded_ms": 60.0,
        "heard_ms": 40.0,
        "marks_echoed": 2,
    }
    assert [m["name"] for m in events.of("mark")] == ["a", "b"]
    [tick, _] = events.of("tick")
    assert tick["t"] == 0 and max(tick["heard"]) > 0.2 and tick["caller"] == [0.0] * 4


def test_turns_and_barge_ins_as_they_happen() -> None:
    events = Recorded()
    caller = LiveCaller(16_000)
    timeline = LiveTimeline(events, caller)

    def tick(now_ms: int, speaking: bool) -> None:
        # The page's microphone sends all the time: speech, or silence.
        caller.feed(tone(20, level=0.5) if speaking else bytes(640))
        frame, _, _ = caller.tick(now_ms, quiet_ms=0, app_spoke=False)
        timeline.tick(now_ms, frame, SILENCE)

    for n in range(40):  # the caller speaks, then is quiet: an utterance
        tick(20 * n, speaking=n < 15)
    [speech] = events.of("speech")
    timeline.frame(0.9, "app", media("MZ1", TONE_MULAW))  # the app answers: 1 s of audio
    [turn] = events.of("turn")
    assert turn["speech_end_ms"] == speech["end_ms"]
    assert turn["latency_ms"] == pytest.approx(900 - speech["end_ms"])
    for n in range(45, 55):  # the caller talks over the answer
        tick(20 * n, speaking=True)
    [barge] = events.of("barge-in")
    assert barge["clear_ms"] is None and barge["heard_before_ms"] > 0
    timeline.frame(1.1, "app", json.dumps({"event": "clear", "streamSid": "MZ1"}))
    opened, cleared = events.of("barge-in")
    assert cleared["onset_ms"] == opened["onset_ms"] and cleared["clear_ms"] == 1100.0
    assert cleared["clear_reaction_ms"] == pytest.approx(1100 - opened["onset_ms"])
    assert cleared["heard_ms"] + cleared["discarded_ms"] == 1000


def test_a_key_pressed_while_nothing_plays_starts_a_new_reply() -> None:
    """As the report counts replies: what a clear says was heard is of the reply after the
    key, not of the one before it (however short the pause between them)."""
    events = Recorded()
    caller = LiveCaller(16_000)
    timeline = LiveTimeline(events, caller)
    timeline.frame(0.0, "app", media("MZ1", TONE_MULAW[:1600]))  # a 200 ms prompt
    for n in range(20):  # it plays out; 200 ms of quiet follow
        timeline.tick(20 * n, SILENCE, SILENCE)
    key = {"track": "inbound_track", "digit": "5"}
    dtmf = {"event": "dtmf", "streamSid": "MZ1", "sequenceNumber": "30", "dtmf": key}
    timeline.frame(0.4, "twilio", json.dumps(dtmf))
    assert [e["digit"] for e in events.of("dtmf")] == ["5"]
    timeline.frame(0.42, "app", media("MZ1", TONE_MULAW[:1600]))  # the answer to the key
    for n in range(21, 26):  # 100 ms of it play
        timeline.tick(20 * n, SILENCE, SILENCE)
    timeline.frame(0.52, "app", json.dumps({"event": "clear", "streamSid": "MZ1"}))
    [clear] = events.of("clear")
    assert clear["heard_ms"] == 100.0 and clear["discarded_ms"] == 100.0
    # Without the key, the same pause is a stall inside one reply.
    events = Recorded()
    timeline = LiveTimeline(events, LiveCaller(16_000))
    timeline.frame(0.0, "app", media("MZ1", TONE_MULAW[:1600]))
    for n in range(20):
        timeline.tick(20 * n, SILENCE, SILENCE)
    timeline.frame(0.42, "app", media("MZ1", TONE_MULAW[:1600]))
    for n in range(21, 26):
        timeline.tick(20 * n, SILENCE, SILENCE)
    timeline.frame(0.52, "app", json.dumps({"event": "clear", "streamSid": "MZ1"}))
    assert events.of("clear")[0]["heard_ms"] == 300.0


def test_violations_come_with_code_and_hint() -> None:
    events = Recorded()
    timeline = LiveTimeline(events, LiveCaller(16_000))
    timeline.tick(0, SILENCE, SILENCE)
    violation = Violation(31951, kind="unknown-field", sender="app", message="m", hint="h")
    timeline.finding(Finding(violation, 3, 0.01))
    assert events.of("violation") == [
        {
            "type": "violation",
            "t": 0.0,
            "code": 31951,
            "kind": "unknown-field",
            "sender": "app",
            "message": "m",
            "hint": "h",
        }
    ]


# --- the page server ----------------------------------------------------------------------


@contextmanager
def phone_server(target: str | ASGIApp, out_dir: Path, **options: Any) -> Iterator[str]:
    """``run_phone`` on a free port of 127.0.0.1, in a thread: the page's URL. Leaving
    cancels it, as Ctrl-C does."""
    options.setdefault("lifespan", False)
    phone = Phone(target, "the app", options, out_dir)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    loop = asyncio.new_event_loop()
    task: asyncio.Task[None] | None = None

    def serve() -> None:
        nonlocal task
        task = loop.create_task(run_phone(phone, sock))
        loop.run_until_complete(task)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        wait_for(lambda: task is not None, "the page server's task")
        assert task is not None
        loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout=60)
        assert not thread.is_alive()
        loop.close()
        sock.close()


def page_socket(url: str, origin: str | None = None) -> ClientConnection:
    ws = url.replace("http://", "ws://") + "ws"
    return connect(ws, origin=origin or url.rstrip("/"), open_timeout=30)  # type: ignore[arg-type]


def events_until(page: ClientConnection, kind: str, timeout_s: float = DEADLINE_S) -> list[Any]:
    """Every message (events as dicts, audio as bytes) up to the first event of ``kind``."""
    deadline = time.monotonic() + timeout_s
    seen: list[Any] = []
    while True:
        message = page.recv(timeout=max(0.01, deadline - time.monotonic()))
        seen.append(message if isinstance(message, bytes) else json.loads(message))
        if isinstance(seen[-1], dict) and seen[-1]["type"] == kind:
            return seen


def speak(page: ClientConnection, pcm: bytes, rate: int) -> None:
    """Send ``pcm`` as the page does, 10 ms at a time, in real time."""
    chunk = rate // 100 * 2
    started = time.monotonic()
    for number, offset in enumerate(range(0, len(pcm), chunk)):
        page.send(pcm[offset : offset + chunk])
        time.sleep(max(0.0, started + (number + 1) / 100 - time.monotonic()))


def test_a_call_from_the_page_to_the_echo_server(tmp_path: Path) -> None:
    echo = create_app(ServerConfig(handler=echo_handler))
    words = resample_int16(prompt_pcm("caller-request")[:12_000], 8000, 16_000)
    with phone_server(echo, tmp_path) as url, page_socket(url) as page:
        assert events_until(page, "ready")[-1] == {
            "type": "ready",
            "target": "the app",
            "keys": "0123456789*#",
        }
        page.send(json.dumps({"type": "hello", "sample_rate": 16_000}))
        page.send(json.dumps({"type": "call"}))
        events_until(page, "start")
        # Twice: on a busy machine a late chunk can cut a hole in the first pass, before the
        # caller's jitter buffer has grown to cover such delays.
        speak(page, (words.tobytes() + bytes(8000)) * 2, 16_000)
        page.send(json.dumps({"type": "dtmf", "digit": "9"}))
        page.send(json.dumps({"type": "hangup"}))
        messages = events_until(page, "report")
        assert events_until(page, "state")[-1]["state"] == "ended"
        files = {f["name"]: httpx.get(url + f["url"], timeout=10) for f in messages[-1]["files"]}
    report = messages[-1]["report"]
    assert report["ended_by"] == "caller" and report["groups"] == []
    assert "call placed" in messages[-1]["text"] and "Timing" in messages[-1]["text"]
    assert [e["digit"] for e in messages if isinstance(e, dict) and e["type"] == "dtmf"] == ["9"]
    # What the caller heard came back as the page's audio: the echo of the words (whole in
    # one pass at least).
    heard = np.frombuffer(b"".join(m for m in messages if isinstance(m, bytes)), dtype="<i2")
    assert best_correlation(heard, words[4000:12_000])[0] > 0.9
    assert {name: r.status_code for name, r in files.items()} == dict.fromkeys(files, 200)
    assert files["report.json"].json()["call_sid"] == report["call_sid"]
    assert (tmp_path / "call-1" / "trace.jsonl").read_bytes() == files["trace.jsonl"].content


def test_live_violations_reach_the_page(tmp_path: Path) -> None:
    app = stream_app(sends('{"event":"mark","streamSid":"{sid}","mark":{"nam":"x"}}'))
    with phone_server(app, tmp_path) as url, page_socket(url) as page:
        page.send(json.dumps({"type": "hello", "sample_rate": 48_000}))
        page.send(json.dumps({"type": "call"}))
        violation = events_until(page, "violation")[-1]
        page.send(json.dumps({"type": "hangup"}))
        report = events_until(page, "report")[-1]["report"]
    assert violation["code"] == 31951 and violation["sender"] == "app" and violation["hint"]
    assert report["exit_code"] == 1 and report["groups"][0]["code"] == 31951


def test_the_app_playing_shows_on_the_timeline_and_mute_silences_the_caller(
    tmp_path: Path,
) -> None:
    with phone_server(stream_app(plays(TONE_MULAW)), tmp_path) as url, page_socket(url) as page:
        page.send(json.dumps({"type": "hello", "sample_rate": 16_000}))
        page.send(json.dumps({"type": "call"}))
        messages = events_until(page, "start")
        page.send(json.dumps({"type": "mute", "muted": True}))
        messages += events_until(page, "muted")
        assert messages[-1]["muted"] is True
        speak(page, tone(300, level=0.5), 16_000)
        while not any(m["type"] == "mark" and m["echo"] for m in messages if isinstance(m, dict)):
            messages += events_until(page, "mark")  # echoed once the app's second has played
        page.send(json.dumps({"type": "hangup"}))
        messages += events_until(page, "report")
    assert [m["echo"] for m in messages if isinstance(m, dict) and m["type"] == "mark"] == [
        False,
        True,
    ]
    ticks = [m for m in messages if isinstance(m, dict) and m["type"] == "tick"]
    assert max(max(t["heard"]) for t in ticks) > 0.2
    assert max(max(t["caller"]) for t in ticks) == 0.0
    assert messages[-1]["report"]["marks"]["echoed"] == 1


def test_commands_that_cannot_be_followed_say_why(tmp_path: Path) -> None:
    app = stream_app(plays(TONE_MULAW))
    with phone_server(app, tmp_path) as url, page_socket(url) as page:
        sent = [
            '{"type": "call"}',
            '{"type": "hello", "sample_rate": 44056}',
            '{"type": "hello", "sample_rate": "fast"}',
            "not json",
            '{"type": "dance"}',
        ]
        for text in sent:
            page.send(text)
        errors = [events_until(page, "error")[-1]["message"] for _ in sent]
        page.send(json.dumps({"type": "hello", "sample_rate": 16_000}))
        page.send(json.dumps({"type": "call"}))
        page.send(json.dumps({"type": "call"}))
        page.send(json.dumps({"type": "dtmf", "digit": "x"}))
        errors += [events_until(page, "error")[-1]["message"] for _ in range(2)]
        page.send(json.dumps({"type": "hangup"}))
        events_until(page, "report")
    assert "say hello" in errors[0]
    assert "share no period" in errors[1]
    assert "expected an integer" in errors[2]
    assert "not a command" in errors[3]
    assert "unknown command 'dance'" in errors[4]
    assert "hang up first" in errors[5]
    assert "keypad" in errors[6]


def test_hanging_up_before_the_stream_starts(tmp_path: Path) -> None:
    with socket.socket() as silent:  # a webhook that never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        webhook = f"http://127.0.0.1:{silent.getsockname()[1]}/incoming-call"
        # The webhook would time out long after the deadline: the report comes from the
        # hang-up, not from the webhook giving up.
        options = {"open_timeout_s": 10 * DEADLINE_S}
        with phone_server(webhook, tmp_path, **options) as url, page_socket(url) as page:
            page.send(json.dumps({"type": "hello", "sample_rate": 16_000}))
            page.send(json.dumps({"type": "call"}))
            assert events_until(page, "state")[-1]["state"] == "calling"
            page.send(json.dumps({"type": "hangup"}))
            report = events_until(page, "report")[-1]["report"]
    assert report["ended_by"] == "interrupted" and report["streams"] == []


def test_only_this_machine_s_pages_are_served(tmp_path: Path) -> None:
    with phone_server(stream_app(plays(TONE_MULAW)), tmp_path) as url:
        assert "<title>mediastreams phone</title>" in httpx.get(url, timeout=10).text
        assert httpx.get(url + "static/audio-worklets.js", timeout=10).status_code == 200
        rebound = httpx.get(url, headers={"Host": "evil.example"}, timeout=10)
        assert rebound.status_code == 400
        with pytest.raises(InvalidStatus):  # another site's page in the same browser
            page_socket(url, origin="http://evil.example")
        for name in ("call-1/report.json", "call-1/../../etc/passwd", "x/trace.jsonl"):
            assert httpx.get(url + "files/" + name, timeout=10).status_code == 404


def test_the_page_going_away_hangs_up(tmp_path: Path) -> None:
    with phone_server(stream_app(plays(TONE_MULAW)), tmp_path) as url:
        with page_socket(url) as page:
            page.send(json.dumps({"type": "hello", "sample_rate": 16_000}))
            page.send(json.dumps({"type": "call"}))
            events_until(page, "start")
        deadline = time.monotonic() + 30
        while not (tmp_path / "call-1" / "report.json").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    report = json.loads((tmp_path / "call-1" / "report.json").read_text())
    assert report["ended_by"] == "caller"


# --- the command --------------------------------------------------------------------------


def test_the_command_refuses_what_it_cannot_call(tmp_path: Path) -> None:
    process = mediastreams("phone", "no_such_module:app", "--no-browser")
    assert process.wait() == 2
    assert "cannot import 'no_such_module'" in process.output()
    assert "Traceback" not in process.output()


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = mediastreams("phone", "ws://127.0.0.1:9/x", "--no-browser", "--port", str(port))
        assert process.wait() == 2
    assert f"cannot listen on 127.0.0.1:{port}" in process.output()
    assert "Traceback" not in process.output()


def test_ctrl_c_hangs_up_and_keeps_the_report(tmp_path: Path) -> None:
    (tmp_path / "echoapp.py").write_text(
        "from mediastreams.server import ServerConfig, create_app, echo_handler\n"
        "app = create_app(ServerConfig(handler=echo_handler))\n"
    )
    out = tmp_path / "out"
    process = mediastreams(
        "phone", "echoapp:app", "--webhook-path", "/incoming-call", "--no-browser", "--out",
        str(out), cwd=tmp_path,
    )  # fmt: skip
    try:
        url = process.wait_for_line(r"^(http://127\.0\.0\.1:\d+/)$")[1]
        with page_socket(url) as page:
            page.send(json.dumps({"type": "hello", "sample_rate": 16_000}))
            page.send(json.dumps({"type": "call"}))
            events_until(page, "start")
            process.popen.send_signal(signal.SIGINT)
            report = events_until(page, "report")[-1]["report"]
        status = process.wait()  # the one Ctrl-C stops it
    finally:
        process.stop()
    assert status == 0, process.output()
    assert report["ended_by"] == "interrupted"
    assert json.loads((out / "call-1" / "report.json").read_text())["ended_by"] == "interrupted"
    assert "Timing" in process.output() and "Traceback" not in process.output()


def test_the_page_needs_nothing_from_the_network() -> None:
    from importlib import resources

    static = resources.files("mediastreams.phone").joinpath("static")
    names = sorted(entry.name for entry in static.iterdir())
    assert names == [
        "audio-worklets.js",
        "index.html",
        "link-worker.js",
        "phone.css",
        "phone.js",
        "timeline.js",
    ]
    for name in names:
        text = static.joinpath(name).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
