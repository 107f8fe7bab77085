"""``mediastreams serve``: bad input is one line and exit code 2; a real run answers calls."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleet import Instance
from mediastreams.cli import main
from waiting import DEADLINE_S, DUMP_ON_ABORT, free_port, kill_with_stacks, wait_for


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # serve configures the root logger (the app's loggers too) and quiets chatty libraries.
    names = ["mediastreams", "", "websockets", "uvicorn", "picows", "redis", "asyncio"]
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level) for n in names}
    yield
    for name, (handlers, level) in saved.items():
        logging.getLogger(name).handlers[:], logging.getLogger(name).level = handlers, level


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["serve", *argv])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "choose one of"),
        (("--echo", "--play", "x.wav"), "choose one of"),
        (("--play", "/no/such/file.wav"), "--play /no/such/file.wav: cannot read: No such file"),
        (("--play", "/"), "--play /: cannot read: Is a directory"),
        (("--app", "nocolon"), "module:function"),
        (("--app", "no_such_module_xyz:handler"), "cannot import"),
        (("--app", "os:no_such_function"), "has no"),
        (("--app", "os:getcwd"), "async def"),
        (("--echo", "--param", "novalue"), "name=value"),
        (("--echo", "--public-url", "abc.example"), "--public-url"),
        (
            ("--echo", "--param", "tenant=" + "x" * 500),
            "mediastreams serve: --param: <Parameter name='tenant'>",
        ),
        (
            ("--echo", "--redis", "http://127.0.0.1:6379"),
            "mediastreams serve: --redis: the Redis URL must start with redis://",
        ),
        (("--echo", "--hangup-after-play"), "goes with --play"),
        (("--echo", "--log-level", "loud"), "--log-level"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    code, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("reuse_port", [False, True])
def test_a_port_in_use_suggests_another(
    capsys: pytest.CaptureFixture[str], workers: str, reuse_port: bool
) -> None:
    with socket.socket() as taken:
        if reuse_port:  # another `serve --workers` there: SO_REUSEPORT would let us join it
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, err = run(capsys, "--echo", "--port", port, "--workers", workers)
    assert code == 2
    assert err.startswith(f"mediastreams serve: cannot listen on 127.0.0.1:{port}: ")
    assert err.rstrip().endswith("; choose another --port")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "url",
    ["http://abc.example", "https://", "https://abc.example/?tenant=acme", "https://x//twilio"],
)
def test_a_bad_public_url_is_one_line(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, err = run(capsys, "--echo", "--public-url", url)
    assert code == 2
    assert err.startswith("mediastreams serve: --public-url: public")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def banner_of(tmp_path: Path, *argv: str) -> str:
    """The start-up line of a real ``serve``, which is then stopped."""
    log = tmp_path / "banner.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "mediastreams", "serve", "--port", "0", *argv],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **DUMP_ON_ABORT},
        )
        try:
            wait_for(lambda: "mediastreams serve (" in log.read_text(), "the banner")
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(DEADLINE_S)
            except subprocess.TimeoutExpired:
                kill_with_stacks(server)  # no process outlives the test, even a failing one
                raise AssertionError(f"serve did not stop on Ctrl-C: {log.read_text()}") from None
    assert server.returncode == 0, log.read_text()
    (line,) = [line for line in log.read_text().splitlines() if "mediastreams serve (" in line]
    return line


def test_the_banner_prints_the_exact_urls_signatures_are_checked_on(tmp_path: Path) -> None:
    line = banner_of(
        tmp_path, "--echo", "--public-url", "https://x/twilio/", "--auth-token", "secret"
    )
    assert (
        "webhook https://x/twilio/incoming-call, stream wss://x/twilio/media-stream, "
        "signatures checked on these URLs" in line
    ), line
    assert "secret" not in line


def test_ctrl_c_right_after_the_workers_banner_stops_them_all_cleanly(tmp_path: Path) -> None:
    # The signal reaches workers still starting: it waits until they handle it, so none dies
    # with a traceback, none is left running, and the supervisor exits 0. Three tries: the
    # moment varies.
    for attempt in range(3):
        line = banner_of(tmp_path, "--echo", "--workers", "2")
        log = (tmp_path / "banner.log").read_text()
        assert "Traceback" not in log and "Fatal Python error" not in log, (attempt, log)
        assert "interrupted" not in log, (attempt, log)
        port = line.split("workers on 127.0.0.1:")[1].split()[0]
        assert workers_on(port) == [], (attempt, log)


def workers_on(port: str) -> list[int]:
    """The pids of the ``serve`` workers of the port still running (a worker's command line
    names its port)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if b"mediastreams" in argv and b"serve" in argv and port.encode() in argv:
            found.append(int(entry.name))
    return found


