"""What a run leaves on disk: files and folders with the modes the umask gives (not the 600/700 of temporary
names), and a ``config.yml`` with the learning rate, seed and schedule the run really used, shown in its report."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml
from tests.conftest import make_texts

import finetuner
from finetuner.training import TrainingCheckpoint


def _modes(root: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"files": set(), "dirs": set()}
    for path in [root, *root.rglob("*")]:
        kind = "dirs" if path.is_dir() else "files"
        found[kind].add(oct(stat.S_IMODE(path.stat().st_mode)))
    return found


@pytest.fixture
def umask_002():
    old = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(old)


def test_saved_runs_artifacts_and_checkpoints_follow_the_umask(tiny_bert, tmp_path, umask_002):
    keep = TrainingCheckpoint(last_k_epochs=2)  # a user's checkpoints stay after the run
    run = finetuner.fit(tiny_bert, make_texts(4), make_texts(2, seed=3), epochs=2, batch_size=8, device="cpu",
                        callbacks=[keep], run_name="umask-run")
    artifact = Path(run.save_artifact(tmp_path / "out"))
    assert (run.directory / "checkpoints" / "epoch-0002" / "model.safetensors").is_file()
    for root in (run.directory, artifact):
        modes = _modes(root)
        assert modes == {"files": {"0o664"}, "dirs": {"0o775"}}, (root, modes)


def test_atomic_writes_follow_the_umask(tmp_path):
    from finetuner.fileio import atomic_directory, atomic_write_bytes, write_yaml

    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        write_yaml(tmp_path / "a.yml", {"a": 1})
        with atomic_directory(tmp_path / "folder") as staging:
            (staging / "inner.txt").write_text("x")
    finally:
        os.umask(old)
    assert {oct(stat.S_IMODE((tmp_path / n).stat().st_mode)) for n in ("a.bin", "a.yml", "folder/inner.txt")} == {
        "0o640"
    }
    assert oct(stat.S_IMODE((tmp_path / "folder").stat().st_mode)) == "0o750"


def test_config_records_the_effective_learning_rate_seed_and_scheduler(tiny_bert):
    run = finetuner.fit(tiny_bert, make_texts(4), make_texts(2, seed=3), epochs=1, batch_size=8, device="cpu",
                        run_name="effective-settings")
    config = yaml.safe_load((run.directory / "config.yml").read_text())
    assert config["learning_rate"] == 1e-5 and config["scheduler"] == "constant"
    assert isinstance(config["seed"], int) and 0 <= config["seed"] < 2**31  # drawn, and recorded
    assert f"seed={config['seed']}" in run.logs()  # the log says how to repeat the run
    page = (run.directory / "report.html").read_text()
    for key, value in (("learning_rate", "1e-05"), ("seed", str(config["seed"])), ("scheduler", "constant")):
        assert f"<tr><td>{key}</td><td>{value}</td></tr>" in page


def test_a_recorded_seed_repeats_the_run(tiny_bert):
    from safetensors.torch import load_file

    first = finetuner.fit(tiny_bert, make_texts(4), epochs=1, batch_size=8, device="cpu", learning_rate=1e-3)
    seed = first.config["seed"]
    again = finetuner.fit(tiny_bert, make_texts(4), epochs=1, batch_size=8, device="cpu", learning_rate=1e-3, seed=seed)
    a, b = (load_file(r.directory / "models" / "model" / "model.safetensors") for r in (first, again))
    assert all((a[k] == b[k]).all() for k in a)
