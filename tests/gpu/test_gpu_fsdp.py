"""On GPUs (``-m gpu``; skipped without CUDA): ``finetuner fit`` under ``accelerate launch --use_fsdp --fsdp_version
2`` on every GPU of the machine. accelerate shards the model (FSDP2, one unit per transformer layer), the step
checkpoints are sharded, a run killed mid-epoch resumes from one, and the artifact holds the full weights and loads
for encoding. The same logic is tested on the CPU in tests/training/test_fsdp.py."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests.conftest import build_tiny_bert, make_texts
from tests.processes import free_port

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

ROOT = Path(__file__).resolve().parents[2]


def _csv(path: Path, rows) -> str:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return str(path)


def _launch(tmp_path: Path, *program: str) -> subprocess.CompletedProcess:
    """``accelerate launch`` with FSDP2 on every GPU of the machine."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(torch.cuda.device_count()),
        "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no",
        "--use_fsdp", "--fsdp_version", "2", *program,
    ]  # fmt: skip
    env = {**os.environ, "FINETUNER_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)


def _weights(home: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(home / "runs" / "default" / name / "models" / "model" / "model.safetensors"))


def test_fit_command_under_accelerate_fsdp_saves_full_weights(tmp_path):
    import finetuner

    model_dir = str(build_tiny_bert(tmp_path / "bert", dropout=0.0))
    done = _launch(
        tmp_path, "-m", "finetuner", "fit", "--model", model_dir,
        "--train-data", _csv(tmp_path / "t.csv", make_texts(8, 1)),
        "--eval-data", _csv(tmp_path / "e.csv", make_texts(3, 2)),
        "--epochs", "2", "--batch-size", "8", "--num-items-per-class", "2", "--run-name", "whole",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    saved, start = _weights(tmp_path / "home", "whole"), load_file(str(Path(model_dir) / "model.safetensors"))
    assert sorted(saved) == sorted(start)  # the full weights, under the unsharded names
    assert all(saved[k].shape == start[k].shape for k in start)
    assert [k for k in start if not torch.equal(saved[k], start[k])], "training changed no weight"
    model = finetuner.get_model(str(tmp_path / "home" / "runs" / "default" / "whole"))
    assert finetuner.encode(model, ["a red dress"]).shape[0] == 1


def test_fsdp_run_killed_mid_epoch_resumes_from_its_sharded_checkpoint(tmp_path):
    """fsdp_script.py: a fit, the same fit crashing in its second epoch after a sharded step checkpoint, and its
    resume; the script checks on every rank that accelerate sharded the model."""
    model_dir = str(build_tiny_bert(tmp_path / "bert", dropout=0.0))
    done = _launch(tmp_path, str(Path(__file__).with_name("fsdp_script.py")), model_dir)
    assert done.returncode == 0, done.stderr[-4000:]
    home = tmp_path / "home"
    checkpoints = home / "runs" / "default" / "cut" / "checkpoints"
    assert list(checkpoints.glob("*/sharded/.metadata")) and not list(checkpoints.glob("*/model.safetensors"))
    whole, resumed = _weights(home, "whole"), _weights(home, "cut")
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], atol=1e-5, rtol=1e-5, msg=key)
