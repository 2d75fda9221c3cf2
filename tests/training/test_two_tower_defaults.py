"""The defaults of a two-tower model built from ``{'text': ..., 'vision': ...}``: what ``config.yml`` records is
what the optimizer trains with (benchmarks/README.md, "CLIP quality against open_clip", justifies each)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import finetuner
from finetuner.callback import Callback
from finetuner.config import TWO_TOWER_HEAD_LR_FACTOR, TrainingConfig
from finetuner.errors import ConfigError
from finetuner.losses.contrastive import CLIPLoss
from finetuner.models import build_model
from finetuner.training.loop import build_optimizer


def _pairs(folder: Path, n: int = 8) -> list[tuple[str, str]]:
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    out = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.new("RGB", (16, 16), tuple(rng.randrange(256) for _ in range(3))).save(path)
        out.append((f"{words[i % len(words)]} {words[(i + 3) % len(words)]}", str(path)))
    return out


def _spec(tiny_bert: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A tiny two-tower spec (a random BERT and a one-layer conv net) and its model_options."""
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    vision_options = {"input_size": 16, "module_kwargs": {"in_channels": 3, "out_channels": 4, "kernel_size": 3}}
    return {"text": tiny_bert, "vision": conv}, {"vision_options": vision_options}


class _KeepOptimizer(Callback):
    """Records each parameter's learning rate in the optimizer the run trained with."""

    def on_train_begin(self, state: Any) -> None:
        model = getattr(state.model, "module", state.model)
        ids = {id(p): name for name, p in model.named_parameters()}
        self.lrs = {ids.get(id(p), "loss"): g["lr"] for g in state.optimizer.param_groups for p in g["params"]}


def test_the_two_tower_defaults_are_what_the_config_records(tiny_bert: str, tmp_path: Path) -> None:
    spec, options = _spec(tiny_bert)
    keep = _KeepOptimizer()
    run = finetuner.fit(spec, _pairs(tmp_path), output_dim=8, epochs=1, batch_size=4, learning_rate=1e-3,
                        model_options=options, callbacks=[keep], seed=0, device="cpu", verbose=False)
    config = run.config
    assert TWO_TOWER_HEAD_LR_FACTOR == 10.0
    assert config["head_learning_rate"] == pytest.approx(1e-2)  # 10 x the run's learning rate
    assert config["learning_rate"] == 1e-3 and config["optimizer"] == "Adam"
    # the optimizer trained with what the config records: heads at head_learning_rate, the rest at learning_rate
    heads = {n: lr for n, lr in keep.lrs.items() if ".head." in n}
    rest = {n: lr for n, lr in keep.lrs.items() if ".head." not in n}
    assert sorted(heads) == ["text.head.linear.bias", "text.head.linear.weight",
                             "vision.head.linear.bias", "vision.head.linear.weight"]
    assert list(heads.values()) == [pytest.approx(config["head_learning_rate"])] * 4
    assert set(rest.values()) == {config["learning_rate"]} and "loss" in rest  # the temperature at the run's rate

    # a rate the user gives is kept and recorded as given
    keep = _KeepOptimizer()
    run = finetuner.fit(spec, _pairs(tmp_path), output_dim=8, epochs=1, batch_size=4, learning_rate=1e-3,
                        head_learning_rate=2e-3, model_options=options, callbacks=[keep], seed=0, device="cpu",
                        verbose=False)
    assert run.config["head_learning_rate"] == 2e-3
    assert {lr for n, lr in keep.lrs.items() if ".head." in n} == {2e-3}


