"""The two state machines, text in and events out, and back to back through ProtocolPair."""

import json

import pytest

from mediastreams.exceptions import LocalProtocolError, ProtocolError, RemoteProtocolError
from mediastreams.messages import DTMF, Clear, Connected, Mark, Media, Start, Stop, UnknownMessage
from mediastreams.protocol import (
    CONNECTED,
    CONNECTING,
    STOPPED,
    STREAMING,
    AfterStop,
    AppProtocol,
    Received,
    TwilioProtocol,
)

from helpers import AC, CA, MZ, ProtocolPair, frame, twilio_media

START = frame(
    event="start",
    sequenceNumber="1",
    streamSid=MZ,
    start={
        "accountSid": AC,
        "streamSid": MZ,
        "callSid": CA,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    },
)
CONNECTED_FRAME = frame(event="connected", protocol="Call", version="1.0.0")


def streaming_app() -> AppProtocol:
    app = AppProtocol()
    app.receive_text(CONNECTED_FRAME)
    app.receive_text(START)
    return app


# --- the app's side --------------------------------------------------------------------------


def test_app_states_through_a_call() -> None:
    app = AppProtocol()
    assert app.state is CONNECTING
    assert app.receive_text(CONNECTED_FRAME) == Connected()
    assert app.state is CONNECTED
    start = app.receive_text(START)
    assert isinstance(start, Start) and app.start == start
    assert app.state is STREAMING and app.stream_sid == MZ
    assert isinstance(app.receive_text(twilio_media()), Media)
    stop = frame(
        event="stop", sequenceNumber="3", streamSid=MZ, stop={"accountSid": AC, "callSid": CA}
    )
    assert isinstance(app.receive_text(stop), Stop)
    assert app.state is STOPPED


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([START], "start before connected"),
        ([CONNECTED_FRAME, twilio_media()], "media before start"),
        ([CONNECTED_FRAME, CONNECTED_FRAME], "connected before start"),
        ([CONNECTED_FRAME, START, START], "start a second time"),
    ],
)
def test_app_refuses_frames_out_of_order(frames: list[str], message: str) -> None:
    app = AppProtocol()
    for text in frames[:-1]:
        app.receive_text(text)
    state = app.state
    with pytest.raises(RemoteProtocolError) as caught:
        app.receive_text(frames[-1])
    assert caught.value.violation.message == message
    assert caught.value.violation.sender == "twilio"
    assert app.state is state  # the frame is ignored, nothing changes


def test_app_refuses_frames_after_stop() -> None:
    app = streaming_app()
    stop = frame(
        event="stop", sequenceNumber="2", streamSid=MZ, stop={"accountSid": AC, "callSid": CA}
    )
    app.receive_text(stop)
    with pytest.raises(RemoteProtocolError, match="after stop"):
        app.receive_text(twilio_media())


def test_the_streaming_sid_is_known_from_start_to_stop_only() -> None:
    app = AppProtocol()
    assert app.streaming_sid is None
    app.receive_text(CONNECTED_FRAME)
    assert app.streaming_sid is None
    app.receive_text(START)
    assert app.streaming_sid == MZ
    app.receive_text(
        frame(
            event="stop", sequenceNumber="3", streamSid=MZ, stop={"accountSid": AC, "callSid": CA}
        )
    )
    assert app.streaming_sid is None
    closed = streaming_app()
    closed.close()
    assert closed.streaming_sid is None


def test_a_frame_parsed_elsewhere_gets_the_same_checks() -> None:
    from mediastreams.messages import parse

    app = AppProtocol()
    with pytest.raises(RemoteProtocolError, match="before connected"):
        app.receive_parsed(parse(twilio_media()), twilio_media())  # type: ignore[arg-type]
    app = streaming_app()
    other = twilio_media(sid="MZ" + "9" * 32)
    with pytest.raises(RemoteProtocolError) as caught:
        app.receive_parsed(parse(other), other)  # type: ignore[arg-type]
    assert caught.value.violation.kind == "wrong-stream-sid"


