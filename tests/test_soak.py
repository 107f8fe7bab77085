"""A short soak: 50 calls for 30 s against ``serve --echo`` on picows, a real process.

The pass criteria are about correctness, not speed: no violation, no failed call, every
caller frame echoed (>= 99.9%), no mark lost, and the server's memory not running away after
a 10 s warm-up (a bound far wider than the 10-minute soak's 10%). Lags are not checked: the
test must pass on a single busy core (``taskset -c 0`` with the other core taken). The
10-minute soak and its figures: ``python -m benchmarks.soak`` and docs/benchmarks.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.soak import run_soak  # noqa: E402


def test_a_short_soak_passes(tmp_path: Path) -> None:
    soak = run_soak(
        "picows",
        calls=50,
        duration_s=30,
        sample_s=5,
        warmup_s=10,
        max_rss_growth_pct=50,
        out=tmp_path,
        live=False,
    )
    assert soak.verdict() == [], soak.to_dict()["problems"]
    report = soak.report
    assert report["calls"]["completed"] == 50
    assert report["violations"]["count"] == 0
    assert report["frames"]["echoed_pct"] >= 99.9 and report["marks"]["lost"] == 0
    assert report["marks"]["echoed"] == report["marks"]["received"] > 0
    assert len(soak.samples) >= 5 and all(s.rss_mb > 0 for s in soak.samples)
    assert (tmp_path / "soak-rss.svg").read_text().startswith("<svg")
    assert "<svg" in (tmp_path / "load.html").read_text()
