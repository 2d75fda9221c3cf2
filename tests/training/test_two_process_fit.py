"""`fit` on 2 CPU processes (gloo, the way torchrun starts them) ends with the weights of 1 process: labelled items,
triplets with hard negatives (rows gathered with their negatives) and scored pairs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from tests.conftest import build_tiny_bert, make_texts
from tests.processes import become_rank, free_port

pytestmark = pytest.mark.integration

# SGD, not Adam: Adam rescales the pure-rounding-noise gradient of attention key biases (mathematically zero)
# into full-size steps, which would differ between any two summation orders
SETTINGS = dict(
    epochs=2, batch_size=8, learning_rate=0.5, optimizer="SGD", seed=0, verbose=False, num_items_per_class=2
)


def _rows(kind: str, seed: int) -> list[tuple]:
    """Triplets (query, positive of its class, negative of the next class) or scored pairs of the synthetic texts."""
    by_label: dict[str, list[str]] = {}
    for text, label in make_texts(6, seed=seed):
        by_label.setdefault(label, []).append(text)
    classes = list(by_label.values())
    out: list[tuple] = []
    for k, texts in enumerate(classes):
        other = classes[(k + 1) % len(classes)]
        if kind == "triplets":
            out += [(texts[i], texts[i + 1], other[i]) for i in (0, 2, 4)]
        else:
            out += [(texts[0], texts[1], 1.0), (texts[2], other[3], 0.0), (texts[4], texts[5], 0.7)]
    return out


def _data(kind: str) -> tuple[list, list]:
    if kind == "labelled":
        return make_texts(6, seed=1), make_texts(5, seed=2)
    return _rows(kind, 1), _rows(kind, 2)


def _rank_main(rank: int, world: int, port: int, model_dir: str, home: str, kind: str) -> None:
    become_rank(rank, world, port, home)
    import finetuner

    finetuner.fit(model_dir, *_data(kind), run_name="ddp", device="cpu", **SETTINGS)


def _weights(home: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(home / "runs" / "default" / name / "models" / "model" / "model.safetensors"))


@pytest.mark.parametrize("kind", ["labelled", "triplets", "scored"])
def test_two_processes_reach_the_weights_of_one(tmp_path, kind):
    import finetuner

    model_dir = str(build_tiny_bert(tmp_path / "bert", dropout=0.0))
    home = tmp_path / "home"
    mp.start_processes(_rank_main, args=(2, free_port(), model_dir, str(home), kind), nprocs=2, start_method="spawn")
    os.environ["FINETUNER_HOME"] = str(home)
    run = finetuner.fit(model_dir, *_data(kind), run_name="single", device="cpu", **SETTINGS)
    assert run.status()["status"] == "FINISHED"
    assert finetuner.get_run("ddp").status()["status"] == "FINISHED"
    # evaluation was split across the two ranks and gathered: the same figures as one process
    ddp_metrics = finetuner.get_run("ddp").metrics()
    for stage in ("before", "after"):
        for name, value in run.metrics()[stage].items():
            assert ddp_metrics[stage][name] == pytest.approx(value, abs=1e-4), (stage, name)
    one, two = _weights(home, "single"), _weights(home, "ddp")
    start = load_file(str(Path(model_dir) / "model.safetensors"))
    moved = [k for k in one if not torch.equal(one[k], start[k])]
    assert moved, "training changed no weight"
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=2e-5, rtol=1e-4, msg=key)


def _streamed_rank(rank: int, world: int, port: int, model_dir: str, home: str, path: str, cache: str) -> None:
    become_rank(rank, world, port, home)
    import datasets

    import finetuner

    datasets.config.HF_DATASETS_CACHE = cache
    finetuner.fit(model_dir, path, make_texts(5, seed=2), run_name="ddp-stream", device="cpu", streaming=True,
                  **SETTINGS)  # fmt: skip


def test_two_processes_streaming_a_file_reach_the_weights_of_one_in_memory(tmp_path):
    """Each rank fetches only its share of every batch from the memory-mapped file; together they train like one
    process that read the file whole."""
    import csv

    import finetuner

    model_dir = str(build_tiny_bert(tmp_path / "bert", dropout=0.0))
    home, path = tmp_path / "home", tmp_path / "train.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *make_texts(6, seed=1)])
    args = (2, free_port(), model_dir, str(home), str(path), str(tmp_path / "hf-cache"))
    mp.start_processes(_streamed_rank, args=args, nprocs=2, start_method="spawn")
    os.environ["FINETUNER_HOME"] = str(home)
    one = finetuner.fit(model_dir, make_texts(6, seed=1), make_texts(5, seed=2), run_name="one-memory", device="cpu",
                        **SETTINGS)  # fmt: skip
    two = finetuner.get_run("ddp-stream")
    assert two.status()["status"] == "FINISHED" and two.config["streaming"] is True
    for stage in ("before", "after"):
        for name, value in one.metrics()[stage].items():
            assert two.metrics()[stage][name] == pytest.approx(value, abs=1e-4), (stage, name)
    a, b = _weights(home, "one-memory"), _weights(home, "ddp-stream")
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=2e-5, rtol=1e-4, msg=key)