def test_app_refuses_a_stream_sid_that_changes() -> None:
    app = streaming_app()
    with pytest.raises(RemoteProtocolError) as caught:
        app.receive_text(twilio_media(sid="MZ" + "9" * 32))
    assert caught.value.violation.kind == "wrong-stream-sid"


def test_app_binary_frame_is_remote_31950() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        streaming_app().receive_bytes(b"\x00")
    assert caught.value.code == 31950


def test_app_unknown_event_is_an_event() -> None:
    app = streaming_app()
    message = app.receive_text(frame(event="future", streamSid=MZ))
    assert isinstance(message, UnknownMessage) and message.event == "future"


def test_app_cannot_send_before_start() -> None:
    app = AppProtocol()
    with pytest.raises(LocalProtocolError) as caught:
        app.send_media(b"\xff")
    assert caught.value.violation.kind == "too-early"
    app.receive_text(CONNECTED_FRAME)
    with pytest.raises(LocalProtocolError):
        app.send_mark("x")
    with pytest.raises(LocalProtocolError):
        app.send_clear()


def test_app_cannot_send_after_stop_or_close() -> None:
    app = streaming_app()
    app.close()
    with pytest.raises(LocalProtocolError) as caught:
        app.send_clear()
    assert caught.value.violation.kind == "after-stop"


def test_app_send_media_frames_are_exact() -> None:
    app = streaming_app()
    app.send_media(b"\xff\xfe")
    app.send_mark("m")
    app.send_clear()
    assert app.data_to_send() == [
        '{"event":"media","streamSid":"' + MZ + '","media":{"payload":"//4="}}',
        '{"event":"mark","streamSid":"' + MZ + '","mark":{"name":"m"}}',
        '{"event":"clear","streamSid":"' + MZ + '"}',
    ]
    assert app.data_to_send() == []


