"""Pictures of a run, as one self-contained HTML file with inline SVG (no script, no fetch).

:func:`line_chart` and :func:`bar_chart` draw plain SVG; :func:`report_html` puts a load
report's three pictures on one page: calls active over time, the histogram of the echo lag
(or of the time to first audio when the app does not echo) and the generator's CPU over
time, with the report's text under them. The soak benchmark draws its RSS curve with
:func:`line_chart` too.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from .report import LoadReport

__all__ = ["bar_chart", "line_chart", "page", "report_html"]

_WIDTH, _HEIGHT = 720, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 28, 40
_COLORS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700")


def _scale(lo: float, hi: float, size: float, flip: bool = False) -> tuple[float, float]:
    span = hi - lo or 1.0
    factor = size / span
    return (-factor, size + lo * factor) if flip else (factor, -lo * factor)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round values (1, 2 or 5 times a power of ten apart) from ``lo`` to ``hi``."""
    if hi <= lo:
        return [lo]
    rough = (hi - lo) / n
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    first = math.ceil(lo / step - 1e-9) * step
    count = int((hi - first) / step + 1e-9) + 1
    return [round(first + i * step, 10) for i in range(count)]


def _label(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:g}"


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    x_label: str,
    y_label: str,
    y_min: float | None = 0.0,
) -> str:
    """An SVG line chart: each series is ``(name, [(x, y), ...])``."""
    points = [p for _, values in series for p in values]
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    parts = [_frame_open(title)]
    if not points:
        parts.append(_empty())
        return "".join(parts) + "</svg>"
    x_lo, x_hi = min(p[0] for p in points), max(p[0] for p in points)
    y_lo = y_min if y_min is not None else min(p[1] for p in points)
    y_hi = max(max(p[1] for p in points), y_lo + 1e-9)
    if y_min is None:  # leave room around a curve that sits far from zero
        pad = (y_hi - y_lo) * 0.1 or abs(y_hi) * 0.05 or 1.0
        y_lo, y_hi = y_lo - pad, y_hi + pad
    ax, bx = _scale(x_lo, x_hi, plot_w)
    ay, by = _scale(y_lo, y_hi, plot_h, flip=True)
    parts.append(_axes(x_lo, x_hi, y_lo, y_hi, ax, bx, ay, by, x_label, y_label))
    for index, (name, values) in enumerate(series):
        color = _COLORS[index % len(_COLORS)]
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{_LEFT + ax * x + bx:.1f},{_TOP + ay * y + by:.1f}"
            for i, (x, y) in enumerate(values)
        )
        parts.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="1.6"/>')
        parts.append(
            f'<text x="{_WIDTH - _RIGHT - 4}" y="{_TOP + 14 + 14 * index}" text-anchor="end" '
            f'fill="{color}" font-size="11">{html.escape(name)}</text>'
        )
    return "".join(parts) + "</svg>"


def bar_chart(
    title: str, bars: Sequence[tuple[float, float, int]], *, x_label: str, y_label: str
) -> str:
    """An SVG histogram: bars ``(lower, upper, count)`` on a logarithmic x axis."""
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    parts = [_frame_open(title)]
    bars = [b for b in bars if b[2] > 0]
    if not bars:
        parts.append(_empty())
        return "".join(parts) + "</svg>"
    lo = math.log10(max(bars[0][0], 0.001))
    hi = math.log10(max(bars[-1][1], bars[0][0] * 10, 0.01))
    top = max(b[2] for b in bars)
    ax, bx = _scale(lo, hi, plot_w)
    ay, by = _scale(0, top, plot_h, flip=True)
    parts.append(_axes(lo, hi, 0, top, ax, bx, ay, by, x_label, y_label, log_x=True))
    for lower, upper, count in bars:
        x0 = _LEFT + ax * math.log10(max(lower, 0.001)) + bx
        x1 = _LEFT + ax * math.log10(max(upper, 0.001)) + bx
        y = _TOP + ay * count + by
        parts.append(
            f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 1):.1f}" '
            f'height="{_TOP + plot_h - y:.1f}" fill="{_COLORS[0]}"/>'
        )
    return "".join(parts) + "</svg>"


