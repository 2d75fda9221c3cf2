"""Callbacks on 2 CPU processes (gloo): every rank evaluates its share, all take the same decisions, nobody hangs;
the per-epoch figures equal a single-process run's."""

from __future__ import annotations

import time

import pytest
import torch.multiprocessing as mp
import yaml
from tests.conftest import build_tiny_bert, make_texts
from tests.processes import become_rank, free_port
from tests.training.test_two_process_fit import SETTINGS

pytestmark = pytest.mark.integration


def _callbacks():
    from finetuner.callback import BestModelCheckpoint, EarlyStopping, EvaluationCallback

    return [
        EvaluationCallback(make_texts(5, seed=2), limit=5),
        BestModelCheckpoint(monitor="val_loss"),
        EarlyStopping(monitor="precision_at_k", patience=1, min_delta=10.0),  # stops after epoch 2 of 3
    ]


def _rank_main(rank: int, world: int, port: int, model_dir: str, home: str) -> None:
    become_rank(rank, world, port, home)
    import finetuner

    settings = {**SETTINGS, "epochs": 3}
    finetuner.fit(
        model_dir,
        make_texts(6, seed=1),
        make_texts(5, seed=2),
        run_name="ddp-cb",
        device="cpu",
        callbacks=_callbacks(),
        **settings,
    )


def _history(home, name):
    return yaml.safe_load((home / "runs" / "default" / name / "metadata.yml").read_text())["history"]


def test_callbacks_on_two_processes_match_one(tmp_path, monkeypatch):
    import finetuner

    model_dir = str(build_tiny_bert(tmp_path / "bert", dropout=0.0))
    home = tmp_path / "home"
    context = mp.start_processes(
        _rank_main, args=(2, free_port(), model_dir, str(home)), nprocs=2, start_method="spawn", join=False
    )
    deadline = time.monotonic() + 300
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the 2-process run with callbacks did not finish in 300 s (a rank is waiting on another)")
    monkeypatch.setenv("FINETUNER_HOME", str(home))
    run = finetuner.fit(
        model_dir,
        make_texts(6, seed=1),
        make_texts(5, seed=2),
        run_name="one-cb",
        device="cpu",
        callbacks=_callbacks(),
        **{**SETTINGS, "epochs": 3},
    )
    two, one = _history(home, "ddp-cb"), _history(home, "one-cb")
    assert [h["epoch"] for h in two] == [h["epoch"] for h in one] == [1, 2]  # both stopped early after epoch 2
    for a, b in zip(two, one):
        for key in ("val_loss", "precision_at_k", "average_precision"):
            assert a[key] == pytest.approx(b[key], abs=1e-4), key
    assert run.status()["status"] == "FINISHED" and finetuner.get_run("ddp-cb").status()["status"] == "FINISHED"
