"""Start-up: how long `mediastreams --help`, `call --help` and `serve --help` take to answer.

Each command runs as a fresh process, `runs` times, taking turns with `python -c pass` (the
interpreter's own start-up, the baseline: no command can come back faster). The figure is
the median wall time from start to exit, then the median CPU time (user and system), which
moves less with the load of a shared machine; the ratio says how many times the bare
interpreter's time each command takes (shown as "x better", so below 1). Target: under 300
ms of wall time for `call --help` and `serve --help`, on a loaded 2-core machine too;
`python -X importtime -m mediastreams call --help` says where the time goes.

The commands start as an installed package does: with the bytecode Python caches at the
first import (written to a temporary ``PYTHONPYCACHEPREFIX`` during the warm-up rounds, not
into the tree), whatever ``PYTHONDONTWRITEBYTECODE`` says. ``--no-bytecode`` measures them
with none, every module compiled at each start: where ``PYTHONDONTWRITEBYTECODE=1`` is set
and nothing was compiled at install time.

Run: ``uv run python -m benchmarks.startup`` (``--runs N``, default 15; ``--no-bytecode``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

from benchmarks.harness import Row, print_table, time_commands

BASELINE = "python -c pass"
COMMANDS = {
    BASELINE: [sys.executable, "-c", "pass"],
    "mediastreams --help": [sys.executable, "-m", "mediastreams", "--help"],
    "mediastreams call --help": [sys.executable, "-m", "mediastreams", "call", "--help"],
    "mediastreams serve --help": [sys.executable, "-m", "mediastreams", "serve", "--help"],
}
TARGETS = {"mediastreams call --help": "< 300 ms", "mediastreams serve --help": "< 300 ms"}


def measure(runs: int, *, bytecode: bool = True) -> list[Row]:
    """Two rows per command: its median start-up time (wall, then CPU) beside the
    interpreter's.

    Args:
        runs: runs of each command, taking turns.
        bytecode: let the commands cache their bytecode (in a temporary folder), as an
            installed package does; ``False`` compiles every module at each start.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="mediastreams-pycache-") as cache:
        if bytecode:
            env["PYTHONPYCACHEPREFIX"] = cache
        else:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        timings = time_commands(COMMANDS, runs=runs, env=env)
    rows = []
    for kind in ("wall_s", "cpu_s"):
        medians_ms = {
            name: statistics.median(getattr(t, kind) for t in runs_of) * 1000
            for name, runs_of in timings.items()
        }
        suffix = "" if kind == "wall_s" else " (CPU)"
        rows += [
            Row(
                name + suffix,
                value_ms,
                medians_ms[BASELINE],
                "ms",
                BASELINE + suffix,
                target=TARGETS.get(name, "") if kind == "wall_s" else "",
            )
            for name, value_ms in medians_ms.items()
            if name != BASELINE
        ]
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (median)")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="no bytecode cache: every module compiled at each start",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    rows = measure(args.runs, bytecode=not args.no_bytecode)
    cache = "no bytecode cache" if args.no_bytecode else "bytecode cached"
    print_table(f"Start-up, median of {args.runs} runs, each a fresh process ({cache})", rows)
    return rows


if __name__ == "__main__":
    main()