def test_app_refuses_a_wav_header_and_empty_payload() -> None:
    app = streaming_app()
    with pytest.raises(LocalProtocolError) as caught:
        app.send_media(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    assert caught.value.code == 31924
    with pytest.raises(LocalProtocolError):
        app.send_media(b"")
    with pytest.raises(LocalProtocolError):
        app.send_mark("")
    assert app.data_to_send() == []


def test_app_matches_mark_echoes() -> None:
    app = streaming_app()
    app.send_mark("a")
    app.send_mark("b")
    assert app.pending_marks == ("a", "b")
    app.receive_text(frame(event="mark", sequenceNumber="5", streamSid=MZ, mark={"name": "a"}))
    assert app.pending_marks == ("b",)
    with pytest.raises(RemoteProtocolError) as caught:
        app.receive_text(frame(event="mark", sequenceNumber="6", streamSid=MZ, mark={"name": "z"}))
    assert caught.value.violation.kind == "unknown-mark"


def test_protocol_error_is_abstract() -> None:
    with pytest.raises(TypeError):
        ProtocolError(None)  # type: ignore[arg-type]


# --- Twilio's side ---------------------------------------------------------------------------


def test_twilio_counters_follow_the_capture() -> None:
    twilio = TwilioProtocol(first_timestamp_ms=52)
    twilio.send_connected()
    twilio.send_start()
    twilio.send_media(b"\xff" * 160)
    twilio.send_media(b"\xff" * 160)
    twilio.send_dtmf("7")
    twilio.send_stop()
    frames = [json.loads(text) for text in twilio.data_to_send()]
    assert [f["event"] for f in frames] == ["connected", "start", "media", "media", "dtmf", "stop"]
    assert "sequenceNumber" not in frames[0]
    assert [f["sequenceNumber"] for f in frames[1:]] == ["1", "2", "3", "4", "5"]
    assert [(f["media"]["chunk"], f["media"]["timestamp"]) for f in frames[2:4]] == [
        ("1", "52"),
        ("2", "72"),
    ]
    assert len(frames[2]["media"]["payload"]) == 216  # 160 bytes of base64
    assert frames[4]["dtmf"] == {"track": "inbound_track", "digit": "7"}


def test_twilio_sids_have_twilio_form() -> None:
    twilio = TwilioProtocol()
    for sid, prefix in [
        (twilio.start.stream_sid, "MZ"),
        (twilio.start.call_sid, "CA"),
        (twilio.start.account_sid, "AC"),
    ]:
        assert sid.startswith(prefix) and len(sid) == 34


def test_twilio_send_order_is_enforced() -> None:
    twilio = TwilioProtocol()
    with pytest.raises(LocalProtocolError):
        twilio.send_start()
    twilio.send_connected()
    with pytest.raises(LocalProtocolError):
        twilio.send_media(b"\xff")
    twilio.send_start()
    with pytest.raises(LocalProtocolError):
        twilio.send_dtmf("x")
    with pytest.raises(LocalProtocolError):
        twilio.send_media(b"")
    twilio.send_stop()
    with pytest.raises(LocalProtocolError):
        twilio.send_stop()


def test_twilio_refuses_app_frames_before_start() -> None:
    twilio = TwilioProtocol()
    twilio.send_connected()
    text = frame(event="clear", streamSid=twilio.stream_sid)
    with pytest.raises(RemoteProtocolError) as caught:
        twilio.receive_text(text)
    assert caught.value.violation.kind == "too-early"


def test_twilio_refuses_app_frames_after_stop() -> None:
    pair = ProtocolPair()
    pair.open()
    pair.twilio.send_stop()
    with pytest.raises(RemoteProtocolError) as caught:
        pair.twilio.receive_text(frame(event="clear", streamSid=pair.twilio.stream_sid))
    assert caught.value.violation.kind == "after-stop"


def test_twilio_refuses_a_wrong_stream_sid() -> None:
    pair = ProtocolPair()
    pair.open()
    with pytest.raises(RemoteProtocolError) as caught:
        pair.twilio.receive_text(frame(event="media", streamSid=MZ, media={"payload": "/w=="}))
    assert caught.value.violation.kind == "wrong-stream-sid"
    assert caught.value.violation.sender == "app"
    assert pair.twilio.buffered_bytes == 0


def test_twilio_binary_frame_from_app() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        TwilioProtocol().receive_bytes(b"\x01")
    assert caught.value.code == 31950


# --- back to back ------------------------------------------------------------------------------


def test_pair_opens_and_carries_start() -> None:
    pair = ProtocolPair(custom_parameters={"tenant": "acme"})
    connected, start = pair.open()
    assert connected == Connected()
    assert isinstance(start, Start)
    assert start.custom_parameters == {"tenant": "acme"}
    assert pair.app.stream_sid == pair.twilio.stream_sid


def test_pair_caller_audio_and_dtmf_reach_the_app() -> None:
    pair = ProtocolPair()
    pair.open()
    pair.twilio.send_media(b"\x01" * 160)
    pair.twilio.send_dtmf("#")
    media, dtmf = pair.twilio_to_app()
    assert isinstance(media, Media) and media.payload == b"\x01" * 160
    assert isinstance(dtmf, DTMF) and dtmf.digit == "#"


def test_pair_mark_echoed_at_once_when_nothing_is_buffered() -> None:
    pair = ProtocolPair()
    pair.open()
    pair.app.send_mark("now")
    pair.app_to_twilio()
    (echo,) = pair.twilio_to_app()
    assert isinstance(echo, Mark) and echo.name == "now" and echo.sequence_number == 2
    assert pair.app.pending_marks == ()


def test_pair_mark_echoed_when_the_audio_before_it_has_played() -> None:
    pair = ProtocolPair()
    pair.open()
    pair.app.send_media(b"\x01" * 200)
    pair.app.send_mark("a")
    pair.app.send_media(b"\x02" * 100)
    pair.app.send_mark("b")
    pair.app_to_twilio()
    assert pair.twilio.buffered_ms == 37.5
    assert pair.twilio.pending_marks == ("a", "b")
    assert pair.twilio.play(160) == b"\x01" * 160
    assert pair.twilio_to_app() == []
    # The next 40 bytes finish the audio before "a": it is echoed with that tick.
    assert pair.twilio.play(160) == b"\x01" * 40 + b"\x02" * 100
    echoes = pair.twilio_to_app()
    assert [m.name for m in echoes if isinstance(m, Mark)] == ["a", "b"]
    assert pair.twilio.play(160) == b""
    assert pair.app.pending_marks == ()


def test_pair_clear_empties_buffer_and_echoes_pending_marks_in_order() -> None:
    pair = ProtocolPair()
    pair.open()
    for index in range(3):
        pair.app.send_media(b"\x05" * 160)
        pair.app.send_mark(f"m{index}")
    pair.app_to_twilio()
    pair.twilio.play(160)  # plays the first frame: m0 echoed
    assert [m.name for m in pair.twilio_to_app() if isinstance(m, Mark)] == ["m0"]
    pair.app.send_clear()
    (clear,) = pair.app_to_twilio()
    assert isinstance(clear, Clear)
    echoes = pair.twilio_to_app()
    assert [m.name for m in echoes if isinstance(m, Mark)] == ["m1", "m2"]
    seqs = [m.sequence_number for m in echoes if isinstance(m, Mark)]
    assert seqs == sorted(seqs)
    assert pair.twilio.buffered_bytes == 0 and pair.twilio.play(160) == b""
    assert pair.twilio.marks_echoed_by_clear == 2
    assert pair.app.pending_marks == ()


def test_pair_clear_after_everything_played_is_harmless() -> None:
    pair = ProtocolPair()
    pair.open()
    pair.app.send_media(b"\x05" * 80)
    pair.app.send_mark("end")
    pair.app_to_twilio()
    pair.twilio.play(160)
    pair.twilio_to_app()
    pair.app.send_clear()
    pair.app_to_twilio()
    assert pair.twilio_to_app() == []


def test_pair_media_after_clear_plays() -> None:
    pair = ProtocolPair()
    pair.open()
    pair.app.send_media(b"\x01" * 320)
    pair.app.send_clear()
    pair.app.send_media(b"\x02" * 160)
    pair.app_to_twilio()
    assert pair.twilio.play(320) == b"\x02" * 160


def test_pair_buffer_overflow_discards_and_warns_once() -> None:
    pair = ProtocolPair(max_buffered_ms=40)
    pair.open()
    for _ in range(4):
        pair.app.send_media(b"\x01" * 160)
    pair.app_to_twilio()
    assert pair.twilio.buffered_ms == 40
    (warning,) = pair.twilio.warnings
    assert warning.code == 31931


def test_pair_wav_header_is_played_as_noise_and_warned() -> None:
    pair = ProtocolPair()
    pair.open()
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x01" * 20
    import base64

    text = frame(
        event="media",
        streamSid=pair.twilio.stream_sid,
        media={"payload": base64.b64encode(wav).decode()},
    )
    message = pair.twilio.receive_text(text)
    assert isinstance(message, Media) and message.payload == wav
    assert pair.twilio.play(160) == wav
    (warning,) = pair.twilio.warnings
    assert (warning.code, warning.kind) == (31924, "payload-has-header")


def test_pair_stop_ends_both_sides() -> None:
    pair = ProtocolPair()
    pair.open()
    pair.twilio.send_stop()
    (stop,) = pair.twilio_to_app()
    assert isinstance(stop, Stop)
    assert pair.app.state is STOPPED and pair.twilio.state is STOPPED


# --- receive(): one reader per side, never raising for what the peer sends -------------------


def streaming_twilio() -> TwilioProtocol:
    twilio = TwilioProtocol(stream_sid=MZ)
    twilio.send_connected()
    twilio.send_start()
    twilio.data_to_send()
    return twilio


def app_media(payload_b64: str = "/w==", sid: str = MZ) -> str:
    return frame(event="media", streamSid=sid, media={"payload": payload_b64})


def test_app_side_receive_reads_text_and_refuses_binary() -> None:
    app = AppProtocol()
    assert app.receive(CONNECTED_FRAME) == Received(Connected())
    received = app.receive(b"\x00\x01")
    assert received.ignored and received.violations[0].code == 31950
    received = app.receive(twilio_media())  # before start: out of order, state unchanged
    assert received.message is None and received.violations[0].kind == "out-of-order"
    assert app.state is CONNECTED
    assert isinstance(app.receive(START).message, Start)


def test_twilio_side_receive_plays_media_and_reports_binary_frames() -> None:
    twilio = streaming_twilio()
    received = twilio.receive(app_media())
    assert received == Received(Media(stream_sid=MZ, payload=b"\xff"))
    assert twilio.buffered_bytes == 1
    binary = twilio.receive(b"{}")
    assert binary.ignored and (binary.violations[0].code, binary.violations[0].kind) == (
        31950,
        "binary-frame",
    )


def test_twilio_side_receive_returns_the_header_warning_with_the_message() -> None:
    import base64

    twilio = streaming_twilio()
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x01" * 20
    received = twilio.receive(app_media(base64.b64encode(wav).decode()))
    assert isinstance(received.message, Media) and received.message.payload == wav
    (warning,) = received.violations
    assert (warning.code, warning.kind) == (31924, "payload-has-header")
    assert twilio.play(160) == wav
    assert twilio.warnings == []  # receive() hands warnings back; it keeps none


def test_twilio_side_receive_returns_31931_once() -> None:
    import base64

    twilio = TwilioProtocol(stream_sid=MZ, max_buffered_ms=20)
    twilio.send_connected()
    twilio.send_start()
    full = app_media(base64.b64encode(b"\x01" * 160).decode())
    results = [twilio.receive(full) for _ in range(4)]
    codes = [[v.code for v in r.violations] for r in results]
    assert codes == [[], [31931], [], []]
    assert all(isinstance(r.message, Media) for r in results)


def test_twilio_side_receive_names_the_marks_a_frame_echoed() -> None:
    twilio = streaming_twilio()
    assert twilio.receive(frame(event="mark", streamSid=MZ, mark={"name": "now"})).echoes == (
        "now",
    )
    twilio.receive(app_media())
    for name in ("a", "b"):
        assert twilio.receive(frame(event="mark", streamSid=MZ, mark={"name": name})).echoes == ()
    cleared = twilio.receive(frame(event="clear", streamSid=MZ))
    assert isinstance(cleared.message, Clear) and cleared.echoes == ("a", "b")


def test_a_frame_after_stop_is_its_own_type_not_a_violation() -> None:
    twilio = streaming_twilio()
    twilio.send_stop()
    received = twilio.receive(frame(event="mark", streamSid=MZ, mark={"name": "late"}))
    assert isinstance(received, AfterStop) and received.ignored and received.violations == ()
    assert received.dropped == Mark(stream_sid=MZ, name="late")
    # The old API still raises, with the kind it always had.
    with pytest.raises(RemoteProtocolError) as caught:
        twilio.receive_text(frame(event="clear", streamSid=MZ))
    assert caught.value.violation.kind == "after-stop"


def test_twilio_side_receive_refuses_without_changing_anything() -> None:
    twilio = streaming_twilio()
    for text in (
        app_media(sid="MZother"),
        app_media("not base64"),
        '{"event":"clear","streamSid":"' + MZ + '","streamSid":"' + MZ + '"}',
        '{"event":"media","x":' + "[" * 5000 + "]" * 5000 + "}",
        '{"event":"clear","streamSid":"\\ud800"}',
    ):
        received = twilio.receive(text)
        assert received.ignored and len(received.violations) == 1
    assert twilio.buffered_bytes == 0 and twilio.data_to_send() == []


def test_legacy_warnings_list_is_bounded() -> None:
    import base64

    twilio = streaming_twilio()
    wav = base64.b64encode(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x01" * 20).decode()
    for _ in range(300):
        twilio.receive_text(app_media(wav))
    assert len(twilio.warnings) == 100
