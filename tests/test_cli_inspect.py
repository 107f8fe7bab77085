import json
from pathlib import Path

import pytest

from mediastreams.cli import main
from mediastreams.tally import Tally

from helpers import MZ, frame

CONNECTED = frame(event="connected", protocol="Call", version="1.0.0")
START = frame(
    event="start",
    sequenceNumber="1",
    streamSid=MZ,
    start={
        "accountSid": "AC" + "0" * 32,
        "streamSid": MZ,
        "callSid": "CA" + "0" * 32,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    },
)


def write_trace(path: Path, *frames: tuple[str, str]) -> Path:
    lines = [json.dumps({"t": i * 0.02, "from": s, "text": t}) for i, (s, t) in enumerate(frames)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_clean_trace_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(
        tmp_path / "ok.jsonl",
        ("twilio", CONNECTED),
        ("twilio", START),
        ("app", frame(event="media", streamSid=MZ, media={"payload": "/w=="})),
    )
    assert main(["inspect", str(trace)]) == 0
    assert "no app violations" in capsys.readouterr().out


def test_playload_exits_1_with_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(
        tmp_path / "bad.jsonl",
        ("twilio", CONNECTED),
        ("twilio", START),
        ("app", frame(event="media", streamSid=MZ, media={"playload": "/w=="})),
    )
    assert main(["inspect", str(trace)]) == 1
    out = capsys.readouterr().out
    assert "31951" in out and "did you mean `payload`?" in out and "line 3" in out


def test_json_output_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = frame(event="media", stream_sid=MZ, media={"payload": "/w=="})
    trace = write_trace(
        tmp_path / "bad.jsonl", ("twilio", CONNECTED), ("twilio", START), ("app", bad)
    )
    with trace.open("a") as f:
        f.write('{"t": 1, "from": "app", "te')  # half-written last line
    assert main(["inspect", "--json", str(trace)]) == 1
    report = json.loads(capsys.readouterr().out)
    (group,) = report["groups"]
    assert group == {
        "code": 31951,
        "kind": "unknown-field",
        "from": "app",
        "path": "stream_sid",
        "message": "unknown field `stream_sid`; did you mean `streamSid`?",
        "hint": "Rename `stream_sid` to `streamSid`.",
        "line": 3,
        "t": 0.04,
        "frame": bad,
        "count": 1,
        "lines": [3],
    }
    assert report["violations"] == {"twilio": 0, "app": 1}
    assert report["by_code"] == {"31951": 1}
    assert report["frames"] == {"twilio": 2, "app": 1}
    assert report["marks"] == {"sent": 0, "echoed": 0, "echoed_by_clear": 0}
    assert report["unreadable_lines"] == {
        "count": 1,
        "lines": [{"line": 4, "message": "not a JSON object (cut short, or not a trace line)"}],
    }


def test_json_keys_are_the_tallys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "ok.jsonl", ("twilio", CONNECTED), ("twilio", START))
    assert main(["inspect", "--json", str(trace)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == set(Tally().to_dict()) | {"duration_s", "unreadable_lines"}


def test_a_long_run_of_one_mistake_is_one_group_with_a_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = frame(event="media", streamSid=MZ, media={"payload": "/w==", "track": "outbound"})
    trace = write_trace(
        tmp_path / "t.jsonl", ("twilio", CONNECTED), ("twilio", START), *[("app", bad)] * 500
    )
    assert main(["inspect", "--json", str(trace)]) == 1
    (group,) = json.loads(capsys.readouterr().out)["groups"]
    assert (group["count"], group["lines"]) == (500, [3, 4, 5])


def test_repeats_are_collapsed_unless_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = frame(event="media", streamSid=MZ, media={"payload": "/w==", "track": "outbound"})
    trace = write_trace(
        tmp_path / "t.jsonl", ("twilio", CONNECTED), ("twilio", START), *[("app", bad)] * 6
    )
    assert main(["inspect", str(trace)]) == 1
    assert "3 more like this" in capsys.readouterr().out
    assert main(["inspect", "--all", str(trace)]) == 1
    assert capsys.readouterr().out.count("unknown field `media.track`") == 6


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_garbage_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\x00\xff garbage\nmore")
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "no readable frame lines" in err and "line 1" in err


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_trace_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "call.jsonl"
    path.write_text(content)
    assert main(["inspect", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"mediastreams inspect: {path} has no frame lines: it is empty"
    assert captured.out == ""


def test_a_file_that_is_no_trace_lists_a_few_unreadable_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hello.wav"
    path.write_bytes(b"RIFF\x00\x00WAVE\n" * 1000)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"mediastreams inspect: {path} has no readable frame lines"
    assert [line.split(":")[0] for line in err[1:-1]] == [f"line {n}" for n in range(1, 6)]
    assert err[-1].strip() == "... and 995 more unreadable lines"
