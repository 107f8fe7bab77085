"""One target under atheris (libFuzzer), coverage-guided: ``python -m fuzz.atheris_target NAME``.

Further arguments go to libFuzzer (``-runs=N``, ``-max_total_time=S``...). The seeds are
written to a temporary corpus folder first. A crash is any exception outside the target's
documented ones; an input under the frame-size limit slower than 10 ms (best of three) raises
``SlowInput`` so that libFuzzer saves it too. atheris is not a dependency of the project:
``uv run --with atheris python -m fuzz.atheris_target parse-app -runs=1000000``.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import atheris

# Everything the targets import from mediastreams is instrumented for coverage.
with atheris.instrument_imports(include=["mediastreams"]):
    from .targets import FRAME_LIMIT_BYTES, TARGETS

from .corpus import seeds
from .run import SLOW_MS


class SlowInput(Exception):
    """An input under the frame-size limit took longer than 10 ms."""


def main() -> None:
    name, *rest = sys.argv[1:]
    target = TARGETS[name]

    def one_input(data: bytes) -> None:
        began = time.perf_counter()
        with contextlib.suppress(*target.allowed):
            target.run(data)
        units = target.units(data)
        elapsed_ms = (time.perf_counter() - began) * 1000 / units
        if elapsed_ms > SLOW_MS and len(data) <= FRAME_LIMIT_BYTES:
            best = min(_timed(target.run, data) for _ in range(3)) / units
            if best > SLOW_MS:
                raise SlowInput(f"{best:.1f} ms for {len(data)} bytes")

    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    for index, seed in enumerate(seeds(target.kind)):
        (corpus / f"seed-{index}").write_bytes(seed)
    atheris.Setup([sys.argv[0], *rest, str(corpus)], one_input)
    atheris.Fuzz()


def _timed(run: Callable[[bytes], object], data: bytes) -> float:
    began = time.perf_counter()
    with contextlib.suppress(Exception):  # timing only: the outcome was judged already
        run(data)
    return (time.perf_counter() - began) * 1000


if __name__ == "__main__":
    main()
