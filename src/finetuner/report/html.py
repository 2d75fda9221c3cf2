"""``report.html``: one self-contained page per run that people actually look at.

The page shows the before/after metrics, loss and metric curves, example retrievals before and after tuning
(thumbnails for images), the settings, and how to load the model. Everything is inline: CSS in a ``<style>``
element, charts and thumbnails as base64 ``data:`` URIs, no scripts and no external resources, so the file can be
mailed, archived or opened offline. Without matplotlib the page is written without charts and says so.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import logging
import webbrowser
from pathlib import Path
from typing import Any

from finetuner import artifacts
from finetuner.evaluation.correlation import CORRELATION_NAMES
from finetuner.evaluation.metrics import METRIC_NAMES
from finetuner.evaluation.standard_metrics import is_metric_name, is_standard_metric
from finetuner.fileio import read_yaml
from finetuner.report.dimensions import dimension_section
from finetuner.report.plots import before_after_bars, loss_curves, metric_curves, plotting_available

logger = logging.getLogger("finetuner")

REPORT_FILE = artifacts.REPORT_FILE
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
THUMBNAIL_PX = 96

_CSS = """
:root { --fg:#0f172a; --muted:#64748b; --line:#e2e8f0; --bg:#f8fafc; --card:#fff; --up:#15803d; --down:#b91c1c;
        --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; color:var(--fg);
       background:var(--bg); }
