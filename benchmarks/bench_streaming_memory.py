"""Peak memory against file size: ``fit(streaming=True)`` vs the in-memory path, on generated CSV files.

For each size a CSV file is generated: ``--kind pairs``: ``query,document`` pairs (random words from a 2000-word
vocabulary, 6-14 words per text, every text distinct), trained with InfoNCE on pairs as classes;
``--kind labelled``: ``text,label`` rows of 1000 classes, trained with TripletMarginLoss. Each (path, size)
runs ``finetuner.fit`` in a fresh process on a random BERT (default 2 layers, hidden 64), batch 64, for ``--steps``
batches (a callback stops the run; the process still checks, indexes or reads the whole file, and saves the
artifact). Recorded per process:

- peak RSS (``VmHWM``): all resident memory, including pages of the memory-mapped Arrow file, which the kernel
  may drop at any time (they are the file's, not the process's);
- peak anonymous memory (``RssAnon``, sampled every 20 ms): the process's own memory, what cannot be dropped;
- the time to the first batch (reading, checking, indexing or tokenising the file; converting it to Arrow in the
  ``datasets`` cache for the streamed path, which is measured cold: the cache is emptied before each run);
- training throughput: pairs per second over the batches after the first 5, by the wall clock and by the process's
  CPU clock (torch on one thread; steadier than the wall clock on a shared machine).

The in-memory path runs only up to ``--memory-max`` pairs (it reads and tokenises the whole file first).

    PYTHONPATH=src python benchmarks/bench_streaming_memory.py --sizes 200000 500000 1000000 2000000 \
        --memory-max 500000 --steps 30
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
import threading
import time
from pathlib import Path

BATCH = 64


def generate(path: Path, rows: int, kind: str = "pairs", seed: int = 0) -> None:
    """A CSV file of ``rows`` distinct (query, document) pairs, or (text, label) rows of 1000 classes."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(2000)]
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(("query", "document") if kind == "pairs" else ("text", "label"))
        for i in range(rows):
            q = " ".join(rng.choices(words, k=rng.randint(6, 10)))
            if kind == "pairs":
                d = " ".join(rng.choices(words, k=rng.randint(8, 14)))
                out.writerow((f"{q} q{i}", f"{d} d{i}"))  # the row number keeps every text distinct
            else:
                out.writerow((q, f"class{rng.randrange(1000)}"))


def tiny_bert(folder: Path, hidden: int = 64, layers: int = 2) -> str:
    """A random BERT whose word-level vocabulary covers the generated texts."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"w{i}" for i in range(2000))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=64)  # fmt: skip
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


class AnonPeak:
    """The peak of ``RssAnon`` (the process's own resident memory), sampled in a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self.running = True
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def read(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.read("RssAnon"))
            time.sleep(0.02)


def child(mode: str, data: str, model: str, steps: int, home: str, kind: str) -> None:
    """One measured fit; prints a JSON line."""
    os.environ["FINETUNER_HOME"] = home
    memory = AnonPeak()
    start = time.perf_counter()
    import torch

    import finetuner

    torch.set_num_threads(1)
    from finetuner.training import Callback

    class Clock(Callback):
        first = times = None

        def on_batch_end(self, state):
            now = time.perf_counter()
            if state.batches_trained == 1:
                self.first = now - start
            if state.batches_trained == 5:
                self.times = [now, time.process_time()]
            if state.batches_trained == steps:
                self.times += [now, time.process_time()]
                state.stop = True

    clock = Clock()
    loss = "InfoNCELoss" if kind == "pairs" else "TripletMarginLoss"
    finetuner.fit(model, data, loss=loss, batch_size=BATCH, epochs=1, device="cpu", verbose=False,
                  seed=0, streaming=mode == "streamed", callbacks=[clock], num_workers=0)  # fmt: skip
    memory.running = False
    wall, cpu = clock.times[2] - clock.times[0], clock.times[3] - clock.times[1]
    print(json.dumps({"mode": mode, "peak_rss": AnonPeak.read("VmHWM"), "peak_anon": memory.peak,
                      "first_batch_s": clock.first, "pairs_per_s": BATCH * (steps - 5) / wall,
                      "pairs_per_cpu_s": BATCH * (steps - 5) / cpu}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 500_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--modes", nargs="+", default=["streamed", "in-memory"])
    parser.add_argument("--memory-max", type=int, default=10**9, help="largest size the in-memory path runs")
    parser.add_argument("--kind", choices=["pairs", "labelled"], default="pairs")
    parser.add_argument("--hidden", type=int, default=64, help="the random BERT's hidden size (384: MiniLM's)")
    parser.add_argument("--layers", type=int, default=2, help="the random BERT's layers (6: MiniLM's)")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "DATA", "MODEL", "HOME"))
    args = parser.parse_args()
    if args.child:
        mode, data, model, home = args.child
        child(mode, data, model, args.steps, home, args.kind)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    model = tiny_bert(work / "bert", args.hidden, args.layers)
    rows = []
    try:
        for size in args.sizes:
            data = work / f"pairs-{size}.csv"
            generate(data, size, args.kind)
            for mode in args.modes:
                if mode == "in-memory" and size > args.memory_max:
                    continue
                cache = work / "hf-cache"
                shutil.rmtree(cache, ignore_errors=True)
                env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
                       "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
                command = [sys.executable, __file__, "--steps", str(args.steps), "--kind", args.kind, "--child", mode,
                           str(data), model, str(work / "home")]  # fmt: skip
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                if done.returncode:
                    print(done.stderr[-3000:], file=sys.stderr)
                    rows.append({"mode": mode, "size": size, "failed": done.returncode})
                    continue
                row = {**json.loads(done.stdout.strip().splitlines()[-1]), "size": size,
                       "file_mib": data.stat().st_size / 2**20}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
            data.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.kind}:\n| rows | file (MiB) | path | peak RSS (MiB) | peak anonymous (MiB) | to first batch (s) "
          "| rows/s | rows/CPU-s |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "failed" in r:
            print(f"| {r['size']:,} | | {r['mode']} | failed ({r['failed']}) | | | | |")
            continue
        print(f"| {r['size']:,} | {r['file_mib']:.0f} | {r['mode']} | {r['peak_rss'] / 2**20:.0f} | "
              f"{r['peak_anon'] / 2**20:.0f} | {r['first_batch_s']:.1f} | {r['pairs_per_s']:.0f} | "
              f"{r['pairs_per_cpu_s']:.0f} |")  # fmt: skip
    for size in args.sizes:
        pair = {r["mode"]: r for r in rows if r["size"] == size and "failed" not in r}
        if {"streamed", "in-memory"} <= set(pair):
            wall = pair["streamed"]["pairs_per_s"] / pair["in-memory"]["pairs_per_s"]
            cpu = pair["streamed"]["pairs_per_cpu_s"] / pair["in-memory"]["pairs_per_cpu_s"]
            print(f"{size:,} rows: streamed / in-memory throughput x{wall:.2f} (wall), x{cpu:.2f} (CPU)")


if __name__ == "__main__":
    main()
