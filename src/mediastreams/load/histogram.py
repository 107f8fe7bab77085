"""A histogram of durations that costs a few integer operations to fill and merges by adding.

Values are whole microseconds. Below 32 µs each value has its own bucket; above, each power
of two is cut into 16 buckets, so a bucket is at most 1/16 (6.25%) wider than its lower bound
and a quantile read from the buckets is within about 3% of the true one. Two histograms of
the same kind merge by adding their counts, which is how the processes of one load run give
one report.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Histogram"]

_EXACT = 32  # values below this have a bucket each
_SUB_BITS = 4  # 16 buckets per power of two above it
_SUB = 1 << _SUB_BITS
_FIRST_BITS = _EXACT.bit_length()  # 6: the bit length of the smallest value past the exact ones


class Histogram:
    """Counts of microsecond durations in buckets, with their count, sum, min and max."""

    __slots__ = ("count", "counts", "max_us", "min_us", "total_us")

    def __init__(self) -> None:
        self.counts: list[int] = []
        self.count = 0
        self.total_us = 0
        self.min_us: int | None = None
        self.max_us = 0

    def record(self, value_us: int) -> None:
        """Count one duration (negative ones, from clocks that moved, count as 0)."""
        if value_us < _EXACT:
            index = value_us if value_us > 0 else 0
        else:
            bits = value_us.bit_length()
            index = (
                _EXACT
                + (bits - _FIRST_BITS) * _SUB
                + ((value_us >> (bits - _SUB_BITS - 1)) & (_SUB - 1))
            )
        counts = self.counts
        if index >= len(counts):
            counts.extend([0] * (index + 1 - len(counts)))
        counts[index] += 1
        self.count += 1
        self.total_us += value_us
        if value_us > self.max_us:
            self.max_us = value_us
        if self.min_us is None or value_us < self.min_us:
            self.min_us = value_us

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts to these."""
        if len(other.counts) > len(self.counts):
            self.counts.extend([0] * (len(other.counts) - len(self.counts)))
        for index, n in enumerate(other.counts):
            self.counts[index] += n
        self.count += other.count
        self.total_us += other.total_us
        self.max_us = max(self.max_us, other.max_us)
        if other.min_us is not None:
            self.min_us = other.min_us if self.min_us is None else min(self.min_us, other.min_us)

    @staticmethod
    def bounds_us(index: int) -> tuple[int, int]:
        """The values bucket ``index`` holds: ``lower <= value < upper``."""
        if index < _EXACT:
            return index, index + 1
        octave, sub = divmod(index - _EXACT, _SUB)
        shift = octave + _FIRST_BITS - _SUB_BITS - 1
        return (_SUB + sub) << shift, (_SUB + sub + 1) << shift

    def quantile_us(self, q: float) -> float | None:
        """The value below which a share ``q`` (0-1) of the durations fall, or ``None``."""
        if not self.count:
            return None
        rank = min(self.count - 1, int(q * self.count))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen > rank:
                lower, upper = self.bounds_us(index)
                middle = (lower + upper - 1) / 2
                return float(min(max(middle, self.min_us or 0), self.max_us))
        return float(self.max_us)

    def count_over(self, threshold_us: int) -> int:
        """How many durations are at least ``threshold_us`` (exact at bucket bounds)."""
        total = 0
        for index, n in enumerate(self.counts):
            if n and self.bounds_us(index)[0] >= threshold_us:
                total += n
        return total

    def summary_ms(self) -> dict[str, Any]:
        """Count, mean, min, p50, p90, p99, p99.9 and max, in milliseconds (``None`` if empty)."""

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value / 1000, 2)

        return {
            "count": self.count,
            "mean_ms": ms(self.total_us / self.count) if self.count else None,
            "min_ms": ms(self.min_us),
            "p50_ms": ms(self.quantile_us(0.5)),
            "p90_ms": ms(self.quantile_us(0.9)),
            "p99_ms": ms(self.quantile_us(0.99)),
            "p999_ms": ms(self.quantile_us(0.999)),
            "max_ms": ms(float(self.max_us)) if self.count else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """The full state, sparse: ``{"buckets": {index: count}, ...}`` (JSON-safe)."""
        return {
            "buckets": {str(i): n for i, n in enumerate(self.counts) if n},
            "count": self.count,
            "total_us": self.total_us,
            "min_us": self.min_us,
            "max_us": self.max_us,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        """The histogram :meth:`to_dict` wrote."""
        histogram = cls()
        buckets = {int(i): int(n) for i, n in data["buckets"].items()}
        if buckets:
            histogram.counts = [0] * (max(buckets) + 1)
            for index, n in buckets.items():
                histogram.counts[index] = n
        histogram.count = int(data["count"])
        histogram.total_us = int(data["total_us"])
        histogram.min_us = None if data["min_us"] is None else int(data["min_us"])
        histogram.max_us = int(data["max_us"])
        return histogram

    def buckets_ms(self) -> list[tuple[float, float, int]]:
        """The non-empty buckets as ``(lower ms, upper ms, count)``, in order."""
        rows = []
        for index, n in enumerate(self.counts):
            if n:
                lower, upper = self.bounds_us(index)
                rows.append((lower / 1000, upper / 1000, n))
        return rows
