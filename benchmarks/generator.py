"""The load generator's CPU per frame pair, beside the raw load client's, in the same run.

Run: ``uv run python -m benchmarks.generator`` (200 calls, 3 s, 2 rounds), or for example::

    uv run python -m benchmarks.generator --calls 500 --secs 5 --rounds 3

Each round starts a fresh ``mediastreams serve --echo`` on picows pinned to CPU 0 and runs,
pinned to CPU 1, the benchmark's raw load client (:mod:`benchmarks.load`: prebuilt frames,
marks echoed at once, no playout, no parsing) and then ``mediastreams load`` (``--rate 0``:
every call at once) with the same calls for the same seconds; the next round runs them in
the other order. Each reports its own CPU per caller frame sent (its echo read with it),
over its steady window: the raw client over its send window, the generator from every call
up to the first call's end. Target: the generator <= 1.5x the raw client (ratio >= 0.67).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

from benchmarks.harness import Row, print_table
from benchmarks.rounds import _free_port, _load, _stop, _wait_port
from benchmarks.stacks import FASTEST, pin

TARGET_RATIO = 1.5  # the generator's CPU per frame pair, at most this multiple of the raw client's
_DRAIN_S = 3


def _server(port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "benchmarks.stacks", FASTEST, str(port), "0"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _generator(port: int, calls: int, secs: float) -> dict[str, Any]:
    command = [
        *(sys.executable, "-m", "mediastreams", "load", f"ws://127.0.0.1:{port}/media-stream"),
        *("--calls", str(calls), "--rate", "0", "--duration", str(secs + 1)),
        *("--drain", str(_DRAIN_S), "--json", "--quiet"),
    ]
    result = subprocess.run(
        command,
        preexec_fn=lambda: pin(1),
        capture_output=True,
        text=True,
        timeout=secs + 120,
    )
    if not result.stdout.strip():
        raise RuntimeError(result.stderr[-800:])
    report = json.loads(result.stdout)
    return {
        "us_per_frame_pair": report["generator"]["us_per_frame_pair"],
        "cpu_pct": max(report["generator"]["cpu_pct_by_process"]),
        "echoed_pct": report["frames"]["echoed_pct"],
        "trusted": report["trusted"],
    }


def measure(calls: int, secs: float, generator_first: bool) -> dict[str, dict[str, Any]]:
    """One round: a fresh server, then both clients in turn."""
    port = _free_port()
    server = _server(port)
    try:
        if not _wait_port(port, server):
            raise RuntimeError("the picows server did not start")
        order = ["generator", "raw"] if generator_first else ["raw", "generator"]
        results: dict[str, dict[str, Any]] = {}
        for name in order:
            if name == "raw":
                raw = _load(port, calls, secs, server.pid)
                results[name] = {
                    "us_per_frame_pair": raw["client_us_per_frame_pair"],
                    "cpu_pct": raw["client_cpu_pct"],
                    "echoed_pct": raw["echoed_pct"],
                    "trusted": not raw["client_bound"],
                }
            else:
                results[name] = _generator(port, calls, secs)
        return results
    finally:
        _stop(server, profiled=False)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generator", description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--secs", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args([] if argv is None else argv)  # the runner gives no arguments
    rounds = [measure(args.calls, args.secs, i % 2 == 1) for i in range(args.rounds)]
    print(
        f"\n### The load generator beside the raw load client ({args.calls} calls, "
        f"{args.secs:g} s, {args.rounds} rounds)\n"
    )
    print(
        "| round | raw client µs/pair | generator µs/pair | generator / raw | CPU raw / generator "
        "| echoed raw / generator |"
    )
    print("|---|---|---|---|---|---|")
    ratios = []
    for index, result in enumerate(rounds, 1):
        raw, gen = result["raw"], result["generator"]
        ratio = gen["us_per_frame_pair"] / raw["us_per_frame_pair"]
        ratios.append(ratio)
        notes = "" if gen["trusted"] else " (generator untrusted: it fell behind)"
        print(
            f"| {index} | {raw['us_per_frame_pair']} | {gen['us_per_frame_pair']} | "
            f"{ratio:.2f}x{notes} | {raw['cpu_pct']}% / {gen['cpu_pct']}% | "
            f"{raw['echoed_pct']}% / {gen['echoed_pct']}% |"
        )
    raw_median = statistics.median(r["raw"]["us_per_frame_pair"] for r in rounds)
    gen_median = statistics.median(r["generator"]["us_per_frame_pair"] for r in rounds)
    print(
        f"\nmedian ratio generator / raw client: {statistics.median(ratios):.2f}x "
        f"(target <= {TARGET_RATIO}x)"
    )
    rows = [
        Row(
            f"load generator N={args.calls}: its CPU per frame pair",
            gen_median,
            raw_median,
            "µs",
            "raw load client",
            target=f"<= {TARGET_RATIO}x the raw client (ratio >= {1 / TARGET_RATIO:.2f})",
            paired_ratio=statistics.median(1 / r for r in ratios),
        )
    ]
    print_table("The load generator", rows)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
