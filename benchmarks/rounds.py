"""The server benchmark's measuring: one point, rounds of points, the knee search.

A point is a fresh server process for one stack (:mod:`benchmarks.stacks`) pinned to CPU 0
and the load client (:mod:`benchmarks.load`) pinned to CPU 1, on loopback, for a few seconds.
Rounds interleave the floor with the other stacks (the floor first, then the reverse order in
the next round), so each stack's ratio to the floor compares minutes that saw the same
machine. The knee search runs a point of each stack in turn, within a time budget.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.load import HOST, MAX_CALLS
from benchmarks.stacks import FLOOR, pin

KNEE_P50_MS = 5.0
KNEE_ECHOED_PCT = 99.9
KNEE_START = 400
KNEE_RESOLUTION = 0.1  # stop bisecting when the gap is within 10% of the passing point
FIGURES = [  # result key, label, unit, which way is better
    ("server_cpu_pct", "server CPU, % of one core", "%", "lower"),
    ("us_per_frame_pair", "server CPU per frame pair", "µs", "lower"),
    ("delay_p50_ms", "p50 frame lag", "ms", "lower"),
    ("delay_p99_ms", "p99 frame lag", "ms", "lower"),
    ("echoed_pct", "frames echoed in the window", "%", "higher"),
    ("client_us_per_frame_pair", "load client CPU per frame pair", "µs", "lower"),
    ("server_wait_pct", "server waiting for its core", "%", "lower"),
]
SERVER_FIGURES = FIGURES[:5]  # the server's own, which the runner's table shows

# --- one point -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profiler:
    """Run each server under ``py-spy record`` and write its profile into ``directory``.

    Python frames only by default, sampled without stopping the server. ``native`` adds the
    C frames (picows, msgspec, syscalls, the garbage collector), but py-spy must then stop
    the server for each sample, for milliseconds: keep the rate low (5-10 Hz) and the point
    long, and expect the server to fall behind (its lag and echo figures then mean nothing).
    """

    directory: Path
    format: str = "raw"  # py-spy's: raw (collapsed stacks), flamegraph (SVG), speedscope
    rate_hz: int = 100
    native: bool = False

    def command(self, stack: str, calls: int) -> list[str]:
        found = shutil.which("py-spy")
        runner = [found] if found else ["uvx", "--from", "py-spy", "py-spy"]
        suffix = {"raw": "txt", "flamegraph": "svg", "speedscope": "json"}[self.format]
        kind = "native" if self.native else "python"
        out = self.directory / f"{stack}-{calls}-{kind}.{suffix}"
        mode = ["--native"] if self.native else ["--nonblocking"]
        return [
            *runner,
            *("record", *mode, "-r", str(self.rate_hz), "-f", self.format, "-o", str(out), "--"),
        ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _wait_port(port: int, server: subprocess.Popen[bytes], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return True
        time.sleep(0.1)
    return False


def _server_pid(command: list[str], timeout_s: float = 30) -> int:
    """The pid of the process running ``command`` (started by a wrapper: py-spy, uvx)."""
    wanted = "\0".join(command).encode()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if (entry / "cmdline").read_bytes().rstrip(b"\0") == wanted:
                        return int(entry.name)
                except OSError:
                    continue
        time.sleep(0.1)
    raise RuntimeError("the profiler did not start the server")


def measure(
    stack: str, calls: int, secs: float, profiler: Profiler | None = None
) -> dict[str, Any]:
    """One point: a fresh server for ``stack`` on CPU 0, the load on CPU 1."""
    port = _free_port()
    serve = [sys.executable, "-m", "benchmarks.stacks", stack, str(port), "0"]
    command = serve if profiler is None else profiler.command(stack, calls) + serve
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            command,
            # The profiler samples from the client's core; the server pins itself to CPU 0.
            preexec_fn=(lambda: pin(1)) if profiler is not None else None,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            if not _wait_port(port, server):
                log.seek(0)
                raise RuntimeError(f"{stack} did not start: {log.read()[-300:].decode()}")
            pid = server.pid if profiler is None else _server_pid(serve)
            try:
                return _load(port, calls, secs, pid)
            except RuntimeError as error:
                # The client sees only a reset; the cause is in the server's own log.
                log.seek(0)
                said = _last_line(log.read().decode(errors="replace"))
                raise RuntimeError(f"{error}; {stack} said: {said or 'nothing'}") from None
        finally:
            _stop(server, profiler is not None)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _load(port: int, calls: int, secs: float, pid: int) -> dict[str, Any]:
    load = [sys.executable, "-m", "benchmarks.load", str(port), str(calls), str(secs), str(pid)]
    result = subprocess.run(
        load, preexec_fn=lambda: pin(1), capture_output=True, text=True, timeout=secs + 120
    )
    if result.returncode != 0:
        raise RuntimeError(f"the load client failed: {_last_line(result.stderr) or 'no message'}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _stop(server: subprocess.Popen[bytes], profiled: bool) -> None:
    # py-spy writes its profile on SIGINT and ends the server it started.
    server.send_signal(signal.SIGINT if profiled else signal.SIGTERM)
    try:
        server.wait(60 if profiled else 10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def point(stack: str, calls: int, secs: float, profiler: Profiler | None = None) -> dict[str, Any]:
    """One point that never raises: a failure is a result with an ``error``; logged to stderr."""
    try:
        result = measure(stack, calls, secs, profiler)
    except Exception as error:  # report and go on with the next point
        result = {"error": str(error)}
    print(json.dumps({"stack": stack, "calls": calls, **result}), file=sys.stderr, flush=True)
    return result


# --- rounds ----------------------------------------------------------------------------------

Results = dict[tuple[str, int], list[dict[str, Any]]]  # (stack, N) -> one result per round


def run_rounds(
    stacks: list[str],
    levels: list[int],
    secs: float,
    rounds: int,
    measure_point: Callable[[str, int, float], dict[str, Any]] = point,
) -> Results:
    """Every stack at every N, ``rounds`` times; the floor first, then the reverse order."""
    order = [FLOOR, *(s for s in stacks if s != FLOOR)]
    results: Results = {(s, n): [] for s in order for n in levels}
    for round_index in range(rounds):
        sequence = order if round_index % 2 == 0 else order[::-1]
        for calls in levels:
            for stack in sequence:
                results[stack, calls].append(measure_point(stack, calls, secs))
    return results


@dataclass
class Summary:
    """One stack at one N over the rounds: median figures and median ratios to the floor."""

    figures: dict[str, float | None] = field(default_factory=dict)
    to_floor: dict[str, float | None] = field(default_factory=dict)  # this / floor
    better: dict[str, float | None] = field(default_factory=dict)  # "x better" than the floor
    rounds: int = 0  # rounds with a result
    client_bound: int = 0  # rounds where the load client used >= 90% of its core
    errors: list[str] = field(default_factory=list)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(results: Results) -> dict[tuple[str, int], Summary]:
    """Medians over rounds, and per round each figure's ratio to that round's floor."""
    summaries = {}
    for (stack, calls), runs in results.items():
        floors = results.get((FLOOR, calls), [])
        summary = Summary()
        for key, _, _, better in FIGURES:
            values, ratios, betters = [], [], []
            for index, run in enumerate(runs):
                mine = run.get(key)
                if mine is None:
                    continue
                values.append(mine)
                base = floors[index].get(key) if index < len(floors) else None
                if base and mine:
                    ratios.append(mine / base)
                    betters.append(base / mine if better == "lower" else mine / base)
            summary.figures[key] = _median(values)
            summary.to_floor[key] = _median(ratios)
            summary.better[key] = _median(betters)
        summary.rounds = sum("error" not in run for run in runs)
        summary.client_bound = sum(bool(run.get("client_bound")) for run in runs)
        summary.errors = [run["error"] for run in runs if "error" in run]
        summaries[stack, calls] = summary
    return summaries


# --- the knee --------------------------------------------------------------------------------


def passes(result: dict[str, Any]) -> bool:
    """Whether a point is within the knee's bounds: p50 lag <= 5 ms, >= 99.9% echoed."""
    p50 = result.get("delay_p50_ms")
    echoed = result.get("echoed_pct")
    if p50 is None or echoed is None:
        return False
    return bool(p50 <= KNEE_P50_MS and echoed >= KNEE_ECHOED_PCT)


