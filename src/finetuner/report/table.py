"""The before/after metrics table (text), as ``fit``, ``Run.display_metrics`` and ``finetuner evaluate`` print it."""

from __future__ import annotations

from typing import Any


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    """A text table with one row per metric and a column per stage (``before``, ``after``) plus the change.

    Example:
        >>> print(metrics_table({'before': {'hit_at_k': 0.5}, 'after': {'hit_at_k': 0.75}}))
        metric    before   after  change
        hit_at_k  0.5000  0.7500 +0.2500
    """
    if not metrics:
        return "(no evaluation data, so no metrics)"
    stages = [s for s in ("before", "after") if s in metrics] or list(metrics)
    names: list[str] = []
    for s in stages:
        names += [n for n in metrics[s] if n not in names]
    width = max(len("metric"), *(len(n) for n in names))
    header = f"{'metric':<{width}}" + "".join(f"{s:>8}" for s in stages)
    both = "before" in metrics and "after" in metrics
    if both:
        header += "  change"
    lines = [header]
    for n in names:
        row = f"{n:<{width}}" + "".join(_fmt(metrics[s].get(n)) for s in stages)
        if both and n in metrics["before"] and n in metrics["after"]:
            row += f" {metrics['after'][n] - metrics['before'][n]:+.4f}"
        lines.append(row)
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:>8.4f}" if isinstance(value, (int, float)) else f"{'-':>8}"
