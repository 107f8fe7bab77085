import base64

from mediastreams.inspection import MAX_UNREADABLE_KEPT, inspect_trace
from mediastreams.trace import TraceEntry, TraceError

from helpers import ProtocolPair, frame


class Recorder:
    """Carries frames across a ProtocolPair and keeps them as trace entries."""

    def __init__(self) -> None:
        self.pair = ProtocolPair()
        self.entries: list[TraceEntry | TraceError] = []
        self.t = 0.0

    def add(self, sender: str, text: str) -> None:
        self.entries.append(TraceEntry(len(self.entries) + 1, self.t, sender, text=text))  # type: ignore[arg-type]

    def twilio(self) -> None:
        for text in self.pair.twilio.data_to_send():
            self.add("twilio", text)

    def app(self) -> None:
        for text in self.pair.app.data_to_send():
            self.add("app", text)
            self.pair.twilio.receive_text(text)


def good_call() -> Recorder:
    rec = Recorder()
    rec.pair.twilio.send_connected()
    rec.pair.twilio.send_start()
    rec.twilio()
    for text in rec.pair.twilio.data_to_send():
        rec.pair.app.receive_text(text)
    for entry in list(rec.entries):
        rec.pair.app.receive_text(entry.text)  # type: ignore[union-attr]
    rec.pair.twilio.send_media(b"\x01" * 160)
    rec.twilio()
    rec.pair.app.send_media(b"\x02" * 1600)
    rec.pair.app.send_mark("end")
    rec.app()
    rec.t = 0.3
    rec.pair.twilio.play(1600)
    rec.twilio()
    rec.pair.app.send_clear()
    rec.app()
    return rec


def test_a_good_call_has_no_violations() -> None:
    result = inspect_trace(good_call().entries)
    assert result.findings == []
    summary = result.summary()  # the flat shape of earlier versions
    assert summary["marks_sent"] == 1 and summary["marks_echoed"] == 1
    assert summary["audio_ms"] == {"twilio": 20, "app": 200}
    assert summary["clears"] == 1
    assert summary["frames"] == {"twilio": 4, "app": 3}
    report = result.to_dict()
    assert report["marks"] == {"sent": 1, "echoed": 1, "echoed_by_clear": 0}
    assert report["media_bytes"] == {"twilio": 160, "app": 1600}
    assert report["frames"] == {"twilio": 4, "app": 3}
    assert report["violations"] == {"twilio": 0, "app": 0}


def test_app_mistakes_are_found_with_line_numbers() -> None:
    rec = good_call()
    sid = rec.pair.twilio.stream_sid
    rec.add("app", frame(event="media", streamSid=sid, media={"playload": "/w=="}))
    rec.add("app", frame(event="media", streamSid="MZwrong", media={"payload": "/w=="}))
    wav = base64.b64encode(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(8)).decode()
    rec.add("app", frame(event="media", streamSid=sid, media={"payload": wav}))
    rec.entries.append(TraceEntry(99, 1.0, "app", binary=b"\x00"))
    result = inspect_trace(rec.entries)
    found = [(f.violation.code, f.violation.kind, f.line) for f in result.app_findings]
    assert found == [
        (31951, "unknown-field", 8),
        (31951, "wrong-stream-sid", 9),
        (31924, "payload-has-header", 10),
        (31950, "binary-frame", 99),
    ]
    assert result.to_dict()["groups"][0]["line"] == 8
    assert result.app_violations == 4


def test_app_frames_before_start_are_too_early() -> None:
    entries = [TraceEntry(1, 0.0, "app", text=frame(event="clear", streamSid="MZx"))]
    (finding,) = inspect_trace(entries).findings
    assert finding.violation.kind == "too-early"


def test_twilio_side_mistakes_are_reported_but_not_blamed_on_the_app() -> None:
    entries = [
        TraceEntry(1, 0.0, "twilio", text=frame(event="connected", protocol="Call", version="1")),
        TraceEntry(2, 0.0, "twilio", text=frame(event="media", sequenceNumber=1)),
    ]
    result = inspect_trace(entries)
    assert [f.violation.sender for f in result.findings] == ["twilio"]
    assert result.app_findings == []


def test_buffer_overflow_is_measured_against_trace_time() -> None:
    rec = good_call()
    sid = rec.pair.twilio.stream_sid
    minute = base64.b64encode(b"\x03" * 8000 * 60).decode()
    for index in range(11):
        rec.t = 1.0 + index * 0.001
        rec.add("app", frame(event="media", streamSid=sid, media={"payload": minute}))
    codes = [f.violation.code for f in inspect_trace(rec.entries).findings]
    assert codes == [31931]


def test_unreadable_lines_are_kept() -> None:
    result = inspect_trace([TraceError(3, "cut short")])
    assert result.summary()["unreadable_lines"] == 1
    assert result.to_dict()["unreadable_lines"] == {
        "count": 1,
        "lines": [{"line": 3, "message": "cut short"}],
    }


def test_unreadable_lines_are_counted_and_the_first_kept() -> None:
    result = inspect_trace([TraceError(n, "cut short") for n in range(1, 5001)])
    assert result.unreadable == 5000 and len(result.errors) == MAX_UNREADABLE_KEPT
    everything = inspect_trace([TraceError(n, "x") for n in range(1, 5001)], examples=None)
    assert len(everything.errors) == 5000


def test_app_frames_crossing_the_stop_are_not_blamed() -> None:
    rec = good_call()
    rec.pair.twilio.send_stop()
    rec.twilio()
    sid = rec.pair.twilio.stream_sid
    rec.add("app", frame(event="mark", streamSid=sid, mark={"name": "late"}))
    result = inspect_trace(rec.entries)
    assert result.findings == []
    assert result.summary()["frames_after_stop"] == 1


def test_a_trace_time_of_1e308_is_replayed_not_overflowed() -> None:
    rec = good_call()
    sid = rec.pair.twilio.stream_sid
    rec.t = 1e308
    rec.add("app", frame(event="media", streamSid=sid, media={"payload": "/w=="}))
    result = inspect_trace(rec.entries)
    assert result.findings == [] and result.tally.media_bytes["app"] == 1601
