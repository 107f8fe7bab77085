"""The benchmark runner's bookkeeping: medians, missing baselines, the server's rows.

The benchmarks themselves are not run here (they take seconds to minutes); see
docs/benchmarks.md.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parent.parent


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    monkeypatch.syspath_prepend(str(ROOT))
    names = ["harness", "__main__", "server"]
    return {name: importlib.import_module(f"benchmarks.{name}") for name in names}


def test_repeat_takes_medians_of_value_and_baseline(bench: dict[str, ModuleType]) -> None:
    row = bench["harness"].Row
    runs = [
        [row("a", 1.0, 10.0, "µs"), row("b", 5.0, None, "x", "audioop", "higher")],
        [row("a", 3.0, 30.0, "µs"), row("b", 7.0, None, "x", "audioop", "higher")],
        [row("a", 2.0, 90.0, "µs"), row("b", 6.0, None, "x", "audioop", "higher")],
    ]
    a, b = bench["__main__"]._median_rows(runs)
    assert (a.name, a.value, a.baseline, a.ratio) == ("a", 2.0, 30.0, 15.0)
    assert (b.value, b.baseline, b.ratio) == (6.0, None, None)


def test_a_missing_baseline_is_named(
    bench: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    row = bench["harness"].Row("encode", 3000.0, None, "MB/s", "audioop", "higher")
    bench["harness"].print_table("t", [row])
    assert "- (audioop: not available here) | - |" in capsys.readouterr().out


def test_machine_line_names_cpu_cores_and_python(bench: dict[str, ModuleType]) -> None:
    line = bench["__main__"].machine()
    assert "cores" in line and "Python 3." in line


def test_server_rows_beside_the_plain_baseline(bench: dict[str, ModuleType]) -> None:
    point = {
        "server_cpu_pct": 50.0,
        "us_per_frame_pair": 20.0,
        "delay_p50_ms": 0.5,
        "echoed_pct": 100.0,
    }
    plain = {**point, "server_cpu_pct": 80.0, "us_per_frame_pair": 32.0}
    results = {
        ("mediastreams-picows", 500): point,
        ("mediastreams-uvicorn", 500): {"error": "did not start"},
        ("plain-starlette", 500): plain,
    }
    stacks = ["mediastreams-picows", "mediastreams-uvicorn", "plain-starlette"]
    rows = bench["server"]._rows(results, stacks, [500])
    assert [r.name.split(": ")[1] for r in rows] == [
        "server CPU, % of one core",
        "server CPU per frame pair",
        "p50 frame lag",
        "frames echoed in the window",
    ]
    assert rows[1].ratio == pytest.approx(1.6)
    assert [r.target for r in rows] == ["", "", "<= 5 ms", ">= 99%"]
