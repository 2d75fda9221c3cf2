import subprocess
import sys

import pytest
import torch

from finetuner.config import TrainingConfig
from finetuner.training.loop import build_scheduler


def _lrs(config, steps):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = build_scheduler(config, opt, steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_linear_schedule_warms_up_then_decays():
    lrs = _lrs(TrainingConfig(scheduler="linear", scheduler_options={"num_warmup_steps": 2}), 6)
    # warmup: 0, 0.05 then linear decay from 0.1 over the remaining 4 steps: 0.1, 0.075, 0.05, 0.025
    assert lrs == pytest.approx([0.0, 0.05, 0.1, 0.075, 0.05, 0.025])
    ratio = _lrs(TrainingConfig(scheduler="cosine", scheduler_options={"warmup_ratio": 0.5}), 4)
    assert ratio[:2] == pytest.approx([0.0, 0.05]) and ratio[2] == pytest.approx(0.1)
    assert build_scheduler(TrainingConfig(), torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1), 5) is None


def test_python_dash_m_is_the_cli():
    out = subprocess.run([sys.executable, "-m", "finetuner", "list-models"], capture_output=True, text=True,
                         check=True, timeout=300)
    assert "bert-base-en" in out.stdout and "clip-base-en" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "finetuner", "fit", "--model", "bert-base-en", "--train-data",
                          "/no/such.csv", "--epochs", "0"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert "epochs" in bad.stderr and "/no/such.csv" in bad.stderr  # both problems, reported together
