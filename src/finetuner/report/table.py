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


def examples_table(examples: dict[str, list[dict[str, Any]]], k: int = 5) -> str:
    """The top ``k`` results of each example query, before and after tuning side by side (``Run.display_examples``).

    Example:
        >>> hit = lambda item, label, score: {'item': item, 'label': label, 'score': score}
        >>> before = [{'query': 'red skirt', 'label': 'skirt', 'results': [hit('blue shirt', 'shirt', 0.8)]}]
        >>> after = [{'query': 'red skirt', 'label': 'skirt', 'results': [hit('pink skirt', 'skirt', 0.9)]}]
        >>> print(examples_table({'before': before, 'after': after}))
        query 'red skirt' [skirt]
          #  before                       after
          1  0.800 'blue shirt' [shirt]   0.900 'pink skirt' [skirt]
    """
    if not examples or not any(examples.values()):
        return "(no example results: evaluate with eval_data, or EvaluationCallback(gather_examples=True))"
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an int >= 1; received {k!r}")
    stages = [s for s in ("before", "after") if examples.get(s)] or [s for s in examples if examples[s]]
    queries = examples[stages[0]]
    blocks = []
    for i, query in enumerate(queries):
        cells = {s: [_hit(h) for h in (examples[s][i]["results"] if i < len(examples[s]) else [])[:k]] for s in stages}
        width = max(len(s) for s in stages)
        width = max([width, *(len(c) for rows in cells.values() for c in rows)]) + 2
        lines = [f"query {query['query']!r} [{query.get('label')}]", "  #  " + "".join(f"{s:<{width}}" for s in stages)]
        for rank in range(max(len(rows) for rows in cells.values())):
            row = "".join(f"{(rows[rank] if rank < len(rows) else ''):<{width}}" for rows in cells.values())
            lines.append(f"  {rank + 1:<2} {row}".rstrip())
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _hit(hit: dict[str, Any]) -> str:
    return f"{hit.get('score', 0.0):.3f} {hit.get('item')!r} [{hit.get('label')}]"
