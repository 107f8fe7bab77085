"""Place emulated calls against third-party stacks and say what the emulator found.

Started by ``scripts/thirdparty/run`` inside its throwaway environment. It starts, each on a
free port of 127.0.0.1: the fake Realtime server, the Realtime-sample-shaped app three times
(its model faster than real time, slower, and with a few deltas still arriving after speech
started: the fake's profiles), and the pipecat bot, configured to hang up over REST at the
emulator's REST stand-in (``--rest-port``, ``rest_port=``), which each pipecat call serves.
Then it places the calls of ``CALLS``, writes each report, recording and trace under the
output folder, reads the apps' own logs, and prints a summary (also in ``summary.md``;
everything in ``results.json``).

The caller's script is the same in every call: wait for the greeting, ask (caller-request),
talk over the long answer (caller-interrupt, 3 s after the question ended), wait, press 9,
and hang up once the app has been quiet for 2 s (the bot hangs up itself on 9).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from findings import as_dict, heard, read_heard, realtime_session
from summary import render

from mediastreams.audio import SILENCE_BYTE, to_mulaw, wav_bytes
from mediastreams.emulator import Audio, Press, Silence, WaitForQuiet, place_call
from mediastreams.emulator.runner import write_outputs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROMPTS = ROOT / "src" / "mediastreams" / "demo" / "prompts"
AUTH_TOKEN = "thirdparty-auth-token"
ACCOUNT_SID = "AC" + "0" * 32
PAUSE_BEFORE_INTERRUPT_MS = 3000
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Call:
    """One call: which app, placed how (the ``call`` command or the Python API), which clock.

    ``cli_audio``: how the ``call`` command says the caller's two turns: ``"one-file"`` (both
    in one ``--audio`` file, the interruption 3 s after the question: the same audio as the
    Python calls' steps) or ``"barge-in"`` (two files, the second ``--barge-in-after`` 2 s
    into the answer). ``rest``: the call serves the REST stand-in the bot hangs up at.
    """

    name: str
    app: str  # key of the server in Servers.ports; "pipecat-inprocess" for module:app
    how: str  # "cli" or "python"
    clock: str = "real"
    public_host: str = "app.example.test"
    cli_audio: str = "one-file"
    rest: bool = False


CALLS = [
    Call("pipecat-cli", "pipecat", "cli", rest=True),
    Call("pipecat-python", "pipecat", "python", rest=True),
    Call("pipecat-virtual", "pipecat-inprocess", "cli", clock="virtual"),
    Call("realtime-cli", "realtime", "cli"),
    Call("realtime-cli-barge-in", "realtime", "cli", cli_audio="barge-in"),
    Call("realtime-python", "realtime", "python"),
    Call("realtime-slow-python", "realtime-slow", "python"),
    Call("realtime-late-python", "realtime-late", "python"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise SystemExit(
                f"runner: a server exited at start (code {process.returncode}):\n{tail}"
            )
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"runner: nothing listened on 127.0.0.1:{port} after 120 s; see {log}")


class Servers:
    """The processes of a run, each on its own port, stopped at the end by their id."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ports: dict[str, int] = {}
        # The emulator's REST stand-in listens here during each pipecat call; the bot is
        # configured with it (and the account SID and token) before any call, as a real
        # deployment is configured with api.twilio.com.
        self.rest_port = free_port()
        self.env = {
            **os.environ,
            "PROMPTS": str(PROMPTS),
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        }
        self.bot_env = {"TWILIO_API_BASE_URL": f"http://127.0.0.1:{self.rest_port}"}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        port = free_port()
        log = self.out / f"{name}.log"
        command = [arg.replace("{port}", str(port)) for arg in argv]
        with log.open("wb") as file:
            process = subprocess.Popen(
                command,
                cwd=HERE,
                env={**self.env, **(env or {})},
                stdout=file,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        wait_for_port(port, process, log)
        self.ports[name] = port
        return port

    def start_all(self) -> None:
        python = str(BIN / "python")
        uvicorn = [str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", "{port}"]
        log = str(self.out / "fake-realtime.jsonl")
        fake = [python, "fake_realtime.py", "--port", "{port}", "--prompts", str(PROMPTS)]
        port = self.start("fake-realtime", [*fake, "--log", log, "--speed", "4"])
        # One app per pace of the model: the fake picks it from the URL's first segment.
        for name, prefix in (
            ("realtime", ""),
            ("realtime-slow", "/slow"),
            ("realtime-late", "/late"),
        ):
            env = {
                "REALTIME_URL": f"ws://127.0.0.1:{port}{prefix}/v1/realtime",
                "OPENAI_API_KEY": "sk-local-stand-in",
                "AI_SPEAKS_FIRST": "1",
                "SHOW_TIMING_MATH": "1",
            }
            self.start(name, [*uvicorn, "realtime_app:app"], env)
        self.start("pipecat", [*uvicorn, "pipecat_bot:app"], self.bot_env)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def caller_audio(out: Path) -> dict[str, Path]:
    """The caller's WAVs: the demo's prompts, and both turns in one file for the CLI."""
    request = to_mulaw(PROMPTS / "caller-request.wav")
    request += bytes([SILENCE_BYTE]) * (-len(request) % 160)
    pause = bytes([SILENCE_BYTE]) * 8 * PAUSE_BEFORE_INTERRUPT_MS
    both = out / "caller-request-then-interrupt.wav"
    both.write_bytes(wav_bytes(request + pause + to_mulaw(PROMPTS / "caller-interrupt.wav")))
    return {
        "request": PROMPTS / "caller-request.wav",
        "interrupt": PROMPTS / "caller-interrupt.wav",
        "both": both,
    }


def cli_audio(call: Call, audio: dict[str, Path]) -> list[str]:
    """The CLI's way to say the script: both turns in one file, or a timed barge-in."""
    if call.cli_audio == "barge-in":
        return [
            "--audio",
            str(audio["request"]),
            "--barge-in-after",
            "2000",
            "--audio",
            str(audio["interrupt"]),
        ]
    return ["--audio", str(audio["both"])]


def place_cli(call: Call, servers: Servers, audio: dict[str, Path], files: dict[str, Path]) -> Any:
    command = [str(BIN / "mediastreams"), "call"]
    if call.app == "pipecat-inprocess":
        command += ["pipecat_bot:app", "--webhook-path", "/incoming-call", "--clock", "virtual"]
    else:
        command += [
            f"https://{call.public_host}/incoming-call",
            "--connect-to",
            f"127.0.0.1:{servers.ports[call.app]}",
        ]
    command += ["--auth-token", AUTH_TOKEN, *cli_audio(call, audio), "--dtmf", "9", "--json"]
    if call.rest:
        command += ["--rest-port", str(servers.rest_port), "--account-sid", ACCOUNT_SID]
    command += ["--record", str(files["heard"]), "--record-stereo", str(files["stereo"])]
    command += ["--trace", str(files["trace"]), "--trace-payloads", "--max-duration", "120"]
    with files["stderr"].open("wb") as stderr:
        done = subprocess.run(
            command, cwd=HERE, env=servers.env, stdout=subprocess.PIPE, stderr=stderr
        )
    stdout = done.stdout.decode(errors="replace")
    files["command"].write_text(" ".join(command) + "\n")
    try:
        return json.loads(stdout), done.returncode, None
    except json.JSONDecodeError:
        # Anything the app printed is mixed into stdout: take the report's own line.
        lines = [line for line in stdout.splitlines() if line.startswith('{"target"')]
        problem = f"stdout was not only the report ({len(stdout.splitlines())} lines)"
        return (json.loads(lines[-1]) if lines else None), done.returncode, problem


def place_python(
    call: Call, servers: Servers, audio: dict[str, Path], files: dict[str, Path]
) -> Any:
    steps = [
        WaitForQuiet(timeout_ms=2000),
        Audio(audio["request"]),
        Silence(PAUSE_BEFORE_INTERRUPT_MS),
        Audio(audio["interrupt"]),
        WaitForQuiet(),
        Press("9"),
    ]
    rest: dict[str, Any] = (
        {"rest_port": servers.rest_port, "account_sid": ACCOUNT_SID} if call.rest else {}
    )
    result = place_call(
        f"https://{call.public_host}/incoming-call",
        steps,
        connect_to=("127.0.0.1", servers.ports[call.app]),
        auth_token=AUTH_TOKEN,
        trace=files["trace"],
        trace_payloads=True,
        max_duration_s=120,
        **rest,
    )
    write_outputs(result, record=files["heard"], record_stereo=files["stereo"])
    return result.report.to_dict(), result.report.exit_code, None


def run_call(call: Call, servers: Servers, audio: dict[str, Path], out: Path) -> dict[str, Any]:
    files = {
        key: out / f"{call.name}.{suffix}"
        for key, suffix in (
            ("report", "report.json"),
            ("heard", "heard.wav"),
            ("stereo", "stereo.wav"),
            ("trace", "trace.jsonl"),
            ("stderr", "stderr.log"),
            ("command", "command.txt"),
        )
    }
    print(f"runner: placing {call.name} ({call.how}, {call.clock} clock)...", flush=True)
    started = time.time()
    place = place_cli if call.how == "cli" else place_python
    report, exit_code, problem = place(call, servers, audio, files)
    ended = time.time()
    if report is not None:
        files["report"].write_text(json.dumps(report, indent=2) + "\n")
    result: dict[str, Any] = {
        "call": call.name,
        "app": call.app,
        "how": call.how,
        "clock": call.clock,
        "exit_code": exit_code,
        "problem": problem,
        "wall_s": round(ended - started, 1),
        "report": report,
    }
    if report is not None and files["stereo"].exists():
        result["heard"] = _heard(report, files["stereo"])
    if call.app.startswith("realtime"):
        result["realtime"] = _realtime(out / "fake-realtime.jsonl", started, ended)
    if report is not None and files["trace"].exists():
        result["inspect"] = _inspect(files["trace"])
    return result


def _inspect(trace: Path) -> dict[str, Any]:
    """``mediastreams inspect --json`` of the call's trace, to set beside the report."""
    done = subprocess.run(
        [str(BIN / "mediastreams"), "inspect", "--json", str(trace)],
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout) if done.stdout.strip() else {"error": done.stderr.strip()}


def _heard(report: dict[str, Any], stereo: Path) -> list[dict[str, Any]]:
    recording = read_heard(stereo)
    prelude = report.get("twiml", {}).get("prelude_ms", 0)
    names = ("greeting", "story", "ack", "goodbye")
    return [as_dict(heard(recording, PROMPTS / f"{name}.wav", prelude)) for name in names]


def _realtime(log: Path, started: float, ended: float) -> dict[str, Any]:
    # The sample never closes its Realtime socket when the caller hangs up: look for the
    # close for a few seconds after the call, then say what was seen.
    deadline = time.monotonic() + 5
    while True:
        session = realtime_session(log, started, ended)
        if session.closed_after_call_s is not None or time.monotonic() > deadline:
            return as_dict(session)
        time.sleep(0.25)


def versions() -> dict[str, str]:
    from importlib.metadata import version

    names = (
        "pipecat-ai",
        "fastapi",
        "starlette",
        "uvicorn",
        "websockets",
        "twilio",
        "onnxruntime",
        "numpy",
        "aiohttp",
        "mediastreams",
    )
    return {name: version(name) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "output")
    parser.add_argument("--only", nargs="*", help="names of the calls to place (default: all)")
    args = parser.parse_args()
    names = [c.name for c in CALLS]
    unknown = [name for name in args.only or [] if name not in names]
    if unknown:
        raise SystemExit(
            f"runner: no call named {', '.join(unknown)}; the calls: {', '.join(names)}"
        )
    calls = [c for c in CALLS if not args.only or c.name in args.only]
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in (*out.glob("*.jsonl"), *out.glob("*.log"), *out.glob("*.report.json")):
        stale.unlink()  # the logs are appended to: a run starts them afresh
    started = time.monotonic()
    audio = caller_audio(out)
    servers = Servers(out)
    results = []
    try:
        servers.start_all()
        for call in calls:
            results.append(run_call(call, servers, audio, out))
    finally:
        servers.stop()
    data = {
        "versions": versions(),
        "script_s": round(time.monotonic() - started, 1),
        "calls": results,
    }
    (out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    text = render(data)
    (out / "summary.md").write_text(text)
    print(text)
    missing = [r["call"] for r in results if r["report"] is None]
    if missing:
        raise SystemExit(f"runner: no report from {', '.join(missing)}; see their stderr logs")


if __name__ == "__main__":
    main()
