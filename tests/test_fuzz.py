"""A fixed slice of the fuzz harness (fuzz/): every target, the same inputs every run.

The full run (a million inputs, timings and slow inputs) is ``uv run python -m fuzz``; see
docs/security.md. Here only crashes are asserted, never times.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parent.parent
INPUTS = 3000


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    monkeypatch.syspath_prepend(str(ROOT))
    return {name: importlib.import_module(f"fuzz.{name}") for name in ("run", "targets")}


@pytest.mark.parametrize(
    "name",
    ["parse-twilio", "parse-app", "receive-app-side", "receive-twilio-side", "twiml", "trace"],
)
def test_fixed_slice_has_no_crash(
    harness: dict[str, ModuleType], name: str, tmp_path: Path
) -> None:
    target = harness["targets"].TARGETS[name]
    result = harness["run"].fuzz(target, INPUTS, seed=2026, out=tmp_path)
    assert result.inputs == INPUTS
    assert [c.detail for c in result.crashes] == []
    assert result.outcomes > 3  # the inputs reach more than one behaviour


def test_every_target_is_in_the_slice(harness: dict[str, ModuleType]) -> None:
    assert set(harness["targets"].TARGETS) == {
        "parse-twilio",
        "parse-app",
        "receive-app-side",
        "receive-twilio-side",
        "twiml",
        "trace",
    }


def test_a_crash_is_caught_and_its_input_saved(
    harness: dict[str, ModuleType], tmp_path: Path
) -> None:
    targets = harness["targets"]

    def broken(data: bytes) -> None:
        if b"media" in data:
            raise KeyError("media")

    target = targets.Target("broken", broken, (), "frame")
    result = harness["run"].fuzz(target, 200, seed=1, out=tmp_path)
    assert result.crashes and result.crashes[0].detail.startswith("KeyError")
    saved = result.crashes[0].path
    assert saved is not None and b"media" in saved.read_bytes()
    assert "KeyError" in saved.with_suffix(".txt").read_text()


def test_the_seeds_come_from_the_repository(harness: dict[str, ModuleType]) -> None:
    corpus = importlib.import_module("fuzz.corpus")
    frames = corpus.seeds("frame")
    assert any(b'"event":"start"' in seed for seed in frames)  # golden frames
    assert any(b"MZ0123456789abcdef0123456789abcdef" in seed for seed in frames)  # asyncapi
    assert all(seed.lstrip().startswith((b"<", b"<?xml")) for seed in corpus.seeds("twiml"))
    assert all(b'"from"' in seed for seed in corpus.seeds("trace"))
