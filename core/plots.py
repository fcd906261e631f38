"""ClearML's report plots as plotly figures (the JSON a ClearML UI draws).

Each function takes the arguments of the ``Logger.report_*`` method of the same name (lists,
numpy arrays, tensors or pandas frames) and returns the figure as a dict.

Example:
    >>> fig = histogram("loss", "train", [3, 1, 2], xlabels=["a", "b", "c"])
    >>> fig["data"][0]["type"], fig["data"][0]["x"], fig["layout"]["title"]
    ('bar', ['a', 'b', 'c'], 'loss')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelbook.errors import InvalidArgumentError


def _plain(values: Any, what: str) -> list:
    """``values`` as nested Python lists (numpy, torch and pandas give theirs)."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    elif hasattr(values, "values") and hasattr(values.values, "tolist"):
        values = values.values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InvalidArgumentError(f"{what} must be a sequence of numbers, got {values!r:.80}")
    return [_plain(v, what) if isinstance(v, Sequence) and not isinstance(v, str) else v
            for v in values]  # fmt: skip


def _names(values: Any) -> list | None:
    """Labels (a list, an array, None) as a list, or None."""
    return None if values is None else list(_plain(values, "labels"))


def _figure(title: str, data: list[dict], extra_layout: Mapping[str, Any] | None = None,
            **axes: Any) -> dict[str, Any]:  # fmt: skip
    layout: dict[str, Any] = {"title": title}
    for axis, label in axes.items():
        if label:
            layout[axis] = {"title": label}
    layout.update(extra_layout or {})
    return {"data": data, "layout": layout}


def histogram(title: str, series: str, values: Any, labels: Sequence[str] | None = None,
              xlabels: Sequence[Any] | None = None, xaxis: str | None = None,
              yaxis: str | None = None, mode: str | None = None,
              extra_layout: Mapping[str, Any] | None = None,
              **_: Any) -> dict[str, Any]:  # fmt: skip
    """Bars (one trace per row of a 2-D ``values``): ``report_histogram`` / ``report_vector``."""
    rows = _plain(values, "values")
    rows = rows if rows and isinstance(rows[0], list) else [rows]
    labels, xlabels = _names(labels), _names(xlabels)
    data = [{"type": "bar", "name": labels[i] if labels and i < len(labels) else series,
             "x": xlabels if xlabels else list(range(len(row))), "y": row}
            for i, row in enumerate(rows)]  # fmt: skip
    figure = _figure(title, data, extra_layout, xaxis=xaxis, yaxis=yaxis)
    figure["layout"].setdefault("barmode", mode or "group")
    return figure


def scatter2d(title: str, series: str, scatter: Any, xaxis: str | None = None,
              yaxis: str | None = None, labels: Sequence[str] | None = None, mode: str = "lines",
              extra_layout: Mapping[str, Any] | None = None,
              **_: Any) -> dict[str, Any]:  # fmt: skip
    """``scatter`` as N rows of (x, y)."""
    points = _plain(scatter, "scatter")
    trace = {"type": "scatter", "mode": mode, "name": series,
             "x": [p[0] for p in points], "y": [p[1] for p in points]}  # fmt: skip
    labels = _names(labels)
    if labels:
        trace["text"] = labels
    return _figure(title, [trace], extra_layout, xaxis=xaxis, yaxis=yaxis)


def scatter3d(title: str, series: str, scatter: Any, xaxis: str | None = None,
              yaxis: str | None = None, zaxis: str | None = None, mode: str = "markers",
              extra_layout: Mapping[str, Any] | None = None,
              **_: Any) -> dict[str, Any]:  # fmt: skip
    """``scatter`` as N rows of (x, y, z)."""
    points = _plain(scatter, "scatter")
    trace = {"type": "scatter3d", "mode": mode, "name": series, "x": [p[0] for p in points],
             "y": [p[1] for p in points], "z": [p[2] for p in points]}  # fmt: skip
    return _figure(title, [trace], extra_layout, xaxis=xaxis, yaxis=yaxis, zaxis=zaxis)


def line_plot(title: str, series: Any, xaxis: str | None = None, yaxis: str | None = None,
              mode: str = "lines", extra_layout: Mapping[str, Any] | None = None,
              **_: Any) -> dict[str, Any]:  # fmt: skip
    """``series``: ClearML's ``SeriesInfo`` objects (or dicts) with ``name`` and ``data``
    (N rows of x, y)."""
    items = series if isinstance(series, Sequence) and not isinstance(series, str) else [series]
    data = []
    for item in items:
        get = item.get if isinstance(item, Mapping) else lambda k, o=item: getattr(o, k, None)
        points = _plain(get("data"), "series data")
        data.append({"type": "scatter", "mode": mode, "name": str(get("name") or ""),
                     "x": [p[0] for p in points], "y": [p[1] for p in points]})  # fmt: skip
    return _figure(title, data, extra_layout, xaxis=xaxis, yaxis=yaxis)


def matrix(title: str, series: str, matrix: Any, xaxis: str | None = None,
           yaxis: str | None = None, xlabels: Sequence[Any] | None = None,
           ylabels: Sequence[Any] | None = None, extra_layout: Mapping[str, Any] | None = None,
           kind: str = "heatmap", **_: Any) -> dict[str, Any]:  # fmt: skip
    """A heatmap (``report_matrix``, ``report_confusion_matrix``) or a ``surface``."""
    trace: dict[str, Any] = {"type": kind, "name": series, "z": _plain(matrix, "matrix")}
    xlabels, ylabels = _names(xlabels), _names(ylabels)
    if xlabels:
        trace["x"] = xlabels
    if ylabels:
        trace["y"] = ylabels
    return _figure(title, [trace], extra_layout, xaxis=xaxis, yaxis=yaxis)


def table(title: str, series: str, table_plot: Any = None, csv: str | None = None,
          extra_layout: Mapping[str, Any] | None = None, **_: Any) -> dict[str, Any]:  # fmt: skip
    """A table from a pandas frame, a list of rows (the first is the header) or a CSV file."""
    if table_plot is None and csv:
        import csv as csv_module

        with open(csv, newline="") as handle:
            table_plot = list(csv_module.reader(handle))
    if hasattr(table_plot, "columns") and hasattr(table_plot, "values"):  # pandas
        header = [str(c) for c in table_plot.columns]
        rows = _plain(table_plot.values, "table_plot")
    else:
        rows = _plain(table_plot, "table_plot")
        header, rows = ([str(c) for c in rows[0]], rows[1:]) if rows else ([], [])
    cells = [list(column) for column in zip(*rows, strict=False)] if rows else []
    trace = {"type": "table", "name": series, "header": {"values": header},
             "cells": {"values": cells}}  # fmt: skip
    return _figure(title, [trace], extra_layout)
