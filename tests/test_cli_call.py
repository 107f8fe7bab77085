"""``mediastreams call``: options, outputs, exit codes, and a trace ``inspect`` agrees with."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator_apps import TONE_MULAW, agent_app, b64, mark, media, plays, sends, stream_app
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
    module.agent = agent_app([TONE_MULAW * 4] * 3, reply_delay_s=0.3)  # type: ignore[attr-defined]
    module.messy = stream_app(messy)  # type: ignore[attr-defined]
    sys.modules[APPS] = module
    yield
    del sys.modules[APPS]


async def messy(websocket: Any, start: dict[str, Any]) -> None:
    """Audio and marks, mistakes of three kinds (one repeated), then a clear mid-reply."""
    sid = start["streamSid"]
    for name in ("a", "b", "c"):
        await websocket.send_text(media(sid, TONE_MULAW))
        await websocket.send_text(mark(sid, name))
    playload = json.dumps({"event": "media", "streamSid": sid, "media": {"playload": "/w=="}})
    for _ in range(3):
        await websocket.send_text(playload)
    await websocket.send_bytes(TONE_MULAW[:160])
    await websocket.send_text(media("MZ" + "0" * 32, TONE_MULAW[:160]))  # another stream's SID
    await asyncio.sleep(1.5)  # "a" has played and is echoed; "b" and "c" wait
    await websocket.send_text(json.dumps({"event": "clear", "streamSid": sid}))


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
    (group,) = report["groups"]
    assert set(group) == {
        "code",
        "kind",
        "from",
        "path",
        "message",
        "hint",
        "line",
        "t",
        "frame",
        "count",
        "lines",
    }
    assert group["code"] == 31951 and group["from"] == "app"
    assert group["path"] == "media.playload"
    assert report["violations"] == {"twilio": 0, "app": group["count"]}
    assert report["by_code"] == {"31951": group["count"]}
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
    ours = [(g["code"], g["kind"], g["line"], g["count"]) for g in json.loads(out)["groups"]]
    assert main(["inspect", str(trace), "--json"]) == 1
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert ours == [(g["code"], g["kind"], g["line"], g["count"]) for g in groups]


@pytest.mark.parametrize("payloads", [True, False])
def test_call_json_and_inspect_json_of_its_trace_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], payloads: bool
) -> None:
    trace = tmp_path / "call.jsonl"
    options = ["--trace-payloads"] if payloads else []
    code, out, _ = run(
        capsys, f"{APPS}:messy", "--hangup-after", "3", "--json", "--trace", str(trace), *options
    )
    assert code == 1
    ours = json.loads(out)
    assert main(["inspect", str(trace), "--json"]) == 1
    theirs = json.loads(capsys.readouterr().out)
    for key in (
        "frames",
        "binary_frames",
        "media_bytes",
        "audio_ms",
        "marks",
        "clears",
        "frames_after_stop",
        "violations",
        "by_code",
        "ungrouped_violations",
    ):
        assert ours[key] == theirs[key], key

    # Each kind of mistake once, with its first example and how often: the same. (inspect
    # keeps three examples' lines, the report one; a redacted trace's frames are stand-ins.)
    def first(group: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in group.items() if k != "lines" and (payloads or k != "frame")}

    assert [first(g) for g in ours["groups"]] == [first(g) for g in theirs["groups"]]
    # A call with something to count: not two empty reports agreeing.
    assert ours["marks"] == {"sent": 3, "echoed": 3, "echoed_by_clear": 2}
    assert ours["clears"] == 1 and ours["binary_frames"]["app"] == 1
    assert ours["by_code"] == {"31950": 1, "31951": 4}
    assert [(g["kind"], g["count"]) for g in ours["groups"]] == [
        ("unknown-field", 3),
        ("binary-frame", 1),
        ("wrong-stream-sid", 1),
    ]


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


def test_a_key_without_a_time_is_pressed_once_the_app_has_had_its_say(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "call.jsonl"
    code, out, _ = run(capsys, f"{APPS}:good", "--dtmf", "9", "--json", "--trace", str(trace))
    assert code == 0
    (played,) = json.loads(out)["replies"]  # the app's one second of tone
    pressed = [
        json.loads(line)["t"]
        for line in trace.read_text().splitlines()
        if '"from": "twilio"' in line and '\\"dtmf\\"' in line
    ]
    # After the reply and a second of quiet (WaitForQuiet), as an --audio turn would be.
    assert len(pressed) == 1 and pressed[0] * 1000 >= played["end_ms"] + 1000


def test_barge_in_after_and_timed_audio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    speech = tmp_path / "speech.wav"
    speech.write_bytes(wav_bytes(mulaw.decode(TONE_MULAW[:4000]), encoding="pcm"))
    code, out, err = run(
        capsys,
        f"{APPS}:agent",
        "--audio",
        str(speech),  # a turn: once the app's first reply has played out
        "--barge-in-after",
        "600",
        "--audio",
        str(speech),  # 600 ms into the answer
        "--audio",
        f"{speech}@20",  # at 20 s, whatever the app does
        "--hangup-after",
        "25",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    onsets = [u["onset_ms"] for u in report["utterances"]]
    assert len(onsets) == 3 and onsets[2] == 20_000
    second_reply = next(r for r in report["replies"] if r["start_ms"] > onsets[0])
    (barge,) = [b for b in report["barge_ins"] if b["onset_ms"] == onsets[1]]
    assert barge["onset_ms"] - second_reply["start_ms"] == 600
    assert barge["clear_ms"] is not None and barge["heard_ms"] >= 600
    assert "call placed" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--audio", "a.wav", "--barge-in-after", "5"], "add one after it"),
        (["--barge-in-after", "5", "--audio", "a.wav@1"], "without @SECONDS"),
        (["--barge-in-after", "5", "--barge-in-after", "6", "--audio", "a.wav"], "in a row"),
        (["--audio", "a.wav@-2"], "not negative"),
        (["--audio", "missing.wav"], "missing.wav: cannot read"),
        (["--dtmf", "1@soon"], "DIGITS@SECONDS"),
        (["--dtmf", "x@1"], "DTMF keys"),
        (["--connect-to", "nowhere"], "HOST:PORT"),
        (["--connect-to", "127.0.0.1:99999"], "HOST:PORT"),
        (["--connect-to", "127.0.0.1:0"], "HOST:PORT"),
        (["--param", "novalue"], "mediastreams call: --param 'novalue': write it as name=value"),
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
    assert json.loads(out)["groups"][0]["code"] == 31902


QUIET_APP = (
    "async def app(scope, receive, send):\n"
    "    if scope['type'] != 'websocket':\n"
    "        return\n"
    "    await receive()\n"
    "    await send({'type': 'websocket.accept'})\n"
    "    while (await receive())['type'] != 'websocket.disconnect':\n"
    "        pass\n"
)


class Lines:
    """The lines a process writes to a pipe, read as they come (a thread per pipe)."""

    def __init__(self, pipe: Any) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: Any) -> None:
        for line in pipe:
            self.lines.put(line)

    def wait_for(self, text: str, *, timeout_s: float = 60.0) -> str:
        """The first line holding ``text``; fails after ``timeout_s`` without one."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0))
            except queue.Empty:
                pytest.fail(f"no line with {text!r} within {timeout_s} s; got {self.seen}")
            self.seen.append(line)
            if text in line:
                return line

    def rest(self) -> str:
        self._thread.join(timeout=60)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)


