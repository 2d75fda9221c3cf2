"""LoRA under DDP: `fit(adapter='lora')` on 2 CPU processes (gloo) ends with the adapter 1 process trains."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from tests.conftest import build_tiny_bert, make_texts
from tests.processes import become_rank, free_port

pytest.importorskip("peft")
pytestmark = pytest.mark.integration

# SGD, as in test_two_process_fit: the same step whatever the order of the gradient sums
SETTINGS = dict(
    epochs=2, batch_size=8, learning_rate=0.5, optimizer="SGD", seed=0, verbose=False, num_items_per_class=2,
    adapter="lora", adapter_options={"r": 4, "dropout": 0.0},
)


def _rank_main(rank: int, world: int, port: int, model_dir: str, home: str) -> None:
    become_rank(rank, world, port, home)
    import finetuner

    finetuner.fit(model_dir, make_texts(6, seed=1), run_name="ddp", device="cpu", **SETTINGS)


def _adapter(home: Path, name: str) -> dict[str, torch.Tensor]:
    folder = home / "runs" / "default" / name / "models" / "model" / "adapter"
    return load_file(str(folder / "adapter_model.safetensors"))


def test_two_processes_train_the_adapter_of_one(tmp_path):
    import finetuner

    model_dir = str(build_tiny_bert(tmp_path / "bert", dropout=0.0))
    home = tmp_path / "home"
    mp.start_processes(_rank_main, args=(2, free_port(), model_dir, str(home)), nprocs=2, start_method="spawn")
    os.environ["FINETUNER_HOME"] = str(home)
    finetuner.fit(model_dir, make_texts(6, seed=1), run_name="single", device="cpu", **SETTINGS)
    one, two = _adapter(home, "single"), _adapter(home, "ddp")
    assert one.keys() == two.keys() and all("lora_" in k for k in one)
    assert any(v.abs().sum() > 0 for k, v in one.items() if "lora_B" in k), "the adapter did not train"
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=2e-5, rtol=1e-4, msg=key)
