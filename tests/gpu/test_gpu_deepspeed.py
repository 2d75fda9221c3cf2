"""On GPUs (``-m gpu``; skipped without CUDA or DeepSpeed): ``finetuner fit`` under ``accelerate launch
--use_deepspeed --zero_stage 3`` on every GPU of the machine, with bf16. accelerate builds DeepSpeed's engine (the
weights partitioned), the step checkpoints are DeepSpeed's, a run killed mid-epoch resumes from one, and the
artifact holds the full fp32 weights and loads for encoding. The same logic is tested on the CPU in
tests/training/test_deepspeed.py."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.conftest import build_tiny_bert, make_texts
from tests.processes import free_port

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

ROOT = Path(__file__).resolve().parents[2]


def _launch(tmp_path: Path, *program: str, precision: str = "bf16") -> subprocess.CompletedProcess:
    """``accelerate launch`` with DeepSpeed ZeRO-3 on every GPU of the machine."""
    pytest.importorskip("deepspeed")
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(torch.cuda.device_count()),
        "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", precision,
        "--use_deepspeed", "--zero_stage", "3", *program,
    ]  # fmt: skip
    env = {**os.environ, "FINETUNER_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)


def _weights(home: Path, name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(home / "runs" / "default" / name / "models" / "model" / "model.safetensors"))


def test_fit_command_under_deepspeed_zero3_saves_full_fp32_weights(tmp_path):
    from safetensors.torch import load_file

    import finetuner

    model_dir = str(build_tiny_bert(tmp_path / "bert", dropout=0.0))
    paths = []
    for name, rows in (("t.csv", make_texts(8, 1)), ("e.csv", make_texts(3, 2))):
        with open(tmp_path / name, "w", newline="") as f:
            csv.writer(f).writerows([("text", "label"), *rows])
        paths.append(str(tmp_path / name))
    done = _launch(
        tmp_path, "-m", "finetuner", "fit", "--model", model_dir, "--train-data", paths[0], "--eval-data", paths[1],
        "--epochs", "2", "--batch-size", "8", "--num-items-per-class", "2", "--run-name", "whole",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    saved, start = _weights(tmp_path / "home", "whole"), load_file(str(Path(model_dir) / "model.safetensors"))
    assert sorted(saved) == sorted(start)  # the full weights, under the model's own names
    assert all(saved[k].shape == start[k].shape and saved[k].dtype == torch.float32 for k in start)
    assert [k for k in start if not torch.equal(saved[k], start[k])], "training changed no weight"
    model = finetuner.get_model(str(tmp_path / "home" / "runs" / "default" / "whole"))
    assert finetuner.encode(model, ["a red dress"]).shape[0] == 1


def test_deepspeed_run_killed_mid_epoch_resumes_from_its_checkpoint(tmp_path):
    """fsdp_script.py (fp32): a fit, the same fit crashing in its second epoch after a step checkpoint, and its
    resume; the script checks on every rank that the weights are partitioned (ZeRO-3)."""
    model_dir = str(build_tiny_bert(tmp_path / "bert", dropout=0.0))
    done = _launch(tmp_path, str(Path(__file__).with_name("fsdp_script.py")), model_dir, precision="no")
    assert done.returncode == 0, done.stderr[-4000:]
    home = tmp_path / "home"
    checkpoints = home / "runs" / "default" / "cut" / "checkpoints"
    assert list(checkpoints.glob("*/sharded/zero")) and not list(checkpoints.glob("*/model.safetensors"))
    whole, resumed = _weights(home, "whole"), _weights(home, "cut")
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], atol=1e-5, rtol=1e-5, msg=key)
