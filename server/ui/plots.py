"""Inline SVG line plots, drawn on the server: no script, nothing fetched.

Each series is a ``<polyline>``; with ``points=True`` every point is also a ``<circle
class="point">`` carrying its ``data-x`` / ``data-y`` and a ``<title>`` (the browser's
tooltip). Long series (reported scalars) are thinned to :data:`MAX_LINE_POINTS` for the line,
and to :data:`MAX_MARKS` circles.

Example:
    >>> svg = line_plot("val_loss", {"val_loss": [(1, 0.9), (2, 0.5), (3, 0.4)]}, points=True)
    >>> svg.count("<circle")
    3
    >>> "&lt;b&gt;" in line_plot("<b>", {"s": [(0, 1.0)]})
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

#: Points drawn per line at most (a longer series is thinned evenly, its ends kept).
MAX_LINE_POINTS = 1000
#: Circles drawn per series at most with ``points=True`` (thinned the same way; the
#: highlighted point is always drawn).
MAX_MARKS = 200
COLORS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7c86", "#57606a")
WIDTH, HEIGHT = 640, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 12, 36

Points = Sequence[tuple[float, float]]


def _ticks(low: float, high: float, count: int = 4, whole: bool = False) -> list[float]:
    """``count`` evenly spaced ticks from ``low`` to ``high``; whole numbers only if ``whole``
    (versions and iterations)."""
    if high == low:
        return [low]
    ticks = [low + (high - low) * i / (count - 1) for i in range(count)]
    return sorted({float(round(t)) for t in ticks}) if whole else ticks


def _label(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4g}"
    return f"{value:.2e}"


def _kept(count: int, limit: int) -> list[int]:
    """The indices of ``count`` points to draw: all, or ``limit`` evenly spread, ends kept."""
    if count <= limit:
        return list(range(count))
    step = (count - 1) / (limit - 1)
    return [round(i * step) for i in range(limit)]


def _thin(points: Points, limit: int) -> Points:
    return [points[i] for i in _kept(len(points), limit)]


def lines(series: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> dict[str, Points]:
    """``{name: (xs, ys)}`` (a store's series of one metric) as :func:`line_plot` takes it."""
    return {name: list(zip(xs, ys, strict=True)) for name, (xs, ys) in series.items()}


def line_plot(
    title: str,
    series: Mapping[str, Points],
    *,
    points: bool = False,
    x_label: str = "",
    tooltips: Mapping[str, Sequence[str]] | None = None,
    highlight: Mapping[str, float] | None = None,
) -> str:
    """A ``<figure>`` with one SVG plot of ``series`` (``{name: [(x, y)]}``).

    Args:
        title: the caption.
        series: the lines; non-finite values are left out.
        points: draw a circle per point (one per version on the model page).
        x_label: the x axis' name.
        tooltips: per series, a text per point (same order) for the circles' titles.
        highlight: per series, the x of a point drawn larger (the best version).
    """
    clean = {
        name: [(float(x), float(y)) for x, y in values if math.isfinite(x) and math.isfinite(y)]
        for name, values in series.items()
    }
    every = [p for values in clean.values() for p in values]
    caption = f"<figcaption>{escape(title)}</figcaption>"
    if not every:
        return f'<figure class="plot">{caption}<p class="empty">no values</p></figure>'
    xs, ys = [p[0] for p in every], [p[1] for p in every]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if y0 == y1:
        y0, y1 = y0 - (abs(y0) or 1) * 0.05, y1 + (abs(y1) or 1) * 0.05
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def px(x: float) -> float:
        return _LEFT + (plot_w / 2 if x1 == x0 else (x - x0) / (x1 - x0) * plot_w)

    def py(y: float) -> float:
        return _TOP + plot_h - (y - y0) / (y1 - y0) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect class="frame" x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}"/>',
    ]
    for tick in _ticks(y0, y1):
        y = py(tick)
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y:.1f}" '
                     f'y2="{y:.1f}"/><text class="tick" x="{_LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{_label(tick)}</text>')  # fmt: skip
    for tick in _ticks(x0, x1, 6, whole=all(x.is_integer() for x in xs)):
        parts.append(f'<text class="tick" x="{px(tick):.1f}" y="{_TOP + plot_h + 16}" '
                     f'text-anchor="middle">{_label(tick)}</text>')  # fmt: skip
    if x_label:
        parts.append(f'<text class="axis" x="{_LEFT + plot_w / 2}" y="{HEIGHT - 4}" '
                     f'text-anchor="middle">{escape(x_label)}</text>')  # fmt: skip
    for index, (name, values) in enumerate(clean.items()):
        color = COLORS[index % len(COLORS)]
        line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in _thin(values, MAX_LINE_POINTS))
        parts.append(f'<polyline class="line" fill="none" stroke="{color}" points="{line}"/>')
        if not points:
            continue
        texts = list((tooltips or {}).get(name, []))
        best = (highlight or {}).get(name)
        marked = set(_kept(len(values), MAX_MARKS))
        for i, (x, y) in enumerate(values):
            big = best is not None and x == best
            if i not in marked and not big:
                continue
            tip = texts[i] if i < len(texts) else f"{_label(x)}: {y!r}"
            parts.append(
                f'<circle class="point{" best" if big else ""}" cx="{px(x):.1f}" '
                f'cy="{py(y):.1f}" r="{5 if big else 3.5}" fill="{color}" data-series='
                f'"{escape(name)}" data-x="{x:g}" data-y="{y!r}"><title>{escape(tip)}</title>'
                "</circle>"
            )
    parts.append("</svg>")
    legend = ""
    if len(clean) > 1:
        items = "".join(
            f'<li><span class="swatch c{i % len(COLORS)}"></span>{escape(name)}</li>'
            for i, name in enumerate(clean)
        )
        legend = f'<ul class="legend">{items}</ul>'
    return f'<figure class="plot">{caption}{"".join(parts)}{legend}</figure>'
