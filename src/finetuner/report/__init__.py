"""Human-readable views of a run: the before/after metrics table (:mod:`.table`), the charts (:mod:`.plots`) and
the self-contained ``report.html`` page (:mod:`.html`).

Example:
    >>> print(metrics_table({'before': {'hit_at_k': 0.5}, 'after': {'hit_at_k': 0.75}}))
    metric    before   after  change
    hit_at_k  0.5000  0.7500 +0.2500
"""

from finetuner.report.html import build_report, open_report, write_report, write_report_safely
from finetuner.report.table import examples_table, metrics_table

__all__ = ["build_report", "examples_table", "metrics_table", "open_report", "write_report", "write_report_safely"]
