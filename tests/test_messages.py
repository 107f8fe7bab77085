import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediastreams.diagnostics import CODES, diagnose_text
from mediastreams.exceptions import LocalProtocolError, MediaStreamsError, RemoteProtocolError
from mediastreams.messages import (
    DTMF,
    Clear,
    Connected,
    Mark,
    Media,
    MediaFormat,
    Start,
    Stop,
    UnknownMessage,
    new_sid,
    parse,
    serialize,
)

from helpers import AC, CA, MZ, frame, twilio_media

GOLDEN = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "golden_frames.jsonl").read_text().splitlines()
]


@pytest.mark.parametrize("golden", GOLDEN, ids=[g["note"] for g in GOLDEN])
def test_golden_frames_round_trip(golden: dict[str, str]) -> None:
    message = parse(golden["text"], sender=golden["from"])  # type: ignore[arg-type]
    assert not isinstance(message, UnknownMessage)
    again = serialize(message)
    # Byte for byte, modulo key order: the same JSON value, compact, no extra keys.
    assert json.loads(again) == json.loads(golden["text"])
    assert len(again) == len(golden["text"])


def test_capture_media_decodes_to_160_bytes_and_ints() -> None:
    media = parse(GOLDEN[2]["text"])
    assert isinstance(media, Media)
    assert len(media.payload) == 160
    assert (media.sequence_number, media.chunk, media.timestamp) == (2, 1, 52)
    assert media.track == "inbound"
    assert media.stream_sid == "9e7ee906-377b-408f-a852-eebfb834422a"  # SIDs are opaque


def test_start_fields_are_decoded() -> None:
    start = parse(GOLDEN[5]["text"])
    assert start == Start(
        stream_sid=MZ,
        account_sid=AC,
        call_sid=CA,
        tracks=("inbound",),
        custom_parameters={"tenant": "acme"},
        media_format=MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
        sequence_number=1,
    )


def test_start_without_custom_parameters_parses_to_empty_dict() -> None:
    start = parse(GOLDEN[10]["text"])
    assert isinstance(start, Start)
    assert start.custom_parameters == {}


def test_app_media_serializes_exactly_as_twilio_documents() -> None:
    text = serialize(Media(stream_sid=MZ, payload=b"\xff\x7f"))
    assert text == '{"event":"media","streamSid":"' + MZ + '","media":{"payload":"/38="}}'


def test_app_mark_and_clear_have_no_sequence_number() -> None:
    assert serialize(Mark(stream_sid=MZ, name="a")) == (
        '{"event":"mark","streamSid":"' + MZ + '","mark":{"name":"a"}}'
    )
    assert serialize(Clear(stream_sid=MZ)) == '{"event":"clear","streamSid":"' + MZ + '"}'


def test_empty_track_round_trips() -> None:
    media = Media(
        stream_sid=MZ, payload=b"\xff", track="", chunk=1, timestamp=20, sequence_number=2
    )
    assert parse(serialize(media)) == media


def test_twilio_counters_are_written_as_strings() -> None:
    text = serialize(DTMF(stream_sid=MZ, digit="5", sequence_number=7))
    assert json.loads(text)["sequenceNumber"] == "7"
    stop = json.loads(
        serialize(Stop(stream_sid=MZ, account_sid=AC, call_sid=CA, sequence_number=9))
    )
    assert stop == {
        "event": "stop",
        "sequenceNumber": "9",
        "streamSid": MZ,
        "stop": {"accountSid": AC, "callSid": CA},
    }


