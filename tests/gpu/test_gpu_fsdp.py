"""On GPUs (``-m gpu``; skipped without CUDA): ``finetuner fit`` under ``accelerate launch --use_fsdp --fsdp_version
2`` on every GPU of the machine. accelerate shards the model (FSDP2, one unit per transformer layer), the step
checkpoints are sharded, a run killed mid-epoch resumes from one, and the artifact holds the full weights and loads
for encoding. The same logic is tested on the CPU in tests/training/test_fsdp.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests.conftest import build_tiny_bert, make_texts
from tests.gpu.launching import accelerate_launch, write_csv
from tests.processes import saved_weights

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

FSDP = ["--use_fsdp", "--fsdp_version", "2"]


def test_fit_command_under_accelerate_fsdp_saves_full_weights(tmp_path):
    import finetuner

    model_dir = str(build_tiny_bert(tmp_path / "bert", dropout=0.0))
    done = accelerate_launch(
        tmp_path, FSDP, "-m", "finetuner", "fit", "--model", model_dir,
        "--train-data", write_csv(tmp_path / "t.csv", make_texts(8, 1)),
        "--eval-data", write_csv(tmp_path / "e.csv", make_texts(3, 2)),
        "--epochs", "2", "--batch-size", "8", "--num-items-per-class", "2", "--run-name", "whole",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    saved, start = saved_weights(tmp_path / "home", "whole"), load_file(str(Path(model_dir) / "model.safetensors"))
    assert sorted(saved) == sorted(start)  # the full weights, under the unsharded names
    assert all(saved[k].shape == start[k].shape for k in start)
    assert [k for k in start if not torch.equal(saved[k], start[k])], "training changed no weight"
    model = finetuner.get_model(str(tmp_path / "home" / "runs" / "default" / "whole"))
    assert finetuner.encode(model, ["a red dress"]).shape[0] == 1


def test_fsdp_run_killed_mid_epoch_resumes_from_its_sharded_checkpoint(tmp_path):
    """fsdp_script.py: a fit, the same fit crashing in its second epoch after a sharded step checkpoint, and its
    resume; the script checks on every rank that accelerate sharded the model."""
    model_dir = str(build_tiny_bert(tmp_path / "bert", dropout=0.0))
    done = accelerate_launch(tmp_path, FSDP, str(Path(__file__).with_name("fsdp_script.py")), model_dir)
    assert done.returncode == 0, done.stderr[-4000:]
    home = tmp_path / "home"
    checkpoints = home / "runs" / "default" / "cut" / "checkpoints"
    assert list(checkpoints.glob("*/sharded/.metadata")) and not list(checkpoints.glob("*/model.safetensors"))
    whole, resumed = saved_weights(home, "whole"), saved_weights(home, "cut")
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], atol=1e-5, rtol=1e-5, msg=key)
