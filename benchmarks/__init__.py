"""Benchmarks: each module measures one thing against a baseline, side by side, in one run.

Run them all with ``uv run python -m benchmarks``, one with
``uv run python -m benchmarks.<name>``; see docs/benchmarks.md. Figures are medians over
repeats; the machines this runs on are shared and noisy, so read ratios, not absolute
numbers, and never turn these into timed tests.
"""