def test_the_workers_banner_prints_the_same_urls(tmp_path: Path) -> None:
    line = banner_of(tmp_path, "--echo", "--workers", "2", "--public-url", "https://x/twilio")
    assert "2 workers on 127.0.0.1:" in line
    assert "webhook https://x/twilio/incoming-call, stream wss://x/twilio/media-stream" in line


@pytest.mark.parametrize("backend", ["uvicorn", "picows"])
def test_a_real_server_answers_and_stops(tmp_path: Path, backend: str) -> None:
    (tmp_path / "myapp.py").write_text("async def handler(stream):\n    pass\n")
    port = free_port()
    command = [sys.executable, "-m", "mediastreams", "serve", "--app", "myapp:handler"]
    command += ["--port", str(port), "--backend", backend, "--param", "tenant=acme"]
    env = {**os.environ, "TWILIO_AUTH_TOKEN": ""}
    server = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
        assert reply.json() == {"status": "ok", "streams": 0}
        twiml = httpx.get(f"http://127.0.0.1:{port}/incoming-call", timeout=DEADLINE_S).text
        assert f'url="ws://127.0.0.1:{port}/media-stream"' in twiml
        assert '<Parameter name="tenant" value="acme" />' in twiml
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=DEADLINE_S)
    assert server.returncode == 0, err
    assert b"Traceback" not in err


@pytest.mark.anyio
async def test_serve_play_a_wav_file_end_to_end(tmp_path: Path) -> None:
    import asyncio

    from fake_twilio import call_and_listen
    from mediastreams.audio import to_mulaw, wav_bytes

    pcm = bytes(range(256)) * 16  # 2048 samples of 16-bit PCM at 8 kHz: 256 ms
    path = tmp_path / "hello.wav"
    path.write_bytes(wav_bytes(pcm, encoding="pcm", sample_rate=8000))
    port = free_port()
    command = [sys.executable, "-m", "mediastreams", "serve", "--play", str(path)]
    command += ["--hangup-after-play", "--port", str(port)]
    server = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(DEADLINE_S):
            while True:
                try:
                    async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
                        await client.get(f"http://127.0.0.1:{port}/healthz")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
        twilio = await call_and_listen(f"ws://127.0.0.1:{port}/media-stream")
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(server.communicate(), DEADLINE_S)
    assert bytes(twilio.heard) == to_mulaw(path)
    assert server.returncode == 0, err
    assert b"played 256 ms of 256 ms (played)" in err


@pytest.mark.anyio
async def test_picows_on_uvloop_carries_an_echo_call() -> None:
    import asyncio

    from fake_twilio import TwilioClient

    port = free_port()
    command = [sys.executable, "-m", "mediastreams", "serve", "--echo", "--port", str(port)]
    command += ["--backend", "picows", "--loop", "uvloop"]
    server = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.PIPE)
    spoken = bytes(range(1, 161)) * 10  # ten 20 ms frames the caller says, none silent
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    async with httpx.AsyncClient() as client:
                        await client.get(f"http://127.0.0.1:{port}/healthz")
                    break
                except httpx.HTTPError:
                    assert server.returncode is None
                    await asyncio.sleep(0.1)
        async with TwilioClient(f"ws://127.0.0.1:{port}/media-stream") as twilio:
            await twilio.open()
            for start in range(0, len(spoken), 160):
                await twilio.tick(spoken[start : start + 160])
            await twilio.run_until(lambda: spoken in bytes(twilio.heard), timeout_s=30)
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(server.communicate(), 30)
    assert spoken in bytes(twilio.heard)
    assert b"mediastreams serve (picows on uvloop)" in err, err
    assert server.returncode == 0, err
    assert b"Traceback" not in err


