"""Retrieval quality by embedding size (Matryoshka runs, ``metrics.yml``'s ``by_dimension``): a text table, an
HTML section for ``report.html`` and a plot of quality against dimension."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

from finetuner.report.plots import AFTER, BEFORE, _figure, _png, _style, plotting_available

#: the metrics the table and plot show (when the run has them)
SHOWN = ("reciprocal_rank", "ndcg_at_k", "hit_at_k", "precision_at_k")


def _rows(by_dim: dict[Any, dict[str, dict[str, float]]]) -> list[tuple[int, dict[str, dict[str, float]]]]:
    return sorted(((int(d), stages) for d, stages in (by_dim or {}).items()), key=lambda r: -r[0])


def _names(by_dim: dict[Any, dict[str, dict[str, float]]], names: Sequence[str] = SHOWN) -> list[str]:
    present = {n for _, stages in _rows(by_dim) for values in stages.values() for n in values}
    return [n for n in names if n in present]


def dimension_table(by_dim: dict[Any, dict[str, dict[str, float]]], names: Sequence[str] = SHOWN) -> str:
    """A text table: one row per dimension, ``before -> after`` per metric.

    Example:
        >>> print(dimension_table({64: {'before': {'hit_at_k': 0.5}, 'after': {'hit_at_k': 0.75}},
        ...                        32: {'before': {'hit_at_k': 0.25}, 'after': {'hit_at_k': 0.5}}}))
        dim  hit_at_k before -> after
         64  0.5000 -> 0.7500
         32  0.2500 -> 0.5000
    """
    shown = _names(by_dim, names)
    lines = ["dim  " + "  ".join(f"{n} before -> after" for n in shown)]
    for dim, stages in _rows(by_dim):
        cells = []
        for n in shown:
            before, after = stages.get("before", {}).get(n), stages.get("after", {}).get(n)
            cells.append(f"{_fmt(before)} -> {_fmt(after)}".ljust(len(n) + 17))
        lines.append(f"{dim:>3}  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def dimension_plot(by_dim: dict[Any, dict[str, dict[str, float]]], names: Sequence[str] = SHOWN) -> bytes | None:
    """A PNG of each metric against the embedding size, before (dashed) and after tuning; None without
    matplotlib or data.

    Example:
        >>> png = dimension_plot({64: {'after': {'hit_at_k': 0.8}}, 32: {'after': {'hit_at_k': 0.6}}})
        >>> png is None or png[:4] == b'\\x89PNG'
        True
    """
    rows, shown = _rows(by_dim), _names(by_dim, names)
    if not rows or not shown or not plotting_available():
        return None
    fig = _figure(5.4, 3.6)
    ax = fig.add_subplot()
    dims = [d for d, _ in rows]
    markers = "osD^v"
    for i, n in enumerate(shown):
        for stage, color, style in (("before", BEFORE, "--"), ("after", AFTER, "-")):
            ys = [stages.get(stage, {}).get(n) for _, stages in rows]
            points = [(d, y) for d, y in zip(dims, ys) if isinstance(y, (int, float))]
            if points:
                ax.plot(
                    *zip(*points),
                    style,
                    color=color,
                    marker=markers[i % len(markers)],
                    markersize=4,
                    label=f"{n} ({stage})",
                )
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, [str(d) for d in dims])
    _style(ax, "Quality by embedding size", "dimensions kept", "value")
    ax.legend(fontsize=7, frameon=False)
    return _png(fig)


def dimension_section(by_dim: dict[Any, dict[str, dict[str, float]]]) -> str:
    """The report's section (a table and the plot); empty for a run without ``by_dimension``.

    Example:
        >>> dimension_section({})
        ''
    """
    rows, shown = _rows(by_dim), _names(by_dim)
    if not rows or not shown:
        return ""
    head = "".join(f"<th>{html.escape(n)} before</th><th>after</th>" for n in shown)
    body = "".join(
        f"<tr><td>{d}</td>"
        + "".join(
            f"<td>{_fmt(stages.get('before', {}).get(n))}</td><td>{_fmt(stages.get('after', {}).get(n))}</td>"
            for n in shown
        )
        + "</tr>"
        for d, stages in rows
    )
    png = dimension_plot(by_dim)
    image = (
        f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="quality by dimension">' if png else ""
    )
    return (
        "<section><h2>Quality by embedding size (Matryoshka)</h2><p class='note'>The first N dimensions of each "
        "embedding, as <code>finetuner.encode(model, items, dim=N)</code> gives them.</p>"
        f"<table><thead><tr><th>dim</th>{head}</tr></thead><tbody>{body}</tbody></table>{image}</section>"
    )
