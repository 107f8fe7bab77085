import base64
import io
import json
from pathlib import Path

import pytest

from mediastreams.trace import TraceEntry, TraceError, TraceWriter, frame_text, read_trace

from helpers import MZ, frame, twilio_media


def read(text: str) -> list[TraceEntry | TraceError]:
    return list(read_trace(io.StringIO(text)))


def test_reads_text_and_binary_lines_skipping_blank_ones() -> None:
    lines = [
        json.dumps({"t": 0.5, "from": "twilio", "text": "{}"}),
        "",
        json.dumps({"t": 1, "from": "app", "binary": "AAE="}),
    ]
    first, second = read("\n".join(lines))
    assert first == TraceEntry(1, 0.5, "twilio", text="{}")
    assert second == TraceEntry(3, 1.0, "app", binary=b"\x00\x01")


def test_bad_lines_are_errors_with_their_number() -> None:
    lines = [
        '{"t": 0, "from": "app", "text": "{}"',  # cut short
        "[1]",
        json.dumps({"t": 0, "from": "caller", "text": "{}"}),
        json.dumps({"t": "soon", "from": "app", "text": "{}"}),
        json.dumps({"t": 0, "from": "app"}),
        json.dumps({"t": 0, "from": "app", "binary": "%%%"}),
        json.dumps({"t": 0, "from": "app", "text": "{}", "redacted": "payload"}),
    ]
    results = read("\n".join(lines))
    assert all(isinstance(r, TraceError) for r in results)
    assert [r.line for r in results] == list(range(1, 8))
    assert "cut short" in results[0].message  # type: ignore[union-attr]


def test_writer_redacts_payloads_and_parameters_by_default(tmp_path: Path) -> None:
    start = frame(event="start", streamSid=MZ, start={"customParameters": {"token": "secret"}})
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as writer:
        writer.write(0.0, "twilio", start)
        writer.write(0.02, "twilio", twilio_media(base64.b64encode(b"\x01" * 160).decode()))
        writer.write(0.03, "app", b"\x00")
    text = path.read_text()
    assert "secret" not in text
    entries = read(text)
    media = entries[1]
    assert isinstance(media, TraceEntry)
    assert media.redacted == ("media.payload",) and media.payload_bytes == 160
    restored = json.loads(frame_text(media))["media"]["payload"]
    assert base64.b64decode(restored) == b"\xff" * 160
    assert isinstance(entries[2], TraceEntry) and entries[2].binary == b"\x00"


def test_writer_keeps_everything_when_asked(tmp_path: Path) -> None:
    text = twilio_media(base64.b64encode(b"\x01" * 7).decode())
    path = tmp_path / "t.jsonl"
    with TraceWriter(path, payloads=True, parameters=True) as writer:
        writer.write(1.25, "twilio", text)
    (entry,) = read(path.read_text())
    assert isinstance(entry, TraceEntry)
    assert entry.text == text and frame_text(entry) == text and entry.t == 1.25


def test_writer_keeps_one_payload_when_it_is_the_evidence(tmp_path: Path) -> None:
    wav = frame(event="media", streamSid=MZ, media={"payload": base64.b64encode(b"RIFF").decode()})
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as writer:
        writer.write(0.0, "app", wav, keep_payload=True)
        writer.write(0.1, "app", wav)
    kept, redacted = read(path.read_text())
    assert isinstance(kept, TraceEntry) and kept.text == wav and kept.redacted == ()
    assert isinstance(redacted, TraceEntry) and redacted.redacted == ("media.payload",)


@pytest.mark.parametrize("t", ["1e999", "1" + "0" * 400, "true", '"3"'])
def test_a_time_that_is_no_finite_number_is_an_unreadable_line(t: str) -> None:
    line = '{"t": ' + t + ', "from": "app", "text": "{}"}\n'
    (item,) = read_trace(io.StringIO(line))
    assert isinstance(item, TraceError) and '"t"' in item.message


def test_a_redacted_payload_of_absurd_size_is_an_unreadable_line() -> None:
    line = json.dumps(
        {
            "t": 0,
            "from": "app",
            "text": '{"event":"media","streamSid":"MZ1","media":{"payload":""}}',
            "redacted": ["media.payload"],
            "payload_bytes": 10**9,
        }
    )
    (item,) = read_trace(io.StringIO(line + "\n"))
    assert isinstance(item, TraceError) and "payload_bytes" in item.message


def test_a_deeply_nested_line_is_unreadable_not_a_crash() -> None:
    line = '{"t": 0, "from": "app", "x": ' + "[" * 5000 + "]" * 5000 + "}\n"
    (item,) = read_trace(io.StringIO(line))
    assert isinstance(item, TraceError)
