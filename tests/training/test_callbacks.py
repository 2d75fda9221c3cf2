"""Callbacks: early stopping on a plateau, best-epoch weights restored, per-epoch evaluation, checks before training."""

import numpy as np
import pytest
import torch
import yaml
from tests.conftest import make_texts

import finetuner
from finetuner.callback import (
    BestModelCheckpoint,
    Callback,
    EarlyStopping,
    EvaluationCallback,
    TrainingCheckpoint,
    WiSEFTCallback,
)
from finetuner.config import TrainingConfig
from finetuner.errors import ConfigError, InputTypeError
from finetuner.training.callbacks import prepare_callbacks
from finetuner.training.loop import TrainState

FAST = dict(batch_size=16, learning_rate=3e-3, seed=0, verbose=False)


def _epochs(values, callback, key="val_loss"):
    """Drive ``callback`` through epochs whose monitored value is ``values[i]``; the epochs it ran."""
    state = TrainState(model=torch.nn.Linear(2, 2), config=TrainingConfig(epochs=len(values)))
    callback.on_train_begin(state)
    for epoch, value in enumerate(values):
        state.epoch = epoch
        state.history.append({"epoch": epoch + 1, "loss": 1.0})
        state.metrics[key] = value
        callback.on_epoch_end(state)
        if state.stop:
            break
    return len(state.history)


def test_early_stopping_waits_patience_epochs_on_a_plateau():
    assert _epochs([0.9, 0.5, 0.5, 0.5, 0.5, 0.5], EarlyStopping(patience=2)) == 4
    assert _epochs([0.9, 0.5, 0.49, 0.48, 0.47], EarlyStopping(patience=1)) == 5  # keeps improving
    # improvements smaller than min_delta do not count
    assert _epochs([0.9, 0.5, 0.49, 0.48, 0.47], EarlyStopping(patience=2, min_delta=0.05)) == 4
    # metrics are maximised in 'auto' mode; a baseline must be beaten
    es = EarlyStopping(monitor="precision_at_k", patience=1)
    assert _epochs([0.2, 0.3, 0.3, 0.9], es, "precision_at_k") == 3 and es.stopped_epoch == 3
    assert _epochs([0.5, 0.6], EarlyStopping("precision_at_k", patience=2, baseline=0.7), "precision_at_k") == 2


@pytest.mark.integration
def test_fit_stops_early_on_a_training_loss_plateau(tiny_bert):
    stop = EarlyStopping(monitor="train_loss", patience=1, min_delta=100.0)  # nothing counts as an improvement
    run = finetuner.fit(tiny_bert, make_texts(8), epochs=5, callbacks=[stop], **FAST)
    history = yaml.safe_load((run.directory / "metadata.yml").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2] and stop.stopped_epoch == 2
    assert "EarlyStopping" in run.logs() and run.status()["status"] == "FINISHED"


class ScriptedScore(Callback):
    """Reports a scripted 'score' per epoch and records the weights at each epoch's end."""

    def __init__(self, scores):
        self.scores = scores
        self.weights = []

    def metric_names(self):
        return ["score"]

    def on_epoch_end(self, state):
        state.metrics["score"] = self.scores[state.epoch]
        model = state.accelerator.unwrap_model(state.model)
        self.weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})


@pytest.mark.integration
def test_best_model_checkpoint_keeps_the_best_epochs_weights(tiny_bert):
    scripted = ScriptedScore([0.2, 0.9, 0.4])
    best = BestModelCheckpoint(monitor="score")  # 'auto' maximises a non-loss
    # the user's order puts the checkpoint first; fit runs the measurement before it
    run = finetuner.fit(tiny_bert, make_texts(8), epochs=3, output_dim=8, callbacks=[best, scripted], **FAST)
    assert best.best_epoch == 2 and best.best_value == 0.9
    saved = finetuner.get_model(run.directory)
    for key, value in saved.state_dict().items():
        torch.testing.assert_close(value, scripted.weights[1][key])  # epoch 2, not the last epoch
    assert any(not torch.equal(scripted.weights[1][k], scripted.weights[2][k]) for k in scripted.weights[1])


