"""The emulator against the project's own server (``--play``, ``--echo``), in and out of process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from emulator_apps import TONE_MULAW, correlation
from mediastreams import server
from mediastreams.audio import to_mulaw, wav_bytes
from mediastreams.cli import main
from mediastreams.emulator import (
    Audio,
    CallResult,
    Hangup,
    Press,
    Silence,
    WaitForQuiet,
    place_call,
    place_call_async,
)
from waiting import free_port


def chirp(path: Path, seconds: float = 2.0, sample_rate: int = 22050) -> Path:
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    pcm = (12000 * np.sin(2 * np.pi * (300 * t + 600 * t * t))).astype("<i2")
    path.write_bytes(wav_bytes(pcm.tobytes(), encoding="pcm", sample_rate=sample_rate))
    return path


def test_play_the_caller_hears_the_file(tmp_path: Path) -> None:
    source = to_mulaw(chirp(tmp_path / "prompt.wav"))
    app = server.create_app(server.ServerConfig(handler=server.play_handler(source)))
    result = place_call(app, [Hangup(at_ms=4000)], webhook_path="/incoming-call")
    assert result.report.findings == []
    assert result.report.marks_sent >= 1 and result.report.marks_echoed == result.report.marks_sent
    assert correlation(result.heard_mulaw, source) >= 0.99


def test_echo_the_caller_hears_themself() -> None:
    app = server.create_app(server.ServerConfig(handler=server.echo_handler))
    steps = [Audio(TONE_MULAW, raw_mulaw=True), WaitForQuiet(), Hangup()]
    result = place_call(app, steps, webhook_path="/incoming-call")
    assert result.report.findings == []
    assert correlation(result.heard_mulaw, TONE_MULAW) >= 0.99
    assert result.report.time_to_first_audio_ms is not None


def test_signed_calls_pass_and_unsigned_ones_are_refused() -> None:
    config = server.ServerConfig(handler=server.echo_handler, auth_token="secret")
    app = server.create_app(config)
    signed = place_call(
        app, [Hangup(at_ms=200)], webhook_path="/incoming-call", auth_token="secret"
    )
    assert signed.report.ok
    unsigned = place_call(app, [Hangup(at_ms=200)], webhook_path="/incoming-call")
    assert unsigned.report.exit_code == 2
    assert unsigned.report.findings[0].violation.code == 11200


def test_over_a_real_socket_on_127_0_0_1(tmp_path: Path) -> None:
    source = to_mulaw(chirp(tmp_path / "prompt.wav", seconds=0.5))
    config = server.ServerConfig(handler=server.play_handler(source))

    async def run() -> CallResult:
        sock = server.bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        stop = asyncio.Event()
        serving = asyncio.create_task(server.serve(config, sock, stop=stop))
        try:
            return await place_call_async(
                f"http://127.0.0.1:{port}/incoming-call", [Hangup(at_ms=1000)]
            )
        finally:
            stop.set()
            await serving

    result = asyncio.run(run())
    assert result.report.findings == []
    assert correlation(result.heard_mulaw, source) >= 0.99


def test_serve_behind_a_public_url_with_connect_to_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``mediastreams serve`` as configured for a tunnel, and ``mediastreams call`` to it."""
    prompt = chirp(tmp_path / "prompt.wav", seconds=1.0)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mediastreams",
        "serve",
        "--port",
        str(port),
        "--play",
        str(prompt),
        "--public-url",
        "https://abc.example",
        "--auth-token",
        "secret",
        "--stream-token",
        "--log-level",
        "warning",
    ]
    serving = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "mediastreams serve did not start"
                time.sleep(0.05)
        heard = tmp_path / "heard.wav"
        code = main(
            [
                "call",
                "https://abc.example/incoming-call",
                "--connect-to",
                f"127.0.0.1:{port}",
                "--auth-token",
                "secret",
                "--hangup-after",
                "2",
                "--json",
                "--record",
                str(heard),
            ]
        )
    finally:
        serving.terminate()
        serving.communicate(timeout=20)
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["violations"]
    assert report["stream_url"] == "wss://abc.example/media-stream"
    recorded = to_mulaw(heard)
    assert correlation(recorded, to_mulaw(prompt)) >= 0.99


def test_the_demo_conversation_greeting_keys_and_barge_in() -> None:
    from importlib import resources

    from mediastreams.demo import handler

    def caller(name: str) -> Audio:
        data = resources.files("mediastreams.demo").joinpath("prompts", f"{name}.wav")
        return Audio(data.read_bytes())

    app = server.create_app(server.ServerConfig(handler=handler))
    steps = [
        WaitForQuiet(),  # the greeting
        caller("caller-request"),
        WaitForQuiet(),  # "press a key"
        Press("1"),
        Silence(1500),  # the long message has started
        caller("caller-interrupt"),
        WaitForQuiet(),  # goodbye
        Hangup(),
    ]
    result = place_call(app, steps, webhook_path="/incoming-call")
    report = result.report
    assert report.findings == [], report.findings
    (barge,) = report.barge_ins
    assert barge.clear_reaction_ms is not None and barge.audio_after_clear_ms == 0
    assert report.marks_echoed == report.marks_sent and report.marks_echoed_by_clear >= 1
    assert all(turn.latency_ms is not None for turn in report.turns)
