"""Training throughput: ``fit(streaming=True)`` vs the in-memory path, measured per step and interleaved.

Wall-clock throughput on a shared machine swings by 1.3-1.5x between identical runs, more than the 10% to be
shown, so this benchmark measures each step, not a run: every training step's process CPU time (the process's
own work, whatever else the machine runs) and wall time, from one ``on_batch_end`` to the next (so it holds the
batch's fetching and tokenising in the loader, ``num_workers=0``, as well as forward, backward and the optimizer
step), after ``--warmup`` steps, then the median over ``--steps`` steps. The two paths run in fresh processes,
alternating streamed / in memory for ``--rounds`` rounds on the same CSV file (generated as in
bench_streaming_memory.py: distinct ``query,document`` pairs, InfoNCE, the pairs' classes through the class
sampler), same seed, batch 64, torch on one thread, on a random BERT (default 2 layers, hidden 64: the cheapest
step, where the per-batch data work weighs most). Reported: each round's medians and the ratio
in-memory step time / streamed step time (above 1: streamed faster), then the median ratio over the rounds and its
spread (min .. max).

    PYTHONPATH=src python benchmarks/bench_streaming_throughput.py --size 100000 --rounds 3 --steps 300
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_streaming_memory import BATCH, generate, tiny_bert

MODES = ("streamed", "in-memory")


def child(mode: str, data: str, model: str, home: str, warmup: int, steps: int) -> None:
    """One fit; prints a JSON line with the wall and CPU seconds of every step after the warm-up."""
    os.environ["FINETUNER_HOME"] = home
    import torch

    import finetuner
    from finetuner.training import Callback

    torch.set_num_threads(1)

    class Clock(Callback):
        def __init__(self) -> None:
            self.marks: list[tuple[float, float]] = []

        def on_batch_end(self, state):
            if state.batches_trained >= warmup:
                self.marks.append((time.perf_counter(), time.process_time()))
            if state.batches_trained == warmup + steps:
                state.stop = True

    clock = Clock()
    finetuner.fit(model, data, loss="InfoNCELoss", batch_size=BATCH, epochs=1, device="cpu", verbose=False,
                  seed=0, streaming=mode == "streamed", callbacks=[clock], num_workers=0)  # fmt: skip
    wall = [b[0] - a[0] for a, b in zip(clock.marks, clock.marks[1:])]
    cpu = [b[1] - a[1] for a, b in zip(clock.marks, clock.marks[1:])]
    print(json.dumps({"mode": mode, "wall": wall, "cpu": cpu}))


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="pairs in the generated file")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--child", nargs=4, metavar=("MODE", "DATA", "MODEL", "HOME"))
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.warmup, args.steps)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    runs: list[dict] = []
    try:
        model = tiny_bert(work / "bert", args.hidden, args.layers)
        data = work / "pairs.csv"
        generate(data, args.size, "pairs")
        env = {**os.environ, "HF_DATASETS_CACHE": str(work / "hf-cache"), "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
        print(f"load before: {_load()}", flush=True)
        for r in range(args.rounds):
            for mode in MODES:
                command = [sys.executable, __file__, "--warmup", str(args.warmup), "--steps", str(args.steps),
                           "--child", mode, str(data), model, str(work / "home")]  # fmt: skip
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                if done.returncode:
                    sys.exit(f"{mode} run failed:\n{done.stderr[-3000:]}")
                got = json.loads(done.stdout.strip().splitlines()[-1])
                run = {"round": r + 1, "mode": mode, "load": _load(),
                       "cpu_ms": 1e3 * statistics.median(got["cpu"]), "wall_ms": 1e3 * statistics.median(got["wall"]),
                       "cpu_mean_ms": 1e3 * statistics.fmean(got["cpu"])}  # fmt: skip
                runs.append(run)
                print(json.dumps(run), flush=True)
        print(f"load after: {_load()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| round | streamed CPU ms/step | in memory | ratio (CPU) | streamed wall ms/step | in memory | "
          "ratio (wall) |\n|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    ratios: dict[str, list[float]] = {"cpu_ms": [], "wall_ms": []}
    for r in range(1, args.rounds + 1):
        s, m = (next(x for x in runs if x["round"] == r and x["mode"] == mode) for mode in MODES)
        for key in ratios:
            ratios[key].append(m[key] / s[key])
        print(f"| {r} | {s['cpu_ms']:.1f} | {m['cpu_ms']:.1f} | x{ratios['cpu_ms'][-1]:.3f} | {s['wall_ms']:.1f} | "
              f"{m['wall_ms']:.1f} | x{ratios['wall_ms'][-1]:.3f} |")  # fmt: skip
    for key, name in (("cpu_ms", "CPU"), ("wall_ms", "wall")):
        values = ratios[key]
        print(f"streamed / in-memory throughput ({name}, per-step medians): median x{statistics.median(values):.3f}, "
              f"spread x{min(values):.3f} .. x{max(values):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
