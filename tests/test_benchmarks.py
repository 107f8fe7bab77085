"""The benchmarks' own parts: the floor server's WebSocket framing, the load client, rounds
and ratios, the knee search, the runner's tables, the profile's buckets.

The benchmarks themselves are not run here (they take seconds to minutes, and a figure is
never asserted); see docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import __main__ as runner  # noqa: E402
from benchmarks import floor, hotspots, load, rounds, server  # noqa: E402
from benchmarks.harness import Row, print_table  # noqa: E402
from benchmarks.stacks import FASTEST, FLOOR, PLAIN  # noqa: E402

DEADLINE_S = 30.0  # generous: these run under `taskset -c 0` beside a busy core


@pytest.fixture(params=[False, True], ids=["floor", "parsed-floor"])
async def floor_port(request: pytest.FixtureRequest) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    stop = asyncio.Event()
    task = asyncio.create_task(floor.serve(sock, stop, parsed=request.param))
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)


def _media_text(payload: bytes) -> str:
    # Compact, as Twilio writes it: the floor recognises media by its first bytes.
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": "3",
            "streamSid": load.SID,
            "media": {
                "track": "inbound",
                "chunk": "1",
                "timestamp": "20",
                "payload": base64.b64encode(payload).decode(),
            },
        },
        separators=(",", ":"),
    )


# --- the floor -------------------------------------------------------------------------------


def test_accept_key_is_rfc_6455s_example() -> None:
    assert floor.accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_masking_is_its_own_inverse_in_c_and_in_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, mask = os.urandom(301), os.urandom(4)
    fast = floor.apply_mask(data, mask)
    monkeypatch.setattr(floor, "_unmask", None)
    assert floor.apply_mask(data, mask) == fast != data
    assert floor.apply_mask(fast, mask) == data


@pytest.mark.anyio
async def test_floor_echoes_media_to_a_websockets_client(floor_port: int) -> None:
    payload = os.urandom(160)
    async with asyncio.timeout(DEADLINE_S):
        async with connect(f"ws://127.0.0.1:{floor_port}/media-stream") as ws:
            await ws.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')
            await ws.send(_media_text(payload))
            echo = json.loads(await ws.recv())
            assert echo["event"] == "media"
            assert base64.b64decode(echo["media"]["payload"]) == payload
            await (await ws.ping(b"are you there"))  # the pong came back
        assert ws.close_code == 1000  # the floor answered the close with its code


@pytest.mark.anyio
async def test_floor_echoes_only_media(floor_port: int) -> None:
    async with asyncio.timeout(DEADLINE_S):
        async with connect(f"ws://127.0.0.1:{floor_port}/") as ws:
            await ws.send('{"event":"mark","streamSid":"MZ1","mark":{"name":"a"}}')
            await ws.send(_media_text(b"second"))
            echo = json.loads(await ws.recv())  # the mark got no answer: this is the media
            assert base64.b64decode(echo["media"]["payload"]) == b"second"


def test_the_parsed_floor_reads_every_frame_and_ignores_a_bad_one() -> None:
    reply = floor.parsed_reply()
    payload = os.urandom(160)
    echo = reply(_media_text(payload).encode())
    assert echo is not None
    assert base64.b64decode(json.loads(echo)["media"]["payload"]) == payload
    # The plain floor would echo these: only a reader of the frame sees what is wrong.
    twice = _media_text(b"x").replace('"event":"media"', '"event":"media","event":"media"')
    assert reply(twice.encode()) is None  # a key twice: 31951
    assert reply(_media_text(b"x").replace('"chunk":"1"', '"chunk":"one"').encode()) is None
    assert reply(b'{"event":"mark","streamSid":"MZ1","mark":{"name":"a"}}') is None


@pytest.mark.anyio
async def test_floor_reassembles_frames_split_across_reads(floor_port: int) -> None:
    key = base64.b64encode(os.urandom(16))
    request = (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    first, second = os.urandom(160), os.urandom(160)
    frames = b"".join(_client_frame(_media_text(p).encode()) for p in (first, second))
    async with asyncio.timeout(DEADLINE_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", floor_port)
        for piece in (request[:20], request[20:]):
            writer.write(piece)
            await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"Sec-WebSocket-Accept: " + floor.accept_key(key) in head
        for at in range(0, len(frames), 7):  # both frames, 7 bytes at a time
            writer.write(frames[at : at + 7])
            await writer.drain()
        echoes = [await _server_frame(reader) for _ in range(2)]
        writer.close()
        await writer.wait_closed()
    assert [base64.b64decode(json.loads(e)["media"]["payload"]) for e in echoes] == [
        first,
        second,
    ]


@pytest.mark.anyio
async def test_floor_answers_a_request_without_key_with_400(floor_port: int) -> None:
    async with asyncio.timeout(DEADLINE_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", floor_port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 400 ")
        writer.close()
        await writer.wait_closed()


def _client_frame(text: bytes) -> bytes:
    mask = os.urandom(4)
    return (
        bytes((0x81, 0x80 | 126))
        + len(text).to_bytes(2, "big")
        + mask
        + (floor.apply_mask(text, mask))
    )


async def _server_frame(reader: asyncio.StreamReader) -> bytes:
    first, second = await reader.readexactly(2)
    assert first == 0x81 and not second & 0x80  # final text frame, unmasked
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    return await reader.readexactly(length)


# --- the load client -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_load_client_times_the_floors_echoes_and_its_own_cost(floor_port: int) -> None:
    async with asyncio.timeout(DEADLINE_S + 10):
        result = await load.run_load(floor_port, 4, 1.0, os.getpid())
    assert result["sent"] > 0
    assert 0 < result["echoed_pct"] <= 100
    assert result["delay_p50_ms"] is not None and result["delay_p50_ms"] >= 0
    assert result["client_us_per_frame_pair"] > 0
    assert 0 < result["send_rate_pct"] <= 100.5
    assert isinstance(result["client_bound"], bool)


# --- rounds, ratios and the knee -------------------------------------------------------------


def _fake(figures: Callable[[str, int, int], dict[str, Any]]) -> Any:
    """A measure_point that records the order of points and answers with ``figures``."""
    calls: list[tuple[str, int]] = []
    seen: dict[str, int] = {}

    def measure_point(stack: str, n: int, secs: float) -> dict[str, Any]:
        calls.append((stack, n))
        seen[stack] = seen.get(stack, 0) + 1
        return figures(stack, n, seen[stack] - 1)

    measure_point.calls = calls  # type: ignore[attr-defined]
    return measure_point


def test_rounds_interleave_the_floor_and_reverse_each_round() -> None:
    fake = _fake(lambda stack, n, index: {"us_per_frame_pair": 10.0})
    rounds.run_rounds([FASTEST, PLAIN], [500], 1.0, 3, fake)
    assert fake.calls == [
        (FLOOR, 500), (FASTEST, 500), (PLAIN, 500),
        (PLAIN, 500), (FASTEST, 500), (FLOOR, 500),
        (FLOOR, 500), (FASTEST, 500), (PLAIN, 500),
    ]  # fmt: skip


def test_ratios_pair_each_round_with_its_own_floor() -> None:
    # The machine halves its speed in round 2: the floor and picows both cost twice as much.
    floor_us, ours_us = [10.0, 20.0, 11.0], [15.0, 30.0, 16.5]

    def figures(stack: str, n: int, index: int) -> dict[str, Any]:
        cost = (floor_us if stack == FLOOR else ours_us)[index]
        return {"us_per_frame_pair": cost, "echoed_pct": 100.0, "client_bound": index == 1}

    results = rounds.run_rounds([FASTEST], [500], 1.0, 3, _fake(figures))
    summary = rounds.summarize(results)[FASTEST, 500]
    assert summary.figures["us_per_frame_pair"] == 16.5  # the median of its values
    assert summary.to_floor["us_per_frame_pair"] == pytest.approx(1.5)  # every round's ratio
    assert summary.better["us_per_frame_pair"] == pytest.approx(1 / 1.5)
    assert summary.better["echoed_pct"] == pytest.approx(1.0)
    assert (summary.rounds, summary.client_bound) == (3, 1)


def test_a_failed_round_is_counted_and_left_out() -> None:
    def figures(stack: str, n: int, index: int) -> dict[str, Any]:
        if stack == FASTEST and index == 0:
            return {"error": "did not start"}
        return {"us_per_frame_pair": 10.0 if stack == FLOOR else 12.0}

    results = rounds.run_rounds([FASTEST], [100], 1.0, 2, _fake(figures))
    summary = rounds.summarize(results)[FASTEST, 100]
    assert (summary.rounds, summary.errors) == (1, ["did not start"])
    assert summary.to_floor["us_per_frame_pair"] == pytest.approx(1.2)


def _capacity(limits: dict[str, int]) -> Any:
    def figures(stack: str, n: int, index: int) -> dict[str, Any]:
        ok = n <= limits[stack]
        return {"delay_p50_ms": 1.0 if ok else 40.0, "echoed_pct": 100.0 if ok else 97.0}

    return _fake(figures)


def test_knee_search_brackets_each_stacks_capacity_in_lockstep() -> None:
    fake = _capacity({FLOOR: 1234, FASTEST: 170})
    knees, _ = rounds.find_knees([FLOOR, FASTEST], 1.0, budget_s=600, measure_point=fake)
    floor_knee, ours = knees
    assert floor_knee.lo is not None and floor_knee.hi is not None
    assert floor_knee.lo <= 1234 < floor_knee.hi
    assert floor_knee.hi - floor_knee.lo <= max(25, 0.1 * floor_knee.lo)
    assert ours.lo is not None and ours.lo <= 170 < (ours.hi or 0)
    assert [stack for stack, _ in fake.calls[:4]] == [FLOOR, FASTEST, FLOOR, FASTEST]
    assert all(k.done for k in knees)


def test_knee_search_stops_at_the_cap_and_at_the_budget() -> None:
    knees, _ = rounds.find_knees([FLOOR], 1.0, 600, measure_point=_capacity({FLOOR: 10**6}))
    assert knees[0].lo == load.MAX_CALLS and knees[0].hi is None and knees[0].done
    fake = _capacity({FLOOR: 1000})
    knees, _ = rounds.find_knees([FLOOR], 1.0, budget_s=0, measure_point=fake)
    assert fake.calls == [] and knees[0].lo is None and not knees[0].done


def test_a_point_passes_on_lag_and_echoes_only() -> None:
    assert rounds.passes({"delay_p50_ms": 5.0, "echoed_pct": 99.9})
    assert not rounds.passes({"delay_p50_ms": 5.1, "echoed_pct": 100.0})
    assert not rounds.passes({"delay_p50_ms": 1.0, "echoed_pct": 99.8})
    assert not rounds.passes({"error": "did not start"})


# --- the tables ------------------------------------------------------------------------------


def _summaries() -> dict[tuple[str, int], rounds.Summary]:
    def figures(stack: str, n: int, index: int) -> dict[str, Any]:
        scale = {FLOOR: 1.0, FASTEST: 1.5, PLAIN: 2.5}[stack]
        return {
            "server_cpu_pct": 20.0 * scale,
            "us_per_frame_pair": 16.0 * scale,
            "delay_p50_ms": 0.5 * scale,
            "delay_p99_ms": 3.0 * scale,
            "echoed_pct": 100.0,
            "client_us_per_frame_pair": 18.0,
            "server_wait_pct": 5.0,
        }

    return rounds.summarize(rounds.run_rounds([FASTEST, PLAIN], [500], 1.0, 2, _fake(figures)))


def test_rows_put_each_stack_beside_the_floor_with_the_knee_and_the_client() -> None:
    knees = [rounds.Knee(FLOOR, lo=1300, hi=1450), rounds.Knee(FASTEST, lo=900, hi=1000)]
    rows = server._rows(_summaries(), [FLOOR, FASTEST, PLAIN], [500], knees)
    names = [r.name for r in rows]
    assert names[:5] == [
        f"{FASTEST} N=500: server CPU, % of one core",
        f"{FASTEST} N=500: server CPU per frame pair",
        f"{FASTEST} N=500: p50 frame lag",
        f"{FASTEST} N=500: p99 frame lag",
        f"{FASTEST} N=500: frames echoed in the window",
    ]
    assert names[5].startswith(f"{PLAIN} N=500: ")
    per_pair = rows[1]
    assert (per_pair.value, per_pair.baseline) == (24.0, 16.0)
    assert per_pair.ratio == pytest.approx(1 / 1.5)  # "x better": below 1, it costs more
    assert per_pair.target.startswith(">= 0.83")
    assert rows[6].ratio == pytest.approx(1 / 2.5) and rows[6].target == ""
    client = next(r for r in rows if r.name.startswith("load client"))
    assert (client.value, client.unit) == (18.0, "µs")
    knee = rows[-1]
    assert (knee.value, knee.baseline, knee.better) == (900.0, 1300.0, "higher")
    assert knee.ratio == pytest.approx(900 / 1300)


def test_the_cpu_target_is_not_claimed_where_the_server_fell_behind() -> None:
    def figures(stack: str, n: int, index: int) -> dict[str, Any]:
        behind = stack == FASTEST
        return {
            "us_per_frame_pair": 16.0,
            "delay_p50_ms": 400.0 if behind else 3.0,
            "echoed_pct": 82.0 if behind else 100.0,
        }

    summaries = rounds.summarize(rounds.run_rounds([FASTEST], [500], 1.0, 1, _fake(figures)))
    rows = server._rows(summaries, [FLOOR, FASTEST], [500])
    per_pair = next(r for r in rows if r.name.endswith("server CPU per frame pair"))
    assert per_pair.ratio == pytest.approx(1.0)  # as cheap as the floor, but only because
    assert per_pair.target.endswith("this point fell behind")  # it read frames in batches


def test_the_points_table_prints_ratios_to_the_floor(capsys: pytest.CaptureFixture[str]) -> None:
    server.print_points(_summaries(), [FLOOR, FASTEST, PLAIN], [500], 2.0, 2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 500")]
    assert lines[0].startswith(f"| 500 | {FLOOR} (floor) | 20.0% | 16.0 µs |")
    assert "| 30.0% · 1.50x | 24.0 µs · 1.50x |" in lines[1]
    assert "| 40.0 µs · 2.50x |" in lines[2]


def test_a_failed_point_is_one_row_with_its_cause(capsys: pytest.CaptureFixture[str]) -> None:
    def figures(stack: str, n: int, index: int) -> dict[str, Any]:
        if stack == FASTEST:
            return {"error": "the load client failed: reset; it said: a | b"}
        return {"us_per_frame_pair": 10.0, "server_cpu_pct": 20.0}

    summaries = rounds.summarize(rounds.run_rounds([FASTEST], [100], 1.0, 1, _fake(figures)))
    server.print_points(summaries, [FLOOR, FASTEST], [100], 1.0, 1)
    (row,) = [line for line in capsys.readouterr().out.splitlines() if FASTEST in line]
    assert row.startswith(f"| 100 | {FASTEST} | failed: the load client failed: reset; it said")
    assert row.count("|") == 10 and row.endswith("a / b |||||||")  # nine cells, as the header


def test_the_knee_table_names_its_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    floor_knee = rounds.Knee(FLOOR)
    floor_knee.record(400, {"delay_p50_ms": 1.0, "echoed_pct": 100.0})
    floor_knee.record(600, {"delay_p50_ms": 9.0, "echoed_pct": 100.0, "client_bound": True})
    ours = rounds.Knee(FASTEST, lo=300, hi=400)
    server.print_knees([floor_knee, ours], 100.0, 300.0, 3.0)
    out = capsys.readouterr().out
    assert "| 400 (600 failed); the load client could not keep up" in out
    assert "knee ratio mediastreams-picows / floor: 0.75 (target >= 0.8)" in out


def test_runner_median_keeps_paired_ratios() -> None:
    runs = [
        [Row("a", 1.0, 10.0, "µs", paired_ratio=8.0)],
        [Row("a", 3.0, 30.0, "µs", paired_ratio=12.0)],
        [Row("a", 2.0, 90.0, "µs", paired_ratio=9.0)],
    ]
    (merged,) = runner._median_rows(runs)
    assert (merged.value, merged.baseline, merged.ratio) == (2.0, 30.0, 9.0)


def test_repeat_takes_medians_of_value_and_baseline() -> None:
    runs = [
        [Row("a", 1.0, 10.0, "µs"), Row("b", 5.0, None, "x", "audioop", "higher")],
        [Row("a", 3.0, 30.0, "µs"), Row("b", 7.0, None, "x", "audioop", "higher")],
        [Row("a", 2.0, 90.0, "µs"), Row("b", 6.0, None, "x", "audioop", "higher")],
    ]
    a, b = runner._median_rows(runs)
    assert (a.name, a.value, a.baseline, a.ratio) == ("a", 2.0, 30.0, 15.0)
    assert (b.value, b.baseline, b.ratio) == (6.0, None, None)


def test_a_missing_baseline_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    print_table("t", [Row("encode", 3000.0, None, "MB/s", "audioop", "higher")])
    assert "- (audioop: not available here) | - |" in capsys.readouterr().out


def test_machine_line_names_cpu_cores_and_python() -> None:
    line = runner.machine()
    assert "cores" in line and "Python 3." in line


def test_runner_runs_benchmarks_not_their_parts() -> None:
    assert runner._names() == [
        *("convert", "emulator", "fleet", "frames", "generator", "mulaw", "server", "startup"),
    ]
    assert "--stacks" in runner.QUICK_SERVER and FLOOR not in runner.QUICK_SERVER  # always run


def test_server_command_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--stacks", "nginx"], ["--calls", "lots"], ["--rounds", "0"], ["--secs", "0"]):
        with pytest.raises(SystemExit):
            server.main(argv)
    assert "unknown stack(s) nginx" in capsys.readouterr().err


# --- the profile's buckets -------------------------------------------------------------------


def test_hotspots_put_each_sample_in_its_innermost_named_bucket(tmp_path: Path) -> None:
    profile = tmp_path / "p.txt"
    profile.write_text(
        "run (asyncio/runners.py:1);MediaStream._read (mediastreams/session.py:660);"
        "parse (mediastreams/messages.py:373);json_decode (msgspec/_core.so) 6\n"
        "run (asyncio/runners.py:1);PicowsTransport.send (mediastreams/adapters/picows.py:98);"
        "write (aiofastnet/transport.so);send (libc.so.6) 3\n"
        "run (asyncio/runners.py:1);EpollSelector.select (selectors.py:468);"
        "epoll_wait (libc.so.6) 50\n"
        "_find_and_load (<frozen importlib._bootstrap>:1176);exec (x.py:1) 9\n"
        "run (asyncio/runners.py:1);pthread_cond (libc.so.6) 1\n"
    )
    buckets, inclusive, busy, skipped = hotspots.read(profile)
    assert (busy, skipped) == (10, 59)
    assert buckets == {
        "JSON decode/encode": 6,
        "write syscalls": 3,
        "event loop, tasks and futures": 1,
    }
    python_only = tmp_path / "python.txt"
    python_only.write_text(
        "run (asyncio/runners.py:1);Handle._run (asyncio/events.py:80) 4\n"
        "run (asyncio/runners.py:1);PicowsTransport.send (mediastreams/adapters/picows.py:98) 5\n"
        "run (asyncio/runners.py:1);EpollSelector.select (selectors.py:468) 70\n"
    )
    buckets, _, busy, skipped = hotspots.read(python_only)
    assert (busy, skipped) == (9, 70)
    assert sorted(buckets.values()) == [4, 5]
    assert inclusive["MediaStream._read"] == 6 and inclusive["PicowsTransport.send"] == 3


# --- start-up ----------------------------------------------------------------------------------


def test_time_commands_takes_turns_and_drops_the_warmups() -> None:
    from benchmarks.harness import time_commands

    timings = time_commands({"a": [sys.executable, "-c", "pass"], "b": ["true"]}, runs=2)
    assert {name: len(times) for name, times in timings.items()} == {"a": 2, "b": 2}
    assert all(t.wall_s > 0 and t.cpu_s >= 0 for times in timings.values() for t in times)
    # An interpreter's start-up uses some CPU: the children's usage is counted.
    assert all(t.cpu_s > 0 for t in timings["a"])


def test_startup_rows_stand_beside_the_bare_interpreter(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import startup

    rows = startup.main(["--runs", "1"])
    commands = ["mediastreams --help", "mediastreams call --help", "mediastreams serve --help"]
    assert [r.name for r in rows] == [*commands, *(f"{c} (CPU)" for c in commands)]
    assert [r.baseline_name for r in rows] == ["python -c pass"] * 3 + ["python -c pass (CPU)"] * 3
    assert all(r.baseline and r.unit == "ms" for r in rows)
    assert [r.target for r in rows] == ["", "< 300 ms", "< 300 ms", "", "", ""]
    out = capsys.readouterr().out
    assert "| mediastreams serve --help |" in out and "(bytecode cached)" in out


def test_startup_without_bytecode_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import startup

    rows = startup.main(["--runs", "1", "--no-bytecode"])
    assert len(rows) == 6 and all(r.value > 0 for r in rows)
    assert "(no bytecode cache)" in capsys.readouterr().out


def test_startup_refuses_zero_runs() -> None:
    from benchmarks import startup

    with pytest.raises(SystemExit):
        startup.main(["--runs", "0"])
