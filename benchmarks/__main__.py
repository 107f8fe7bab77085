"""Run every benchmark and print one table of figures and ratios against their baselines.

Run: ``uv run python -m benchmarks`` (or ``scripts/bench``); ``--only frames,mulaw`` picks some.
Each benchmark module has a ``main()`` that prints its own table and returns its rows.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import sys
import time
from pathlib import Path

from benchmarks.harness import Row, print_table

_SKIP = {"harness"}


def _names() -> list[str]:
    here = Path(__file__).parent
    modules = pkgutil.iter_modules([str(here)])
    return sorted(m.name for m in modules if m.name not in _SKIP and not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or _names()
    unknown = sorted(set(names) - set(_names()))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(_names())}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    all_rows: list[Row] = []
    for name in names:
        started = time.perf_counter()
        module = importlib.import_module(f"benchmarks.{name}")
        rows = module.main()
        all_rows.extend(
            Row(
                f"{name}: {r.name}",
                r.value,
                r.baseline,
                r.unit,
                r.baseline_name,
                r.better,
                r.target,
            )
            for r in rows
        )
        print(f"({name}: {time.perf_counter() - started:.1f} s)")
    print_table("All benchmarks", all_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
