"""Experiment loggers (Weights & Biases, MLflow, TensorBoard) through accelerate's trackers.

Each logger records the run's settings at the start, the training loss every ``log_every`` batches (or at each
epoch's end) and every epoch's figures (loss, ``val_loss``, the metrics of an :class:`EvaluationCallback`).
Only the main process logs. The tracking packages are optional: a logger whose package is missing raises a
:class:`~finetuner.errors.ConfigError` naming it when it is created, before any training.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from typing import Any

from finetuner.errors import ConfigError
from finetuner.training.loop import Callback, TrainState

logger = logging.getLogger("finetuner")

STEPS = ("batch", "epoch")


def _require(module: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError as exc:
        raise ConfigError(
            f"this logger needs {module}: pip install {module} (or pip install 'finetuner[{extra}]')"
        ) from exc


def _scalar_config(config: dict[str, Any]) -> dict[str, Any]:
    """Settings flattened to what every tracker stores: bool, int, float or str (dicts and lists as JSON)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, (bool, int, float, str)):
            out[k] = v
        elif v is None:
            out[k] = "None"
        else:
            out[k] = json.dumps(v, default=str, sort_keys=True)
    return out


class TrackerLogger(Callback):
    """Base of the loggers: drives one ``accelerate.tracking.GeneralTracker`` from the loop's events.

    Subclasses implement :meth:`make_tracker`. Any accelerate tracker works the same way.

    Args:
        metrics_logger_step: ``'epoch'`` logs the figures of each epoch; ``'batch'`` logs the training loss every
            ``log_every`` batches as well.

    Example:
        >>> class PrintTracker(TrackerLogger):
        ...     def make_tracker(self, state):
        ...         from accelerate.tracking import GeneralTracker
        ...         class T(GeneralTracker):
        ...             name, requires_logging_directory, tracker = 'print', False, None
        ...             def log(self, values, step=None, **kw):
        ...                 print(step, values)
        ...         return T()
        >>> PrintTracker().metrics_logger_step
        'epoch'
    """

    _order = 30  # after every callback that adds figures

    def __init__(self, metrics_logger_step: str = "epoch") -> None:
        if metrics_logger_step not in STEPS:
            raise ConfigError(f"metrics_logger_step must be 'batch' or 'epoch'; received {metrics_logger_step!r}")
        self.metrics_logger_step = metrics_logger_step
        self.tracker: Any = None

    def make_tracker(self, state: TrainState) -> Any:
        """The accelerate tracker to log to (called on the main process at the start of training)."""
        raise NotImplementedError

    def _is_main(self, state: TrainState) -> bool:
        return state.accelerator is None or state.accelerator.is_main_process

    def on_train_begin(self, state: TrainState) -> None:
        if not self._is_main(state):
            return
        from accelerate import PartialState

        PartialState()  # accelerate's trackers log through its logger, which needs the state (the loop made it)
        self.tracker = self.make_tracker(state)
        if hasattr(self.tracker, "start"):
            self.tracker.start()  # accelerate >= 1.2 starts trackers explicitly
        config = state.config.to_dict() if hasattr(state.config, "to_dict") else {}
        self.tracker.store_init_configuration(_scalar_config(config))

    def on_batch_end(self, state: TrainState) -> None:
        if self.tracker is None or self.metrics_logger_step != "batch":
            return
        every = getattr(state.config, "log_every", 10)
        if state.batches_trained % every == 0:
            values = {"train_loss": state.last_loss}
            if state.scheduler is not None and hasattr(state.scheduler, "get_last_lr"):
                values["learning_rate"] = float(state.scheduler.get_last_lr()[0])
            self.tracker.log(values, step=state.batches_trained)

    def on_epoch_end(self, state: TrainState) -> None:
        if self.tracker is None or not state.history:
            return
        record = {("train_loss" if k == "loss" else k): v for k, v in state.history[-1].items()}
        values = {k: float(v) for k, v in record.items() if isinstance(v, (int, float))}
        self.tracker.log(values, step=state.batches_trained)

    def on_train_end(self, state: TrainState) -> None:
        if self.tracker is not None:
            self.tracker.finish()
            self.tracker = None