def next_knee_point(lo: int | None, hi: int | None, start: int = KNEE_START) -> int | None:
    """The next N to try, from the most that passed (``lo``) and the least that failed (``hi``).

    Up by half again until a point fails, down by half until one passes, then bisect until
    the gap is within 10% of ``lo`` (or 25 calls). ``None``: the search is done.
    """
    if lo is None and hi is None:
        return start

    def round_to(n: float) -> int:
        step = 50 if n >= 200 else 10
        return max(step, round(n / step) * step)

    if hi is None:
        assert lo is not None
        if lo >= MAX_CALLS:
            return None
        return min(MAX_CALLS, round_to(lo * 1.5))
    if lo is None:
        lower = round_to(hi / 2)
        return lower if lower < hi else None
    if hi - lo <= max(25, lo * KNEE_RESOLUTION):
        return None
    middle = round_to((lo + hi) / 2)
    return middle if lo < middle < hi else None


@dataclass
class Knee:
    """A knee search's outcome for one stack."""

    stack: str
    lo: int | None = None  # the most calls that passed
    hi: int | None = None  # the fewest calls that failed
    points: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    done: bool = False

    def record(self, calls: int, result: dict[str, Any]) -> None:
        self.points.append((calls, result))
        if passes(result):
            self.lo = max(self.lo or 0, calls)
        else:
            self.hi = min(self.hi or calls, calls)

    @property
    def client_bound(self) -> bool:
        """Whether the load client ran out of CPU at the failing point."""
        return any(c == self.hi and r.get("client_bound") for c, r in self.points)


def find_knees(
    stacks: list[str],
    secs: float,
    budget_s: float,
    start: int = KNEE_START,
    measure_point: Callable[[str, int, float], dict[str, Any]] = point,
) -> tuple[list[Knee], float]:
    """Search the knee of each stack in lockstep; return the knees and the seconds spent."""
    started = time.monotonic()
    knees = [Knee(stack) for stack in stacks]
    while time.monotonic() - started < budget_s and not all(k.done for k in knees):
        for knee in knees:
            calls = None if knee.done else next_knee_point(knee.lo, knee.hi, start)
            if calls is None:
                knee.done = True
                continue
            if time.monotonic() - started >= budget_s:
                break
            knee.record(calls, measure_point(knee.stack, calls, secs))
    return knees, time.monotonic() - started
