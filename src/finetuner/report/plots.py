"""The report's charts as PNG bytes: training curves, metrics per epoch, before/after bars.

matplotlib is used through its object API with the Agg canvas (no pyplot, no global backend switch, no display).
Every function returns None when there is nothing to draw; :func:`plotting_available` says whether matplotlib is
installed at all.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from finetuner.evaluation.correlation import CORRELATION_NAMES

COLORS = ("#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777", "#4b5563")
BEFORE, AFTER = "#94a3b8", "#2563eb"


def plotting_available() -> bool:
    """Whether matplotlib can be imported.

    Example:
        >>> isinstance(plotting_available(), bool)
        True
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float = 5.4, height: float = 3.4, left: float = 0.12) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)  # fixed margins: a layout engine triples the drawing time
    fig.subplots_adjust(left=left, right=0.97, top=1 - 0.45 / height, bottom=0.5 / height)
    FigureCanvasAgg(fig)
    return fig


def _style(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.grid(True, color="#e5e7eb", linewidth=0.8)
    ax.tick_params(labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    return buf.getvalue()


def _bounded(name: str) -> bool:
    """Metrics in [0, 1] (all but ``dcg_at_k``), which share one axis."""
    return not name.endswith("dcg_at_k") or name.endswith("ndcg_at_k")


def _series(history: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, record in enumerate(history):
        value = record.get(key)
        if isinstance(value, (int, float)):
            xs.append(float(record.get("epoch", i + 1)))
            ys.append(float(value))
    return xs, ys


def loss_curves(history: Sequence[dict[str, Any]]) -> bytes | None:
    """Training loss (and ``val_loss`` when recorded) per epoch.

    Example:
        >>> png = loss_curves([{'epoch': 1, 'loss': 0.5}, {'epoch': 2, 'loss': 0.3, 'val_loss': 0.4}])
        >>> png is None or png[:4] == b'\\x89PNG'
        True
    """
    curves = [(label, *_series(history, key)) for key, label in (("loss", "training loss"), ("val_loss", "val_loss"))]
    curves = [c for c in curves if c[1]]
    if not curves or not plotting_available():
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for (label, xs, ys), color in zip(curves, COLORS):
        ax.plot(xs, ys, marker="o", markersize=4, linewidth=2, color=color, label=label)
    _style(ax, "Loss per epoch", "epoch", "loss")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def metric_curves(history: Sequence[dict[str, Any]], names: Sequence[str]) -> bytes | None:
    """Each of ``names`` per epoch (what an EvaluationCallback recorded); None when none was recorded.

    ``dcg_at_k`` is not bounded by 1, so it is left out to keep the others readable.

    Example:
        >>> metric_curves([{'epoch': 1, 'loss': 0.5}], ['precision_at_k']) is None
        True
    """
    curves = [(name, *_series(history, name)) for name in names if _bounded(name)]
    curves = [c for c in curves if c[1]]
    if not curves or not plotting_available():
        return None
    fig = _figure(5.4, 4.2)
    fig.subplots_adjust(bottom=0.32)  # room for the legend below the axes
    ax = fig.add_subplot()
    for (name, xs, ys), color in zip(curves, COLORS):
        ax.plot(xs, ys, marker="o", markersize=4, linewidth=2, color=color, label=name)
    scored = all(name in CORRELATION_NAMES for name, *_ in curves)
    _style(ax, "Score correlation per epoch" if scored else "Retrieval metrics per epoch", "epoch", "value")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7, frameon=False, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    return _png(fig)


def before_after_bars(metrics: dict[str, dict[str, float]]) -> bytes | None:
    """Horizontal bars of the metrics before and after tuning.

    ``dcg_at_k`` is unbounded, so it is left out; so are the second direction's metrics of CLIP runs
    (``image_to_text/...``), which the table shows.

    Example:
        >>> png = before_after_bars({'before': {'hit_at_k': 0.5}, 'after': {'hit_at_k': 0.8}})
        >>> png is None or png[:4] == b'\\x89PNG'
        True
    """
    before, after = metrics.get("before") or {}, metrics.get("after") or {}
    names = [n for n in (after or before) if _bounded(n) and "/" not in n]
    if not names or not plotting_available():
        return None
    fig = _figure(5.4, 0.42 * len(names) + 1.2, left=0.24)
    ax = fig.add_subplot()
    ys = list(range(len(names)))[::-1]
    height = 0.38
    if before:
        ax.barh([y + height / 2 for y in ys], [before.get(n, 0.0) for n in names], height, color=BEFORE, label="before")
    if after:
        bars = ax.barh(
            [y - height / 2 for y in ys], [after.get(n, 0.0) for n in names], height, color=AFTER, label="after"
        )
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.set_yticks(ys, names, fontsize=8)
    ax.set_xlim(0, max(1.0, *(after.get(n, 0.0) for n in names), *(before.get(n, 0.0) for n in names)) * 1.12)
    _style(ax, "Before and after tuning", "value", "")
    ax.grid(True, axis="x", color="#e5e7eb")
    ax.grid(False, axis="y")
    fig.legend(fontsize=8, frameon=False, loc="upper right", ncols=2)
    return _png(fig)
