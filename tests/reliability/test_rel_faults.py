"""Faults of the machine, not of the input (the input faults are in catalogue.py and test_rel_bad_*.py):

- kill -9 while the artifact is written: the last checkpoint and an earlier artifact stay loadable, and the run
  resumes to a loadable artifact;
- a full disk (ENOSPC) while a checkpoint is written: a clear error, the last good checkpoint intact;
- a truncated or corrupted checkpoint file: named, and the run resumes from the checkpoint before it;
- two runs started with one name at once: one refuses (also a resume of a run that is still training).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from tests.conftest import make_texts

import finetuner
from finetuner.errors import ArtifactError, ConfigError, StorageError
from finetuner.runs import Run
from finetuner.training import Callback, TrainingCheckpoint
from finetuner.training.checkpoint_files import checkpoint_problem

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("fault_script.py")
SETTINGS = dict(epochs=2, batch_size=8, learning_rate=3e-3, seed=5, device="cpu", verbose=False)


def _start(mode: str, model: str, run_name: str, arg: str, home: Path) -> subprocess.Popen:
    env = {**os.environ, "FINETUNER_HOME": str(home), "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), mode, model, run_name, arg],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    out, _ = process.communicate(timeout=300)
    return process.returncode, out


def test_kill_during_the_artifact_save_keeps_checkpoint_and_artifact_loadable(tiny_bert, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("FINETUNER_HOME", str(home))
    code, out = _finish(_start("kill-in-save", tiny_bert, "killed-in-save", "-", home))
    assert code == -signal.SIGKILL, out[-2000:]
    run = finetuner.get_run("killed-in-save")
    assert run.status()["status"] == "STARTED"  # it died without a word, in the save phase
    last = run.directory / "checkpoints" / "epoch-0001"
    assert checkpoint_problem(last) is None  # the checkpoint before the save is whole
    assert not (run.directory / "models" / "model").exists()  # no half-written model under its final name
    with pytest.raises(ArtifactError):  # the unfinished run says so, instead of loading something partial
        finetuner.get_model(run.directory)

    resumed = finetuner.fit(tiny_bert, make_texts(4), resume_from="killed-in-save", **SETTINGS)
    assert resumed.status()["status"] == "FINISHED"
    artifact = Path(resumed.save_artifact(tmp_path / "out"))
    assert finetuner.encode(finetuner.get_model(artifact), ["apple car"]).shape == (1, 32)
    assert not [p for p in artifact.rglob(".*")], "no staging leftovers copied into the artifact"

    # killed again while copying the artifact over the earlier copy: the earlier one stays whole and loads
    before = finetuner.encode(finetuner.get_model(artifact), ["apple car"])
    code, out = _finish(_start("kill-in-artifact", tiny_bert, "killed-in-save", str(tmp_path / "out"), home))
    assert code == -signal.SIGKILL, out[-2000:]
    again = finetuner.encode(finetuner.get_model(artifact), ["apple car"])
    assert (again == before).all()


def test_a_full_disk_while_checkpointing_is_a_clear_error_and_keeps_the_last_checkpoint(tiny_bert, monkeypatch):
    import safetensors.torch

    real, calls = safetensors.torch.save_model, []

    def fill_the_disk(model, filename, **kwargs):
        calls.append(filename)
        if len(calls) == 2:  # the second checkpoint: the disk fills up halfway through the weights
            Path(filename).write_bytes(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real(model, filename, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(safetensors.torch, "save_model", fill_the_disk)
        with pytest.raises(StorageError) as info:
            finetuner.fit(tiny_bert, make_texts(4), run_name="full-disk", **{**SETTINGS, "epochs": 3})
    message = str(info.value)
    folder = finetuner.get_run("full-disk").directory / "checkpoints"
    assert "cannot write checkpoint epoch-0002" in message and "the disk is full" in message
    assert f"the last good checkpoint, {folder / 'epoch-0001'}, is intact" in message
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0001", "latest.yml"]  # nothing half-written left
    assert checkpoint_problem(folder / "epoch-0001") is None
    run = finetuner.get_run("full-disk")
    assert run.status()["status"] == "FAILED" and "resume_from='full-disk'" in run.status()["details"]
    resumed = finetuner.fit(tiny_bert, make_texts(4), resume_from="full-disk", **{**SETTINGS, "epochs": 3})
    assert resumed.status()["status"] == "FINISHED"


class CrashAfter(Callback):
    _order = 5  # before the checkpoint of that epoch

    def on_epoch_end(self, state):
        if state.epoch + 1 == 3:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_checkpoint_is_named_and_the_one_before_resumes(tiny_bert, damage, caplog):
    name = f"damaged-{damage}"
    options = {**SETTINGS, "epochs": 3}
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetuner.fit(tiny_bert, make_texts(4), run_name=name, callbacks=[TrainingCheckpoint(last_k_epochs=2),
                                                                          CrashAfter()], **options)
    folder = finetuner.get_run(name).directory / "checkpoints"
    victim = folder / "epoch-0002" / ("model.safetensors" if damage == "truncate" else "optimizer.pt")
    raw = bytearray(victim.read_bytes())
    if damage == "truncate":
        victim.write_bytes(raw[: len(raw) // 2])  # a copy cut short
    else:
        raw[len(raw) // 2] ^= 0xFF  # one flipped byte: the size is right, the content is not
        victim.write_bytes(raw)
    problem = checkpoint_problem(folder / "epoch-0002")
    assert problem is not None and str(victim) in problem
    assert ("truncated" if damage == "truncate" else "corrupted") in problem

    # given by path, the damaged checkpoint is refused with its file named and the good one offered
    with pytest.raises(ConfigError) as info:
        finetuner.fit(tiny_bert, make_texts(4), resume_from=str(folder / "epoch-0002"), **options)
    assert str(victim) in str(info.value) and str(folder / "epoch-0001") in str(info.value)
    # by run name, the run resumes from the checkpoint before, and says which file it skipped
    with caplog.at_level("WARNING", logger="finetuner"):
        resumed = finetuner.fit(tiny_bert, make_texts(4), resume_from=name, **options)
    assert resumed.status()["status"] == "FINISHED"
    assert str(victim) in caplog.text and str(folder / "epoch-0001") in caplog.text
    assert "resumed from" in resumed.logs() and "epoch-0001" in resumed.logs()


def test_two_runs_created_with_one_name_at_once_one_refuses(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNER_HOME", str(tmp_path))
    for round_ in range(20):
        barrier, results = threading.Barrier(8), []

        def create(name=f"same-{round_}", barrier=barrier, results=results):
            barrier.wait()
            try:
                Run.create(name, None, {"epochs": 1})
                results.append("created")
            except Exception as exc:
                results.append(exc)

        threads = [threading.Thread(target=create) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count("created") == 1, results
        losers = [r for r in results if r != "created"]
        assert all(isinstance(r, ArtifactError) and "already exists" in str(r) for r in losers), losers


def test_a_second_run_or_resume_of_a_training_run_is_refused(tiny_bert, tmp_path, monkeypatch):
    home, flag = tmp_path / "home", tmp_path / "go"
    monkeypatch.setenv("FINETUNER_HOME", str(home))
    holder = _start("hold", tiny_bert, "busy-run", str(flag), home)
    try:
        deadline = time.monotonic() + 240
        while not Path(f"{flag}.ready").exists():  # trained 2 batches, checkpointed, and waits
            assert holder.poll() is None and time.monotonic() < deadline, holder.communicate()[0][-2000:]
            time.sleep(0.2)
        with pytest.raises(ArtifactError, match="a run named 'busy-run' already exists"):
            finetuner.fit(tiny_bert, make_texts(4), run_name="busy-run", **SETTINGS)
        with pytest.raises(ArtifactError, match=rf"run busy-run .* is in use by process {holder.pid}"):
            finetuner.fit(tiny_bert, make_texts(4), resume_from="busy-run", **SETTINGS)
    finally:
        flag.write_text("go")
        code, out = _finish(holder)
    assert code == 0, out[-3000:]
    run = finetuner.get_run("busy-run")
    assert run.status()["status"] == "FINISHED"  # the refused attempts changed nothing of it
    assert yaml.safe_load((run.directory / "config.yml").read_text())["seed"] == 5