def test_start_writes_numbers_for_rate_and_channels() -> None:
    start = Start(stream_sid=MZ, account_sid=AC, call_sid=CA)
    body = json.loads(serialize(start))["start"]
    assert body["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}


def test_serialize_refuses_empty_payload_and_sid() -> None:
    with pytest.raises(LocalProtocolError) as caught:
        serialize(Media(stream_sid=MZ, payload=b""))
    assert caught.value.violation.kind == "empty-payload"
    with pytest.raises(LocalProtocolError):
        serialize(Clear(stream_sid=""))


def test_serialize_refuses_other_types() -> None:
    with pytest.raises(TypeError):
        serialize("not a message")  # type: ignore[arg-type]


def test_messages_are_frozen() -> None:
    mark = Mark(stream_sid=MZ, name="a")
    with pytest.raises(AttributeError):
        mark.name = "b"  # type: ignore[misc]


def test_connected_round_trips() -> None:
    assert parse(serialize(Connected())) == Connected()


def test_new_sid_has_twilio_form() -> None:
    sid = new_sid("MZ")
    assert sid.startswith("MZ") and len(sid) == 34
    int(sid[2:], 16)
    assert new_sid("MZ") != sid


def test_unknown_event_from_twilio_is_kept() -> None:
    text = frame(event="transcription", streamSid=MZ, text="hello")
    message = parse(text)
    assert message == UnknownMessage(
        event="transcription",
        data={"event": "transcription", "streamSid": MZ, "text": "hello"},
        text=text,
    )


def test_unknown_event_from_app_is_an_error() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse(frame(event="hangup", streamSid=MZ), sender="app")
    assert caught.value.code == 31951
    assert "REST" in caught.value.violation.hint


def test_unknown_fields_from_twilio_are_tolerated() -> None:
    text = frame(
        event="mark", sequenceNumber="3", streamSid=MZ, mark={"name": "x", "new": 1}, extra=True
    )
    assert parse(text) == Mark(stream_sid=MZ, name="x", sequence_number=3)


def test_extra_field_from_app_is_an_error() -> None:
    text = frame(event="media", streamSid=MZ, media={"payload": "/w==", "track": "outbound"})
    with pytest.raises(RemoteProtocolError) as caught:
        parse(text, sender="app")
    assert caught.value.violation.path == "media.track"


def test_playload_gets_did_you_mean() -> None:
    text = frame(event="media", streamSid=MZ, media={"playload": "/w=="})
    with pytest.raises(RemoteProtocolError) as caught:
        parse(text, sender="app")
    assert "did you mean `payload`?" in str(caught.value)
    assert caught.value.code == 31951


def test_parse_accepts_bytes() -> None:
    assert isinstance(parse(twilio_media().encode()), Media)


@pytest.mark.parametrize(
    "text",
    [
        twilio_media(payload_b64=""),  # empty payload
        twilio_media(seq=" 2"),  # not a digit string
        twilio_media(sid=""),
        frame(event="media", sequenceNumber=2, streamSid=MZ, media={}),
        "[]",
        "{",
        "null",
    ],
)
def test_invalid_twilio_frames_raise_remote_errors(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse(text)


def test_start_with_two_stream_sids_is_refused() -> None:
    start = json.loads(GOLDEN[5]["text"])
    start["start"]["streamSid"] = "MZother"
    with pytest.raises(RemoteProtocolError) as caught:
        parse(json.dumps(start))
    assert caught.value.violation.path == "start.streamSid"


def test_wav_payload_from_app_is_refused() -> None:
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(16)
    text = frame(event="media", streamSid=MZ, media={"payload": base64.b64encode(wav).decode()})
    with pytest.raises(RemoteProtocolError) as caught:
        parse(text, sender="app")
    assert caught.value.code == 31924
    assert caught.value.violation.kind == "payload-has-header"


# --- property tests: fast and slow paths agree; nothing but our errors escapes --------------

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["", "1", "52", "/w==", "AA", "inbound", MZ, "UklGRgAAAABXQVZF"]),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)