def test_head_learning_rate_is_only_a_default_for_new_two_tower_heads(tiny_bert: str) -> None:
    from finetuner.data.shapes import LabelledData
    from finetuner.training.check import resolve

    labelled = LabelledData(["a", "b", "c"], [0, 0, 1], ["x", "y"], ["1", "2", "3"], "text")
    spec = {"text": "t", "vision": "v"}
    assert resolve(TrainingConfig(), "CLIPLoss", labelled, spec).head_learning_rate == pytest.approx(1e-4)
    assert resolve(TrainingConfig(learning_rate=3e-5), "CLIPLoss", labelled, spec).head_learning_rate == (
        pytest.approx(3e-4)
    )
    # a pretrained CLIP (its projections are trained) or a single model: no default, heads at the tower's rate
    assert resolve(TrainingConfig(), "TripletMarginLoss", labelled, tiny_bert).head_learning_rate is None
    with pytest.raises(ConfigError, match="head_learning_rate"):
        TrainingConfig(head_learning_rate=0).validate()


def test_one_adam_step_moves_the_heads_at_their_rate(tiny_bert: str) -> None:
    """Adam's first step moves every parameter with a gradient by about its learning rate: the heads by
    ``head_learning_rate``, the backbones by ``learning_rate``."""
    spec, options = _spec(tiny_bert)
    torch.manual_seed(0)
    model = build_model(spec, output_dim=8, model_options=options)
    config = TrainingConfig(learning_rate=1e-4, head_learning_rate=1e-2, optimizer_options={"fused": False})
    optimizer = build_optimizer(config, model, CLIPLoss())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    texts = model.text.preprocess(["alpha beta", "gamma delta", "eta theta"])
    images = {"pixel_values": torch.rand(3, 3, 16, 16)}
    text_emb, image_emb = model(text=texts, image=images)
    CLIPLoss()(text_emb, image_emb).backward()
    optimizer.step()
    moved = {n: float((p.detach() - before[n]).abs().max()) for n, p in model.named_parameters()}
    assert moved["text.head.linear.weight"] == pytest.approx(1e-2, rel=0.01)
    assert moved["vision.head.linear.weight"] == pytest.approx(1e-2, rel=0.01)
    assert moved["vision.backbone.module.0.weight"] == pytest.approx(1e-4, rel=0.01)
    backbone = [m for n, m in moved.items() if n.startswith("text.backbone.") and m > 0]
    assert backbone and max(backbone) == pytest.approx(1e-4, rel=0.01)


def test_the_vision_tower_trains_on_open_clips_crop_by_default(tiny_bert: str, tmp_path: Path) -> None:
    """The saved vision tower records the augmentation it trained with: TWO_TOWER_AUGMENT by default (crops of
    90-100% of the area, no flip), none when ``augment=False`` is given; training batches are crops, evaluation
    pixels are not."""
    import yaml

    from finetuner.config import TWO_TOWER_AUGMENT

    class Keep(Callback):
        def on_train_end(self, state: Any) -> None:
            self.vision = getattr(state.model, "module", state.model).vision

    def recorded(run: Any) -> Any:
        meta = yaml.safe_load((Path(run.directory) / "models" / "clip-vision" / "metadata.yml").read_text())
        return meta["augment"]

    spec, options = _spec(tiny_bert)
    keep = Keep()
    run = finetuner.fit(spec, _pairs(tmp_path), output_dim=8, epochs=1, batch_size=4, model_options=options,
                        callbacks=[keep], seed=0, device="cpu", verbose=False)
    assert TWO_TOWER_AUGMENT == {"scale": (0.9, 1.0), "ratio": (3 / 4, 4 / 3), "flip": 0.0}
    assert recorded(run) == {"scale": [0.9, 1.0], "ratio": [0.75, 4 / 3], "flip": 0.0}
    picture = [np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)]
    torch.manual_seed(0)
    crop = keep.vision.training_preprocess(picture)["pixel_values"]  # (1, 3, 16, 16)
    assert not torch.equal(crop, keep.vision.preprocess(picture)["pixel_values"])

    off = {"vision_options": {**options["vision_options"], "augment": False}}
    run = finetuner.fit(spec, _pairs(tmp_path), output_dim=8, epochs=1, batch_size=4, model_options=off,
                        seed=0, device="cpu", verbose=False)
    assert recorded(run) is None
