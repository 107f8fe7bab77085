"""Timing and reporting shared by the benchmarks.

``time_call`` picks an inner loop long enough to time, repeats it and keeps the median;
``time_commands`` times whole processes (wall and CPU), interleaved; ``Row``/``print_table``
print figures next to their baseline with the ratio between them.
"""

from __future__ import annotations

import importlib
import resource
import statistics
import subprocess
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import NamedTuple


def audioop_or_none() -> ModuleType | None:
    """The C codec that is the baseline: stdlib ``audioop`` (or ``audioop-lts``), if present."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ImportError:
            return None


def time_call(fn: Callable[[], object], *, repeats: int = 7, min_seconds: float = 0.05) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` timed loops."""
    loops = 1
    while True:
        started = time.perf_counter()
        for _ in range(loops):
            fn()
        if time.perf_counter() - started >= min_seconds:
            break
        loops *= 2
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(loops):
            fn()
        samples.append((time.perf_counter() - started) / loops)
    return statistics.median(samples)


class Timing(NamedTuple):
    """One run of a command: wall seconds from start to exit, and the CPU seconds it used."""

    wall_s: float
    cpu_s: float


def time_commands(
    commands: Mapping[str, Sequence[str]],
    *,
    runs: int = 15,
    warmups: int = 2,
    env: Mapping[str, str] | None = None,
) -> dict[str, list[Timing]]:
    """The wall and CPU time of each command from start to exit, ``runs`` times each.

    The commands take turns (one run of each, then the next round), so that a busy minute of
    a shared machine weighs on all of them alike; the first ``warmups`` rounds fill the file
    cache (and a bytecode cache, if ``env`` lets Python write one) and are not kept. Output
    is discarded; a command that fails raises. ``env`` replaces the environment. The CPU
    time (user and system, the command and its children) moves less than the wall time
    with the load of a shared machine.
    """
    timings: dict[str, list[Timing]] = {name: [] for name in commands}
    for round_number in range(warmups + runs):
        for name, argv in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env
            )
            wall_s = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            if round_number >= warmups:
                timings[name].append(Timing(wall_s, cpu_s))
    return timings


def cpu_time_call(fn: Callable[[], object], *, repeats: int = 5) -> float:
    """Median CPU seconds (this process) of one call of ``fn``; for calls that take a while."""
    samples = []
    for _ in range(repeats):
        started = time.process_time()
        fn()
        samples.append(time.process_time() - started)
    return statistics.median(samples)


@dataclass(frozen=True)
class Row:
    """One measured figure beside its baseline. ``better`` says which direction wins."""

    name: str
    value: float
    baseline: float | None
    unit: str
    baseline_name: str = ""
    better: str = "lower"  # "lower" for times, "higher" for throughputs
    target: str = ""
    # When value and baseline were measured in pairs (rounds), the median of the pairs'
    # ratios, which is what the ratio shows: each pair saw the same minutes of the machine.
    paired_ratio: float | None = None

    @property
    def ratio(self) -> float | None:
        """How many times better than the baseline (> 1 is better)."""
        if self.paired_ratio is not None:
            return self.paired_ratio
        if not self.baseline or not self.value:  # none, or a zero that has no ratio
            return None
        if self.better == "lower":
            return self.baseline / self.value
        return self.value / self.baseline


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(title: str, rows: Sequence[Row]) -> None:
    """Print rows as a Markdown table, which also reads well in a terminal."""
    print(f"\n### {title}\n")
    print("| measure | value | baseline | ratio (x better) | target |")
    print("|---|---|---|---|---|")
    for row in rows:
        if row.baseline is not None:
            base = f"{_figure(row.baseline)} {row.unit} ({row.baseline_name})"
        elif row.baseline_name:
            base = f"- ({row.baseline_name}: not available here)"
        else:
            base = "-"
        ratio = _figure(row.ratio) if row.ratio is not None else "-"
        print(f"| {row.name} | {_figure(row.value)} {row.unit} | {base} | {ratio} | {row.target} |")
