"""The pacer alone, with no event loop: frames and marks out, echoes in, outcomes out."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediastreams import pacing
from mediastreams.pacing import MarkResolved, Outcome, Pacer, Resolved
from mediastreams.protocol import AppProtocol, TwilioProtocol


def media(items: object) -> list[bytes]:
    return [item for item in items if isinstance(item, bytes)]  # type: ignore[attr-defined]


def marks(items: object) -> list[str]:
    return [item for item in items if isinstance(item, str)]  # type: ignore[attr-defined]


def one_play(pacer: Pacer, play_id: int, audio: bytes) -> None:
    pacer.add_play(play_id)
    pacer.add_audio(play_id, audio)
    pacer.end_source(play_id)


def test_no_event_loop_is_needed() -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    assert not hasattr(pacing, "asyncio")  # the module does not even import it
    pacer = Pacer()
    one_play(pacer, 1, b"\x01" * 320)
    assert [len(p) for p in media(pacer.frames_to_send())] == [160, 160]


def test_settings_must_be_consistent() -> None:
    with pytest.raises(ValueError, match="frame_ms <= mark_interval_ms <= lead_ms"):
        Pacer(frame_ms=20, mark_interval_ms=10, lead_ms=1000)
    with pytest.raises(ValueError):
        Pacer(frame_ms=20, mark_interval_ms=200, lead_ms=100)


def test_the_lead_bounds_what_goes_out_and_echoes_free_room() -> None:
    pacer = Pacer(frame_ms=20, lead_ms=400, mark_interval_ms=100)
    progress = pacer.add_play(1)
    pacer.add_audio(1, b"\x01" * 8 * 2000)  # 2 s
    pacer.end_source(1)
    out = pacer.frames_to_send()
    assert sum(map(len, media(out))) == 400 * 8
    assert pacer.lead_ms == 400 and progress.sent_bytes == 3200
    assert pacer.frames_to_send() == ()  # nothing more until Twilio confirms
    assert pacer.on_echo("_ms:1:100") is True
    assert progress.played_bytes == 800
    assert sum(map(len, media(pacer.frames_to_send()))) == 100 * 8  # exactly the room freed
    assert pacer.lead_ms == 400


def test_marks_every_interval_and_a_final_one() -> None:
    pacer = Pacer(frame_ms=20, lead_ms=1000, mark_interval_ms=200)
    one_play(pacer, 7, b"\x01" * 8 * 700)
    out = pacer.frames_to_send()
    assert marks(out) == ["_ms:7:200", "_ms:7:400", "_ms:7:600", "_ms:7:700"]
    # Each mark follows the frame that completes its interval.
    assert out.index("_ms:7:200") == 10 and out.index("_ms:7:400") == 21
    assert out[-1] == "_ms:7:700" and isinstance(out[-2], bytes)


def test_the_last_frame_is_not_padded() -> None:
    pacer = Pacer()
    one_play(pacer, 1, b"\x01" * 170)
    assert [len(p) for p in media(pacer.frames_to_send())] == [160, 10]


def test_a_play_resolves_when_its_final_mark_is_echoed() -> None:
    pacer = Pacer()
    one_play(pacer, 1, b"\x01" * 1600)
    out = pacer.frames_to_send()
    assert marks(out) == ["_ms:1:200"]
    assert pacer.resolved() == ()
    pacer.on_echo("_ms:1:200")
    assert pacer.resolved() == [Resolved(1, Outcome.PLAYED, played_bytes=1600, sent_bytes=1600)]
    assert pacer.pending() == []


def test_plays_go_out_in_order_and_audio_arrives_in_pieces() -> None:
    pacer = Pacer()
    pacer.add_play(1)
    pacer.add_play(2)
    pacer.add_audio(2, b"\x02" * 160)  # the second play's audio waits for the first
    pacer.add_audio(1, b"\x01" * 100)
    assert pacer.frames_to_send() == ()  # less than a frame, and the source goes on
    pacer.add_audio(1, b"\x01" * 100)
    assert media(pacer.frames_to_send()) == [b"\x01" * 160]
    pacer.end_source(1)
    pacer.end_source(2)
    out = pacer.frames_to_send()
    assert out == [b"\x01" * 40, "_ms:1:25", b"\x02" * 160, "_ms:2:20"]


def test_a_clear_interrupts_and_its_echoes_do_not_count_as_played() -> None:
    pacer = Pacer(frame_ms=20, lead_ms=1000, mark_interval_ms=200)
    first = pacer.add_play(1)
    pacer.add_audio(1, b"\x01" * 8 * 800)
    pacer.end_source(1)
    pacer.add_play(2)
    pacer.add_audio(2, b"\x02" * 8 * 400)
    pacer.end_source(2)
    sent = marks(pacer.frames_to_send())
    assert sent == ["_ms:1:200", "_ms:1:400", "_ms:1:600", "_ms:1:800", "_ms:2:200"]
    pacer.on_echo("_ms:1:200")  # 200 ms played before the caller barged in
    assert pacer.pending() == [1, 2]
    pacer.clear()
    assert pacer.resolved() == [
        Resolved(1, Outcome.INTERRUPTED, played_bytes=1600, sent_bytes=6400),
        Resolved(2, Outcome.INTERRUPTED, played_bytes=0, sent_bytes=1600),
    ]
    # Twilio echoes every pending mark when it clears: they are discarded audio.
    for name in sent[1:]:
        assert pacer.on_echo(name) is True
    assert first.played_bytes == 1600
    assert pacer.resolved() == ()
    assert pacer.lead_ms == 0  # Twilio's buffer is empty again: the next play has the lead


def test_echoes_after_a_clear_count_for_the_plays_after_it() -> None:
    pacer = Pacer(frame_ms=20, lead_ms=400, mark_interval_ms=200)
    one_play(pacer, 1, b"\x01" * 8 * 1000)
    old = marks(pacer.frames_to_send())
    pacer.clear()
    pacer.resolved()
    one_play(pacer, 2, b"\x02" * 8 * 300)
    new = marks(pacer.frames_to_send())
    assert new == ["_ms:2:200", "_ms:2:300"]
    for name in old:  # late echoes of the cleared marks, mixed in with the new ones
        pacer.on_echo(name)
    pacer.on_echo(new[0])
    assert pacer.resolved() == ()
    pacer.on_echo(new[1])
    assert pacer.resolved() == [Resolved(2, Outcome.PLAYED, played_bytes=2400, sent_bytes=2400)]


def test_clear_generations_keep_apart_marks_of_the_same_name() -> None:
    pacer = Pacer()
    one_play(pacer, 1, b"\x01" * 160)
    pacer.add_mark(2, "after")
    assert marks(pacer.frames_to_send()) == ["_ms:1:20", "after"]
    pacer.clear()
    pacer.add_mark(3, "after")  # same name, new generation
    assert pacer.frames_to_send() == ["after"]
    pacer.resolved()
    pacer.on_echo("after")  # the echo the clear caused: the first mark was discarded
    pacer.on_echo("after")  # the echo of the second, played
    assert pacer.resolved() == [
        MarkResolved(2, Outcome.INTERRUPTED),
        MarkResolved(3, Outcome.PLAYED),
    ]


def test_user_marks_wait_behind_the_plays_queued_before_them() -> None:
    pacer = Pacer(frame_ms=20, lead_ms=200, mark_interval_ms=100)
    one_play(pacer, 1, b"\x01" * 8 * 400)
    pacer.add_mark(2, "after-hello")
    out = pacer.frames_to_send()
    assert "after-hello" not in out  # the play has not all gone out yet
    assert pacer.on_echo("after-hello") is False  # an echo of a mark never sent: ignored
    pacer.on_echo("_ms:1:100")
    pacer.on_echo("_ms:1:200")
    out = pacer.frames_to_send()
    assert marks(out)[-2:] == ["_ms:1:400", "after-hello"]
    assert pacer.on_echo("after-hello") is False  # the app's own: it sees the Mark event
    assert pacer.resolved() == [MarkResolved(2, Outcome.PLAYED)]


def test_a_mark_queued_at_a_clear_is_interrupted_unsent() -> None:
    pacer = Pacer(frame_ms=20, lead_ms=200, mark_interval_ms=100)
    one_play(pacer, 1, b"\x01" * 8 * 400)
    pacer.add_mark(2, "after")
    pacer.frames_to_send()
    pacer.clear()
    assert MarkResolved(2, Outcome.INTERRUPTED) in pacer.resolved()
    assert "after" not in pacer.frames_to_send()


def test_an_empty_source_resolves_as_played_in_its_turn() -> None:
    pacer = Pacer()
    one_play(pacer, 1, b"\x01" * 160)
    pacer.add_play(2)
    pacer.end_source(2)
    out = pacer.frames_to_send()
    assert marks(out) == ["_ms:1:20"]  # the empty play sends nothing, not even a mark
    assert pacer.resolved() == [Resolved(2, Outcome.PLAYED, played_bytes=0, sent_bytes=0)]
    assert pacer.pending() == [1]


def test_a_failed_source_resolves_at_once_and_the_next_play_goes_on() -> None:
    pacer = Pacer()
    pacer.add_play(1)
    pacer.add_audio(1, b"\x01" * 200)
    pacer.add_play(2)
    pacer.add_audio(2, b"\x02" * 160)
    pacer.end_source(2)
    assert media(pacer.frames_to_send()) == [b"\x01" * 160]
    pacer.fail_source(1)
    assert pacer.resolved() == [Resolved(1, Outcome.FAILED, played_bytes=0, sent_bytes=160)]
    pacer.add_audio(1, b"\x01" * 160)  # a source that still yields is ignored
    pacer.end_source(1)
    assert pacer.frames_to_send() == [b"\x02" * 160, "_ms:2:20"]
    pacer.fail_source(2)  # too late: its audio is out, only the echo can resolve it
    assert pacer.resolved() == [Resolved(2, Outcome.FAILED, played_bytes=0, sent_bytes=160)]
    assert pacer.pending() == []


def test_the_end_of_the_stream_resolves_everything_as_ended() -> None:
    pacer = Pacer(frame_ms=20, lead_ms=200, mark_interval_ms=100)
    one_play(pacer, 1, b"\x01" * 8 * 100)
    pacer.add_mark(2, "sent")
    one_play(pacer, 3, b"\x03" * 8 * 400)
    pacer.add_mark(4, "queued")
    pacer.frames_to_send()
    pacer.end()
    assert pacer.resolved() == [
        Resolved(1, Outcome.ENDED, played_bytes=0, sent_bytes=800),
        Resolved(3, Outcome.ENDED, played_bytes=0, sent_bytes=800),
        MarkResolved(2, Outcome.ENDED),
        MarkResolved(4, Outcome.ENDED),
    ]
    assert pacer.frames_to_send() == ()
    pacer.on_echo("_ms:1:100")
    assert pacer.resolved() == ()


def test_a_live_source_keeps_at_most_its_backlog() -> None:
    pacer = Pacer(frame_ms=20, lead_ms=200, mark_interval_ms=100)
    progress = pacer.add_play(1, max_backlog_ms=300)
    for i in range(100):  # 2 s arriving before any room frees
        pacer.add_audio(1, bytes([i]) * 160)
        pacer.frames_to_send()
    assert progress.sent_bytes == 200 * 8
    assert progress.dropped_bytes == (2000 - 200 - 300) * 8
    pacer.on_echo("_ms:1:200")
    # The newest 300 ms waited, nothing older; 200 ms of it fits in the room freed.
    assert media(pacer.frames_to_send()) == [bytes([i]) * 160 for i in range(85, 95)]


def test_paced_against_twilio_playout_the_caller_hears_every_byte() -> None:
    """Both sans-I/O ends and the pacer, turned by hand: no socket, no loop, no clock."""
    twilio = TwilioProtocol()
    twilio.send_connected()
    twilio.send_start()
    app = AppProtocol()
    for frame in twilio.data_to_send():
        app.receive_text(frame)
    pacer = Pacer(frame_ms=20, lead_ms=400, mark_interval_ms=100)
    audio = bytes(range(256)) * 40  # 1.28 s
    one_play(pacer, 1, audio[:5000])
    one_play(pacer, 2, audio[5000:])
    heard = bytearray()
    outcomes: list[Resolved | MarkResolved] = []
    for _ in range(1000):
        for item in pacer.frames_to_send():
            if isinstance(item, bytes):
                app.send_media(item)
            else:
                app.send_mark(item)
        for frame in app.data_to_send():
            twilio.receive_text(frame)
        # The lead holds in Twilio's buffer: a frame goes out while there is room for any
        # of it, and a play's short last frame puts the next ones off the 20 ms grid.
        assert twilio.buffered_ms < 400 + 20
        heard += twilio.play(160)
        for frame in twilio.data_to_send():
            echo = app.receive_text(frame)
            pacer.on_echo(echo.name)  # type: ignore[union-attr]
        outcomes += pacer.resolved()
        if len(outcomes) == 2:
            break
    assert bytes(heard) == audio
    assert [(r.play_id, r.outcome) for r in outcomes] == [  # type: ignore[union-attr]
        (1, Outcome.PLAYED),
        (2, Outcome.PLAYED),
    ]


operations = st.lists(
    st.one_of(
        st.tuples(st.just("audio"), st.integers(0, 2), st.integers(0, 900)),
        st.tuples(st.just("end"), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("fail"), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("echo"), st.just(0), st.just(0)),
        st.tuples(st.just("clear"), st.just(0), st.just(0)),
        st.tuples(st.just("mark"), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_every_play_and_mark_resolves_once_and_the_lead_holds(
    ops: list[tuple[str, int, int]],
) -> None:
    pacer = Pacer(frame_ms=20, lead_ms=200, mark_interval_ms=100)
    plays = [1, 2, 3]
    for play_id in plays:
        pacer.add_play(play_id)
    mark_ids = iter(range(100, 200))
    added_marks: list[int] = []
    sent_marks: list[str] = []
    resolved: list[Resolved | MarkResolved] = []
    for op, index, size in ops:
        play_id = plays[index]
        if op == "audio":
            pacer.add_audio(play_id, b"\x01" * size)
        elif op == "end":
            pacer.end_source(play_id)
        elif op == "fail":
            pacer.fail_source(play_id)
        elif op == "echo" and sent_marks:
            pacer.on_echo(sent_marks.pop(0))
        elif op == "clear":
            pacer.clear()
        elif op == "mark":
            added_marks.append(next(mark_ids))
            pacer.add_mark(added_marks[-1], "m")
        sent_marks += marks(pacer.frames_to_send())
        assert pacer.sent_bytes - pacer.confirmed_bytes < (200 + 20) * 8  # within a frame
        resolved += pacer.resolved()
    pacer.end()
    resolved += pacer.resolved()
    play_ids = [r.play_id for r in resolved if isinstance(r, Resolved)]
    assert sorted(play_ids) == plays  # each play exactly once
    assert sorted(r.mark_id for r in resolved if isinstance(r, MarkResolved)) == added_marks
    assert all(r.outcome is not Outcome.PENDING for r in resolved)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.sampled_from([160, 160, 160, 80, 320]).map(lambda n: ("audio", n)),
            st.just(("echo", 0)),
            st.just(("clear", 0)),
        ),
        max_size=120,
    ),
    lead_ms=st.sampled_from([200, 400, 1000]),
)
def test_pass_through_sends_what_add_audio_would(
    steps: list[tuple[str, int]], lead_ms: int
) -> None:
    """A relay's frames sent as they are (pass_through) or queued (add_audio, then
    frames_to_send) come out the same: the same payloads, marks, counts and outcomes."""
    plain, fast = Pacer(lead_ms=lead_ms), Pacer(lead_ms=lead_ms)
    out: dict[int, list[object]] = {0: [], 1: []}
    passed = 0
    play_id = 1
    for pacer in (plain, fast):
        pacer.add_play(play_id)
    for index, (kind, size) in enumerate(steps):
        if kind == "audio":
            chunk = bytes([index % 251]) * size
            plain.add_audio(play_id, chunk)
            out[0] += plain.frames_to_send()
            if fast.pass_through(play_id, chunk):
                passed += 1
                out[1].append(chunk)
            else:
                fast.add_audio(play_id, chunk)
                out[1] += fast.frames_to_send()
        elif kind == "echo":
            for side, pacer in ((0, plain), (1, fast)):
                sent = marks(out[side])
                if sent:
                    pacer.on_echo(sent[0])
                    out[side].remove(sent[0])
                out[side] += pacer.frames_to_send()
        else:
            for pacer in (plain, fast):
                pacer.clear()
                pacer.add_play(play_id + 1)
            play_id += 1
    for pacer in (plain, fast):
        pacer.end_source(play_id)
    out[0] += plain.frames_to_send()
    out[1] += fast.frames_to_send()
    assert media(out[0]) == media(out[1])
    assert marks(out[0]) == marks(out[1])
    assert (plain.sent_bytes, plain.confirmed_bytes) == (fast.sent_bytes, fast.confirmed_bytes)
    assert plain.resolved() == fast.resolved()
    assert passed <= sum(1 for kind, size in steps if kind == "audio" and size == 160)


def test_pass_through_refuses_what_it_cannot_send_whole() -> None:
    pacer = Pacer(lead_ms=200, mark_interval_ms=200)
    pacer.add_play(1)
    assert pacer.pass_through(1, b"\x01" * 160)
    assert not pacer.pass_through(1, b"\x01" * 80)  # not one frame
    assert not pacer.pass_through(1, bytearray(160))  # not bytes: it could change later
    assert not pacer.pass_through(2, b"\x01" * 160)  # no such play
    for _ in range(8):
        assert pacer.pass_through(1, b"\x01" * 160)
    assert not pacer.pass_through(1, b"\x01" * 160)  # the 10th frame: its mark falls due
    pacer.add_audio(1, b"\x01" * 160)
    assert marks(pacer.frames_to_send()) == ["_ms:1:200"]
    assert not pacer.pass_through(1, b"\x01" * 160)  # the lead is full
    assert pacer.sent_bytes == 1600
