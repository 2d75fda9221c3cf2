"""Loggers through accelerate's trackers: TensorBoard events, W&B offline runs, MLflow file store."""

import pytest
import torch
from tests.conftest import make_texts

import finetuner
from finetuner.callback import MLFlowLogger, TensorBoardLogger, WandBLogger
from finetuner.config import TrainingConfig
from finetuner.training.loop import TrainState


def _drive(logger, epochs=2, batches_per_epoch=4):
    """Run ``logger`` through the loop's events with made-up figures."""
    state = TrainState(model=torch.nn.Linear(2, 2), config=TrainingConfig(epochs=epochs, log_every=2, run_name="r1"))
    logger.on_train_begin(state)
    for epoch in range(epochs):
        state.epoch = epoch
        for _ in range(batches_per_epoch):
            state.batches_trained += 1
            state.last_loss = 1.0 / state.batches_trained
            logger.on_batch_end(state)
        state.history.append({"epoch": epoch + 1, "loss": state.last_loss, "precision_at_k": 0.5 + 0.1 * epoch})
        logger.on_epoch_end(state)
    logger.on_train_end(state)


def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run_dir,) = [p for p in log_dir.iterdir() if p.is_dir()]
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, round(e.value, 4)) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_logger_writes_epoch_and_batch_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    _drive(TensorBoardLogger(str(tmp_path / "tb"), metrics_logger_step="batch"))
    scalars = _scalars(tmp_path / "tb")
    assert scalars["precision_at_k"] == [(4, 0.5), (8, 0.6)]
    assert scalars["epoch"] == [(4, 1.0), (8, 2.0)]
    # batch mode: the training loss every log_every=2 steps, and at each epoch's end
    assert [s for s, _ in scalars["train_loss"]] == [2, 4, 4, 6, 8, 8]


@pytest.mark.integration
def test_tensorboard_logger_in_fit(tiny_bert, tmp_path):
    pytest.importorskip("tensorboard")
    finetuner.fit(
        tiny_bert,
        make_texts(8),
        epochs=2,
        batch_size=16,
        verbose=False,
        run_name="tb-run",
        callbacks=[TensorBoardLogger(str(tmp_path / "tb"))],
    )
    assert (tmp_path / "tb" / "tb-run").is_dir()
    assert [s for s, _ in _scalars(tmp_path / "tb")["train_loss"]] == [2, 4]  # 2 batches an epoch


def test_wandb_logger_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path))  # nothing written outside the test's folder
    _drive(WandBLogger(wandb_args={"project": "finetuner-test", "mode": "offline", "dir": str(tmp_path)}))
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_mlflow_logger_file_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 prefers a database; files keep the test light
    uri = (tmp_path / "mlruns").as_uri()
    _drive(MLFlowLogger("finetuner-test", tracking_uri=uri))
    client = mlflow.tracking.MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "finetuner-test"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["precision_at_k"] == pytest.approx(0.6)
    assert run.data.params["epochs"] == "2"


def test_missing_tracking_package_is_named(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(finetuner.ConfigError, match=r"pip install wandb"):
        WandBLogger()