header { background:#0f172a; color:#fff; padding:20px 32px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header .sub { color:#cbd5e1; font-size:13px; }
main { max-width:1180px; margin:0 auto; padding:24px 32px 48px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:18px 22px;
          margin:0 0 20px; }
h2 { font-size:16px; margin:0 0 12px; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:5px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-weight:600; color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.03em; }
th.num { text-align:right; }
td.num { text-align:right; font-variant-numeric:tabular-nums; font-family:ui-monospace,"DejaVu Sans Mono",monospace; }
.up { color:var(--up); font-weight:600; } .down { color:var(--down); font-weight:600; }
.cards { display:flex; gap:14px; flex-wrap:wrap; margin-bottom:16px; }
.card { flex:1 1 160px; border:1px solid var(--line); border-radius:8px; padding:10px 14px; background:var(--bg); }
.card .label { color:var(--muted); font-size:12px; } .card .value { font-size:22px; font-weight:600; }
.charts { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:16px; align-items:start; }
.charts img { width:100%; border:1px solid var(--line); border-radius:6px; }
.note { color:var(--muted); font-style:italic; }
.example { border-top:1px solid var(--line); padding:12px 0; } .example:first-of-type { border-top:0; }
.query { font-weight:600; margin-bottom:6px; } .query .tag { font-weight:400; }
.cols { display:grid; grid-template-columns:1fr 1fr; gap:16px; }
.cols h3 { font-size:12px; color:var(--muted); text-transform:uppercase; margin:0 0 4px; }
ol.results { margin:0; padding-left:22px; } ol.results li { padding:2px 0; }
.hit { color:var(--up); } .miss { color:var(--down); }
.tag { display:inline-block; background:#eef2ff; color:#3730a3; border-radius:4px; padding:0 6px; font-size:12px; }
.score { color:var(--muted); font-family:ui-monospace,"DejaVu Sans Mono",monospace; font-size:12px; }
img.thumb { width:64px; height:64px; object-fit:cover; border-radius:4px; vertical-align:middle; margin-right:6px;
  border:1px solid var(--line); }
pre { background:#0f172a; color:#e2e8f0; padding:12px 14px; border-radius:8px; overflow-x:auto; font-size:13px; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:12px; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail(item: Any, size: int = THUMBNAIL_PX) -> str | None:
    """A small JPEG ``data:`` URI for an item that is a readable local image (path, ``file://`` or data URI).

    Remote ``http(s)://`` images are not fetched (the report stays offline and self-contained); None then, and
    for anything that is not an image.

    Example:
        >>> thumbnail('a pencil skirt') is None
        True
    """
    if not isinstance(item, str) or not item or "\n" in item:
        return None
    try:
        from PIL import Image

        if item.startswith("data:image/"):
            raw = base64.b64decode(item.split(",", 1)[1])
            source: Any = io.BytesIO(raw)
        else:
            path = Path(item[len("file://") :] if item.startswith("file://") else item).expanduser()
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                return None
            source = path
        with Image.open(source) as img:
            img = img.convert("RGB")
            img.thumbnail((size, size))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=85)
        return _data_uri(buf.getvalue(), "image/jpeg")
    except Exception:  # an unreadable image shows as its name instead
        return None


def _item_html(item: Any) -> str:
    thumb = thumbnail(item)
    text = str(item)
    if thumb is not None:
        name = text if not text.startswith("data:") else "(inline image)"
        return f'<img class="thumb" src="{thumb}" alt="{_e(name)}"><span class="score">{_e(Path(name).name)}</span>'
    if len(text) > 300:
        text = text[:297] + "..."
    return _e(text)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def _metrics_section(metrics: dict[str, dict[str, float]], limit: Any) -> str:
    if not metrics:
        return (
            "<section><h2>Retrieval metrics</h2><p class='note'>This run had no evaluation data, so there are no "
            "before/after metrics. Pass <code>eval_data=...</code> (or <code>val_split=0.1</code>) to "
            "<code>fit</code> to measure retrieval.</p></section>"
        )
    before, after = metrics.get("before") or {}, metrics.get("after") or {}
    names = [n for n in METRIC_NAMES if n in before or n in after] + [
        n for n in {**before, **after} if n not in METRIC_NAMES
    ]
    cards = []
    for name in ("precision_at_k", "recall_at_k", "average_precision", "ndcg_at_k", "ndcg_at_10", "mrr_at_10"):
        if name in before and name in after:
            delta = after[name] - before[name]
            cls = "up" if delta > 0 else "down" if delta < 0 else ""
            cards.append(
                f"<div class='card'><div class='label'>{_e(name)}</div><div class='value'>{after[name]:.3f}</div>"
                f"<div class='{cls}'>{delta:+.3f} vs before ({before[name]:.3f})</div></div>"
            )
    finetuner_names = [n for n in names if not is_standard_metric(n)]
    standard_names = [n for n in names if is_standard_metric(n)]
    k = f" (k = {_e(limit)})" if limit is not None else ""
    standard = ""
    if standard_names:
        standard = (
            "<h3>Standard retrieval metrics</h3><p class='note'>As BEIR and MTEB compute them (trec_eval's "
            "definitions): nDCG and MRR at 10, MAP and recall at k; the ideal ranking and recall count every relevant "
            "item of the index, and queries without a relevant item are left out.</p>"
            + _metrics_rows(standard_names, before, after)
        )
    if names and all(n in CORRELATION_NAMES for n in names):  # scored pairs: a correlation, not a ranking
        return (
            "<section><h2>Score agreement on the evaluation pairs</h2><p class='note'>Scored pairs are measured by "
            "how well the cosine similarity of each pair follows its score (Spearman's rank and Pearson's linear "
            "correlation), not by retrieval.</p>" + _metrics_rows(names, before, after) + "</section>"
        )
    return (
        f"<section><h2>Retrieval metrics on the evaluation data{k}</h2><div class='cards'>{''.join(cards)}</div>"
        + _metrics_rows(finetuner_names, before, after)
        + standard
        + "</section>"
    )


def _metrics_rows(names: list[str], before: dict[str, float], after: dict[str, float]) -> str:
    """One table of metrics, before / after / change."""
    rows = []
    for n in names:
        b, a = before.get(n), after.get(n)
        change = ""
        if isinstance(b, (int, float)) and isinstance(a, (int, float)):
            d = a - b
            cls = "up" if d > 0 else "down" if d < 0 else ""
            change = f"<span class='{cls}'>{d:+.4f}</span>"
        rows.append(
            f"<tr><td>{_e(n)}</td><td class='num'>{_fmt(b)}</td><td class='num'>{_fmt(a)}</td>"
            f"<td class='num'>{change}</td></tr>"
        )
    return (
        "<table><thead><tr><th>metric</th><th class='num'>before</th><th class='num'>after</th>"
        f"<th class='num'>change</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _charts_section(metrics: dict[str, Any], history: list[dict[str, Any]]) -> str:
    if not plotting_available():
        return (
            "<section><h2>Charts</h2><p class='note'>matplotlib is not installed, so this page has no charts. "
            "Install it (<code>pip install matplotlib</code>) and rebuild the page with "
            "<code>finetuner report &lt;run&gt;</code>.</p></section>"
        )
    metric_keys = sorted({k for r in history for k in r if is_metric_name(k)})
    charts = [
        ("loss per epoch", loss_curves(history)),
        ("retrieval metrics per epoch", metric_curves(history, metric_keys)),
        ("metrics before and after", before_after_bars(metrics)),
    ]
    images = [f'<img src="{_data_uri(png, "image/png")}" alt="{_e(alt)}">' for alt, png in charts if png]
    if not images:
        return ""
    return f"<section><h2>Charts</h2><div class='charts'>{''.join(images)}</div></section>"


def _results_html(results: list[dict[str, Any]], query_label: Any) -> str:
    if not results:
        return "<p class='note'>no results</p>"
    items = []
    for r in results:
        relevant = query_label is not None and r.get("label") == query_label
        mark = "<span class='hit'>&#10003;</span>" if relevant else "<span class='miss'>&#10007;</span>"
        label = f" <span class='tag'>{_e(r.get('label'))}</span>" if r.get("label") is not None else ""
        items.append(
            f"<li>{mark} {_item_html(r.get('item'))}{label} <span class='score'>{_fmt(r.get('score'))}</span></li>"
        )
    return f"<ol class='results'>{''.join(items)}</ol>"


def _examples_section(examples: dict[str, Any]) -> str:
    before, after = examples.get("before") or [], examples.get("after") or []
    if not before and not after:
        return ""
    blocks = []
    for i in range(max(len(before), len(after))):
        b = before[i] if i < len(before) else None
        a = after[i] if i < len(after) else None
        q = a or b or {}
        label = q.get("label")
        tag = f" <span class='tag'>{_e(label)}</span>" if label is not None else ""
        cols = "".join(
            f"<div><h3>{name}</h3>{_results_html(x.get('results') or [], label) if x else '<p class=note>-</p>'}</div>"
            for name, x in (("before tuning", b), ("after tuning", a))
        )
        blocks.append(
            f"<div class='example'><div class='query'>Query: {_item_html(q.get('query'))}{tag}</div>"
            f"<div class='cols'>{cols}</div></div>"
        )
    return (
        "<section><h2>Example retrievals</h2><p class='note'>Top results for a few evaluation queries; "
        "&#10003; marks a result with the query's label.</p>" + "".join(blocks) + "</section>"
    )


def _config_section(config: dict[str, Any]) -> str:
    rows = []
    for k, v in config.items():
        if v is None or v == {} or v == []:
            continue
        shown = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)
        rows.append(f"<tr><td>{_e(k)}</td><td>{_e(shown)}</td></tr>")
    if not rows:
        return ""
    return (
        "<section><h2>Settings</h2><table><thead><tr><th>setting</th><th>value</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def build_report(run_dir: str | Path) -> str:
    """The HTML of a run's (or saved artifact's) report, from the files in its folder.

    Example:
        >>> page = build_report('/nonexistent-run')
        >>> '<html' in page and 'no evaluation data' in page
        True
    """
    d = Path(run_dir)
    config = read_yaml(d / artifacts.CONFIG_FILE, {}) or {}
    metadata = artifacts.read_run_metadata(d)
    metrics = read_yaml(d / artifacts.METRICS_FILE, {}) or {}
    examples = read_yaml(d / artifacts.EXAMPLES_FILE, {}) or {}
    input_map = read_yaml(d / artifacts.MODELS_DIR / artifacts.INPUT_MAP_FILE, {}) or {}
    history = [r for r in metadata.get("history") or [] if isinstance(r, dict)]
    name = metadata.get("run_name") or d.name
    epochs = len(history)
    subtitle = " &middot; ".join(
        _e(x)
        for x in (
            f"model {config.get('model')}" if config.get("model") else None,
            f"loss {config.get('loss')}" if config.get("loss") else None,
            f"{epochs} epoch(s) trained" if history else None,
            f"finetuner {metadata.get('finetuner_version')}" if metadata.get("finetuner_version") else None,
        )
        if x
    )
    models = ", ".join(f"{_e(k)} ({_e(v)})" for k, v in input_map.items()) or "model"
    first = next(iter(input_map), None)
    select = f", select_model={first!r}" if len(input_map) > 1 else ""
    usage = (
        "<section><h2>Use the tuned model</h2>"
        f"<p>This artifact holds: {models}.</p><pre>import finetuner\n"
        f"model = finetuner.get_model('{_e(d.name)}'{_e(select)})   # the artifact folder or the run name\n"
        "embeddings = finetuner.encode(model, [...])</pre></section>"
    )
    body = "".join(
        [
            _metrics_section(metrics, config.get("limit", 20) if metrics else None),
            _charts_section(metrics, history),
            dimension_section(metrics.get("by_dimension") or {}),
            _examples_section(examples),
            usage,
            _config_section(config),
        ]
    )
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='icon' href='data:,'>"
        f"<title>finetuner report: {_e(name)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>finetuner run {_e(name)}</h1><div class='sub'>{subtitle}</div></header>"
        f"<main>{body}</main><footer>written by finetuner on {stamp}; a self-contained page (no external "
        "resources)</footer></body></html>\n"
    )


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` into the run (or artifact) folder and return its path.

    Example:
        >>> write_report('runs/default/run-20261127-120000-ab12')  # doctest: +SKIP
        PosixPath('runs/default/run-20261127-120000-ab12/report.html')
    """
    path = Path(run_dir) / REPORT_FILE
    tmp = path.with_name(f".{REPORT_FILE}.tmp")
    tmp.write_text(build_report(run_dir), encoding="utf-8")
    tmp.replace(path)
    return path


def write_report_safely(run_dir: str | Path) -> Path | None:
    """:func:`write_report`, logging a warning instead of raising (a report never fails a finished run).

    Example:
        >>> write_report_safely('/nonexistent/run') is None
        True
    """
    try:
        return write_report(run_dir)
    except Exception as exc:
        logger.warning("could not write the run report in %s: %s: %s", run_dir, type(exc).__name__, exc)
        return None


def open_report(path: str | Path) -> bool:
    """Open a report in the default web browser; whether a browser was found.

    Example:
        >>> open_report('report.html')  # doctest: +SKIP
        True
    """
    return webbrowser.open(Path(path).resolve().as_uri())
