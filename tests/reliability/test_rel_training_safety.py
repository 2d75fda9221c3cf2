"""Nothing lost in training: NaN stops cleanly with good weights, Ctrl-C saves a resumable checkpoint, resumes
refuse a different run, checkpoints are atomic and pruned."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
import yaml
from pytorch_metric_learning.losses import TripletMarginLoss
from tests.conftest import make_texts

import finetuner
from finetuner.errors import ConfigError
from finetuner.models import build_model
from finetuner.training import Callback, NonFiniteLossError, TrainingCheckpoint, TrainingInterrupted
from finetuner.training.checkpoint import deferred_interrupts

pytestmark = pytest.mark.integration

TRAIN = make_texts(6, seed=1)  # 24 items, batch 8, 4 per class: 4 batches per epoch
SETTINGS = dict(epochs=2, batch_size=8, learning_rate=3e-3, seed=3, verbose=False)


class NaNAt(torch.nn.Module):
    """A triplet loss that returns NaN on its ``at``-th call."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.calls, self.inner = at, 0, TripletMarginLoss()

    def forward(self, embeddings, labels, tuples=None):
        self.calls += 1
        loss = self.inner(embeddings, labels, tuples)
        return loss * float("nan") if self.calls == self.at else loss


class CtrlCAt(Callback):
    """Press Ctrl-C (a real SIGINT to this process) right after the run's batch ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, state):
        if state.batches_trained == self.step:
            signal.raise_signal(signal.SIGINT)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_nan_loss_stops_before_the_update_and_keeps_the_last_good_checkpoint(tiny_bert):
    model = build_model(tiny_bert)
    saver = TrainingCheckpoint(save_every_n_steps=1)
    with pytest.raises(NonFiniteLossError) as info:
        finetuner.fit(model, TRAIN, loss=NaNAt(5), callbacks=[saver], run_name="nan-run", **SETTINGS)
    message = str(info.value)
    assert "the loss became nan at epoch 2, batch 1 (5 of the run)" in message
    assert "before this step changed the weights" in message
    assert any("last good checkpoint" in note and "resume_from='nan-run'" in note for note in info.value.__notes__)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    run = finetuner.get_run("nan-run")
    assert run.status()["status"] == "FAILED" and "last good checkpoint" in run.status()["details"]
    # the last checkpoint is the end of epoch 1 (step 4), and its weights are the model's weights now
    last = saver.last_saved
    assert last.name == "epoch-0001"
    from safetensors.torch import load_file

    saved = load_file(last / "model.safetensors")
    now = _weights(model)
    assert all(torch.equal(saved[k], now[k]) for k in saved)


def test_ctrl_c_saves_a_checkpoint_that_resumes_to_the_uninterrupted_weights(tiny_bert):
    full = build_model(tiny_bert)
    finetuner.fit(full, TRAIN, run_name="ctrl-c-full", **SETTINGS)
    reference = _weights(full)

    with pytest.raises(TrainingInterrupted) as info:
        finetuner.fit(tiny_bert, TRAIN, callbacks=[CtrlCAt(2)], run_name="ctrl-c", **SETTINGS)
    assert isinstance(info.value, KeyboardInterrupt)
    message = str(info.value)
    assert "interrupted at epoch 1, batch 2/4 (2 of the run)" in message and "resume_from='ctrl-c'" in message
    run = finetuner.get_run("ctrl-c")
    assert run.status()["status"] == "FAILED"
    assert (run.directory / "checkpoints" / "interrupt-00000002" / "checkpoint.yml").is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the Ctrl-C handler is restored"
    # written back as finetuner 0.1.0 wrote checkpoints (format 1: 'step', 'steps_per_epoch'), it resumes alike
    meta_path = run.directory / "checkpoints" / "interrupt-00000002" / "checkpoint.yml"
    meta = yaml.safe_load(meta_path.read_text())
    meta["step"], meta["steps_per_epoch"] = meta.pop("batches_trained"), meta.pop("batches_per_epoch")
    meta_path.write_text(yaml.safe_dump({**meta, "format": 1}, sort_keys=False))

    resumed = finetuner.fit(tiny_bert, TRAIN, resume_from="ctrl-c", **SETTINGS)
    assert resumed.name == "ctrl-c" and resumed.status()["status"] == "FINISHED"
    tuned = finetuner.get_model(resumed.directory)
    got = {k.removeprefix("backbone."): v for k, v in tuned.state_dict().items()}
    worst = max(float((got[k.removeprefix("backbone.")] - v).abs().max()) for k, v in reference.items())
    assert worst <= 1e-6
    assert not (resumed.directory / "checkpoints").exists(), "fit's automatic checkpoints go once the run finishes"


def test_second_ctrl_c_stops_at_once():
    with deferred_interrupts() as flag:
        signal.raise_signal(signal.SIGINT)
        assert flag.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert not flag.requested


def test_resume_with_other_settings_or_data_is_refused(tiny_bert):
    with pytest.raises(TrainingInterrupted):
        finetuner.fit(tiny_bert, TRAIN, callbacks=[CtrlCAt(1)], run_name="to-resume", **SETTINGS)
    with pytest.raises(ConfigError) as info:
        finetuner.fit(tiny_bert, TRAIN[:-1], resume_from="to-resume", **{**SETTINGS, "learning_rate": 1e-3})
    message = str(info.value)
    assert "this run differs from the one that saved it" in message
    assert "learning_rate: checkpoint 0.003, now 0.001" in message
    assert "num_items: checkpoint 24, now 23" in message
    # a device or log_every change is fine: it resumes
    run = finetuner.fit(tiny_bert, TRAIN, resume_from="to-resume", **{**SETTINGS, "log_every": 1, "device": "cpu"})
    assert run.status()["status"] == "FINISHED"


def test_checkpoints_are_pruned_and_resume_from_a_checkpoint_folder(tiny_bert, tmp_path):
    saver = TrainingCheckpoint(last_k_epochs=2, save_every_n_steps=2)
    run = finetuner.fit(tiny_bert, TRAIN, callbacks=[saver], run_name="kept", **{**SETTINGS, "epochs": 3})
    folder = run.directory / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0002", "epoch-0003", "latest.yml"]
    meta = yaml.safe_load((folder / "epoch-0003" / "checkpoint.yml").read_text())
    assert (meta["epoch"], meta["batches_done"], meta["batches_trained"]) == (3, 0, 12)
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3]
    # resuming a finished run from its last checkpoint trains nothing more and gives the same model
    again = finetuner.fit(tiny_bert, TRAIN, resume_from=str(folder / "epoch-0003"), **{**SETTINGS, "epochs": 3})
    assert again.name == "kept"
    a = finetuner.encode(finetuner.get_model(again.directory), ["apple car"])
    from finetuner.models import load_model

    assert a.shape == (1, 32) and load_model(again.directory / "models" / "model") is not None


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous_one(tiny_bert, monkeypatch):
    saver = TrainingCheckpoint(save_every_n_steps=1)
    real = torch.save

    class Crash(Callback):
        def on_batch_end(self, state):
            if state.batches_trained == 2:  # the next checkpoint write dies half-way

                def dying_save(obj, f, *a, **kw):
                    real(obj, f, *a, **kw)
                    raise OSError("disk full")

                monkeypatch.setattr(torch, "save", dying_save)

    with pytest.raises(OSError, match="disk full"):
        finetuner.fit(tiny_bert, TRAIN, callbacks=[Crash(), saver], run_name="half", **SETTINGS)
    folder = finetuner.get_run("half").directory / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["latest.yml", "step-00000001"]
    assert yaml.safe_load((folder / "latest.yml").read_text()) == {"checkpoint": "step-00000001"}
    monkeypatch.setattr(torch, "save", real)
    run = finetuner.fit(tiny_bert, TRAIN, resume_from="half", **SETTINGS)
    assert run.status()["status"] == "FINISHED"


def test_training_checkpoint_arguments_are_checked():
    with pytest.raises(ConfigError, match="save_every_n_steps must be an int >= 1"):
        TrainingCheckpoint(save_every_n_steps=0)
    with pytest.raises(ConfigError, match="last_k_epochs must be an int >= 0"):
        TrainingCheckpoint(last_k_epochs=-1)


def test_loss_instance_is_recorded_by_name(tiny_bert):
    run = finetuner.fit(tiny_bert, TRAIN, loss=TripletMarginLoss(margin=0.1), run_name="instance", **SETTINGS)
    assert run.config["loss"] == "<TripletMarginLoss instance>"
    assert Path(run.save_artifact(Path(run.directory).parent / "out")).is_dir()


def test_cli_resumes_a_run(tiny_bert, tmp_path, capsys):
    import csv

    from finetuner.cli import main

    data = tmp_path / "train.csv"
    with open(data, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *TRAIN])
    common = ["fit", "--model", tiny_bert, "--train-data", str(data), "--epochs", "2", "--batch-size", "8"]
    common += ["--seed", "3", "--output", str(tmp_path / "out")]
    assert main([*common, "--run-name", "cli-kept", "--save-every-n-steps", "2"]) == 0
    assert main([*common, "--resume-from", "no-such-run"]) == 2
    assert "resume_from='no-such-run': no run named" in capsys.readouterr().err
    checkpoint = finetuner.get_run("cli-kept").directory / "checkpoints" / "epoch-0002"
    assert main([*common, "--resume-from", str(checkpoint)]) == 0


class WeightsAt(Callback):
    def __init__(self, step: int) -> None:
        self.step, self.weights = step, None

    def on_batch_end(self, state):
        if state.batches_trained == self.step:
            self.weights = _weights(state.model)


def test_deferred_check_skips_the_bad_update_on_the_device(tiny_bert, monkeypatch):
    """The GPU path (one step late, no stall), run on the CPU: the fused optimizer is told the loss is not finite,
    skips that update itself, and the loop raises at the next step before applying anything more."""
    monkeypatch.setattr("finetuner.training.loop.defers_finite_check", lambda *args: True)
    model = build_model(tiny_bert)
    at_4 = WeightsAt(4)
    with pytest.raises(NonFiniteLossError) as info:
        finetuner.fit(model, TRAIN, loss=NaNAt(5), callbacks=[at_4], run_name="nan-deferred",
                      optimizer_options={"fused": True}, **SETTINGS)
    message = str(info.value)
    assert "the loss became nan at epoch 2, batch 1 (5 of the run)" in message
    assert "its update was skipped on the device" in message
    now = _weights(model)
    assert all(torch.isfinite(v).all() for v in now.values() if v.is_floating_point())
    # step 5 was skipped by the optimizer and step 6 stopped before its update: the weights of step 4
    assert all(torch.equal(at_4.weights[k], now[k]) for k in now)
