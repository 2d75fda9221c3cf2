"""What the GPU tests of sharded training share: ``accelerate launch`` of a program on every GPU of the machine,
and the CSV files of labelled texts the fit command reads."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import torch
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]


def write_csv(path: Path, rows) -> str:
    """``rows`` of (text, label) as a CSV file with a header; returns its path."""
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return str(path)


def accelerate_launch(
    tmp_path: Path, engine: list[str], *program: str, precision: str = "no"
) -> subprocess.CompletedProcess:
    """``accelerate launch <engine flags> <program>`` on every GPU, runs under ``tmp_path/home``; the launched
    processes see this checkout's sources and whatever else is on PYTHONPATH (the GPU machine's extra wheels)."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(torch.cuda.device_count()),
        "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", precision,
        *engine, *program,
    ]  # fmt: skip
    env = {**os.environ, "FINETUNER_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
