import base64
import io
import json
from pathlib import Path

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