def _frame_open(title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" font-family="sans-serif" font-size="11">'
        f'<rect width="100%" height="100%" fill="white"/>'
        f'<text x="{_LEFT}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>'
    )


def _empty() -> str:
    return f'<text x="{_WIDTH / 2}" y="{_HEIGHT / 2}" text-anchor="middle">no data</text>'


def _axes(
    x_lo: float,
    x_hi: float,
    y_lo: float,
    y_hi: float,
    ax: float,
    bx: float,
    ay: float,
    by: float,
    x_label: str,
    y_label: str,
    log_x: bool = False,
) -> str:
    plot_h = _HEIGHT - _TOP - _BOTTOM
    parts = [
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_WIDTH - _RIGHT}" y2="{_TOP + plot_h}" '
        'stroke="#444"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + plot_h}" stroke="#444"/>',
    ]
    for value in _ticks(y_lo, y_hi):
        y = _TOP + ay * value + by
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_WIDTH - _RIGHT}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(value)}</text>'
        )
    if log_x:  # 1, 2 and 5 times each power of ten in the range
        decades = range(math.floor(x_lo), math.ceil(x_hi) + 1)
        x_values = [math.log10(m * 10.0**k) for k in decades for m in (1, 2, 5)]
    else:
        x_values = _ticks(x_lo, x_hi)
    for value in x_values:
        if not x_lo - 1e-6 <= value <= x_hi + 1e-6:
            continue
        x = _LEFT + ax * value + bx
        text = _label(round(10**value, 6)) if log_x else _label(value)
        parts.append(
            f'<text x="{x:.1f}" y="{_TOP + plot_h + 16}" text-anchor="middle">{text}</text>'
        )
    parts.append(
        f'<text x="{_LEFT + (_WIDTH - _LEFT - _RIGHT) / 2}" y="{_HEIGHT - 6}" '
        f'text-anchor="middle">{html.escape(x_label)}</text>'
        f'<text x="14" y="{_TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_TOP + plot_h / 2})">{html.escape(y_label)}</text>'
    )
    return "".join(parts)


def page(title: str, body: Sequence[str], text: str = "") -> str:
    """A self-contained HTML page: the title, the SVGs in order, then ``text`` as is."""
    figures = "".join(f"<figure>{svg}</figure>" for svg in body)
    pre = f"<pre>{html.escape(text)}</pre>" if text else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:24px;max-width:760px}"
        "figure{margin:0 0 16px}pre{font-size:12px;white-space:pre-wrap}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{figures}{pre}</body></html>\n"
    )


def report_html(report: LoadReport) -> str:
    """The report's page: calls active, the latency histogram, the generator's CPU."""
    timeline = report.to_dict()["timeline"]
    active = [(0, 0), *((row["t_s"], row["active"]) for row in timeline)]
    cpu = [(row["t_s"], row["cpu_pct"]) for row in timeline if row["cpu_pct"] is not None]
    lag = report.stats.histograms["echo_lag"]
    latency_name, latency = "caller frame sent to its echo", lag
    if not lag.count:
        latency_name, latency = (
            "start to the app's first audio",
            report.stats.histograms["first_audio"],
        )
    processes = report.stats.processes
    return page(
        f"mediastreams load: {report.config.target}",
        [
            line_chart("Calls active", [("active calls", active)], x_label="s", y_label="calls"),
            bar_chart(
                f"Latency: {latency_name}",
                latency.buckets_ms(),
                x_label="ms (log scale)",
                y_label="frames" if latency is lag else "calls",
            ),
            line_chart(
                f"Generator CPU ({processes} process{'es' if processes > 1 else ''}, summed)",
                [("CPU, % of one core", cpu)],
                x_label="s",
                y_label="%",
            ),
        ],
        report.render_text(),
    )
