"""Run a target over mutated inputs: count, time, and keep what crashed or was slow.

An input whose outcome (the exception type and the violation kind, or the message type) was
not seen before joins the mutator's pool, so the inputs drift towards new behaviour without
coverage instrumentation (see ``fuzz/atheris_target.py`` for the coverage-guided engine).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from mediastreams.exceptions import ProtocolError

from .corpus import seeds
from .mutate import Mutator
from .targets import FRAME_LIMIT_BYTES, Target

__all__ = ["SLOW_MS", "Finding", "Result", "fuzz"]

SLOW_MS = 10.0
"""An input under the frame-size limit that takes longer than this (best of three, per unit:
a frame, a document, a trace line) is slow."""


@dataclass(frozen=True)
class Finding:
    """One crashing or slow input, and where it was saved."""

    target: str
    what: str  # "crash" or "slow"
    detail: str  # the exception, or the time
    size: int
    path: Path | None


@dataclass
class Result:
    """What one target did over a run."""

    target: str
    inputs: int = 0
    seconds: float = 0.0
    crashes: list[Finding] = field(default_factory=list)
    slow: list[Finding] = field(default_factory=list)
    slowest_ms: float = 0.0
    slowest_size: int = 0
    outcomes: int = 0

    @property
    def per_second(self) -> float:
        """Inputs per second of wall time, mutation included."""
        return self.inputs / self.seconds if self.seconds else 0.0


def fuzz(
    target: Target,
    inputs: int,
    *,
    seed: int = 0,
    out: Path | None = None,
    max_crashes: int = 20,
) -> Result:
    """Run ``target`` over ``inputs`` mutated inputs from a seeded random source.

    Crashing and slow inputs are saved under ``out`` (``<target>-crash-<sha1>.bin`` with a
    ``.txt`` traceback beside it) when ``out`` is given; at most ``max_crashes`` are kept.
    """
    rng = random.Random(f"{target.name}:{seed}")
    mutator = Mutator(seeds(target.kind), target.kind, rng, max_bytes=FRAME_LIMIT_BYTES + 4096)
    result = Result(target.name)
    seen: set[tuple[str, str]] = set()
    started = time.perf_counter()
    for _ in range(inputs):
        data = mutator.next()
        began = time.perf_counter()
        outcome = _run_one(target, data, result, out, max_crashes)
        elapsed_ms = (time.perf_counter() - began) * 1000
        elapsed_ms /= target.units(data)
        timed = len(data) <= FRAME_LIMIT_BYTES
        if timed and (elapsed_ms > result.slowest_ms or elapsed_ms > SLOW_MS):
            elapsed_ms = _best_of_three(target, data) / target.units(data)
            if elapsed_ms > result.slowest_ms:
                result.slowest_ms, result.slowest_size = elapsed_ms, len(data)
            if elapsed_ms > SLOW_MS:
                _keep(result.slow, target, "slow", f"{elapsed_ms:.1f} ms", data, out, "")
        if outcome not in seen:
            seen.add(outcome)
            mutator.keep(data)
        result.inputs += 1
    result.seconds = time.perf_counter() - started
    result.outcomes = len(seen)
    return result


def _run_one(
    target: Target, data: bytes, result: Result, out: Path | None, max_crashes: int
) -> tuple[str, str]:
    try:
        value = target.run(data)
    except target.allowed as error:
        kind = error.violation.kind if isinstance(error, ProtocolError) else ""
        return (type(error).__name__, kind)
    except Exception as error:
        if len(result.crashes) < max_crashes:
            detail = f"{type(error).__name__}: {str(error)[:200]}"
            _keep(result.crashes, target, "crash", detail, data, out, traceback.format_exc())
        else:
            result.crashes.append(
                Finding(target.name, "crash", type(error).__name__, len(data), None)
            )
        return ("crash", type(error).__name__)
    return ("ok", str(value))


def _best_of_three(target: Target, data: bytes) -> float:
    # One slow run on a shared machine proves little: the best of three is the input's cost.
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        with contextlib.suppress(Exception):  # the first run recorded the outcome
            target.run(data)
        best = min(best, (time.perf_counter() - began) * 1000)
    return best


def _keep(
    found: list[Finding],
    target: Target,
    what: str,
    detail: str,
    data: bytes,
    out: Path | None,
    trace: str,
) -> None:
    path = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha1(data).hexdigest()[:16]
        path = out / f"{target.name}-{what}-{digest}.bin"
        path.write_bytes(data)
        path.with_suffix(".txt").write_text(f"{detail}\n\n{trace}")
    found.append(Finding(target.name, what, detail, len(data), path))
