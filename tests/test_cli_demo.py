import json
import socket
from pathlib import Path

import pytest

from mediastreams.cli import main


def check_outputs(out: Path) -> dict[str, object]:
    report = json.loads((out / "report.json").read_text())
    assert report["violations"] == {"twilio": 0, "app": 0} and report["exit_code"] == 0
    assert report["groups"] == []
    assert report["ended_by"] == "caller"
    assert len(report["turns"]) == 2  # the caller's answer, then the barge-in
    (barge_in,) = report["barge_ins"]
    assert barge_in["clear_reaction_ms"] <= 100 and barge_in["audio_after_clear_ms"] == 0
    assert report["marks"]["echoed_by_clear"] > 0
    for name in ("caller-heard.wav", "call-stereo.wav", "trace.jsonl"):
        assert (out / name).stat().st_size > 1000, name
    assert main(["inspect", str(out / "trace.jsonl")]) == 0
    return report


def test_demo_in_virtual_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--clock", "virtual", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    for step in ("plays the greeting", "caller: presses 5", "clear (barge-in)", "hangs up"):
        assert step in printed
    assert "caller-heard.wav" in printed
    report = check_outputs(tmp_path / "out")
    assert report["clock"] == "virtual"
    # The demo's server is trusted in virtual time: no thread, socket or wall clock of its own.
    assert not any("virtual time may be wrong" in note for note in report["notes"])


def test_demo_in_real_time_through_a_real_server(tmp_path: Path) -> None:
    # About 25 s: the one real-time whole call in the suite, on 127.0.0.1.
    assert main(["demo", "--out", str(tmp_path / "out")]) == 0
    report = check_outputs(tmp_path / "out")
    assert report["clock"] == "real"
    assert str(report["target"]).startswith("http://127.0.0.1:")


def test_demo_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo", "--port", str(port), "--out", str(tmp_path)]) == 2
    assert "cannot listen on" in capsys.readouterr().err


def test_demo_unwritable_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "--clock", "virtual", "--out", str(blocker / "sub")]) == 2
    assert "cannot create" in capsys.readouterr().err
