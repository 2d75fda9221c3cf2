"""Callbacks that act on the weights: keep the best epoch's, stop early."""

from __future__ import annotations

import logging
from typing import Any

import torch

from finetuner.errors import ConfigError
from finetuner.training.callbacks.monitoring import check_monitor, improved, monitored_value, resolve_mode, unwrapped
from finetuner.training.loop import Callback, TrainState

logger = logging.getLogger("finetuner")


def _trainable_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of what training can change: the trainable parameters and every buffer (batch-norm statistics)."""
    keep = {n for n, p in model.named_parameters() if p.requires_grad} | {n for n, _ in model.named_buffers()}
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items() if k in keep}


def _restore(model: torch.nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        state = model.state_dict()
        for k, v in snapshot.items():
            state[k].copy_(v.to(state[k].device))


class BestModelCheckpoint(Callback):
    """Keep the weights of the best epoch; when training ends the model holds them, so the run saves the best model.

    Finetuner's ``BestModelCheckpoint``. The weights that training changes are copied to CPU memory at each new
    best (frozen parameters are shared, not copied).

    Args:
        monitor: ``'val_loss'`` (the loss on ``eval_data``), ``'train_loss'``, or a metric of an
            :class:`EvaluationCallback` (``'precision_at_k'``, ...).
        mode: ``'min'``, ``'max'`` or ``'auto'`` (minimise losses, maximise metrics).
        verbose: log every new best.

    Attributes:
        best_epoch: the 1-based epoch whose weights are kept (None before the first epoch ends).
        best_value: the monitored value at that epoch.

    Example:
        >>> from finetuner.callback import BestModelCheckpoint
        >>> BestModelCheckpoint(monitor='precision_at_k').mode
        'max'
    """

    _order = 10

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", verbose: bool = False) -> None:
        self.monitor = check_monitor(monitor, "BestModelCheckpoint")
        self.mode = resolve_mode(monitor, mode)
        self.verbose = verbose
        self.best_epoch: int | None = None
        self.best_value: float | None = None
        self._snapshot: dict[str, torch.Tensor] | None = None

    def on_train_begin(self, state: TrainState) -> None:
        self.best_epoch, self.best_value, self._snapshot = None, None, None

    def on_epoch_end(self, state: TrainState) -> None:
        value = monitored_value(state, self.monitor, "BestModelCheckpoint")
        if improved(value, self.best_value, self.mode):
            self.best_value, self.best_epoch = value, state.epoch + 1
            self._snapshot = _trainable_snapshot(unwrapped(state))
            (logger.info if self.verbose else logger.debug)(
                "BestModelCheckpoint: new best %s=%.4f at epoch %d", self.monitor, value, self.best_epoch
            )

    def on_train_end(self, state: TrainState) -> None:
        if self._snapshot is None:
            return
        last_epoch = state.history[-1]["epoch"] if state.history else None
        if last_epoch != self.best_epoch:
            _restore(unwrapped(state), self._snapshot)
        logger.info(
            "BestModelCheckpoint: keeping the weights of epoch %s (%s=%.4f)",
            self.best_epoch,
            self.monitor,
            self.best_value,
        )
        self._snapshot = None  # free the copy

    def state_dict(self) -> dict[str, Any]:
        """The best epoch, its value and its weights (a checkpoint saves them, so a resumed run keeps its best).

        Example:
            >>> BestModelCheckpoint(monitor='train_loss').state_dict()
            {'best_epoch': None, 'best_value': None, 'weights': None}
        """
        return {"best_epoch": self.best_epoch, "best_value": self.best_value, "weights": self._snapshot}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave (``fit`` does it when resuming)."""
        self.best_epoch, self.best_value = state.get("best_epoch"), state.get("best_value")
        self._snapshot = state.get("weights") or None

    def __repr__(self) -> str:
        return f"BestModelCheckpoint(monitor={self.monitor!r}, mode={self.mode!r})"


class EarlyStopping(Callback):
    """Stop training when the monitored value has not improved for ``patience`` epochs (Finetuner's names).

    Args:
        monitor: ``'val_loss'``, ``'train_loss'`` or a metric of an :class:`EvaluationCallback`.
        mode: ``'min'``, ``'max'`` or ``'auto'`` (minimise losses, maximise metrics).
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        baseline: a value to beat; training stops if ``patience`` epochs pass without beating it.
        verbose: log each check.

    Attributes:
        stopped_epoch: the 1-based epoch after which training stopped (None if it ran to the end).

    Example:
        >>> from finetuner.callback import EarlyStopping
        >>> EarlyStopping(monitor='train_loss', patience=3).mode
        'min'
    """

    _order = 10

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        patience: int = 2,
        min_delta: float = 0,
        baseline: float | None = None,
        verbose: bool = False,
    ) -> None:
        self.monitor = check_monitor(monitor, "EarlyStopping")
        self.mode = resolve_mode(monitor, mode)
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ConfigError(f"EarlyStopping(patience={patience!r}): patience must be an int >= 1")
        if not isinstance(min_delta, (int, float)) or min_delta < 0:
            raise ConfigError(f"EarlyStopping(min_delta={min_delta!r}): min_delta must be a number >= 0")
        self.patience = patience
        self.min_delta = float(min_delta)
        self.baseline = baseline
        self.verbose = verbose
        self.stopped_epoch: int | None = None
        self._best: float | None = baseline
        self._wait = 0

    def on_train_begin(self, state: TrainState) -> None:
        self._best, self._wait, self.stopped_epoch = self.baseline, 0, None

    def on_epoch_begin(self, state: TrainState) -> None:
        if self.stopped_epoch is not None:  # stopped before a resume: the run stays stopped
            state.stop = True

    def state_dict(self) -> dict[str, Any]:
        """The best value so far, the epochs without improvement and the epoch it stopped after (a checkpoint saves
        them, so a resumed run keeps its patience).

        Example:
            >>> EarlyStopping(monitor='train_loss').state_dict()
            {'best': None, 'wait': 0, 'stopped_epoch': None}
        """
        return {"best": self._best, "wait": self._wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave (``fit`` does it when resuming)."""
        self._best, self._wait = state.get("best", self.baseline), int(state.get("wait", 0))
        self.stopped_epoch = state.get("stopped_epoch")

    def on_epoch_end(self, state: TrainState) -> None:
        value = monitored_value(state, self.monitor, "EarlyStopping")
        if improved(value, self._best, self.mode, self.min_delta):
            self._best, self._wait = value, 0
        else:
            self._wait += 1
        if self.verbose:
            logger.info(
                "EarlyStopping: %s=%.4f, best %s, %d epoch(s) without improvement",
                self.monitor,
                value,
                self._best,
                self._wait,
            )
        if self._wait >= self.patience:
            state.stop = True
            self.stopped_epoch = state.epoch + 1
            logger.info(
                "EarlyStopping: %s has not improved for %d epoch(s); stopping after epoch %d",
                self.monitor,
                self._wait,
                self.stopped_epoch,
            )

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(monitor={self.monitor!r}, mode={self.mode!r}, patience={self.patience}, "
            f"min_delta={self.min_delta})"
        )
