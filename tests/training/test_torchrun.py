"""Under ``torchrun``: the ``finetuner fit`` command on 2 processes, and a fit on two "nodes" of one process each
(static rendezvous on 127.0.0.1, gloo, CPU). Only rank 0 writes the run folder and the artifact; every process
exits 0; the processes agree on the seed they drew and on the weights they end with."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.conftest import build_tiny_bert, make_texts
from tests.processes import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FINETUNER_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def _csv(path: Path, rows) -> str:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return str(path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("bert"), dropout=0.0))


def test_cli_fit_on_two_processes_writes_once_and_every_rank_exits_0(model_dir, tmp_path):
    home, out = tmp_path / "home", tmp_path / "out"
    command = _torchrun(
        "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        "-m", "finetuner", "fit", "--model", model_dir, "--train-data", _csv(tmp_path / "t.csv", make_texts(6, 1)),
        "--eval-data", _csv(tmp_path / "e.csv", make_texts(3, 2)), "--epochs", "1", "--batch-size", "8",
        "--device", "cpu", "--run-name", "two-procs", "--output", str(out), "--num-items-per-class", "2",
    )  # fmt: skip
    done = subprocess.run(command, env=_env(home), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]  # torchrun fails if any rank fails
    assert done.stdout.count("artifact:") == 1 and done.stdout.count("reciprocal_rank") == 1, done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["two-procs"]  # no copy racing another, no leftovers
    run = yaml.safe_load((home / "runs" / "default" / "two-procs" / "status.yml").read_text())
    assert run["status"] == "FINISHED"
    assert (out / "two-procs" / "models" / "model" / "model.safetensors").is_file()


def test_two_nodes_on_one_machine_train_together_and_agree(model_dir, tmp_path):
    port, records = free_port(), tmp_path / "records"
    records.mkdir()
    train, evals = _csv(tmp_path / "t.csv", make_texts(6, 1)), _csv(tmp_path / "e.csv", make_texts(3, 2))
    nodes = []
    for node in (0, 1):
        home, out = tmp_path / f"node{node}" / "home", tmp_path / f"node{node}" / "out"
        out.mkdir(parents=True)
        command = _torchrun(
            "--nnodes", "2", "--nproc_per_node", "1", "--node_rank", str(node), "--master_addr", "127.0.0.1",
            "--master_port", str(port), str(Path(__file__).with_name("torchrun_script.py")), str(records),
            "--model", model_dir, "--train-data", train, "--eval-data", evals, "--epochs", "2", "--batch-size", "8",
            "--device", "cpu", "--run-name", "nodes", "--output", str(out), "--num-items-per-class", "2",
            "--optimizer", "SGD", "--learning-rate", "0.5",
        )  # fmt: skip  (no --seed: rank 0 draws it, and every process must train with it)
        nodes.append(
            subprocess.Popen(
                command, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path
            )
        )
    outputs = []
    try:
        for process in nodes:
            outputs.append(process.communicate(timeout=300)[0])
    finally:
        for process in nodes:
            process.kill()
    assert [p.returncode for p in nodes] == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
    first, second = (yaml.safe_load((records / f"rank-{r}.yml").read_text()) for r in (0, 1))
    assert first["seed"] == second["seed"]  # drawn on rank 0 (seed=None), the same everywhere
    assert first["batches"] == second["batches"] > 0
    assert first["weights"] == second["weights"]
    # node 0 holds the run and the artifact; node 1 wrote nothing of its own
    assert (tmp_path / "node0" / "out" / "nodes" / "models" / "model" / "model.safetensors").is_file()
    config = yaml.safe_load((tmp_path / "node0" / "home" / "runs" / "default" / "nodes" / "config.yml").read_text())
    assert config["seed"] == first["seed"]
    assert not (tmp_path / "node1" / "home").exists() and not any((tmp_path / "node1" / "out").iterdir())