class WandBLogger(TrackerLogger):
    """Log to Weights & Biases (Finetuner's ``WandBLogger``); ``wandb_args={'mode': 'offline'}`` logs locally.

    Without W&B credentials (no ``WANDB_API_KEY``, no ``wandb login`` entry in ``~/.netrc``) and no mode chosen,
    the logger runs offline and says so when it is created: Finetuner logged such runs in W&B's anonymous mode,
    which W&B has since retired, and an online run without a key would stop training at its start. Upload an offline
    run later with ``wandb sync <its folder>``, or log in (``wandb login``) before ``fit`` to log online.

    Args:
        metrics_logger_step: ``'epoch'`` or ``'batch'`` (see :class:`TrackerLogger`).
        wandb_args: keyword arguments of ``wandb.init`` (``project``, ``name``, ``mode``, ``dir``, ``tags`` ...).

    Example:
        >>> from finetuner.callback import WandBLogger
        >>> logger = WandBLogger(wandb_args={'project': 'finetuner', 'mode': 'offline'})  # doctest: +SKIP
    """

    def __init__(self, metrics_logger_step: str = "epoch", wandb_args: dict[str, Any] | None = None) -> None:
        super().__init__(metrics_logger_step)
        _require("wandb", "wandb")
        self.wandb_args = dict(wandb_args or {})
        mode = self.wandb_args.get("mode") or os.environ.get("WANDB_MODE")
        if mode is None and not wandb_credentials_found():
            self.wandb_args["mode"] = "offline"
            message = (
                "WandBLogger: no W&B credentials (WANDB_API_KEY or `wandb login`), so the run is logged offline into "
                "./wandb; upload it later with `wandb sync <run folder>`, or run `wandb login` first to log online "
                "(Finetuner used W&B's retired anonymous mode here)"
            )
            warnings.warn(message, UserWarning, stacklevel=2)
            logger.warning(message)

    def make_tracker(self, state: TrainState) -> Any:
        from accelerate.tracking import WandBTracker

        args = dict(self.wandb_args)
        project = args.pop("project", None) or "finetuner"
        return WandBTracker(project, **args)

    def __repr__(self) -> str:
        return f"WandBLogger(metrics_logger_step={self.metrics_logger_step!r})"


def wandb_credentials_found() -> bool:
    """Whether W&B will find credentials: ``WANDB_API_KEY``, an identity token file, or a ``~/.netrc`` (``NETRC``)
    entry for the W&B host (``WANDB_BASE_URL``, default api.wandb.ai), which ``wandb login`` writes.

    Example:
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {'WANDB_API_KEY': 'k' * 40}):
        ...     wandb_credentials_found()
        True
        >>> with mock.patch.dict(os.environ, {'NETRC': '/nonexistent'}, clear=True):
        ...     wandb_credentials_found()
        False
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    import netrc
    import urllib.parse

    host = urllib.parse.urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


class MLFlowLogger(TrackerLogger):
    """Log to MLflow (Finetuner's ``MLFlowLogger``).

    Args:
        experiment: the MLflow experiment name.
        tracking_uri: where MLflow stores runs (a ``file:`` path, a database URI or a server URL; default
            MLflow's own, ``./mlruns``).
        run_name: the MLflow run's name.
        metrics_logger_step: ``'epoch'`` or ``'batch'``.

    Example:
        >>> from finetuner.callback import MLFlowLogger
        >>> logger = MLFlowLogger('my-experiment', tracking_uri='file:./mlruns')  # doctest: +SKIP
    """

    def __init__(
        self,
        experiment: str = "finetuner",
        tracking_uri: str | None = None,
        run_name: str | None = None,
        metrics_logger_step: str = "epoch",
    ) -> None:
        super().__init__(metrics_logger_step)
        _require("mlflow", "mlflow")
        self.experiment = experiment
        self.tracking_uri = tracking_uri
        self.run_name = run_name

    def make_tracker(self, state: TrainState) -> Any:
        import mlflow
        from accelerate.tracking import MLflowTracker

        if self.tracking_uri:
            mlflow.set_tracking_uri(self.tracking_uri)
        return MLflowTracker(experiment_name=self.experiment, run_name=self.run_name or state.config.run_name)

    def __repr__(self) -> str:
        return f"MLFlowLogger(experiment={self.experiment!r}, tracking_uri={self.tracking_uri!r})"


class TensorBoardLogger(TrackerLogger):
    """Write TensorBoard event files into ``log_dir/<run name>`` (view with ``tensorboard --logdir log_dir``).

    Args:
        log_dir: the TensorBoard log folder.
        run_name: the sub-folder of this run (default the run name, else ``'finetuner'``).
        metrics_logger_step: ``'epoch'`` or ``'batch'``.

    Example:
        >>> from finetuner.callback import TensorBoardLogger
        >>> TensorBoardLogger('tb-logs').log_dir
        'tb-logs'
    """

    def __init__(
        self, log_dir: str = "tensorboard", run_name: str | None = None, metrics_logger_step: str = "epoch"
    ) -> None:
        super().__init__(metrics_logger_step)
        _require("tensorboard", "tensorboard")
        self.log_dir = str(log_dir)
        self.run_name = run_name

    def make_tracker(self, state: TrainState) -> Any:
        from accelerate.tracking import TensorBoardTracker

        name = self.run_name or state.config.run_name or "finetuner"
        return TensorBoardTracker(name, self.log_dir)

    def __repr__(self) -> str:
        return f"TensorBoardLogger(log_dir={self.log_dir!r})"
