"""One tally of what both sides read: the counts inspect and the emulator print."""

from mediastreams.diagnostics import Violation
from mediastreams.protocol import AppProtocol, TwilioProtocol
from mediastreams.tally import MAX_GROUPS, Tally

from helpers import MZ, frame


def sides() -> tuple[TwilioProtocol, AppProtocol, Tally]:
    twilio, app, tally = TwilioProtocol(stream_sid=MZ), AppProtocol(), Tally()
    twilio.send_connected()
    twilio.send_start()
    for text in twilio.data_to_send():
        tally.read("twilio", text, app.receive(text))
    return twilio, app, tally


def carry(twilio: TwilioProtocol, app: AppProtocol, tally: Tally) -> None:
    for text in app.data_to_send():
        tally.read("app", text, twilio.receive(text))


def test_a_call_is_counted_both_ways() -> None:
    twilio, app, tally = sides()
    twilio.send_media(b"\x01" * 160)
    for text in twilio.data_to_send():
        tally.read("twilio", text, app.receive(text))
    app.send_media(b"\x02" * 320)
    app.send_mark("a")
    app.send_media(b"\x02" * 160)
    app.send_mark("b")
    carry(twilio, app, tally)
    twilio.play(320)  # "a" is echoed
    for text in twilio.data_to_send():
        tally.read("twilio", text, app.receive(text))
    app.send_clear()  # "b" is echoed by the clear
    carry(twilio, app, tally)
    report = tally.to_dict()
    assert report["frames"] == {"twilio": 4, "app": 5}
    assert report["media_bytes"] == {"twilio": 160, "app": 480}
    assert report["audio_ms"] == {"twilio": 20, "app": 60}
    assert report["marks"] == {"sent": 2, "echoed": 1, "echoed_by_clear": 1}
    assert report["clears"] == 1
    assert report["violations"] == {"twilio": 0, "app": 0} and report["groups"] == []


def test_violations_are_grouped_with_the_first_example() -> None:
    twilio, _, tally = sides()
    bad = frame(event="media", streamSid=MZ, media={"playload": "/w=="})
    for line in range(10, 20):
        tally.read("app", bad, twilio.receive(bad), line=line, t=line / 10)
    tally.read("app", b"\x00", twilio.receive(b"\x00"), line=30)
    (playload, binary) = tally.to_dict()["groups"]
    assert (playload["kind"], playload["count"], playload["line"], playload["t"]) == (
        "unknown-field",
        10,
        10,
        1.0,
    )
    assert (binary["code"], binary["count"], binary["lines"]) == (31950, 1, [30])
    assert tally.to_dict()["binary_frames"] == {"twilio": 0, "app": 1}
    assert tally.to_dict()["by_code"] == {"31950": 1, "31951": 10}


def test_frames_after_stop_are_counted_not_reported() -> None:
    twilio, _, tally = sides()
    twilio.send_stop()
    late = frame(event="mark", streamSid=MZ, mark={"name": "late"})
    tally.read("app", late, twilio.receive(late))
    assert tally.frames_after_stop == 1 and tally.violations == 0
    assert tally.marks_sent == 0


def test_memory_is_bounded_however_long_the_call() -> None:
    tally = Tally()
    for n in range(MAX_GROUPS + 500):
        violation = Violation(
            31951,
            kind="unknown-field",
            sender="app",
            message="x",
            hint="",
            frame="x" * 10_000,
            path=f"k{n}",
        )
        tally.found(violation, line=n)
        tally.found(violation, line=n)
    assert len(tally.groups) == MAX_GROUPS and tally.ungrouped == 1000
    assert tally.violations == 2 * (MAX_GROUPS + 500)
    group = next(iter(tally.groups.values()))
    assert group.count == 2 and len(group.examples) == 1
    assert len(group.first.violation.frame or "") == 4096


def test_examples_none_keeps_every_one() -> None:
    tally = Tally(examples=None)
    violation = Violation(31951, kind="k", sender="app", message="m", hint="h")
    for line in range(50):
        tally.found(violation, line=line)
    (group,) = tally.groups.values()
    assert [f.line for f in group.examples] == list(range(50))
