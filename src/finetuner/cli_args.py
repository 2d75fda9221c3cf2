"""The ``finetuner`` command's argument types and CSV options (used by :mod:`finetuner.cli` and its sub-commands)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from finetuner.errors import FinetunerError


def _json(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {value!r} ({exc.msg})") from exc
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"margin\": 0.2}}'; got {value!r}")
    return parsed


def _freeze(value: str) -> bool | int:
    low = value.lower()
    if low in ("true", "yes", "1"):
        return True
    if low in ("false", "no", "0"):
        return False
    try:
        return int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--freeze takes true, false or a layer count; got {value!r}"
        ) from exc


def _add_csv_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("CSV input (by default the layout is detected from the header and the rows)")
    g.add_argument("--csv-pairs", action="store_true", help="rows are positive pairs (query,document / text,image)")
    g.add_argument("--csv-labeled", action="store_true", help="rows are item,label")
    g.add_argument("--csv-encoding", help="the files' text encoding (default utf-8)")
    g.add_argument("--csv-dialect", help="a csv dialect name (default: sniffed)")
    g.add_argument(
        "--csv-columns",
        type=_columns,
        help="the columns' roles: names for a file without a header (anchor,positive,negative or "
        "sentence1,sentence2,score), the columns to read, or renames as JSON ('{\"wrong_answer\": \"negative\"}')",
    )


def _columns(value: str) -> Any:
    """``--csv-columns``: a JSON object of renames, or comma-separated names."""
    if value.lstrip().startswith("{"):
        return _json(value)
    return [name.strip() for name in value.split(",") if name.strip()]


def _csv_options(args: argparse.Namespace) -> Any:
    """CSVOptions when a CSV flag was given; None lets the reader detect labelled rows or pairs."""
    from finetuner.data.readers import CSVOptions

    if args.csv_pairs and args.csv_labeled:
        raise FinetunerError("give --csv-pairs or --csv-labeled, not both")
    if not (args.csv_pairs or args.csv_labeled or args.csv_encoding or args.csv_dialect or args.csv_columns):
        return None
    options: dict[str, Any] = {"is_labeled": False if args.csv_pairs else True if args.csv_labeled else None}
    if args.csv_encoding:
        options["encoding"] = args.csv_encoding
    if args.csv_dialect:
        options["dialect"] = args.csv_dialect
    if args.csv_columns:
        options["columns"] = args.csv_columns
    return CSVOptions(**options)


def _int_or_auto(value: str) -> int | str:
    return "auto" if value == "auto" else int(value)


def _int_or_all(value: str) -> int | str:
    return "all" if value == "all" else int(value)