def _mutations(text: str) -> st.SearchStrategy[str]:
    """Frames derived from a valid one: a key removed, renamed or retyped, at any depth."""
    data = json.loads(text)

    def paths(obj: dict[str, object], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        out = []
        for key, value in obj.items():
            out.append((*prefix, key))
            if isinstance(value, dict):
                out.extend(paths(value, (*prefix, key)))
        return out

    def mutate(path: tuple[str, ...], action: str, value: object, new_key: str) -> str:
        copy = json.loads(text)
        parent = copy
        for key in path[:-1]:
            parent = parent[key]
        if action == "drop":
            del parent[path[-1]]
        elif action == "rename":
            parent[new_key] = parent.pop(path[-1])
        elif action == "retype":
            parent[path[-1]] = value
        else:
            parent[new_key] = value
        return json.dumps(copy)

    return st.builds(
        mutate,
        st.sampled_from(paths(data)),
        st.sampled_from(["drop", "rename", "retype", "add"]),
        _VALUES,
        st.sampled_from(["playload", "stream_sid", "Event", "x", "sequenceNumber", "payload"]),
    )


_VALID = [(g["from"], g["text"]) for g in GOLDEN]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_VALID).flatmap(lambda v: st.tuples(st.just(v[0]), _mutations(v[1]))))
def test_mutated_frames_fast_and_slow_paths_agree(case: tuple[str, str]) -> None:
    sender, text = case
    violations = diagnose_text(text, sender=sender)  # type: ignore[arg-type]
    try:
        message = parse(text, sender=sender)  # type: ignore[arg-type]
    except RemoteProtocolError as error:
        assert violations, "the fast path refused a frame the diagnostics accept"
        assert error.violation == violations[0]
        return
    assert not violations, f"accepted a frame with {violations[0].describe()}"
    if not isinstance(message, UnknownMessage):
        # What was accepted serializes back to a frame that is accepted too.
        assert parse(serialize(message), sender=sender) == message  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.text(max_size=200), st.binary(max_size=200)), st.sampled_from(["twilio", "app"])
)
def test_random_input_raises_only_our_errors(text: str | bytes, sender: str) -> None:
    try:
        message = parse(text, sender=sender)  # type: ignore[arg-type]
    except MediaStreamsError as error:
        assert isinstance(error, RemoteProtocolError)
        assert error.code in CODES and error.violation.hint
    else:
        assert isinstance(
            message, Connected | Start | Media | DTMF | Mark | Stop | Clear | UnknownMessage
        )


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=1, max_size=400).filter(lambda b: b[:4] not in (b"RIFF", b"OggS", b"fLaC")),
    st.text(min_size=1, max_size=30),
)
def test_app_media_and_mark_round_trip(payload: bytes, name: str) -> None:
    from mediastreams.diagnostics import container_format

    if container_format(payload) is None:
        media = Media(stream_sid=MZ, payload=payload)
        assert parse(serialize(media), sender="app") == media
    mark = Mark(stream_sid=MZ, name=name)
    assert parse(serialize(mark), sender="app") == mark


# --- hostile frames: only our errors, never UnknownMessage from the app ----------------------

DEEP = '{"event":"media","x":' + "[" * 1000 + "]" * 1000 + "}"


@pytest.mark.parametrize("sender", ["twilio", "app"])
def test_deep_nesting_is_31951_not_recursion_error(sender: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse(DEEP, sender=sender)  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.violation.kind) == (31951, "too-deep")


def test_twilio_unknown_field_nested_within_the_bound_is_tolerated() -> None:
    text = frame(
        event="mark", sequenceNumber="3", streamSid=MZ, mark={"name": "x"}, future=[[[[{}]]]]
    )
    assert parse(text) == Mark(stream_sid=MZ, name="x", sequence_number=3)


@pytest.mark.parametrize(
    ("text", "sender"),
    [
        ('{"event":"media","event":"clear","streamSid":"MZ1"}', "app"),
        ('{"event":"clear","streamSid":"MZ1","streamSid":"MZ2"}', "app"),
        ('{"event":"mark","streamSid":"MZ1","mark":{"name":"a","name":"b"}}', "app"),
        ('{"event":"media","streamSid":"MZ1","media":{"payload":"/w==","payload":"/w=="}}', "app"),
        (twilio_media()[:-2] + ',"chunk":"9"}}', "twilio"),
        ('{"event":"future","x":1,"x":2}', "twilio"),
    ],
)
def test_duplicate_keys_are_31951(text: str, sender: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse(text, sender=sender)  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.violation.kind) == (31951, "duplicate-field")


