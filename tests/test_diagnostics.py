import base64
import struct

import pytest

from mediastreams.diagnostics import (
    CODES,
    MAX_VIOLATIONS,
    Violation,
    container_format,
    diagnose_binary,
    diagnose_text,
    is_counter,
    local_violation,
    read_frame,
)

from helpers import MZ, frame, twilio_media


def app(**fields: object) -> list[Violation]:
    return diagnose_text(frame(**fields), sender="app")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_valid_app_frames_have_no_violations() -> None:
    assert app(event="media", streamSid=MZ, media={"payload": "/w=="}) == []
    assert app(event="mark", streamSid=MZ, mark={"name": "a"}) == []
    assert app(event="clear", streamSid=MZ) == []


def test_binary_frame_is_31950() -> None:
    (violation,) = diagnose_binary(b"\x00\x01")
    assert violation.code == 31950
    assert "JSON text" in violation.hint
    assert violation.frame == "AAE="


def test_not_utf8_is_31950() -> None:
    (violation,) = diagnose_text(b"\xff\xfe{", sender="app")
    assert (violation.code, violation.kind) == (31950, "not-utf8")


@pytest.mark.parametrize(
    ("text", "kind"),
    [("{", "not-json"), ("[1]", "not-object"), ('"media"', "not-object")],
)
def test_not_a_json_object_is_31951(text: str, kind: str) -> None:
    (violation,) = diagnose_text(text, sender="app")
    assert (violation.code, violation.kind) == (31951, kind)


def test_playload_did_you_mean_payload() -> None:
    (violation,) = app(event="media", streamSid=MZ, media={"playload": "/w=="})
    assert violation.message == "unknown field `media.playload`; did you mean `payload`?"
    assert violation.hint == "Rename `media.playload` to `media.payload`."
    assert violation.path == "media.playload"
    assert violation.sender == "app"


def test_stream_sid_snake_case_did_you_mean() -> None:
    (violation,) = app(event="clear", stream_sid=MZ)
    assert "did you mean `streamSid`?" in violation.message


def test_alias_data_means_payload() -> None:
    (violation,) = app(event="media", streamSid=MZ, media={"data": "/w=="})
    assert "did you mean `payload`?" in violation.message


def test_extra_field_with_no_match_is_named_and_shape_shown() -> None:
    (violation,) = app(event="media", streamSid=MZ, media={"payload": "/w==", "track": "outbound"})
    assert violation.message == "unknown field `media.track`"
    assert '"media":{"payload":' in violation.hint


def test_missing_field() -> None:
    (violation,) = app(event="mark", streamSid=MZ, mark={})
    assert (violation.kind, violation.path) == ("missing-field", "mark.name")


def test_missing_event_suggests_the_misspelt_key() -> None:
    (violation,) = app(Event="media", streamSid=MZ, media={"payload": "/w=="})
    assert violation.kind == "missing-field"
    assert violation.hint == "Rename `Event` to `event`."


def test_unknown_app_event_did_you_mean() -> None:
    (violation,) = app(event="medai", streamSid=MZ)
    assert violation.kind == "unknown-event"
    assert "Did you mean `media`?" in violation.hint


@pytest.mark.parametrize("event", ["stop", "hangup", "dtmf"])
def test_events_the_app_cannot_send_say_what_to_do(event: str) -> None:
    (violation,) = app(event=event, streamSid=MZ)
    assert violation.kind == "unknown-event"
    assert violation.hint  # a specific explanation, not the generic one
    assert "only media, mark and clear" not in violation.hint


def test_wrong_type_counter_as_number() -> None:
    text = frame(event="mark", sequenceNumber=5, streamSid=MZ, mark={"name": "a"})
    (violation,) = diagnose_text(text, sender="twilio")
    assert violation.kind == "wrong-type"
    assert violation.hint == 'Twilio\'s counters are strings: "sequenceNumber": "5".'


def test_unknown_event_from_twilio_is_not_a_violation() -> None:
    assert diagnose_text(frame(event="future", streamSid=MZ), sender="twilio") == []


def test_payload_not_base64() -> None:
    (violation,) = app(event="media", streamSid=MZ, media={"payload": "not base64!"})
    assert (violation.code, violation.kind) == (31924, "payload-not-base64")


def test_payload_empty() -> None:
    (violation,) = app(event="media", streamSid=MZ, media={"payload": ""})
    assert (violation.code, violation.kind) == (31924, "payload-empty")


def test_empty_twilio_payload() -> None:
    (violation,) = diagnose_text(twilio_media(payload_b64=""), sender="twilio")
    assert violation.kind == "payload-empty"


def wav_header() -> bytes:
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    return b"RIFF" + struct.pack("<I", 36 + 160) + b"WAVEfmt " + struct.pack("<I", 16) + fmt


def mp3_frame() -> bytes:
    # MPEG-1 layer III, 128 kbit/s, 44.1 kHz, no padding: 417 bytes a frame.
    return b"\xff\xfb\x90\x00" + bytes(413)


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (wav_header() + b"\xff" * 160, "WAV"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(20), "MP3 (ID3)"),
        (mp3_frame() * 2, "MP3"),
        (b"OggS\x00\x02" + bytes(30), "Ogg"),
        (b"fLaC\x00\x00\x00\x22" + bytes(30), "FLAC"),
    ],
)
def test_file_headers_in_payload_are_flagged(payload: bytes, kind: str) -> None:
    assert container_format(payload) == kind
    (violation,) = app(event="media", streamSid=MZ, media={"payload": b64(payload)})
    assert (violation.code, violation.kind) == (31924, "payload-has-header")
    assert "strip the header" in violation.hint
    assert kind in violation.message


