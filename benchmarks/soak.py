"""A soak: the fastest backend under steady load for minutes, its memory watched.

Run (10 minutes, the figures in ``docs/benchmarks.md``)::

    uv run python -m benchmarks.soak --backend picows --calls 400 --minutes 10 --out soak-out

``mediastreams serve --echo`` runs pinned to CPU 0 and ``mediastreams load`` (its own
process, pinned to CPU 1) places ``--calls`` calls, 50 a second, each streaming for the whole
soak; pick ``--calls`` at about 70% of the backend's knee (``python -m benchmarks.server
--knee``). Every ``--sample-s`` seconds the server's RSS and CPU are read from ``/proc``. At
the end: the generator's report (violations, frames and marks lost, caller audio echoed,
failed calls), the RSS curve and the verdict. It passes with no violation, no failed call,
>= 99.9% of the caller's audio echoed, no mark lost (every mark the app sent was echoed, by
playout or by a clear, before the stop) and RSS growth under 10% from the end of the warm-up
(``--warmup-s``, 2 minutes) to the end. ``--out DIR`` keeps ``soak.json``, ``soak-rss.svg``
and the generator's ``load.html``. Exit 0 when it passes, 1 when it does not.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from mediastreams.load.picture import line_chart, page

from benchmarks.load import HOST, proc_cpu_s
from benchmarks.rounds import _free_port, _wait_port
from benchmarks.stacks import pin

MIN_ECHOED_PCT = 99.9
MAX_RSS_GROWTH_PCT = 10.0
_RAMP_RATE = 50  # calls started per second


@dataclass
class Sample:
    """The server at one moment of the soak: seconds since the load started, RSS, CPU."""

    t_s: float
    rss_mb: float
    cpu_pct: float | None


@dataclass
class Soak:
    """A soak's samples and the generator's report; :meth:`verdict` checks them."""

    backend: str
    calls: int
    duration_s: float
    warmup_s: float
    max_rss_growth_pct: float = MAX_RSS_GROWTH_PCT
    samples: list[Sample] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def rss_growth_pct(self) -> float | None:
        """RSS at the end against the first sample after the warm-up, in %."""
        after = [s for s in self.samples if s.t_s >= self.warmup_s]
        if len(after) < 2:
            return None
        return 100 * (after[-1].rss_mb - after[0].rss_mb) / after[0].rss_mb

    def verdict(self) -> list[str]:
        """What failed (empty: the soak passed)."""
        report = self.report
        problems = []
        if report["violations"]["count"]:
            problems.append(f"{report['violations']['count']} violation(s)")
        if report["calls"]["failed"]:
            problems.append(f"{report['calls']['failed']} call(s) failed")
        if report["calls"]["up"] < self.calls:
            problems.append(f"only {report['calls']['up']} of {self.calls} calls streamed")
        echoed = report["frames"]["echoed_pct"]
        if echoed is None or echoed < MIN_ECHOED_PCT:
            problems.append(f"caller audio echoed {echoed}% (< {MIN_ECHOED_PCT}%)")
        if report["marks"]["lost"]:
            problems.append(f"{report['marks']['lost']} mark(s) lost")
        growth = self.rss_growth_pct
        if growth is None:
            problems.append("too few RSS samples after the warm-up to judge memory")
        elif growth >= self.max_rss_growth_pct:
            problems.append(
                f"RSS grew {growth:.1f}% after the warm-up (>= {self.max_rss_growth_pct}%)"
            )
        return problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "calls": self.calls,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "passed": not self.verdict(),
            "problems": self.verdict(),
            "rss_growth_pct": None
            if self.rss_growth_pct is None
            else round(self.rss_growth_pct, 2),
            "samples": [asdict(s) for s in self.samples],
            "report": self.report,
        }


def rss_mb(pid: int) -> float:
    """The resident set of process ``pid``, in MB (``VmRSS``)."""
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _serve(backend: str, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    command = [
        *(sys.executable, "-m", "mediastreams", "serve", "--echo", "--backend", backend),
        *("--host", HOST, "--port", str(port), "--log-level", "warning"),
    ]
    return subprocess.Popen(
        command, preexec_fn=lambda: pin(0), stdout=subprocess.DEVNULL, stderr=log
    )


def _load_command(port: int, calls: int, duration_s: float, out: Path | None) -> list[str]:
    command = [
        *(sys.executable, "-m", "mediastreams", "load", f"ws://{HOST}:{port}/media-stream"),
        *("--calls", str(calls), "--rate", str(_RAMP_RATE), "--duration", str(duration_s)),
        "--json",
    ]
    if out is not None:
        command += ["--html", str(out / "load.html")]
    return command


def run_soak(
    backend: str,
    calls: int,
    duration_s: float,
    *,
    sample_s: float = 15.0,
    warmup_s: float = 120.0,
    max_rss_growth_pct: float = MAX_RSS_GROWTH_PCT,
    out: Path | None = None,
    live: bool = True,
) -> Soak:
    """Run the soak and return its samples and report (see the module's docstring)."""
    soak = Soak(backend, calls, duration_s, warmup_s, max_rss_growth_pct)
    port = _free_port()
    with tempfile.TemporaryFile() as log:
        server = _serve(backend, port, log)
        try:
            if not _wait_port(port, server, timeout_s=60):
                log.seek(0)
                raise RuntimeError(f"the server did not start: {log.read()[-500:]!r}")
            soak.report = _load(soak, port, server.pid, sample_s, out, live)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    if out is not None:
        _write(soak, out)
    return soak


def _load(
    soak: Soak, port: int, server_pid: int, sample_s: float, out: Path | None, live: bool
) -> dict[str, Any]:
    """Run the generator to its end, sampling the server meanwhile; its JSON report.

    The report goes to a file, not a pipe: a 10-minute report is larger than a pipe holds,
    and the generator would wait to write it while this waited for it to end.
    """
    with tempfile.TemporaryFile("w+") as report:
        load = subprocess.Popen(
            _load_command(port, soak.calls, soak.duration_s, out),
            preexec_fn=lambda: pin(1),
            stdout=report,
            stderr=None if live else subprocess.DEVNULL,
        )
        started = time.monotonic()
        cpu_before, at_before = proc_cpu_s(server_pid), started
        while load.poll() is None:
            next_at = started + sample_s * (len(soak.samples) + 1)
            while load.poll() is None and time.monotonic() < next_at:
                time.sleep(min(0.2, max(0.0, next_at - time.monotonic())))
            now, cpu = time.monotonic(), proc_cpu_s(server_pid)
            soak.samples.append(
                Sample(
                    round(now - started, 1),
                    round(rss_mb(server_pid), 2),
                    round(100 * (cpu - cpu_before) / (now - at_before), 1),
                )
            )
            cpu_before, at_before = cpu, now
        report.seek(0)
        output = report.read()
    if not output.strip():
        raise RuntimeError(f"mediastreams load gave no report (exit {load.returncode})")
    return dict(json.loads(output))


def rss_svg(soak: Soak) -> str:
    """The server's RSS over the soak, with the end of the warm-up marked in the title."""
    points = [(s.t_s / 60, s.rss_mb) for s in soak.samples]
    return line_chart(
        f"Server RSS, {soak.backend}, {soak.calls} calls (warm-up ends at "
        f"{soak.warmup_s / 60:g} min)",
        [("RSS, MB", points)],
        x_label="minutes",
        y_label="MB",
        y_min=None,
    )


def _write(soak: Soak, out: Path) -> None:
    (out / "soak.json").write_text(json.dumps(soak.to_dict(), indent=1) + "\n")
    svg = rss_svg(soak)
    (out / "soak-rss.svg").write_text(svg + "\n")
    cpu = [(s.t_s / 60, s.cpu_pct) for s in soak.samples if s.cpu_pct is not None]
    cpu_svg = line_chart(
        "Server CPU, % of its core", [("CPU", cpu)], x_label="minutes", y_label="%"
    )
    (out / "soak.html").write_text(page("Soak", [svg, cpu_svg], summary(soak)))


def summary(soak: Soak) -> str:
    """The soak's figures and verdict, for a terminal."""
    report = soak.report
    frames, marks = report["frames"], report["marks"]
    lag = report["latency"]["echo_lag"]
    growth = soak.rss_growth_pct
    lines = [
        f"soak: {soak.backend}, {soak.calls} calls, {soak.duration_s / 60:g} min "
        f"(server on CPU 0, generator on CPU 1)",
        f"calls: {report['calls']['up']} streamed, {report['calls']['completed']} completed, "
        f"{report['calls']['failed']} failed",
        f"violations: {report['violations']['count']}",
        f"caller frames: {frames['sent']:,} sent, {frames['echoed_pct']}% echoed, "
        f"{frames['lost']} lost; late over 20/40/100 ms: "
        + "/".join(f"{n:,}" for n in frames["late"].values()),
        f"marks: {marks['received']:,} sent by the app, {marks['echoed']:,} echoed "
        f"({marks['echoed_by_clear']:,} by a clear), {marks['lost']} lost",
        f"echo lag: p50 {lag['p50_ms']} ms, p99 {lag['p99_ms']} ms, max {lag['max_ms']} ms",
        "server RSS (MB) every sample: " + ", ".join(f"{s.rss_mb:.1f}" for s in soak.samples),
        "server CPU (%) every sample: " + ", ".join(f"{s.cpu_pct}" for s in soak.samples),
        f"RSS growth after the warm-up: {growth:.1f}%" if growth is not None else "RSS growth: -",
        f"generator: CPU {report['generator']['cpu_pct_by_process']}% of its core, "
        f"{report['generator']['us_per_frame_pair']} µs per frame pair; trusted: "
        f"{report['trusted']}",
    ]
    problems = soak.verdict()
    lines.append("PASS" if not problems else "FAIL: " + "; ".join(problems))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--backend", default="picows", choices=["picows", "websockets", "uvicorn"])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, help="the soak's length in seconds instead")
    parser.add_argument("--sample-s", type=float, default=15.0)
    parser.add_argument("--warmup-s", type=float, default=120.0)
    parser.add_argument("--max-rss-growth-pct", type=float, default=MAX_RSS_GROWTH_PCT)
    parser.add_argument("--out", type=Path, help="a folder for soak.json, soak-rss.svg, load.html")
    parser.add_argument("--json", action="store_true", help="print soak.json's content only")
    args = parser.parse_args(argv)
    duration_s = args.seconds if args.seconds is not None else args.minutes * 60
    if args.out is not None:
        os.makedirs(args.out, exist_ok=True)
    soak = run_soak(
        args.backend,
        args.calls,
        duration_s,
        sample_s=args.sample_s,
        warmup_s=args.warmup_s,
        max_rss_growth_pct=args.max_rss_growth_pct,
        out=args.out,
        live=not args.json,
    )
    print(json.dumps(soak.to_dict()) if args.json else summary(soak))
    return 0 if not soak.verdict() else 1


if __name__ == "__main__":
    sys.exit(main())
