"""Nothing lost: a run killed with SIGKILL mid-epoch resumes from its last checkpoint to the same weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("fit_script.py")


def _start(mode: str, model: str, run_name: str, home: Path, out: Path, kill_step: int = 0) -> subprocess.Popen:
    env = {**os.environ, "FINETUNER_HOME": str(home), "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    log = open(out.with_suffix(".log"), "w+")  # noqa: SIM115 (closed in _wait; a file, as a full pipe stalls the child)
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), mode, model, run_name, str(kill_step), str(out)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    process.log = log  # type: ignore[attr-defined]
    return process


def _wait(process: subprocess.Popen) -> tuple[int, str]:
    code = process.wait(timeout=300)
    process.log.seek(0)  # type: ignore[attr-defined]
    text = process.log.read()  # type: ignore[attr-defined]
    process.log.close()  # type: ignore[attr-defined]
    return code, text


def test_sigkill_mid_epoch_then_resume_reaches_the_uninterrupted_weights(tiny_bert, tmp_path):
    # 40 items, batch 8, 4 per class: 6 batches per epoch, 3 epochs; checkpoints every 3 steps and at epoch ends.
    # Killed right after step 11 (epoch 2, batch 5): the last checkpoint is step 9 (epoch 2, batch 3).
    killed = _start("kill", tiny_bert, "killed-run", tmp_path / "home-a", tmp_path / "unused.safetensors", 11)
    full = _start("full", tiny_bert, "full-run", tmp_path / "home-b", tmp_path / "full.safetensors")  # meanwhile
    code, err = _wait(killed)
    assert code == -signal.SIGKILL, err[-2000:]
    run_dir = tmp_path / "home-a" / "runs" / "default" / "killed-run"
    status = yaml.safe_load((run_dir / "status.yml").read_text())
    assert status["status"] == "STARTED"  # it died without a word
    checkpoints = run_dir / "checkpoints"
    latest = yaml.safe_load((checkpoints / "latest.yml").read_text())["checkpoint"]
    assert latest == "step-00000009"
    meta = yaml.safe_load((checkpoints / latest / "checkpoint.yml").read_text())
    assert (meta["epoch"], meta["batches_done"], meta["batches_trained"]) == (1, 3, 9)
    assert not list(checkpoints.glob(".*")), "no half-written checkpoint left behind"

    resumed = _start("resume", tiny_bert, "killed-run", tmp_path / "home-a", tmp_path / "resumed.safetensors")
    code, err = _wait(resumed)
    assert code == 0, err[-3000:]
    code, err = _wait(full)
    assert code == 0, err[-3000:]

    a, b = load_file(tmp_path / "resumed.safetensors"), load_file(tmp_path / "full.safetensors")
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= 1e-6, f"resumed weights differ from the uninterrupted run's by {worst}"
    initial = load_file(Path(tiny_bert) / "model.safetensors")
    moved = max(float((a[f"backbone.{k}"] - w).abs().max()) for k, w in initial.items() if f"backbone.{k}" in a)
    assert moved > 1e-3, "training changed the weights (else the comparison proves nothing)"

    # the resumed run is the same run: one history of 3 epochs, equal to the uninterrupted one, and finished
    hist_a = yaml.safe_load((run_dir / "metadata.yml").read_text())["history"]
    hist_b = yaml.safe_load((tmp_path / "home-b" / "runs" / "default" / "full-run" / "metadata.yml").read_text())[
        "history"
    ]
    assert [h["epoch"] for h in hist_a] == [1, 2, 3]
    for x, y in zip(hist_a, hist_b):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-6)
    assert yaml.safe_load((run_dir / "status.yml").read_text())["status"] == "FINISHED"
    metrics = yaml.safe_load((run_dir / "metrics.yml").read_text())
    assert set(metrics) == {"before", "after"}
    assert torch.isfinite(torch.tensor(list(metrics["after"].values()))).all()
