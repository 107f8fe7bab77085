"""Run every benchmark and print one table of figures and ratios against their baselines.

Run: ``uv run python -m benchmarks`` (or ``scripts/bench``). By default the server benchmark
is short: 500 calls, 2 s a point, the raw asyncio floor, the picows backend and plain
Starlette interleaved in 2 rounds; ``--full`` runs its whole curve (every backend and the
floor at 100/250/500/1000 calls, 5 s a point) and the knees of the floor and picows. ``--only
frames,mulaw`` picks some; ``--repeat 3`` runs each benchmark 3 times, each in a fresh
process, and reports the medians. Each benchmark module has a ``main()`` that prints its own
table and returns its rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import pkgutil
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import Row, print_table

# Modules that serve the benchmarks rather than measure something of their own.
_SKIP = {"harness", "floor", "hotspots", "load", "lockstep", "rounds", "stacks"}
# The server benchmark's default here: 500 calls, the floor, the fastest backend and plain
# Starlette, interleaved, twice (about 30 s); --full adds every backend, the curve and knees.
QUICK_SERVER = [
    *("--secs", "2", "--calls", "500", "--rounds", "2"),
    *("--stacks", "mediastreams-picows,plain-starlette"),
]
FULL_SERVER = ["--knee"]


def _names() -> list[str]:
    here = Path(__file__).parent
    modules = pkgutil.iter_modules([str(here)])
    return sorted(m.name for m in modules if m.name not in _SKIP and not m.name.startswith("_"))


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo, or what ``platform`` knows elsewhere."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line naming the machine and interpreter the figures come from."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: {cpu_model()}, {cores} cores ({platform.machine()}), "
        f"Python {platform.python_version()} ({platform.python_implementation()})"
    )


def _run(name: str, full: bool) -> list[Row]:
    module = importlib.import_module(f"benchmarks.{name}")
    if name == "server":
        rows: list[Row] = module.main(FULL_SERVER if full else QUICK_SERVER)
    else:
        rows = module.main()
    return [dataclasses.replace(r, name=f"{name}: {r.name}") for r in rows]


def _run_in_child(name: str, full: bool) -> list[Row]:
    command = [sys.executable, "-m", "benchmarks", "--only", name, "--emit-json"]
    if full:
        command.append("--full")
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    print(result.stdout.rsplit("\n", 2)[0], flush=True)  # the child's own tables
    return [Row(**fields) for fields in json.loads(result.stdout.strip().splitlines()[-1])]


def _median_rows(runs: list[list[Row]]) -> list[Row]:
    """Per figure, the median of its values and the median of its baselines over the runs."""
    by_name: dict[str, list[Row]] = {}
    for rows in runs:
        for row in rows:
            by_name.setdefault(row.name, []).append(row)
    merged = []
    for same in by_name.values():
        baselines = [r.baseline for r in same if r.baseline is not None]
        paired = [r.paired_ratio for r in same if r.paired_ratio is not None]
        merged.append(
            dataclasses.replace(
                same[0],
                value=statistics.median(r.value for r in same),
                baseline=statistics.median(baselines) if baselines else None,
                paired_ratio=statistics.median(paired) if paired else None,
            )
        )
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument(
        "--full",
        action="store_true",
        help="the server benchmark's whole curve (minutes) instead of its 500-call point",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each benchmark this many times, each in a fresh process; report medians",
    )
    parser.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or _names()
    unknown = sorted(set(names) - set(_names()))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(_names())}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.emit_json:  # a child of --repeat: one benchmark, rows as JSON on the last line
        rows = _run(names[0], args.full)
        print(json.dumps([dataclasses.asdict(r) for r in rows]))
        return 0
    print(machine(), flush=True)
    all_rows: list[Row] = []
    for name in names:
        started = time.perf_counter()
        if args.repeat == 1:
            all_rows.extend(_run(name, args.full))
        else:
            runs = [_run_in_child(name, args.full) for _ in range(args.repeat)]
            all_rows.extend(_median_rows(runs))
        print(f"({name}: {time.perf_counter() - started:.1f} s)", flush=True)
    title = "All benchmarks"
    if args.repeat > 1:
        title += f" (medians of {args.repeat} runs, each in a fresh process)"
    print_table(title, all_rows)
    print(f"\n{machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
