"""``finetuner mine``: hard negatives for (query, positive) pairs into a triplets CSV (:mod:`finetuner.mining`)."""

from __future__ import annotations

import argparse
from typing import Any


def add_mine_command(sub: Any, add_csv_options: Any) -> None:
    """Add the ``mine`` sub-command to the ``finetuner`` command's sub-parsers.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_mine_command(parser.add_subparsers(dest='command'), lambda p: None)
        >>> parser.parse_args(['mine', '--model', 'm', '--pairs', 'p.csv', '--output', 't.csv']).num_negatives
        3
    """
    mine = sub.add_parser(
        "mine",
        help="mine hard negatives for (query, positive) pairs into a triplets CSV (anchor,positive,negative_1..)",
    )
    mine.add_argument("--model", required=True, help="artifact folder, run name, alias or hub id")
    mine.add_argument("--pairs", required=True, help="CSV file of (query, positive) pairs")
    mine.add_argument("--output", required=True, help="the triplets .csv file to write")
    mine.add_argument("--corpus", help="draw negatives from these items (.txt: one a line; .csv: first column)")
    mine.add_argument("--num-negatives", type=int, default=3)
    mine.add_argument("--range-min", type=int, default=0, help="skip this many of the closest candidates")
    mine.add_argument("--range-max", type=int, default=50, help="consider only the candidates ranked below this")
    mine.add_argument(
        "--relative-margin", type=float, default=0.05, help="a negative scores at most (1 - this) x the positive"
    )
    mine.add_argument("--absolute-margin", type=float, help="and at most the positive's score minus this")
    mine.add_argument("--sampling", default="top", choices=["top", "random"])
    mine.add_argument("--seed", type=int, default=0)
    mine.add_argument("--batch-size", type=int, default=64)
    add_csv_options(mine)


def run_mine(args: argparse.Namespace, model: Any, corpus: list[Any] | None, csv_options: Any) -> str:
    """Mine as the parsed arguments say; the line the command prints.

    Example:
        >>> run_mine(args, model, None, None)  # doctest: +SKIP
        'wrote 950 triplets (3 negatives each) to triplets.csv'
    """
    from finetuner.mining import mine_hard_negatives

    triplets = mine_hard_negatives(
        model,
        args.pairs,
        corpus,
        num_negatives=args.num_negatives,
        range_min=args.range_min,
        range_max=args.range_max,
        relative_margin=args.relative_margin,
        absolute_margin=args.absolute_margin,
        sampling=args.sampling,
        seed=args.seed,
        batch_size=args.batch_size,
        output=args.output,
        csv_options=csv_options,
    )
    return f"wrote {len(triplets)} triplets ({args.num_negatives} negatives each) to {args.output}"