def call_process(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """``mediastreams call`` as a foreground command of a terminal: Ctrl-C reaches it.

    A command started in the background of a shell (``pytest ... &``) inherits SIGINT
    ignored, and passes that on to its children, which then ignore a Ctrl-C as they should;
    so the child is started with SIGINT handled here (an exec resets a handled signal to its
    default, while an ignored one stays ignored).
    """
    command = [sys.executable, "-m", "mediastreams", "call", *args]
    handled = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    finally:
        signal.signal(signal.SIGINT, handled)


def test_ctrl_c_hangs_up_and_still_writes_the_report_and_recording(tmp_path: Path) -> None:
    (tmp_path / "quiet_app.py").write_text(QUIET_APP)
    recording = tmp_path / "heard.wav"
    process = call_process(
        tmp_path,
        "quiet_app:app",
        "--clock",
        "real",
        "--hangup-after",
        "30",
        "--json",
        "--record",
        str(recording),
    )
    stderr = Lines(process.stderr)
    placed = stderr.wait_for("call placed")  # the call is under way: Ctrl-C now hangs up
    assert placed.strip() == "mediastreams call: call placed: quiet_app:app (Ctrl-C hangs up)"
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.rest()
    report = json.loads(out)
    seen = {key: report[key] for key in ("ended_by", "duration_ms", "wall_s", "notes")}
    assert report["ended_by"] == "interrupted" and report["duration_ms"] < 30_000, seen
    with wave.open(str(recording)) as heard:
        assert heard.getnframes() == report["duration_ms"] * 8


SLOW_IMPORT_APP = (
    "import os, sys, time\n"
    "print('importing the app', file=sys.stderr, flush=True)\n"
    "deadline = time.monotonic() + 60\n"
    "while not os.path.exists('go') and time.monotonic() < deadline:  # a slow import\n"
    "    time.sleep(0.01)\n"
) + QUIET_APP


def assert_interrupted_before_placing(report: dict[str, Any]) -> None:
    assert (report["placed"], report["ended_by"], report["exit_code"]) == (
        False,
        "interrupted",
        130,
    )
    assert report["call_sid"] is None and report["frames"] == {"twilio": 0, "app": 0}
    assert report["notes"] == [
        "interrupted (Ctrl-C) before the call was placed: no request reached the app"
    ]


def test_ctrl_c_while_the_app_is_imported_gives_the_report_and_recordings(
    tmp_path: Path,
) -> None:
    (tmp_path / "slow_import_app.py").write_text(SLOW_IMPORT_APP)
    recording, report_file = tmp_path / "heard.wav", tmp_path / "report.json"
    process = call_process(
        tmp_path,
        "slow_import_app:app",
        "--json",
        "--record",
        str(recording),
        "--json-out",
        str(report_file),
    )
    stderr = Lines(process.stderr)
    stderr.wait_for("importing the app")
    process.send_signal(signal.SIGINT)
    (tmp_path / "go").touch()  # the import ends; the call is not placed
    with process:  # closes the pipes
        assert process.stdout is not None
        out = process.stdout.read()  # stderr is the reader thread's
        code = process.wait(timeout=60)
        err = stderr.rest()
    assert code == 130, err
    report = json.loads(out)
    assert_interrupted_before_placing(report)
    assert json.loads(report_file.read_text()) == report
    with wave.open(str(recording)) as heard:
        assert heard.getnframes() == 0  # the caller heard nothing: an empty recording
    assert "mediastreams call: interrupted before the call was placed" in err
    assert "call placed:" not in err and "Traceback" not in err


@pytest.fixture
def ctrl_c_handled() -> Iterator[None]:
    """SIGINT with Python's default handler, as in a terminal's foreground command: a suite
    started in the background of a shell inherits it ignored, and a command leaves an
    ignored Ctrl-C ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ctrl_c_handled")
def test_ctrl_c_while_the_command_loads_gives_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Ctrl-C while the command itself is still loading (the emulator's imports take a second
    # or more on a busy machine): it is held until they are done, then the report comes.
    import mediastreams.cli.call as command

    loading = command._steps

    def interrupted_while_loading(*args: Any) -> Any:
        os.kill(os.getpid(), signal.SIGINT)
        return loading(*args)

    monkeypatch.setattr(command, "_steps", interrupted_while_loading)
    recording = tmp_path / "heard.wav"
    code, out, err = run(capsys, f"{APPS}:good", "--json", "--record", str(recording))
    assert code == 130
    report = json.loads(out)
    assert_interrupted_before_placing(report)
    assert report["clock"] == "virtual"
    assert err == "mediastreams call: interrupted before the call was placed\n"
    with wave.open(str(recording)) as heard:
        assert heard.getnframes() == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_a_keyboard_interrupt_that_escapes_is_one_line_and_exit_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Not Ctrl-C, which cancels the call: a KeyboardInterrupt raised by the app's import.
    (tmp_path / "raising_app.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = run(capsys, "raising_app:app", "--json")
    assert code == 130 and out == ""
    assert err == "mediastreams call: interrupted before the call was placed: no report\n"


def test_json_is_alone_on_stdout_whatever_the_app_prints(tmp_path: Path) -> None:
    (tmp_path / "chatty_app.py").write_text(
        "import os\n"
        "print('importing the app')\n"
        + QUIET_APP.replace(
            "    await receive()\n",
            "    await receive()\n    print('a call!')\n    os.write(1, b'straight to fd 1\\n')\n",
        )
    )
    report_file = tmp_path / "report.json"
    process = call_process(
        tmp_path, "chatty_app:app", "--hangup-after", "1", "--json", "--json-out", str(report_file)
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert json.loads(out) == json.loads(report_file.read_text())
    assert out.count("\n") == 1
    for printed in ("importing the app", "a call!", "straight to fd 1", "call placed"):
        assert printed in err


def test_a_host_without_a_scheme_gets_a_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    for target, url in (
        ("127.0.0.1:5061/incoming-call", "http://127.0.0.1:5061/incoming-call"),
        ("localhost:8000/x", "http://localhost:8000/x"),
        ("example.com/x", "https://example.com/x"),
    ):
        code, out, err = run(capsys, target)
        assert code == 2 and out == ""
        assert f"did you mean {url}?" in err and "cannot import" not in err


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
