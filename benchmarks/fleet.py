"""A fleet on one machine: a call-control command through Redis, and what workers add.

- A call-control command's latency from the sender to the instance that holds the call and
  back (``Control.clear`` over pub/sub), beside a Redis PING round trip. Run: ``uv run
  python -m benchmarks.fleet [--commands 500]``; needs ``redis-server`` on the PATH
  (Debian's package). It starts its own on a free loopback port and stops it.
- With ``--workers``: the calls the machine carries with one ``serve`` process and with
  ``serve --workers 2``, each the knee (p50 lag <= 5 ms, >= 99.9% echoed) of echo calls on
  picows, searched for both in lockstep (:func:`benchmarks.rounds.find_knees`) and repeated
  ``--rounds`` times; then both at the same N, side by side. Nothing is pinned: the load
  client (:mod:`benchmarks.load`) shares the machine's cores with the workers, as it does
  the one process's spare core. Run: ``uv run python -m benchmarks.fleet --workers
  [--rounds 3] [--knee-secs 3] [--knee-budget 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks.harness import Row, print_table
from benchmarks.load import HOST, proc_cpu_s
from benchmarks.rounds import KNEE_ECHOED_PCT, KNEE_P50_MS, Knee, find_knees, passes


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _measure(url: str, commands: int) -> tuple[list[float], list[float]]:
    from mediastreams.control import Control
    from mediastreams.store import CallRecord, RedisState

    holder = RedisState(url, namespace="bench")

    async def on_command(command: dict[str, Any]) -> dict[str, Any]:
        return {"status": 200, "cleared": 0}  # the instance's answer, without a real stream

    await holder.start(on_command)
    await holder.register(CallRecord("CA" + "0" * 32, "MZ" + "0" * 32, holder.instance))
    control = await Control.connect(url, namespace="bench")
    client = control.state._client  # type: ignore[attr-defined]
    command_ms, ping_ms = [], []
    try:
        for _ in range(commands):
            started = time.perf_counter()
            await control.clear("CA" + "0" * 32)
            command_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await client.ping()
            ping_ms.append((time.perf_counter() - started) * 1000)
    finally:
        await control.close()
        await holder.close()
    return command_ms, ping_ms


def _percentile(values: list[float], share: float) -> float:
    return sorted(values)[min(len(values) - 1, int(share * len(values)))]


def control_latency(commands: int) -> list[Row]:
    """A control command's round trip through Redis, beside a PING (p50, p99)."""
    binary = shutil.which("redis-server")
    if binary is None:
        print("benchmarks.fleet: redis-server is not installed; skipped")
        return []
    port = _free_port()
    redis = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)  # a benchmark, not a test: the first command retries until Redis is up
        command_ms, ping_ms = asyncio.run(_measure(f"redis://127.0.0.1:{port}/0", commands))
    finally:
        redis.terminate()
        redis.wait(10)
    rows = [
        Row("control command p50", statistics.median(command_ms), statistics.median(ping_ms),
            "ms", "Redis PING p50"),
        Row("control command p99", _percentile(command_ms, 0.99), _percentile(ping_ms, 0.99),
            "ms", "Redis PING p99"),
    ]  # fmt: skip
    print_table("call control through Redis (loopback)", rows)
    return rows


# --- workers ---------------------------------------------------------------------------------

ONE, TWO = "1 worker", "2 workers"
_WORKERS = {ONE: 1, TWO: 2}


def _listeners(port: int) -> int:
    """Sockets listening on ``port`` (one per worker ready to take calls)."""
    wanted = f":{port:04X} "
    with open("/proc/net/tcp") as file:
        lines = file.read().splitlines()[1:]
    return sum(1 for line in lines if wanted in line and line.split()[3] == "0A")


def _server_pids(server: subprocess.Popen[bytes], workers: int) -> list[int]:
    if workers == 1:
        return [server.pid]
    with open(f"/proc/{server.pid}/task/{server.pid}/children") as file:
        return [int(pid) for pid in file.read().split()]


def measure_workers(config: str, calls: int, secs: float) -> dict[str, Any]:
    """One point: ``serve --echo --backend picows`` with 1 or 2 workers, ``calls`` echo calls.

    The load's own figures (lag, share echoed, its CPU), and ``server_cores``: the CPU the
    server processes used over the whole load run (connections included), in cores.
    """
    workers = _WORKERS[config]
    port = _free_port()
    command = [sys.executable, "-m", "mediastreams", "serve", "--echo", "--backend", "picows"]
    command += ["--host", HOST, "--port", str(port), "--log-level", "warning"]
    command += ["--workers", str(workers)] if workers > 1 else []
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while _listeners(port) < workers:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve --workers {workers} did not start")
            time.sleep(0.1)
        pids = _server_pids(server, workers)
        cpu_before, started = sum(proc_cpu_s(pid) for pid in pids), time.monotonic()
        load = [sys.executable, "-m", "benchmarks.load", str(port), str(calls), str(secs)]
        done = subprocess.run(
            [*load, str(pids[0])], capture_output=True, text=True, timeout=secs + 120
        )
        cpu_s = sum(proc_cpu_s(pid) for pid in pids) - cpu_before
        elapsed = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-800:])
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["server_cores"] = round(cpu_s / elapsed, 2)
        return result
    finally:
        server.send_signal(signal.SIGINT)  # stop at once
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _point(config: str, calls: int, secs: float) -> dict[str, Any]:
    try:
        result = measure_workers(config, calls, secs)
    except Exception as error:  # report and go on with the next point
        result = {"error": str(error)}
    print(json.dumps({"config": config, "calls": calls, **result}), file=sys.stderr, flush=True)
    return result


