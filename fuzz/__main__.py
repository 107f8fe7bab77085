"""``python -m fuzz``: run the fuzz targets and report inputs/s, crashes and slow inputs.

Examples::

    uv run python -m fuzz --target all --inputs 1000000      # a million, shared by 6 targets
    uv run python -m fuzz --target parse-app --inputs 20000 --seed 7
    uv run --with atheris python -m fuzz --engine atheris --target parse-app --inputs 1000000

The exit status is 1 when any input crashed or was slow, 0 otherwise.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

from .run import SLOW_MS, Result, fuzz
from .targets import TARGETS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="all", choices=["all", *TARGETS])
    parser.add_argument(
        "--inputs", type=int, default=100_000, help="inputs in all, shared among the targets"
    )
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same inputs")
    parser.add_argument(
        "--out", type=Path, default=Path("fuzz-findings"), help="where crashing inputs go"
    )
    parser.add_argument("--engine", choices=["mutate", "atheris"], default="mutate")
    args = parser.parse_args(argv)
    names = list(TARGETS) if args.target == "all" else [args.target]
    print(f"machine: {_machine()}", flush=True)
    if args.engine == "atheris":
        return _atheris(names, -(-args.inputs // len(names)), args.out)
    results = []
    share = -(-args.inputs // len(names))  # at least --inputs in all
    for name in names:
        result = fuzz(TARGETS[name], share, seed=args.seed, out=args.out)
        _print(result)
        results.append(result)
    total = sum(r.inputs for r in results)
    bad = sum(len(r.crashes) + len(r.slow) for r in results)
    print(f"total: {total:,} inputs, {bad} crashing or slow (> {SLOW_MS:g} ms)", flush=True)
    return 1 if bad else 0


def _print(result: Result) -> None:
    print(
        f"{result.target:20} {result.inputs:>10,} inputs  {result.seconds:8.1f} s  "
        f"{result.per_second:>9,.0f} inputs/s  crashes {len(result.crashes)}  "
        f"slow {len(result.slow)}  slowest {result.slowest_ms:.2f} ms "
        f"({result.slowest_size:,} bytes)  outcomes {result.outcomes}",
        flush=True,
    )
    for finding in [*result.crashes, *result.slow][:10]:
        print(f"    {finding.what}: {finding.detail} ({finding.size} bytes) {finding.path}")


def _atheris(names: list[str], inputs: int, out: Path) -> int:
    failed = 0
    for name in names:
        command = [
            sys.executable,
            "-m",
            "fuzz.atheris_target",
            name,
            f"-runs={inputs}",
            f"-artifact_prefix={out}/{name}-",
            "-print_final_stats=1",
        ]
        out.mkdir(parents=True, exist_ok=True)
        print(f"== {name}: {' '.join(command)}", flush=True)
        failed |= subprocess.run(command, check=False).returncode != 0
    return 1 if failed else 0


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


if __name__ == "__main__":
    sys.exit(main())
