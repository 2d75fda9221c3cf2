"""The ``finetuner`` command's argument types and CSV options (used by :mod:`finetuner.cli` and its sub-commands)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from finetuner.errors import FinetunerError


def json_object(value: str) -> dict[str, Any]:
    """An option given as a JSON object (``--loss-options '{"margin": 0.2}'``).

    Example:
        >>> json_object('{"margin": 0.2}')
        {'margin': 0.2}
    """
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {value!r} ({exc.msg})") from exc
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"margin\": 0.2}}'; got {value!r}")
    return parsed


def freeze_arg(value: str) -> bool | int:
    """``--freeze``: true, false, or a number of layers.

    Example:
        >>> freeze_arg('yes'), freeze_arg('3')
        (True, 3)
    """
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


def add_csv_options(p: argparse.ArgumentParser) -> None:
    """Add the CSV reading flags (--csv-pairs, --csv-labeled, --csv-encoding, --csv-dialect, --csv-columns) to ``p``.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_csv_options(parser)
        >>> parser.parse_args(['--csv-columns', 'anchor,positive']).csv_columns
        ['anchor', 'positive']
    """
    g = p.add_argument_group("CSV input (by default the layout is detected from the header and the rows)")
    g.add_argument("--csv-pairs", action="store_true", help="rows are positive pairs (query,document / text,image)")
    g.add_argument("--csv-labeled", action="store_true", help="rows are item,label")
    g.add_argument("--csv-encoding", help="the files' text encoding (default utf-8)")
    g.add_argument("--csv-dialect", help="a csv dialect name (default: sniffed)")
    g.add_argument(
        "--csv-columns",
        type=columns_arg,
        help="the columns' roles: names for a file without a header (anchor,positive,negative or "
        "sentence1,sentence2,score), the columns to read, or renames as JSON ('{\"wrong_answer\": \"negative\"}')",
    )


def columns_arg(value: str) -> Any:
    """``--csv-columns``: a JSON object of renames, or comma-separated names.

    Example:
        >>> columns_arg('sentence1, sentence2,score'), columns_arg('{"wrong": "negative"}')
        (['sentence1', 'sentence2', 'score'], {'wrong': 'negative'})
    """
    if value.lstrip().startswith("{"):
        return json_object(value)
    return [name.strip() for name in value.split(",") if name.strip()]


def csv_options_from(args: argparse.Namespace) -> Any:
    """CSVOptions when a CSV flag was given; None lets the reader detect labelled rows or pairs.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_csv_options(parser)
        >>> csv_options_from(parser.parse_args([])) is None
        True
        >>> csv_options_from(parser.parse_args(['--csv-pairs'])).is_labeled
        False
    """
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


def int_or_auto(value: str) -> int | str:
    """A number, or ``'auto'``.

    Example:
        >>> int_or_auto('auto'), int_or_auto('64')
        ('auto', 64)
    """
    return "auto" if value == "auto" else int(value)


def int_or_all(value: str) -> int | str:
    """A number, or ``'all'``.

    Example:
        >>> int_or_all('all'), int_or_all('1000')
        ('all', 1000)
    """
    return "all" if value == "all" else int(value)
