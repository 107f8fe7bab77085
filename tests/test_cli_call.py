"""``mediastreams call``: options, outputs, exit codes, and a trace ``inspect`` agrees with."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator_apps import TONE_MULAW, b64, media, plays, sends, stream_app
from mediastreams.audio import mulaw, wav_bytes
from mediastreams.cli import main

APPS = "cli_call_apps"


@pytest.fixture(autouse=True)
def apps_module(tmp_path: Path) -> Iterator[None]:
    """A module of apps importable as ``cli_call_apps:NAME``."""
    module = type(sys)(APPS)
    module.good = stream_app(plays(TONE_MULAW))  # type: ignore[attr-defined]
    playload = '{"event":"media","streamSid":"{sid}","media":{"playload":"' + b64(TONE_MULAW)
    module.playload = stream_app(sends(playload + '"}}'))  # type: ignore[attr-defined]
    module.header = stream_app(sends(media("{sid}", wav_bytes(TONE_MULAW))))  # type: ignore[attr-defined]
    sys.modules[APPS] = module
    yield
    del sys.modules[APPS]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["call", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_good_app_exits_0_with_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, f"{APPS}:good", "--hangup-after", "2")
    assert code == 0
    assert "no violation" in out and "time to first audio" in out


def test_json_report_and_violations_in_inspect_shape(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, f"{APPS}:playload", "--hangup-after", "1", "--json")
    assert code == 1
    report = json.loads(out)
    (violation,) = report["violations"]
    assert set(violation) == {"code", "kind", "from", "path", "message", "hint", "line", "t"}
    assert violation["code"] == 31951 and violation["from"] == "app"
    assert violation["path"] == "media.playload"
    for key in ("time_to_first_audio_ms", "turns", "barge_ins", "marks", "frames", "audio"):
        assert key in report


def test_the_trace_reads_back_in_inspect_with_the_same_violations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "call.jsonl"
    code, out, _ = run(
        capsys, f"{APPS}:header", "--hangup-after", "1", "--json", "--trace", str(trace)
    )
    assert code == 1
    ours = [(v["code"], v["kind"], v["line"]) for v in json.loads(out)["violations"]]
    assert main(["inspect", str(trace), "--json", "--all"]) == 1
    groups = json.loads(capsys.readouterr().out)["groups"]
    theirs = sorted((g["code"], g["kind"], line) for g in groups for line in g["lines"])
    assert sorted(ours) == theirs


def test_trace_redacts_payloads_and_parameters_unless_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "call.jsonl"
    run(
        capsys,
        f"{APPS}:good",
        "--hangup-after",
        "0.1",
        "--param",
        "token=s3cret",
        "--trace",
        str(trace),
    )
    text = trace.read_text()
    assert "s3cret" not in text and '"redacted": ["media.payload"]' in text
    run(
        capsys,
        f"{APPS}:good",
        "--hangup-after",
        "0.1",
        "--param",
        "token=s3cret",
        "--trace",
        str(trace),
        "--trace-payloads",
        "--trace-parameters",
    )
    text = trace.read_text()
    assert "s3cret" in text and "redacted" not in text


def test_recordings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mono, stereo = tmp_path / "heard.wav", tmp_path / "both.wav"
    code, _, _ = run(
        capsys,
        f"{APPS}:good",
        "--hangup-after",
        "2",
        "--record",
        str(mono),
        "--record-stereo",
        str(stereo),
    )
    assert code == 0
    with wave.open(str(mono)) as heard:
        assert (heard.getnchannels(), heard.getframerate(), heard.getnframes()) == (1, 8000, 16000)
    with wave.open(str(stereo)) as both:
        assert (both.getnchannels(), both.getnframes()) == (2, 16000)


def test_audio_and_dtmf_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    speech = tmp_path / "speech.wav"
    speech.write_bytes(wav_bytes(mulaw.decode(TONE_MULAW), encoding="pcm"))
    trace = tmp_path / "call.jsonl"
    code, out, _ = run(
        capsys,
        f"{APPS}:good",
        "--audio",
        str(speech),
        "--dtmf",
        "12@0.5",
        "--json",
        "--trace",
        str(trace),
    )
    assert code == 0
    frames = [
        json.loads(json.loads(line)["text"])
        for line in trace.read_text().splitlines()
        if '"from": "twilio"' in line
    ]
    assert [f["dtmf"]["digit"] for f in frames if f["event"] == "dtmf"] == ["1", "2"]
    assert json.loads(out)["turns"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--audio", "missing.wav"], "missing.wav: cannot read"),
        (["--dtmf", "1@soon"], "DIGITS@SECONDS"),
        (["--dtmf", "x@1"], "DTMF keys"),
        (["--connect-to", "nowhere"], "HOST:PORT"),
        (["--connect-to", "127.0.0.1:99999"], "HOST:PORT"),
        (["--connect-to", "127.0.0.1:0"], "HOST:PORT"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run(capsys, f"{APPS}:good", *args)
    assert code == 2
    assert message in err and "Traceback" not in err + out


@pytest.mark.parametrize("option", ["--record", "--record-stereo", "--trace"])
def test_an_output_in_a_missing_folder_is_named_before_the_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    path = tmp_path / "no-such-folder" / "out"
    code, out, err = run(capsys, f"{APPS}:good", "--hangup-after", "1", option, str(path))
    assert code == 2
    assert err.strip() == (
        f"mediastreams call: {option} {path}: there is no folder {path.parent}; create it first"
    )
    assert out == ""  # refused before the call was placed


def test_an_unknown_module_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "no_such_module_here:app")
    assert code == 2 and "cannot import" in err


def test_virtual_clock_needs_an_app(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "ws://127.0.0.1:9/x", "--clock", "virtual")
    assert code == 2
    assert err.strip() == (
        "mediastreams call: --clock virtual needs a module:app target; a URL runs in real time"
    )


def test_connection_refused_exits_2_with_31902_in_the_report(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "ws://127.0.0.1:9/media-stream", "--json")
    assert code == 2
    assert json.loads(out)["violations"][0]["code"] == 31902


def test_ctrl_c_hangs_up_and_still_writes_the_report_and_recording(tmp_path: Path) -> None:
    (tmp_path / "quiet_app.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'websocket':\n"
        "        return\n"
        "    await receive()\n"
        "    await send({'type': 'websocket.accept'})\n"
        "    while (await receive())['type'] != 'websocket.disconnect':\n"
        "        pass\n"
    )
    recording = tmp_path / "heard.wav"
    command = [
        sys.executable,
        "-m",
        "mediastreams",
        "call",
        "quiet_app:app",
        "--clock",
        "real",
        "--hangup-after",
        "30",
        "--json",
        "--record",
        str(recording),
    ]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)  # not a timed assertion: the call just has to be under way
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    report = json.loads(out)
    assert report["ended_by"] == "interrupted" and report["duration_ms"] < 30_000
    with wave.open(str(recording)) as heard:
        assert heard.getnframes() == report["duration_ms"] * 8


def test_many_calls_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, f"{APPS}:good", "--calls", "20", "--hangup-after", "2", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["summary"]["calls"] == report["summary"]["placed"] == 20
    assert len({call["call_sid"] for call in report["calls"]}) == 20
    code, out, _ = run(capsys, f"{APPS}:playload", "--calls", "3", "--hangup-after", "1")
    assert code == 1 and "3 calls" in out
    code, _, err = run(capsys, f"{APPS}:good", "--calls", "2", "--trace", "x.jsonl")
    assert code == 2 and "take one call" in err