def test_loop_uvloop_without_uvloop(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    code, err = run(capsys, "--echo", "--loop", "uvloop")
    assert code == 2 and "mediastreams[uvloop]" in err


def test_backend_picows_without_picows(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "picows", None)  # import picows now raises ImportError
    code, err = run(capsys, "--echo", "--backend", "picows")
    assert code == 2 and "mediastreams[picows]" in err


def test_play_a_file_that_is_not_audio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    code, err = run(capsys, "--play", str(text))
    assert code == 2
    assert err.startswith(f"mediastreams serve: --play {text}: ")
    assert err.count(str(text)) == 1  # the path once, then what is wrong with it
    assert "unknown audio format" in err


def test_help_names_what_port_and_log_level_take(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--port INTEGER RANGE Port to listen on; 0 picks a free one" in text
    assert "--log-level LEVEL debug, info, warning or error; the app's own loggers too." in text


def test_max_connections_caps_a_real_server(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "mediastreams", "serve", "--echo", "--port", str(port)]
    command += ["--backend", "websockets", "--max-connections", "2"]
    server = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE)
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
        status = 200
        while status != 503 and len(held) < 4:  # the probe above may hold a slot a moment
            held.append(socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S))
            headers = {"Connection": "close"}
            reply = httpx.get(
                f"http://127.0.0.1:{port}/healthz", headers=headers, timeout=DEADLINE_S
            )
            status = reply.status_code
        assert status == 503
    finally:
        for sock in held:
            sock.close()
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=DEADLINE_S)
    assert server.returncode == 0, err
    assert b"at most 2 connections" in err
    assert b"refused 1 connection with HTTP 503" in err
    assert b"Traceback" not in err


def test_the_log_line_escapes_the_sids_a_peer_sent() -> None:
    from mediastreams.cli.logs import SidFormatter

    record = logging.LogRecord("mediastreams", logging.INFO, "", 0, "stream ended", (), None)
    record.stream_sid = "MZ1"
    record.call_sid = "CA1\n2025-01-01 00:00:00 INFO forged"
    line = SidFormatter("%(levelname)s %(message)s").format(record)
    assert line == "INFO stream ended stream_sid=MZ1 call_sid=CA1\\n2025-01-01 00:00:00 INFO forged"


LOG_APP = """
import asyncio, logging

log = logging.getLogger("logapp")


async def handler(stream):
    log.debug("the app's own debug line")

    async def later():
        log.info("a line from a task the handler started")

    await asyncio.create_task(later())
    await stream.play(bytes(range(1, 128)) * 20)
    async for _ in stream:
        pass
"""


@pytest.mark.anyio
async def test_json_logs_carry_the_sids_and_never_a_payload_or_a_token(tmp_path: Path) -> None:
    import json

    from mediastreams.emulator import Audio, Silence, place_call_async

    (tmp_path / "logapp.py").write_text(LOG_APP)
    auth = "auth-token-that-must-not-be-logged"
    args = ["--app", "logapp:handler", "--log-format", "json", "--log-level", "debug"]
    instance = Instance([*args, "--auth-token", auth, "--stream-token"], tmp_path)
    frames: list[str] = []
    try:
        result = await place_call_async(
            f"{instance.url}/incoming-call",
            [Audio(bytes(range(128, 255)) * 30, raw_mulaw=True), Silence(500)],
            auth_token=auth,
            end_quiet_ms=300,
            on_frame=lambda t, sender, frame: frames.append(str(frame)),
        )
    finally:
        instance.stop()
    assert result.report.ok, result.report.findings
    call_sid, stream_sid = result.report.call_sid, result.report.stream_sid
    entries = [json.loads(line) for line in instance.text().splitlines() if line.strip()]
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    about_the_call = [
        e for e in entries if e["logger"] == "logapp" or call_sid in e["message"]
        or stream_sid in e["message"]
    ]  # fmt: skip
    assert len([e for e in about_the_call if e["logger"] == "logapp"]) == 2  # debug too
    assert len(about_the_call) >= 3, entries
    for entry in about_the_call:
        assert (entry.get("call_sid"), entry.get("stream_sid")) == (call_sid, stream_sid), entry
    text = instance.text()
    payloads = [json.loads(f)["media"]["payload"] for f in frames if '"media"' in f]
    assert len(payloads) > 10
    assert not [p for p in payloads if p in text]
    (start,) = [json.loads(f) for f in frames if '"event":"start"' in f.replace(" ", "")]
    stream_token = start["start"]["customParameters"]["streamToken"]
    assert auth not in text and stream_token not in text


def test_log_level_applies_to_the_apps_own_loggers() -> None:
    from mediastreams.cli.logs import configure_logging

    app = logging.getLogger("someapp.module")
    configure_logging("warning")
    assert not app.isEnabledFor(logging.INFO) and app.isEnabledFor(logging.WARNING)
    assert not logging.getLogger("mediastreams.server").isEnabledFor(logging.INFO)
    configure_logging("debug")
    assert app.isEnabledFor(logging.DEBUG)
    assert logging.getLogger("mediastreams.session").isEnabledFor(logging.DEBUG)
