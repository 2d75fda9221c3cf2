"""The workloads of ``bench_train_gpu.py``: data, models, the step clock and each method's training run.

Imported by ``bench_train_gpu.py`` (same folder). A method name is a base (``finetuner``, ``sentence-transformers``,
``raw``) with ``+`` variants: ``finetuner+compile`` (``fit(compile=True)``), ``finetuner+cudnn`` (cuDNN attention
first, as torch's default priority on Hopper: ``FINETUNER_SDPA_BACKENDS=cudnn,flash,efficient,math``),
``raw+cl`` (the raw loop in channels-last).
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: (workload, method) pairs, in the order a run measures them
WORKLOADS = {
    "text": ("finetuner", "sentence-transformers", "raw", "finetuner+compile", "finetuner+cudnn"),
    "gradcache": ("finetuner", "sentence-transformers", "finetuner+compile"),
    "clip": ("finetuner", "raw", "finetuner+compile", "finetuner+cudnn"),
    "resnet": ("finetuner", "raw", "raw+cl", "finetuner+compile"),
}
#: what one timed run does: rows per step, and (warm-up, timed) steps in the cold and steady modes
SIZES = {"text": 256, "gradcache": 4096, "clip": 256, "resnet": 128, "mini": 256}
SMOKE_SIZES = {"text": 8, "gradcache": 16, "clip": 8, "resnet": 8, "mini": 4}
STEPS = {
    "cold": {"text": (5, 30), "gradcache": (3, 12), "clip": (5, 30), "resnet": (5, 30)},
    "steady": {"text": (20, 200), "gradcache": (5, 30), "clip": (20, 200), "resnet": (20, 200)},
    "smoke": {"text": (1, 3), "gradcache": (1, 2), "clip": (1, 3), "resnet": (1, 3)},
}
SDPA_ENV = "FINETUNER_SDPA_BACKENDS"


# ---------------------------------------------------------------------------------------------------- data


def cycle(rows: list[Any], n: int) -> list[Any]:
    """``n`` rows: ``rows`` repeated as often as needed."""
    return (rows * (n // max(1, len(rows)) + 1))[:n]


def text_pairs(data: Path, n: int) -> list[tuple[str, str]]:
    with (data / "pairs.csv").open(newline="", encoding="utf-8") as f:
        return cycle([(r["query"], r["document"]) for r in csv.DictReader(f)], n)


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
        small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
        config = CLIPConfig(text_config={**text, **small},
                            vision_config={**small, "image_size": 32, "patch_size": 8}, projection_dim=16)
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

    small = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1])
    ResNetModel(small if smoke else ResNetConfig()).save_pretrained(folder)  # ResNet-50
    size = 32 if smoke else 224
    ConvNextImageProcessor(size={"shortest_edge": size}, crop_pct=1.0).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------------- timing


def device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Clock:
    """Wall time from the end of step ``warmup`` to the end of step ``warmup + timed``, the device synchronised at
    both ends (never in between, so host and device overlap as they do in training). ``on_window`` hooks
    (the profiler) are called at both ends."""

    def __init__(self, warmup: int, timed: int, on_window: Callable[[str], None] | None = None) -> None:
        self.warmup, self.timed, self.on_window = warmup, timed, on_window
        self.steps = 0
        self.start: float | None = None
        self.end: float | None = None

    @property
    def done(self) -> bool:
        return self.steps >= self.warmup + self.timed

    def step(self) -> None:
        self.steps += 1
        if self.steps == self.warmup:
            sync()
            self.start = time.perf_counter()
            if self.on_window:
                self.on_window("start")
        elif self.steps == self.warmup + self.timed:
            sync()
            self.end = time.perf_counter()
            if self.on_window:
                self.on_window("stop")

    def rate(self, rows_per_step: int) -> float:
        if self.start is None or self.end is None:
            raise RuntimeError(f"only {self.steps} steps ran; need {self.warmup + self.timed}")
        return self.timed * rows_per_step / (self.end - self.start)


def peak_gib() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def split_method(method: str) -> tuple[str, set[str]]:
    """``'finetuner+compile'`` -> ``('finetuner', {'compile'})``."""
    base, *variants = method.split("+")
    return base, set(variants)


# ---------------------------------------------------------------------------------------------------- methods


def run_finetuner(workload: str, data: Path, sizes: dict[str, int], steps: tuple[int, int], smoke: bool,
                  work: Path, variants: set[str], clock: Clock) -> dict[str, Any]:
    if "cudnn" in variants:
        os.environ[SDPA_ENV] = "cudnn,flash,efficient,math"
    import finetuner
    from finetuner import CSVOptions
    from finetuner.training import Callback

    class Tick(Callback):
        def on_batch_end(self, state: Any) -> None:
            clock.step()
            if clock.done:
                state.stop = True

    batch = sizes[workload]
    n_steps = sum(steps)
    common = dict(epochs=1, verbose=False, callbacks=[Tick()], precision="bf16" if device().type == "cuda" else "no",
                  learning_rate=1e-5, num_workers=0 if smoke else 8, compile="compile" in variants)
    if workload in ("text", "gradcache"):
        model = build_text_model(work / "model", data, smoke)
        pairs = text_pairs(data, batch * n_steps)
        # mini_batch_size counts texts per forward pass, as CachedMultipleNegativesRankingLoss's does
        extra = {"mini_batch_size": sizes["mini"]} if workload == "gradcache" else {}
        # a batch of N pairs is 2N texts (pairs train as classes of two)
        finetuner.fit(str(model), pairs, loss="InfoNCELoss", batch_size=2 * batch,
                      csv_options=CSVOptions(is_labeled=False), **extra, **common)
    elif workload == "clip":  # the emoji pairs repeated: one epoch, no batch holds a pair twice
        model = build_clip_model(work / "model", data, smoke)
        pairs = cycle(emoji_pairs(data), batch * n_steps)
        finetuner.fit(str(model), pairs, loss="CLIPLoss", batch_size=batch, **common)
    else:
        model = build_resnet_model(work / "model", smoke)
        images = cycle([image for _, image in emoji_pairs(data)], batch * n_steps)
        classes = min(64, len(images) // 4)  # at least 4 images per class
        labelled = [(image, f"class{i % classes}") for i, image in enumerate(images)]
        finetuner.fit(str(model), labelled, loss="TripletMarginLoss", batch_size=batch, **common)
    return {"rate": clock.rate(batch), "peak_gib": peak_gib(), "steps": clock.steps}


def run_sentence_transformers(workload: str, data: Path, sizes: dict[str, int], steps: tuple[int, int],
                              smoke: bool, work: Path, variants: set[str], clock: Clock) -> dict[str, Any]:
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

    batch = sizes[workload]
    folder = build_text_model(work / "model", data, smoke)
    encoder = models.Transformer(str(folder), max_seq_length=64)
    model = SentenceTransformer(modules=[encoder, models.Pooling(encoder.get_word_embedding_dimension())],
                                device=str(device()))
    pairs = text_pairs(data, batch * sum(steps))
    dataset = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [b for _, b in pairs]})
    if workload == "gradcache":
        loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=sizes["mini"])
    else:
        loss = losses.MultipleNegativesRankingLoss(model)

    class Tick(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.step()
            if clock.done:
                control.should_training_stop = True

    on_gpu = device().type == "cuda"
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work / "st"), num_train_epochs=1, max_steps=sum(steps), per_device_train_batch_size=batch,
        learning_rate=1e-5, bf16=on_gpu, batch_sampler=BatchSamplers.NO_DUPLICATES,
        dataloader_num_workers=0 if smoke else 8, save_strategy="no", logging_strategy="no", report_to="none",
        disable_tqdm=True, use_cpu=not on_gpu, seed=0,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                         callbacks=[Tick()])
    trainer.train()
    return {"rate": clock.rate(batch), "peak_gib": peak_gib(), "steps": clock.steps}


def run_raw(workload: str, data: Path, sizes: dict[str, int], steps: tuple[int, int], smoke: bool, work: Path,
            variants: set[str], clock: Clock) -> dict[str, Any]:
    """The same model, loss and optimizer with the inputs prepared on the device once, before timing."""
    import torch
    import torch.nn.functional as F

    dev = device()
    batch = sizes[workload]
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
    fmt = torch.channels_last if "cl" in variants else torch.contiguous_format
    if workload == "text":
        from transformers import AutoModel, AutoTokenizer

        folder = build_text_model(work / "model", data, smoke)
        model = AutoModel.from_pretrained(str(folder)).to(dev)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        pairs = text_pairs(data, batch)
        cut = {"padding": True, "truncation": True, "max_length": 64, "return_tensors": "pt"}
        q = tokenizer([a for a, _ in pairs], **cut).to(dev)
        d = tokenizer([b for _, b in pairs], **cut).to(dev)

        def embed(enc: Any) -> Any:
            out = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
            return (out * mask).sum(1) / mask.sum(1)

        def loss_fn() -> Any:
            a, b = F.normalize(embed(q).float(), dim=-1), F.normalize(embed(d).float(), dim=-1)
            return F.cross_entropy(a @ b.T * 20.0, torch.arange(len(a), device=dev))
    elif workload == "clip":
        from PIL import Image
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        folder = build_clip_model(work / "model", data, smoke)
        model = CLIPModel.from_pretrained(str(folder)).to(dev)
        pairs = emoji_pairs(data)[:batch]
        texts = AutoTokenizer.from_pretrained(str(folder))([t for t, _ in pairs], padding=True, truncation=True,
                                                          max_length=77, return_tensors="pt").to(dev)
        pixels = CLIPImageProcessor.from_pretrained(str(folder))(
            [Image.open(p).convert("RGB") for _, p in pairs], return_tensors="pt")["pixel_values"].to(dev)

        def loss_fn() -> Any:
            out = model(input_ids=texts["input_ids"], attention_mask=texts["attention_mask"], pixel_values=pixels)
            logits = out.logits_per_text.float()
            labels = torch.arange(len(logits), device=dev)
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    else:
        from PIL import Image
        from pytorch_metric_learning.losses import TripletMarginLoss
        from transformers import AutoImageProcessor, ResNetModel

        folder = build_resnet_model(work / "model", smoke)
        model = ResNetModel.from_pretrained(str(folder)).to(dev).to(memory_format=fmt)
        images = [p for _, p in emoji_pairs(data)[:batch]]
        pixels = AutoImageProcessor.from_pretrained(str(folder))(
            [Image.open(p).convert("RGB") for p in images], return_tensors="pt")["pixel_values"].to(dev)
        pixels = pixels.contiguous(memory_format=fmt)
        labels = torch.arange(batch, device=dev) % (batch // 4)
        triplet = TripletMarginLoss()

        def loss_fn() -> Any:
            return triplet(model(pixel_values=pixels).pooler_output.flatten(1).float(), labels)

    model.train()
    fused = {"fused": True} if dev.type == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, **fused)
    while not clock.done:
        with autocast:
            loss = loss_fn()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.step()
    return {"rate": clock.rate(batch), "peak_gib": peak_gib(), "steps": clock.steps}


METHODS = {"finetuner": run_finetuner, "sentence-transformers": run_sentence_transformers, "raw": run_raw}