@pytest.mark.parametrize("sender", ["twilio", "app"])
def test_lone_surrogates_are_31951(sender: str) -> None:
    escaped = '{"event":"clear","streamSid":"\\ud800"}'
    raw = '{"event":"clear","streamSid":"\ud800"}'
    for text in (escaped, raw):
        with pytest.raises(RemoteProtocolError) as caught:
            parse(text, sender=sender)  # type: ignore[arg-type]
        assert caught.value.violation.kind == "lone-surrogate"


def test_a_surrogate_pair_is_a_character() -> None:
    text = '{"event":"mark","streamSid":"MZ1","mark":{"name":"\\ud83d\\ude00"}}'
    assert parse(text, sender="app") == Mark(stream_sid="MZ1", name="😀")


@pytest.mark.parametrize("digit", ["٣", "²", "３", "𝟑"])
def test_counters_are_ascii_digits_only(digit: str) -> None:
    for text in (twilio_media(seq=digit), twilio_media(seq=digit).encode()):
        with pytest.raises(RemoteProtocolError) as caught:
            parse(text)
        assert (caught.value.violation.kind, caught.value.violation.path) == (
            "wrong-type",
            "sequenceNumber",
        )


def test_non_ascii_frames_from_twilio_still_parse() -> None:
    text = frame(event="mark", sequenceNumber="3", streamSid=MZ, mark={"name": "réponse"})
    assert parse(text) == Mark(stream_sid=MZ, name="réponse", sequence_number=3)
    assert parse(text.encode()) == Mark(stream_sid=MZ, name="réponse", sequence_number=3)


def test_spaced_out_and_colon_bearing_frames_parse() -> None:
    spaced = json.dumps({"event": "media", "streamSid": MZ, "media": {"payload": "/w=="}})
    assert parse(spaced, sender="app") == Media(stream_sid=MZ, payload=b"\xff")
    twilio = json.dumps(json.loads(twilio_media()))
    assert parse(twilio) == parse(twilio_media())
    colons = frame(event="mark", streamSid=MZ, mark={"name": "a:b:c:d:e"})
    assert parse(colons, sender="app") == Mark(stream_sid=MZ, name="a:b:c:d:e")


def test_frames_with_unexpected_numbers_are_31951() -> None:
    for text in ('{"event":"media","x":NaN}', '{"event":"media","x":' + "1" * 5000 + "}"):
        for sender in ("twilio", "app"):
            with pytest.raises(RemoteProtocolError):
                parse(text, sender=sender)  # type: ignore[arg-type]


def test_parse_refuses_what_is_not_text() -> None:
    with pytest.raises(TypeError):
        parse(123)  # type: ignore[arg-type]


_HOSTILE = st.one_of(
    st.text(max_size=60).map(lambda t: '{"event":' + t),
    st.sampled_from(_VALID)
    .map(lambda v: v[1])
    .flatmap(lambda t: st.integers(0, len(t)).map(lambda i: t[:i] + t[i:].replace(":", ":[", 1))),
    st.sampled_from(_VALID).map(lambda v: v[1].replace('"', '"\\ud800', 1)),
    st.sampled_from(_VALID).map(lambda v: v[1][:-1] + ',"event":"clear"}'),
)


@settings(max_examples=300, deadline=None)
@given(_HOSTILE, st.sampled_from(["twilio", "app"]))
def test_app_frames_never_become_unknown_messages(text: str, sender: str) -> None:
    try:
        message = parse(text, sender=sender)  # type: ignore[arg-type]
    except RemoteProtocolError as error:
        assert error.violation.kind != "invalid-frame", "fast and slow paths disagree"
        return
    if sender == "app":
        assert isinstance(message, Media | Mark | Clear)
    elif isinstance(message, UnknownMessage):
        assert message.event not in ("connected", "start", "media", "dtmf", "mark", "stop")
