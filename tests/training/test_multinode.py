"""Two "nodes" of two processes each under ``torchrun --nnodes 2 --nproc_per_node 2`` (static rendezvous on
127.0.0.1, gloo, CPU) train to the weights and metrics of one process.

Four ranks split every global batch of 8 items two by two and every evaluation four ways; the loss sees the
gathered global batch, so the run must end where a single process ends (up to summation order).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

# SGD for the reason given in test_two_process_fit.py (Adam magnifies rounding noise on zero gradients)
SETTINGS = dict(
    epochs=2,
    batch_size=8,
    learning_rate=0.5,
    optimizer="SGD",
    seed=0,
    verbose=False,
    num_items_per_class=2,
    device="cpu",
)


def _node(node: int, port: int, model_dir: str, home: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "2",
        "--node_rank", str(node), "--master_addr", "127.0.0.1", "--master_port", str(port),
        str(Path(__file__).with_name("multinode_script.py")), model_dir, "nodes",
    ]  # fmt: skip
    env = {
        **os.environ,
        "FINETUNER_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_nodes_of_two_processes_reach_the_weights_and_metrics_of_one(tmp_path):
    from safetensors.torch import load_file
    from tests.conftest import build_tiny_bert, make_texts
    from tests.processes import free_port

    import finetuner

    model_dir = str(build_tiny_bert(tmp_path / "bert", dropout=0.0))
    port = free_port()
    nodes = [_node(n, port, model_dir, tmp_path / f"node{n}") for n in (0, 1)]
    outputs = []
    try:
        outputs = [node.communicate(timeout=420)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in nodes] == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
    assert not (tmp_path / "node1").exists()  # only the global rank 0 (on node 0) writes the run

    os.environ["FINETUNER_HOME"] = str(tmp_path / "single")
    single = finetuner.fit(model_dir, make_texts(6, seed=1), make_texts(5, seed=2), run_name="one", **SETTINGS)
    os.environ["FINETUNER_HOME"] = str(tmp_path / "node0")
    multi = finetuner.get_run("nodes")
    assert multi.status()["status"] == "FINISHED"
    for stage in ("before", "after"):
        for name, value in single.metrics()[stage].items():
            assert multi.metrics()[stage][name] == pytest.approx(value, abs=1e-4), (stage, name)
    assert single.metrics()["after"]["reciprocal_rank"] > single.metrics()["before"]["reciprocal_rank"]

    def weights(home: Path, name: str) -> dict[str, torch.Tensor]:
        return load_file(str(home / "runs" / "default" / name / "models" / "model" / "model.safetensors"))

    one, four = weights(tmp_path / "single", "one"), weights(tmp_path / "node0", "nodes")
    start = load_file(str(Path(model_dir) / "model.safetensors"))
    assert any(not torch.equal(one[k], start[k]) for k in one), "training changed no weight"
    for key in one:
        torch.testing.assert_close(four[key], one[key], atol=2e-5, rtol=1e-4, msg=key)
