"""The load generator: its parts (histogram, stamps, frames, counting playout, merged stats,
the verdict on its own lateness) and whole runs against real servers on 127.0.0.1.

The runs are short (a few calls, 1-3 s) and assert what the generator counts and how it
words failures, never how fast anything was: the ramp's rate is checked within a wide
tolerance, and the figures for speed live in ``benchmarks.generator`` and ``benchmarks.soak``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mediastreams.cli import main
from mediastreams.load import LoadConfig, LoadReport, Second, Turns, run_load, run_load_async
from mediastreams.load.caller import STAMP_BYTES, media_template, read_stamp, stamp
from mediastreams.load.histogram import Histogram
from mediastreams.load.playout import CountingPlayout
from mediastreams.load.stats import Stats
from mediastreams.messages import Media, serialize
from mediastreams.playout import Playout

# --- the parts -------------------------------------------------------------------------------


def test_histogram_quantiles_are_within_a_few_percent_and_merge_by_adding() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(7, 1.5)) for _ in range(20_000)]
    whole, first, second = Histogram(), Histogram(), Histogram()
    for index, value in enumerate(values):
        whole.record(value)
        (first if index % 2 else second).record(value)
    first.merge(second)
    assert first.to_dict() == whole.to_dict()
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.99):
        exact = ordered[int(q * len(ordered))]
        estimate = whole.quantile_us(q)
        assert estimate is not None
        assert abs(estimate - exact) <= max(2, 0.04 * exact), (q, estimate, exact)
    assert Histogram.from_dict(json.loads(json.dumps(whole.to_dict()))).to_dict() == whole.to_dict()
    bound = Histogram.bounds_us(120)[0]  # exact at a bucket's bound
    assert whole.count_over(bound) == sum(1 for v in values if v >= bound)


def test_a_stamp_is_quiet_mulaw_and_reads_back() -> None:
    import binascii

    text = stamp(123_456_789)
    audio = binascii.a2b_base64(text)
    assert len(text) == 32 and len(audio) == STAMP_BYTES
    assert all(0xF0 <= byte <= 0xFF for byte in audio)  # under -60 dBFS
    assert read_stamp(audio + b"\x55" * 136) == 123_456_789
    assert read_stamp(b"\xff" * 160) is None
    assert read_stamp(bytes(range(160))) is None


def test_the_media_template_writes_what_serialize_writes() -> None:
    import binascii

    sid = "MZ" + "ab" * 16
    rest = binascii.b2a_base64(b"\x11" * 136, newline=False)
    filled = media_template(sid) % (7, 5, 100, stamp(42), rest)
    payload = binascii.a2b_base64(stamp(42) + rest)
    expected = serialize(
        Media(
            stream_sid=sid,
            payload=payload,
            track="inbound",
            chunk=5,
            timestamp=100,
            sequence_number=7,
        )
    )
    assert filled.decode() == expected


def test_the_counting_playout_echoes_the_marks_playout_does() -> None:
    rng = random.Random(3)
    real, counting = Playout(10_000), CountingPlayout(10_000)
    for step in range(3000):
        action = rng.choice(["audio", "audio", "mark", "play", "play", "clear"])
        if action == "audio":
            size = rng.choice([80, 160, 480])
            assert real.add_audio(b"x" * size) == counting.add_audio(b"x" * size)
        elif action == "mark":
            assert real.add_mark(f"m{step}") == counting.add_mark(f"m{step}")
        elif action == "play":
            played, reached = real.play(160)
            counted, counted_reached = counting.play(160)
            assert (len(played), reached) == (len(counted), counted_reached)
        else:
            assert real.clear() == counting.clear()
        assert real.buffered_bytes == counting.buffered_bytes
        assert real.pending_marks == counting.pending_marks


def _second(n: int, active: int, sent: int) -> Second:
    return Second(n, active, sent, sent, 0, 0, 0, float(n), 0)


def test_merged_seconds_keep_a_finished_process_counted() -> None:
    a, b = Stats(), Stats()
    a.seconds = [_second(1, 2, 100), _second(2, 2, 200), _second(3, 0, 250)]
    b.seconds = [_second(1, 3, 150), _second(2, 0, 160)]
    a.counters["frames_sent"], b.counters["frames_sent"] = 250, 160
    a.merge(b)
    assert [s.active for s in a.seconds] == [5, 2, 0]
    assert [s.frames_sent for s in a.seconds] == [250, 360, 410]  # never down
    assert a.counters["frames_sent"] == 410 and a.processes == 2


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"target": "example.com/stream"}, "not a URL the generator can call"),
        ({"processes": 5, "calls": 2}, "--processes must be between 1 and the calls"),
        ({"rate": -1}, "--rate must be 0"),
        ({"target": "ws://127.0.0.1:x/s"}, "the port is not a number"),
    ],
)
def test_a_wrong_config_says_what_is_wrong(changes: dict[str, Any], words: str) -> None:
    config = LoadConfig(**{"target": "ws://127.0.0.1:5050/media-stream", **changes})
    with pytest.raises(ValueError, match=words):
        config.check()


def test_turns_read_talk_and_listen() -> None:
    turns = Turns.parse("100/60")
    assert [turns.talking(frame, 20) for frame in range(9)] == [True] * 5 + [False] * 3 + [True]
    with pytest.raises(ValueError, match="TALK_MS/LISTEN_MS"):
        Turns.parse("fast")


def test_a_busy_generator_is_not_trusted() -> None:
    stats = Stats()
    stats.counters.update(ticks=1000, ticks_late=0)
    stats.process_cpu_pct = [40.0, 95.0]
    report = LoadReport(LoadConfig("ws://h/s"), stats)
    assert not report.trusted
    assert report.untrusted_because == [
        "a generator process used 95% of its core (over 90%): add --processes, or give it a "
        "core of its own"
    ]
    stats.process_cpu_pct = [40.0]
    stats.counters.update(ticks_late=11)
    assert report.untrusted_because[0].startswith("1.1% of the generator's ticks ran more than")
    stats.counters.update(ticks_late=10)
    assert report.trusted


# --- real servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serving(*argv: str, cwd: Path | None = None) -> Iterator[int]:
    """``mediastreams serve`` as a real process on a free port, until the block ends."""
    port = free_port()
    command = [sys.executable, "-m", "mediastreams", "serve", "--port", str(port), *argv]
    env = {**os.environ, "TWILIO_AUTH_TOKEN": ""}
    server = subprocess.Popen(command, cwd=cwd, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.HTTPError:
                assert server.poll() is None, server.communicate()[1][-2000:]
                assert time.monotonic() < deadline, "the server did not start in 60 s"
                time.sleep(0.1)
        yield port
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    with serving("--echo", "--backend", "picows") as port:
        yield port


def stream_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/media-stream"


def test_echo_calls_all_come_back_with_their_marks(echo_port: int) -> None:
    report = run_load(LoadConfig(stream_url(echo_port), calls=8, rate=0, duration_s=2))
    data = report.to_dict()
    assert data["calls"]["completed"] == 8 and data["calls"]["failed"] == 0
    assert data["violations"]["count"] == 0
    frames, marks = data["frames"], data["marks"]
    assert frames["sent"] >= 8 * 40  # 2 s of 20 ms frames, give or take the ticks
    assert frames["echoed"] == frames["stamped"] == frames["sent"]
    assert frames["echoed_pct"] == 100.0 and frames["lost"] == 0
    assert marks["received"] > 0 and marks["echoed"] == marks["received"] and marks["lost"] == 0
    assert data["latency"]["echo_lag"]["count"] == frames["echoed"]
    assert data["latency"]["first_audio"]["count"] == 8
    assert report.exit_code == 0


def test_the_ramp_starts_calls_at_the_rate(echo_port: int) -> None:
    report = run_load(LoadConfig(stream_url(echo_port), calls=12, rate=6, duration_s=1))
    starts = report.stats.starts_s
    assert len(starts) == 12 and report.counters["calls_completed"] == 12
    measured = (len(starts) - 1) / (starts[-1] - starts[0])
    assert 3 <= measured <= 9, starts  # 6 a second, within a wide tolerance
    assert report.to_dict()["calls"]["start_rate"] == pytest.approx(measured, abs=0.01)
    assert starts[0] < 1.0  # the first call starts at the epoch, not after a wait


def command_lines_with(secret: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and secret.encode() in (entry / "cmdline").read_bytes():
                found.append(entry.name)
    return found


def test_processes_merge_into_one_summary(echo_port: int) -> None:
    secret = "token-" + os.urandom(8).hex()
    seen: list[list[str]] = []
    config = LoadConfig(
        stream_url(echo_port), calls=6, processes=3, rate=0, duration_s=1, auth_token=secret
    )
    report = run_load(config, on_second=lambda second: seen.append(command_lines_with(secret)))
    assert seen and not any(seen)  # the workers get the auth token on stdin, not in argv
    data = report.to_dict()
    assert data["generator"]["processes"] == 3
    assert len(data["generator"]["cpu_pct_by_process"]) == 3
    assert data["calls"]["planned"] == data["calls"]["up"] == data["calls"]["completed"] == 6
    assert data["frames"]["echoed"] == data["frames"]["sent"] >= 6 * 15
    assert max(row["active"] for row in data["timeline"]) <= 6
    assert sum(row["sent_per_s"] for row in data["timeline"]) == data["frames"]["sent"]
    assert data["latency"]["first_audio"]["count"] == 6


def test_a_generator_made_late_says_its_figures_cannot_be_trusted(echo_port: int) -> None:
    def blocking(second: Second) -> None:
        time.sleep(0.5)  # a hook that blocks the loop: every tick behind it runs late

    report = run_load(
        LoadConfig(stream_url(echo_port), calls=2, rate=0, duration_s=3), on_second=blocking
    )
    assert not report.trusted
    assert "of the generator's ticks ran more than 10 ms late" in report.untrusted_because[0]
    assert report.render_text().startswith("THE GENERATOR WAS A BOTTLENECK")
    assert report.to_dict()["latency"]["tick_late"]["max_ms"] >= 100


def test_the_command_prints_json_alone_and_writes_the_pictures(
    echo_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    picture = tmp_path / "load.html"
    argv = ["load", stream_url(echo_port), "--calls", "3", "--duration", "1", "--rate", "0"]
    assert main([*argv, "--json", "--html", str(picture)]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert set(data) >= {
        "config",
        "ok",
        "trusted",
        "untrusted_because",
        "calls",
        "frames",
        "marks",
        "clears",
        "violations",
        "latency",
        "generator",
        "timeline",
    }
    assert set(data["latency"]) == {
        "echo_lag",
        "first_audio",
        "turn",
        "clear_reaction",
        "tick_late",
    }
    assert set(data["frames"]["late"]) == {"over_20_ms", "over_40_ms", "over_100_ms"}
    assert set(data["latency"]["echo_lag"]) >= {"count", "p50_ms", "p90_ms", "p99_ms", "max_ms"}
    assert "active 3/3" in err  # the live line
    html = picture.read_text()
    assert html.count("<svg") == 3 and "<script" not in html
    assert "Calls active" in html and "Generator CPU" in html


def test_a_webhook_target_places_each_call_through_its_twiml(echo_port: int) -> None:
    url = f"http://127.0.0.1:{echo_port}/incoming-call"
    report = run_load(LoadConfig(url, calls=3, rate=0, duration_s=1))
    assert report.counters["calls_completed"] == 3 and report.ok


def test_a_refused_port_fails_every_call_with_31902(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["load", stream_url(free_port()), "--calls", "3", "--duration", "1", "--json"]
    assert main([*argv, "--quiet"]) == 1
    (cause,) = json.loads(capsys.readouterr().out)["calls"]["failed_by_cause"]
    assert (cause["code"], cause["kind"], cause["count"]) == (31902, "connection-refused", 3)
    assert "connection refused" in cause["message"]


def test_an_app_that_crashes_fails_its_calls_with_31921(tmp_path: Path) -> None:
    (tmp_path / "crashing.py").write_text(
        "async def handler(stream):\n    raise RuntimeError('boom')\n"
    )
    with serving("--app", "crashing:handler", "--backend", "picows", cwd=tmp_path) as port:
        report = run_load(LoadConfig(stream_url(port), calls=4, rate=0, duration_s=2))
    (cause,) = report.to_dict()["calls"]["failed_by_cause"]
    assert (cause["code"], cause["kind"], cause["count"]) == (31921, "close-error", 4)
    assert "1011" in cause["message"]
    assert report.exit_code == 1


@pytest.mark.anyio
async def test_frames_off_the_fast_path_still_get_their_violations() -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def app(websocket: ServerConnection) -> None:
        await websocket.recv()  # connected
        start = json.loads(await websocket.recv())
        sid = start["streamSid"]
        spaced = json.dumps({"event": "media", "streamSid": sid, "media": {"payload": "/w=="}})
        await websocket.send(spaced)  # valid, in another form: read the slow way, no violation
        await websocket.send(
            json.dumps(
                {"event": "media", "streamSid": "MZ" + "0" * 32, "media": {"payload": "/w=="}}
            )
        )  # not this stream's
        await websocket.send('{"event":"media","streamSid":"' + sid + '","media":{}}')
        await websocket.send(b"\x00\x01")  # binary
        wav = base64.b64encode(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 148).decode()
        await websocket.send(  # the exact form, but a file header: off the fast path
            '{"event":"media","streamSid":"' + sid + '","media":{"payload":"' + wav + '"}}'
        )
        await websocket.send(
            json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": 'quote"d'}})
        )
        with contextlib.suppress(Exception):
            async for _ in websocket:
                pass

    async with serve(app, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        report = await run_load_async(
            LoadConfig(f"ws://127.0.0.1:{port}/", calls=2, rate=0, duration_s=1)
        )
    codes = {(g.code, g.kind): g.count for g in report.stats.violations.values()}
    assert codes == {
        (31951, "wrong-stream-sid"): 2,
        (31951, "missing-field"): 2,
        (31950, "binary-frame"): 2,
        (31924, "payload-has-header"): 2,
    }, codes
    # The spaced-out frames and the WAV (played anyway, as Twilio plays it), two a call.
    assert report.counters["media_received"] == 4
    assert report.counters["marks_received"] == 2 and report.counters["marks_lost"] == 0
    assert report.exit_code == 1


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["ftp://x/y"], "is not a URL the generator can call"),
        (["ws://127.0.0.1:1/s", "--calls", "2", "--processes", "3"], "--processes must be"),
        (["ws://127.0.0.1:1/s", "--turns", "soon"], "write TALK_MS/LISTEN_MS"),
    ],
)
def test_wrong_options_are_one_line_and_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["load", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_ctrl_c_hangs_up_and_still_reports(echo_port: int) -> None:
    command = [sys.executable, "-m", "mediastreams", "load", stream_url(echo_port)]
    command += ["--calls", "4", "--rate", "0", "--duration", "600", "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    try:
        deadline = time.monotonic() + 60
        for line in process.stderr:  # wait for a live line with every call up
            if "active 4/4" in line:
                break
            assert time.monotonic() < deadline, "no call came up"
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    data = json.loads(out)
    assert data["interrupted"] and data["calls"]["completed"] == 4
    assert data["marks"]["lost"] == 0 and data["violations"]["count"] == 0
