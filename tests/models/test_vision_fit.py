"""fit on images with tiny random models: metrics improve, the artifact reloads, ArcFace trains its own weights."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import finetuner
from finetuner.models import build_model
from finetuner.training import loop

pytestmark = pytest.mark.integration

CLASSES = ("horizontal", "vertical", "diagonal", "checker")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and do not fight other processes for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def stripes(n_per_class: int, seed: int, size: int = 24) -> list[tuple[np.ndarray, str]]:
    """Separable synthetic images: the class is the stripe pattern; colours, phase and noise are random."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for label in CLASSES:
        for _ in range(n_per_class):
            p = rng.integers(0, 4)
            mask = {
                "horizontal": ((yy + p) // 2) % 2,
                "vertical": ((xx + p) // 2) % 2,
                "diagonal": ((xx + yy + p) // 2) % 2,
                "checker": (((xx + p) // 2) + ((yy + p) // 2)) % 2,
            }[label]
            colours = rng.integers(0, 256, (2, 3))
            img = np.where(mask[..., None] > 0, colours[0], colours[1]) + rng.normal(0, 10, (size, size, 3))
            out.append((np.clip(img, 0, 255).astype(np.uint8), label))  # (H, W, 3)
    return out


@pytest.fixture(scope="module")
def resnet_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    from transformers import ResNetConfig, ResNetModel, ViTImageProcessor

    directory = tmp_path_factory.mktemp("tiny-resnet-fit")
    torch.manual_seed(0)
    cfg = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic")
    ResNetModel(cfg).save_pretrained(directory)
    ViTImageProcessor(size={"height": 24, "width": 24}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(
        directory
    )
    return str(directory)


def _write_csv(directory: Path, rows: list[tuple[np.ndarray, str]], name: str) -> Path:
    (directory / name).mkdir(parents=True, exist_ok=True)
    with open(directory / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "label"])
        for i, (img, label) in enumerate(rows):
            Image.fromarray(img).save(directory / name / f"{i}.png")
            writer.writerow([f"{name}/{i}.png", label])
    return directory / f"{name}.csv"


def test_fit_from_csv_improves_and_the_artifact_encodes_like_the_tuned_model(resnet_dir: str, tmp_path: Path) -> None:
    train_csv = _write_csv(tmp_path, stripes(16, seed=1), "train")
    eval_csv = _write_csv(tmp_path, stripes(10, seed=2), "eval")
    model = build_model(resnet_dir)
    run = finetuner.fit(
        model, str(train_csv), str(eval_csv), epochs=4, learning_rate=3e-3, batch_size=16, seed=0, verbose=False
    )
    metrics = run.metrics()
    assert metrics["after"]["average_precision"] > metrics["before"]["average_precision"] + 0.05
    assert metrics["after"]["reciprocal_rank"] > metrics["before"]["reciprocal_rank"]

    path = run.save_artifact(tmp_path / "artifacts")
    assert yaml.safe_load((Path(path) / "models" / "input-map.yml").read_text()) == {"model": "image"}
    meta = yaml.safe_load((Path(path) / "models" / "model" / "metadata.yml").read_text())
    assert meta["kind"] == "vision" and meta["modality"] == "image"
    reloaded = finetuner.get_model(path)
    items = [str(tmp_path / "eval" / f"{i}.png") for i in range(0, 40, 7)]
    np.testing.assert_allclose(finetuner.encode(reloaded, items), finetuner.encode(model, items), atol=1e-5)
    examples = run.example_results()["after"][0]
    assert examples["query"].endswith(".png")


def test_arcface_with_random_sampler_and_its_own_optimizer(resnet_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[tuple[torch.optim.Optimizer, torch.Tensor]] = []
    original = loop.build_loss_optimizer

    def spy(config: object, loss_fn: torch.nn.Module) -> torch.optim.Optimizer | None:
        optimizer = original(config, loss_fn)  # type: ignore[arg-type]
        assert optimizer is not None
        built.append((optimizer, loss_fn.W.detach().clone()))
        return optimizer

    monkeypatch.setattr(loop, "build_loss_optimizer", spy)
    run = finetuner.fit(
        resnet_dir,
        [(img, label) for img, label in stripes(12, seed=3)],
        loss="ArcFaceLoss",
        sampler="random",
        loss_optimizer="SGD",
        loss_optimizer_options={"lr": 0.05},
        model_options={"augment": True},
        num_workers=1,  # images are decoded (and augmented) in a DataLoader worker
        output_dim=8,
        epochs=4,
        learning_rate=3e-3,
        batch_size=16,
        seed=0,
        verbose=False,
    )
    assert run.status()["status"] == "FINISHED"
    history = yaml.safe_load((run.directory / "metadata.yml").read_text())["history"]
    losses = [h["loss"] for h in history]
    assert len(losses) == 4 and losses[-1] < losses[0]
    ((optimizer, w_before),) = built
    w_after = optimizer.param_groups[0]["params"][0].detach()
    assert w_after.shape == (8, 4) and not torch.allclose(w_after, w_before)  # ArcFace's class centres moved