def test_quiet_mulaw_is_not_mistaken_for_mp3() -> None:
    # 0xFF is mu-law silence and 0xFx are the quietest codes: frame-sync look-alikes.
    quiet = bytes([0xFF, 0xFB, 0x90, 0x00]) + bytes([0xFE, 0xFF] * 78)
    assert container_format(quiet) is None
    assert container_format(b"\xff" * 160) is None
    assert container_format(b"RIFX" + bytes(20)) is None


def test_describe_and_to_dict() -> None:
    violation = Violation(
        31951, kind="unknown-field", sender="app", message="unknown field `x`", hint="Remove it."
    )
    assert violation.describe() == "31951 Protocol - Invalid Message: unknown field `x`. Remove it."
    assert violation.to_dict() == {
        "code": 31951,
        "kind": "unknown-field",
        "from": "app",
        "path": None,
        "message": "unknown field `x`",
        "hint": "Remove it.",
    }


def test_codes_table_has_the_stream_warnings() -> None:
    assert CODES[31950].level == "warning"
    assert CODES[31951].name == "Protocol - Invalid Message"
    assert CODES[31931].name == "Media - Media Discarded"


def test_codes_table_names_the_webhook_errors() -> None:
    assert CODES[11200].name == "HTTP retrieval failure"
    assert CODES[12100].name == "Document parse failure"


def test_local_violation_has_default_hint() -> None:
    violation = local_violation("empty-payload", "empty")
    assert violation.sender == "app"
    assert violation.hint


def test_payload_with_non_ascii_characters_is_not_base64() -> None:
    (violation,) = app(event="media", streamSid=MZ, media={"payload": "é/w=="})
    assert violation.kind == "payload-not-base64"


# --- bounded: violations, guesses and messages do not grow with the frame -------------------


def test_violations_per_frame_are_capped() -> None:
    keys = {f"k{i}": 1 for i in range(900)}
    found = diagnose_text(frame(event="clear", streamSid=MZ, **keys), sender="app")
    assert len(found) == MAX_VIOLATIONS
    assert all(v.kind == "unknown-field" for v in found)


def test_did_you_mean_still_works_among_many_unknown_keys() -> None:
    found = app(event="media", streamSid=MZ, media={"playload": "/w==", "x1": 1, "x2": 2})
    assert "did you mean `payload`?" in found[0].message


def test_long_names_are_cut_in_messages() -> None:
    long_key = "k" * 20_000
    (violation,) = app(event="clear", streamSid=MZ, **{long_key: 1})
    assert violation.kind == "unknown-field"
    assert len(violation.message) < 200 and len(violation.hint) < 400
    (violation,) = app(event="x" * 20_000, streamSid=MZ)
    assert violation.kind == "unknown-event" and len(violation.message) < 200


def test_strict_json_errors_become_31951_with_hints() -> None:
    cases = {
        '{"event":"clear","event":"clear","streamSid":"MZ1"}': "duplicate-field",
        '{"event":"clear","streamSid":"\\udc00"}': "lone-surrogate",
        '{"event":"clear","x":' + "[" * 40 + "]" * 40 + "}": "too-deep",
        '{"event":"clear","x":' + "7" * 5000 + "}": "number-too-long",
        "[" + ",".join(["{}"] * 2000) + "]": "too-many-fields",
        '{"event":"clear","x":NaN}': "not-json",
    }
    for text, kind in cases.items():
        for sender in ("twilio", "app"):
            (violation,) = diagnose_text(text, sender=sender)  # type: ignore[arg-type]
            assert (violation.code, violation.kind) == (31951, kind)
            assert violation.hint


def test_counters_must_be_ascii_digits() -> None:
    assert is_counter("0123") and not is_counter("") and not is_counter(7)
    assert not is_counter("٣") and not is_counter("²") and not is_counter(" 5")


def test_read_frame_returns_the_object_with_its_violations() -> None:
    frame_object, found = read_frame(frame(event="future", streamSid=MZ), sender="twilio")
    assert frame_object == {"event": "future", "streamSid": MZ} and found == []
    frame_object, found = read_frame(b"\xff", sender="app")
    assert frame_object is None and found[0].kind == "not-utf8"


def test_base64_is_read_as_the_fast_path_reads_it() -> None:
    for payload in ("/w=", "AAAA====", "AAAAA"):
        (violation,) = app(event="media", streamSid=MZ, media={"payload": payload})
        assert violation.kind == "payload-not-base64"
    assert app(event="media", streamSid=MZ, media={"payload": "/x=="}) == []  # as msgspec


def test_counters_longer_than_pythons_integer_bound_are_wrong() -> None:
    (violation,) = diagnose_text(twilio_media(seq="7" * 5000), sender="twilio")
    assert (violation.kind, violation.path) == ("wrong-type", "sequenceNumber")