@pytest.mark.integration
def test_evaluation_callback_records_metrics_per_epoch_and_val_loss(tiny_bert):
    evals = make_texts(6, seed=2)
    evaluation = EvaluationCallback(evals, limit=5, caption="held_out")
    run = finetuner.fit(
        tiny_bert,
        make_texts(12, seed=1),
        evals,
        epochs=2,
        callbacks=[BestModelCheckpoint(), evaluation],  # BestModelCheckpoint() monitors val_loss on eval_data
        **FAST,
    )
    history = yaml.safe_load((run.directory / "metadata.yml").read_text())["history"]
    assert len(history) == 2
    for record in history:
        assert set(evaluation.metric_names()) <= set(record) and "val_loss" in record
        assert 0 <= record["held_out_precision_at_k"] <= 1 and record["val_loss"] >= 0
    # the last epoch's figures equal a fresh evaluation of the saved model at the same k
    fresh = finetuner.evaluate(finetuner.get_model(run.directory), evals, limit=5)
    assert history[-1]["held_out_average_precision"] == pytest.approx(fresh["average_precision"], abs=1e-4)
    assert "epoch 2 evaluation: held_out_precision_at_k=" in run.logs()


@pytest.mark.integration
def test_wiseft_alpha_zero_gives_back_the_pretrained_model(tiny_bert):
    texts = ["apple banana", "car bus"]
    before = finetuner.encode(finetuner.build_model(tiny_bert), texts)
    run = finetuner.fit(tiny_bert, make_texts(8), epochs=1, callbacks=[WiSEFTCallback(alpha=0.0)], **FAST)
    np.testing.assert_allclose(finetuner.encode(finetuner.get_model(run.directory), texts), before, atol=1e-5)


def test_callback_problems_are_reported_before_training():
    evals = make_texts(2)
    with pytest.raises(ConfigError, match="needs eval_data"):
        prepare_callbacks([BestModelCheckpoint()], None)
    with pytest.raises(ConfigError, match=r"'precision_at_kk', which no callback reports.*reported: "):
        prepare_callbacks([EvaluationCallback(evals), EarlyStopping("precision_at_kk")], None)
    with pytest.raises(ConfigError, match="add EvaluationCallback"):
        prepare_callbacks([EarlyStopping("recall_at_k")], None)
    with pytest.raises(InputTypeError, match="pass an instance: EarlyStopping"):
        prepare_callbacks([EarlyStopping], None)
    with pytest.raises(InputTypeError, match=r"callbacks\[1\] is a str"):
        prepare_callbacks([EarlyStopping("train_loss"), "wandb"], None)
    with pytest.raises(ConfigError, match="patience"):
        EarlyStopping(patience=0)
    with pytest.raises(ConfigError, match="alpha"):
        WiSEFTCallback(alpha=1.5)
    with pytest.raises(ConfigError, match="distance"):
        EvaluationCallback(evals, distance="manhattan")
    with pytest.raises(finetuner.DataError):
        prepare_callbacks([EvaluationCallback([])], None)
    from finetuner.training.checkpoint import TrainingCheckpoint as Real

    assert TrainingCheckpoint is Real


def test_running_order_puts_measurements_first_and_loggers_last():
    from finetuner.callback import TensorBoardLogger

    pytest.importorskip("tensorboard")
    evals = make_texts(2)
    user = Callback()
    ordered = prepare_callbacks(
        [TensorBoardLogger(), EarlyStopping("precision_at_k"), user, EvaluationCallback(evals)], None
    )
    assert [type(c).__name__ for c in ordered] == [
        "EvaluationCallback",
        "EarlyStopping",
        "Callback",
        "TensorBoardLogger",
    ]


def test_list_callbacks_has_finetuners_names():
    names = set(finetuner.list_callbacks())
    assert {"EvaluationCallback", "BestModelCheckpoint", "EarlyStopping", "TrainingCheckpoint", "WandBLogger"} <= names
    assert {"MLFlowLogger", "TensorBoardLogger", "WiSEFTCallback"} <= names
