"""The stream itself: frames as Twilio sends them, playout, marks, clear, and every mistake."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.websockets import WebSocket

from emulator_apps import TONE_MULAW, b64, mark, media, nothing, plays, sends, stream_app
from mediastreams.audio import wav_bytes
from mediastreams.emulator import Audio, CallResult, Hangup, Press, Silence, place_call
from mediastreams.exceptions import ViolationsFound
from mediastreams.inspection import inspect_trace
from mediastreams.messages import parse
from mediastreams.trace import read_trace


def call(app: Any, steps: list[Any] | None = None, **options: Any) -> CallResult:
    return place_call(app, steps if steps is not None else [Hangup(at_ms=2000)], **options)


def kinds(result: CallResult) -> list[tuple[int, str]]:
    return [(f.violation.code, f.violation.kind) for f in result.report.findings]


def test_twilio_frames_are_as_the_docs_show() -> None:
    received: list[dict[str, Any]] = []
    app = stream_app(nothing, received=received)
    call(app, [Press("5", at_ms=100), Hangup(at_ms=1000)], parameters={"tenant": "acme"})
    assert received[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    received = received[1:]
    events = [f["event"] for f in received]
    assert events[:2] == ["start", "media"]
    start, first = received[0], received[1]
    assert start["sequenceNumber"] == "1"
    assert start["start"]["customParameters"] == {"tenant": "acme"}
    assert start["start"]["mediaFormat"] == {
        "encoding": "audio/x-mulaw",
        "sampleRate": 8000,
        "channels": 1,
    }
    for sid, prefix in (
        (start["streamSid"], "MZ"),
        (start["start"]["callSid"], "CA"),
        (start["start"]["accountSid"], "AC"),
    ):
        assert sid.startswith(prefix) and len(sid) == 34
    assert first["media"]["chunk"] == "1" and first["sequenceNumber"] == "2"
    assert first["media"]["timestamp"] != "0"
    payload = parse(json.dumps(first), sender="twilio")
    assert len(payload.payload) == 160  # type: ignore[union-attr]
    dtmf = next(f for f in received if f["event"] == "dtmf")
    assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "5"}
    assert events[-1] == "stop"
    numbers = [int(f["sequenceNumber"]) for f in received]
    assert numbers == list(range(1, len(received) + 1))  # one counter, shared by all
    media_frames = [f for f in received if f["event"] == "media"]
    assert len(media_frames) == 50  # one per 20 ms for one second


def test_connected_comes_first(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    call(stream_app(nothing), [Hangup(at_ms=100)], trace=trace)
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    first = json.loads(lines[0]["text"])
    assert first == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert lines[0]["from"] == "twilio" and lines[0]["t"] >= 0


def test_a_correct_app_has_no_violation_and_its_mark_is_echoed_after_playing() -> None:
    received: list[dict[str, Any]] = []
    app = stream_app(plays(TONE_MULAW), received=received)
    result = call(app, [Hangup(at_ms=3000)])
    assert result.report.findings == []
    assert result.report.exit_code == 0
    echo_index = next(i for i, f in enumerate(received) if f["event"] == "mark")
    # 1 s of audio is 50 ticks; the echo leaves with the tick after the last one played.
    assert 49 <= echo_index - 1 <= 52
    assert result.report.marks_sent == result.report.marks_echoed == 1
    assert result.report.audio_received_ms == 1000


def test_playload_instead_of_payload() -> None:
    frame = '{"event":"media","streamSid":"{sid}","media":{"playload":"' + b64(TONE_MULAW) + '"}}'
    result = call(stream_app(sends(frame)))
    finding = result.report.findings[0]
    assert finding.violation.code == 31951
    assert "did you mean `payload`" in finding.violation.message
    assert "Rename `media.playload` to `media.payload`" in finding.violation.hint
    assert result.report.exit_code == 1


def test_wav_header_in_the_first_payload_is_played_and_flagged() -> None:
    wav = wav_bytes(TONE_MULAW)
    result = call(stream_app(sends(media("{sid}", wav))))
    assert kinds(result) == [(31924, "payload-has-header")]
    assert "header" in result.report.findings[0].violation.hint
    assert result.report.audio_received_ms == len(wav) / 8  # Twilio plays it anyway


def test_1024_byte_chunks_of_a_mulaw_wav_file() -> None:
    wav = wav_bytes(TONE_MULAW * 2)
    result = call(stream_app(plays(wav, chunk_bytes=1024)), [Hangup(at_ms=3000)])
    assert kinds(result) == [(31924, "payload-has-header")]  # only the first chunk
    assert result.report.findings[0].line is not None


def test_a_mark_without_its_mark_object() -> None:
    result = call(stream_app(sends('{"event":"mark","streamSid":"{sid}"}')))
    violation = result.report.findings[0].violation
    assert (violation.code, violation.kind, violation.path) == (31951, "missing-field", "mark")


def test_media_with_the_wrong_stream_sid() -> None:
    result = call(stream_app(sends(media("MZ" + "0" * 32, TONE_MULAW))))
    assert kinds(result) == [(31951, "wrong-stream-sid")]
    assert "streamSid from the start frame" in result.report.findings[0].violation.hint


def test_a_binary_frame() -> None:
    result = call(stream_app(sends(TONE_MULAW[:320])))
    assert kinds(result) == [(31950, "binary-frame")]


def test_every_occurrence_is_counted_and_the_first_kept() -> None:
    result = call(stream_app(sends(*[TONE_MULAW[:160]] * 5)))
    report = result.report
    assert kinds(result) == [(31950, "binary-frame")]  # each kind once: its first occurrence
    assert report.violation_count == 5 and len(report.violations) == 1
    (group,) = report.to_dict()["groups"]
    assert group["count"] == 5 and group["line"] == report.findings[0].line
    assert group["lines"] == [group["line"]]
    assert group["frame"] == b64(TONE_MULAW[:160])  # the first frame's bytes, base64
    assert report.to_dict()["violations"] == {"twilio": 0, "app": 5}
    assert report.to_dict()["binary_frames"] == {"twilio": 0, "app": 5}


def test_clear_with_marks_pending_echoes_them_at_once_in_order() -> None:
    received: list[dict[str, Any]] = []

    async def behaviour(websocket: WebSocket, start: dict[str, Any]) -> None:
        sid = start["streamSid"]
        for name in ("a", "b", "c"):
            await websocket.send_text(media(sid, TONE_MULAW))
            await websocket.send_text(mark(sid, name))
        await asyncio.sleep(0.5)
        await websocket.send_text(json.dumps({"event": "clear", "streamSid": sid}))

    result = call(stream_app(behaviour, received=received), [Hangup(at_ms=5000)])
    echoes = [(f["mark"]["name"], int(f["sequenceNumber"])) for f in received if "mark" in f]
    assert [name for name, _ in echoes] == ["a", "b", "c"]
    assert [number for _, number in echoes] == sorted(number for _, number in echoes)
    assert result.report.marks_echoed_by_clear == 3
    assert result.report.findings == []
    # The clear came after 0.5 s: that much was played, the rest dropped.
    assert 480 <= result.report.audio_played_ms <= 540


def test_barge_in_clear_reaction_and_audio_after_clear() -> None:
    async def behaviour(websocket: WebSocket, start: dict[str, Any]) -> None:
        sid = start["streamSid"]
        await websocket.send_text(media(sid, TONE_MULAW * 5))
        await asyncio.sleep(1.25)  # the caller starts talking at 1.0 s
        await websocket.send_text(json.dumps({"event": "clear", "streamSid": sid}))
        await websocket.send_text(media(sid, TONE_MULAW[:800]))  # stale audio: a mistake

    steps = [Silence(1000), Audio(TONE_MULAW, raw_mulaw=True), Hangup(at_ms=4000)]
    result = call(stream_app(behaviour), steps)
    (barge,) = result.report.barge_ins
    assert barge.onset_ms == 1000
    assert barge.clear_reaction_ms == 250
    assert barge.audio_after_clear_ms == 100


def test_turn_latency_from_the_end_of_speech_to_the_reply() -> None:
    async def behaviour(websocket: WebSocket, start: dict[str, Any]) -> None:
        await asyncio.sleep(1.3)  # the caller stops at 1.0 s; the answer comes 300 ms later
        await websocket.send_text(media(start["streamSid"], TONE_MULAW))

    steps = [Audio(TONE_MULAW, raw_mulaw=True), Hangup(at_ms=3000)]
    result = call(stream_app(behaviour), steps)
    (turn,) = result.report.turns
    assert (turn.speech_end_ms, turn.latency_ms) == (1000, 300)
    assert result.report.time_to_first_audio_ms == 1300


def test_more_than_ten_minutes_buffered_is_discarded_with_31931_once() -> None:
    minute = b"\xff" * 8000 * 60

    async def behaviour(websocket: WebSocket, start: dict[str, Any]) -> None:
        for _ in range(12):
            await websocket.send_text(media(start["streamSid"], minute))

    result = call(stream_app(behaviour), [Hangup(at_ms=1000)])
    assert kinds(result) == [(31931, "buffer-overflow")]


def test_the_app_closing_with_an_error_code_is_31921() -> None:
    async def behaviour(websocket: WebSocket, start: dict[str, Any]) -> None:
        await websocket.close(code=1011)

    result = call(stream_app(behaviour), [Hangup(at_ms=2000)])
    assert kinds(result) == [(31921, "close-error")]
    assert result.report.ended_by == "app"


def test_the_app_crashing_is_reported_with_its_error() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise RuntimeError("boom")

    result = call(app)
    (finding,) = result.report.findings
    assert finding.violation.code == 31921
    assert "RuntimeError: boom" in finding.violation.message


def test_an_app_crashing_before_it_accepts_is_31920_with_its_error() -> None:
    # A server answers the upgrade with 500 (Twilio: 31920); the error is in the finding.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("no database")

    result = call(app)
    assert kinds(result) == [(31920, "handshake-refused")]
    violation = result.report.findings[0].violation
    assert "HTTP 500" in violation.message
    assert "the handler raised RuntimeError: no database" in violation.message
    assert "Fix the error in the WebSocket handler" in violation.hint
    assert result.report.exit_code == 2


def test_an_app_that_never_accepts_times_out_as_31901() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(3600)

    result = call(app)
    assert kinds(result) == [(31901, "connection-timeout")]
    assert result.report.exit_code == 2


def test_an_app_that_refuses_the_upgrade_is_31920() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 1008})

    result = call(app)
    assert kinds(result) == [(31920, "handshake-refused")]
    assert "HTTP 403" in result.report.findings[0].violation.message


def test_hang_up_when_the_app_goes_quiet() -> None:
    result = call(stream_app(plays(TONE_MULAW)), [])
    # The script is empty: the caller waits for 2 s of quiet after the app's 1 s of audio.
    assert result.report.ended_by == "caller"
    assert 3000 <= result.report.duration_ms <= 3100


def test_the_recording_holds_what_the_caller_heard() -> None:
    result = call(stream_app(plays(TONE_MULAW)), [Hangup(at_ms=2000)])
    heard = result.heard_mulaw
    assert len(heard) == 2000 * 8
    # The app answers `start` within the first tick, so its audio starts with the second.
    assert heard[160:8160] == TONE_MULAW
    assert set(heard[:160] + heard[8160:]) == {0xFF}


def test_inspect_finds_twilios_side_faultless_and_agrees_on_the_counts(tmp_path: Path) -> None:
    async def behaviour(websocket: WebSocket, start: dict[str, Any]) -> None:
        sid = start["streamSid"]
        for name in ("a", "b"):
            await websocket.send_text(media(sid, TONE_MULAW))
            await websocket.send_text(mark(sid, name))
        await asyncio.sleep(0.5)
        await websocket.send_text(json.dumps({"event": "clear", "streamSid": sid}))
        await websocket.send_text(media(sid, TONE_MULAW))
        await websocket.send_text(mark(sid, "c"))

    trace = tmp_path / "call.jsonl"
    steps = [Audio(TONE_MULAW, raw_mulaw=True), Press("7"), Hangup(at_ms=3000)]
    result = call(stream_app(behaviour), steps, trace=trace)
    with trace.open() as lines:
        inspection = inspect_trace(read_trace(lines))
    assert inspection.findings == [] and result.report.findings == []
    summary = inspection.summary()
    assert (summary["marks_sent"], summary["marks_echoed"]) == (3, 3)
    assert result.report.marks_echoed == 3 and result.report.marks_echoed_by_clear == 2


def test_advice_on_habits_that_are_not_violations() -> None:
    result = call(
        stream_app(plays(TONE_MULAW, with_mark=False)),
        [Silence(500), Audio(TONE_MULAW, raw_mulaw=True), Hangup(at_ms=2500)],
    )
    assert result.report.findings == []
    notes = " ".join(result.report.notes)
    assert "no mark" in notes and "never sent clear" in notes


APP_ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("media"), st.integers(1, 4000)),
        st.tuples(st.just("mark"), st.integers(0, 0)),
        st.tuples(st.just("clear"), st.integers(0, 0)),
        st.tuples(st.just("sleep"), st.integers(1, 400)),
    ),
    max_size=25,
)


@settings(max_examples=25, deadline=None)
@given(actions=APP_ACTIONS)
def test_any_app_behaviour_keeps_twilios_invariants(actions: list[tuple[str, int]]) -> None:
    received: list[dict[str, Any]] = []
    sent_marks: list[str] = []

    async def behaviour(websocket: WebSocket, start: dict[str, Any]) -> None:
        sid = start["streamSid"]
        for number, (action, size) in enumerate(actions):
            if action == "media":
                await websocket.send_text(media(sid, bytes([0x10, 0x90]) * (size // 2 + 1)))
            elif action == "mark":
                sent_marks.append(f"m{number}")
                await websocket.send_text(mark(sid, f"m{number}"))
            elif action == "clear":
                await websocket.send_text(json.dumps({"event": "clear", "streamSid": sid}))
            else:
                await asyncio.sleep(size / 1000)

    # Long enough for everything sent to play out: at most 25 x 4000 bytes = 12.5 s.
    result = call(stream_app(behaviour, received=received), [Hangup(at_ms=30_000)])
    assert result.report.findings == []
    numbers = [int(f["sequenceNumber"]) for f in received if "sequenceNumber" in f]
    assert numbers == list(range(1, len(numbers) + 1))
    echoed = [f["mark"]["name"] for f in received if f["event"] == "mark"]
    assert echoed == sent_marks  # every mark echoed once, in the order sent
    report = result.report
    assert report.marks_echoed == len(sent_marks)
    assert report.audio_played_ms <= report.audio_received_ms
    if "clear" not in [action for action, _ in actions]:
        assert report.audio_played_ms == report.audio_received_ms


def test_an_app_that_stops_reading_gets_its_inbound_audio_dropped_with_31930() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(3600)  # never reads again

    result = call(app, [Hangup(at_ms=10_000)])
    assert kinds(result) == [(31930, "inbound-congestion")]
    assert 3000 <= result.report.inbound_dropped_ms <= 5000


def test_a_frame_that_crosses_the_callers_stop_is_not_a_violation(tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    async def late_mark(websocket: WebSocket) -> None:
        await websocket.accept()
        sid = ""
        while True:
            frame = json.loads(await websocket.receive_text())
            if frame["event"] == "start":
                sid = frame["streamSid"]
            elif frame["event"] == "stop":  # as if the mark was already on the wire
                await websocket.send_text(mark(sid, "late"))
                return

    trace = tmp_path / "t.jsonl"
    app = Starlette(routes=[WebSocketRoute("/media-stream", late_mark)])
    result = place_call(app, [Hangup(at_ms=100)], trace=trace)
    assert result.report.violations == [] and result.report.exit_code == 0
    assert result.report.frames_after_stop == 1
    with trace.open() as lines:  # inspect agrees
        assert inspect_trace(read_trace(lines)).summary()["frames_after_stop"] == 1


def test_a_finding_reads_as_a_sentence() -> None:
    playload = '{"event":"media","streamSid":"{sid}","media":{"playload":"/w=="}}'
    result = call(stream_app(sends(playload)))
    (finding,) = result.report.violations
    text = str(finding)
    where = f"line {finding.line}, {finding.t:.3f} s: app: "
    assert text.startswith(where + "31951 Protocol - Invalid Message: unknown field")
    assert "did you mean `payload`?" in text and "Rename" in text


def test_raise_for_violations_lists_every_kind_once_with_its_count() -> None:
    playload = '{"event":"media","streamSid":"{sid}","media":{"playload":"/w=="}}'
    result = call(stream_app(sends(playload, playload, playload, TONE_MULAW[:160])))
    with pytest.raises(ViolationsFound) as raised:
        result.raise_for_violations()
    error = raised.value
    assert isinstance(error, AssertionError)  # a test fails with it, as with an assert
    assert [f.violation.code for f in error.findings] == [31951, 31950]
    lines = str(error).splitlines()
    assert lines[0].endswith("the app made 4 mistake(s), 2 kind(s)")
    assert lines[1] == f"- {error.findings[0]}, and 2 more like it"
    assert lines[2] == f"- {error.findings[1]}"
    call(stream_app(plays(TONE_MULAW))).raise_for_violations()  # a good app: nothing raised


def test_raise_for_violations_when_the_call_could_not_be_placed() -> None:
    result = place_call("ws://127.0.0.1:9/media-stream", [Hangup(at_ms=100)])
    with pytest.raises(ViolationsFound, match="the call could not be placed"):
        result.raise_for_violations()


def test_findings_memory_stays_bounded_however_long_a_bad_call_runs() -> None:
    # 2,000 bad frames of 40 KB each: one finding kept (its frame cut), every one counted.
    big = '{"event":"media","streamSid":"{sid}","media":{"playload":"' + "A" * 40_000 + '"}}'

    async def flood(websocket: WebSocket, start: dict[str, Any]) -> None:
        bad = big.replace("{sid}", start["streamSid"])
        for _ in range(2000):
            await websocket.send_text(bad)

    report = call(stream_app(flood), [Hangup(at_ms=3000)]).report
    assert report.violation_count == 2000 and not report.ok
    (finding,) = report.findings
    assert len(finding.violation.frame or "") <= 4096
    (group,) = report.to_dict()["groups"]
    assert group["count"] == 2000 and len(group["frame"]) == 1000