def _point_text(calls: int, result: dict[str, Any]) -> str:
    if "error" in result:
        return f"{calls}: failed"
    return (
        f"{calls}: {'ok' if passes(result) else 'over'} (p50 {result.get('delay_p50_ms')} ms, "
        f"{result.get('echoed_pct')}%, server {result.get('server_cores')} cores (waited "
        f"{result.get('server_wait_pct')}%), client "
        f"{result.get('client_cpu_pct')}%{', client-bound' if result.get('client_bound') else ''})"
    )


def workers_knees(rounds: int, secs: float, budget_s: float, start: int) -> list[Row]:
    """The knee with one and two workers, ``rounds`` times; the ratio of each round."""
    print(
        f"\n### Calls the machine carries: 1 worker and 2 (`serve --echo --backend picows`, "
        f"p50 lag <= {KNEE_P50_MS:g} ms, >= {KNEE_ECHOED_PCT}% echoed, {secs:g} s a point, "
        "nothing pinned)\n"
    )
    print("| round | workers | knee (calls) | points tried, in order |")
    print("|---|---|---|---|")
    ratios, knees_by_config = [], {ONE: [], TWO: []}  # type: ignore[var-annotated]
    for round_index in range(rounds):
        order = [ONE, TWO] if round_index % 2 == 0 else [TWO, ONE]
        knees, _ = find_knees(order, secs, budget_s, start, measure_point=_point)
        found: dict[str, Knee] = {knee.stack: knee for knee in knees}
        for config in (ONE, TWO):
            knee = found[config]
            points = "; ".join(_point_text(c, r) for c, r in knee.points)
            bound = " (client-bound)" if knee.client_bound else ""
            print(f"| {round_index + 1} | {config} | {knee.lo or '-'}{bound} | {points} |")
            if knee.lo:
                knees_by_config[config].append(knee.lo)
        if found[ONE].lo and found[TWO].lo:
            ratios.append(found[TWO].lo / found[ONE].lo)
    if not ratios:
        print("\nno round found both knees")
        return []
    ratio = statistics.median(ratios)
    one = statistics.median(knees_by_config[ONE])
    two = statistics.median(knees_by_config[TWO])
    print(
        f"\n2 workers / 1 worker, calls carried: median {ratio:.2f} "
        f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    return [
        Row(
            "calls carried at p50 <= 5 ms, serve --workers 2",
            float(two),
            float(one),
            "calls",
            "1 worker",
            "higher",
            paired_ratio=ratio,
        )
    ]


def side_by_side(calls: int, secs: float, rounds: int) -> list[Row]:
    """Both configurations at the same N, interleaved: lag, share echoed, server cores."""
    print(f"\n### Both at {calls} calls ({secs:g} s a point, {rounds} round(s))\n")
    print("| round | workers | p50 lag | p99 lag | echoed | server cores | client CPU |")
    print("|---|---|---|---|---|---|---|")
    results: dict[str, list[dict[str, Any]]] = {ONE: [], TWO: []}
    for round_index in range(rounds):
        for config in [ONE, TWO] if round_index % 2 == 0 else [TWO, ONE]:
            result = _point(config, calls, secs)
            results[config].append(result)
            print(
                f"| {round_index + 1} | {config} | {result.get('delay_p50_ms')} ms | "
                f"{result.get('delay_p99_ms')} ms | {result.get('echoed_pct')}% | "
                f"{result.get('server_cores')} | {result.get('client_cpu_pct')}% |"
            )
    rows = []
    for key, label, unit, better in (
        ("delay_p50_ms", "p50 lag", "ms", "lower"),
        ("echoed_pct", "frames echoed", "%", "higher"),
        ("server_cores", "server CPU (all workers)", "cores", "lower"),
    ):
        pairs = [
            (two.get(key), one.get(key))
            for one, two in zip(results[ONE], results[TWO], strict=True)
            if one.get(key) and two.get(key)
        ]
        if not pairs:
            continue
        ratio = statistics.median(
            (b / a if better == "lower" else a / b)
            for a, b in pairs  # type: ignore[operator]
        )
        rows.append(
            Row(
                f"{calls} calls, serve --workers 2: {label}",
                statistics.median(a for a, _ in pairs),  # type: ignore[type-var]
                statistics.median(b for _, b in pairs),  # type: ignore[type-var]
                unit,
                "1 worker",
                better,
                paired_ratio=ratio,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fleet", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument(
        "--workers", action="store_true", help="calls carried with 1 and 2 workers (minutes)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="knee searches (with --workers)")
    parser.add_argument("--knee-secs", type=float, default=3.0, help="seconds a point")
    parser.add_argument("--knee-budget", type=float, default=300.0, help="seconds a search")
    parser.add_argument("--start", type=int, default=400, help="the first N a search tries")
    parser.add_argument(
        "--at", type=int, default=0, help="also both at this N, side by side (0: the 1-worker knee)"
    )
    args = parser.parse_args(argv)
    if not args.workers:
        return control_latency(args.commands)
    if not sys.platform.startswith("linux"):
        parser.error("--workers measures Linux's SO_REUSEPORT; run it on Linux")
    rows = workers_knees(args.rounds, args.knee_secs, args.knee_budget, args.start)
    at = args.at or (int(rows[0].baseline) if rows and rows[0].baseline else 0)
    if at:
        rows += side_by_side(at, args.knee_secs, args.rounds)
    print_table("serve --workers 2 against one process (picows, echo calls)", rows)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
