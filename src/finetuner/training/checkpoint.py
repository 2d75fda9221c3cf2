"""Resumable checkpoints: ``TrainingCheckpoint`` writes them, ``fit(..., resume_from=...)`` continues from them.

A checkpoint is a folder ``<run>/checkpoints/<name>/`` written under a temporary name and renamed into place
(a crash mid-write leaves no checkpoint that loads), holding:

- ``model.safetensors`` (and ``loss.safetensors`` when the loss has weights, e.g. ArcFace's class centres); for a
  model sharded with FSDP, ``sharded/`` instead: the model's and the optimizer's state, each rank's shards in
  ``torch.distributed.checkpoint``'s format (:mod:`finetuner.training.sharding`);
- ``optimizer.pt``: optimizer, loss optimizer and scheduler state dicts (tensors and plain values only, read back
  with ``torch.load(weights_only=True)``, so loading runs no code);
- ``rng.pt``: the torch, numpy and Python random states;
- ``callbacks.safetensors``: the tensors of the callbacks' states (the best epoch's weights of a
  ``BestModelCheckpoint``), when there are any (:mod:`finetuner.training.callback_state`);
- ``checkpoint.yml`` (written last): epoch, batches done in it, batches trained in the run, the epoch's loss sum,
  history, the callbacks' plain state (``EarlyStopping``'s patience ...), the size and digest of every file above
  (a resume refuses a truncated or corrupted one; :mod:`finetuner.training.checkpoint_files`) and a fingerprint of
  the settings and data, which a resume must match. (Format 1 called the run's batch count ``step`` and the batches
  per epoch ``steps_per_epoch``; format 2 had no callback states or file digests; such checkpoints still resume.)

Each training batch is seeded from ``(seed, batch)`` (see :func:`~finetuner.training.loop.batch_seed`) and the class
sampler is deterministic per ``(seed, epoch)``, so a run resumed after being killed (even with SIGKILL) takes the
same steps and reaches the same weights as a run that was never interrupted (when preprocessing has no random
augmentation; with augmentation it is equivalent but not bit-identical).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from finetuner.distributed import is_sharded
from finetuner.errors import ArtifactError, ConfigError
from finetuner.fileio import atomic_directory, read_yaml, write_yaml
from finetuner.safety import load_torch_file
from finetuner.training.callback_state import load_states, save_states
from finetuner.training.checkpoint_files import CHECKPOINT_FILE, LATEST_FILE, checkpoint_write_errors, file_digests
from finetuner.training.loop import Callback, TrainState
from finetuner.training.rng import rng_states, set_rng_states
from finetuner.training.sharding import SHARDED_DIR, load_sharded, save_sharded
from finetuner.training.zero import is_engine, is_engine_checkpoint, load_engine, save_engine

logger = logging.getLogger("finetuner")

FORMAT = 3


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C after saving a resumable checkpoint (the message says how to resume)."""


class _InterruptFlag:
    """Set by the SIGINT handler of :func:`deferred_interrupts`; read after every training step."""

    requested = False


INTERRUPT = _InterruptFlag()


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[_InterruptFlag]:
    """Turn the first Ctrl-C into a request to stop after the current step (a second one stops at once).

    Only in the main thread (signal handlers cannot be set elsewhere); elsewhere Ctrl-C acts as usual.

    Example:
        >>> with deferred_interrupts() as flag:
        ...     flag.requested
        False
    """
    INTERRUPT.requested = False
    if threading.current_thread() is not threading.main_thread():
        yield INTERRUPT
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if INTERRUPT.requested:  # the second Ctrl-C: stop now
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        INTERRUPT.requested = True
        logger.warning("Ctrl-C: saving a checkpoint after the current step; press Ctrl-C again to stop at once")

    signal.signal(signal.SIGINT, handler)
    try:
        yield INTERRUPT
    finally:
        signal.signal(signal.SIGINT, previous)
        INTERRUPT.requested = False


def save_checkpoint(
    state: TrainState,
    directory: Path,
    name: str,
    *,
    batches_done: int,
    epoch: int,
    extra: dict[str, Any],
    shards: Path | None = None,
) -> Path:
    """Write a checkpoint of ``state`` to ``directory/name`` atomically and point ``latest.yml`` at it; a sharded
    model's (and its optimizer's) state, written by every rank into ``shards``, moves into it as ``sharded/``."""
    from safetensors.torch import save_model

    model = state.accelerator.unwrap_model(state.model) if state.accelerator is not None else state.model
    with checkpoint_write_errors(directory, name), atomic_directory(directory / name) as staging:
        if shards is not None:
            shutil.move(str(shards), str(staging / SHARDED_DIR))
        else:
            save_model(model, str(staging / "model.safetensors"), force_contiguous=True)
        if isinstance(state.loss_fn, torch.nn.Module) and state.loss_fn.state_dict():  # TSDAE's decoder ties weights
            save_model(state.loss_fn, str(staging / "loss.safetensors"), force_contiguous=True)
        torch.save(
            {
                "optimizer": state.optimizer.state_dict() if state.optimizer is not None and not shards else None,
                "loss_optimizer": state.loss_optimizer.state_dict() if state.loss_optimizer is not None else None,
                "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
            },
            staging / "optimizer.pt",
        )
        torch.save(rng_states(), staging / "rng.pt")
        callback_states = save_states(state.callbacks, staging)
        loss_sum = state.epoch_loss_sum
        write_yaml(
            staging / CHECKPOINT_FILE,
            {
                "format": FORMAT,
                "epoch": int(epoch),
                "batches_done": int(batches_done),
                "batches_trained": int(state.batches_trained),
                "batches_per_epoch": int(state.batches_per_epoch),
                "num_processes": int(state.accelerator.num_processes) if state.accelerator is not None else 1,
                "epoch_loss_sum": float(loss_sum) if loss_sum is not None and batches_done else 0.0,
                "last_loss": float(state.last_loss),
                "history": [dict(h) for h in state.history],
                "created": _dt.datetime.now().isoformat(timespec="seconds"),
                "callbacks": callback_states,
                **extra,
                "files": file_digests(staging),  # last: a checkpoint.yml cut short lacks it
            },
        )
    with checkpoint_write_errors(directory, LATEST_FILE):
        write_yaml(directory / LATEST_FILE, {"checkpoint": name})
    return directory / name


def _format_1(meta: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint.yml`` with format 1's names (``step``, ``steps_per_epoch``) given today's."""
    renamed = {"step": "batches_trained", "steps_per_epoch": "batches_per_epoch"}
    return {renamed.get(k, k) if k in renamed and renamed[k] not in meta else k: v for k, v in meta.items()}


def read_checkpoint_meta(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint's ``checkpoint.yml`` (empty when missing), with format 1's names brought up to date.

    Example:
        >>> read_checkpoint_meta(Path('/nonexistent'))
        {}
    """
    try:
        meta = read_yaml(checkpoint / CHECKPOINT_FILE)
    except (yaml.YAMLError, UnicodeDecodeError):  # damaged: checkpoint_files.checkpoint_problem names it
        return {}
    return _format_1(meta) if isinstance(meta, dict) else {}


def is_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a complete checkpoint folder (its ``checkpoint.yml`` is written last)."""
    sharded = path / SHARDED_DIR
    model = (path / "model.safetensors").is_file() or (sharded / ".metadata").is_file() or is_engine_checkpoint(sharded)
    return (path / CHECKPOINT_FILE).is_file() and model


def checkpoints_newest_first(directory: Path) -> list[Path]:
    """The complete checkpoints in a ``checkpoints`` folder, newest first: the one ``latest.yml`` names, then the
    others by how far into the run they were taken.

    Example:
        >>> checkpoints_newest_first(Path('/nonexistent'))
        []
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.glob("*") if p.is_dir() and not p.name.startswith(".") and is_checkpoint(p)]
    found.sort(key=lambda p: int(read_checkpoint_meta(p).get("batches_trained", -1) or -1), reverse=True)
    try:
        pointer = read_yaml(directory / LATEST_FILE)
    except (yaml.YAMLError, UnicodeDecodeError):
        pointer = None
    if isinstance(pointer, dict) and isinstance(pointer.get("checkpoint"), str):
        named = directory / Path(pointer["checkpoint"]).name
        if named in found:
            found.remove(named)
            found.insert(0, named)
    return found


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in a ``checkpoints`` folder (``latest.yml``, else the furthest into the run)."""
    found = checkpoints_newest_first(directory)
    return found[0] if found else None


class TrainingCheckpoint(Callback):
    """Save a resumable checkpoint at the end of every epoch (and every ``save_every_n_steps`` batches).

    Finetuner's callback of the same name; resume with ``finetuner.fit(<same arguments>, resume_from=<run name
    or checkpoint folder>)``. The first Ctrl-C during ``fit`` stops after the current step, saves a checkpoint
    and says how to resume.

    Args:
        last_k_epochs: how many epoch-end checkpoints to keep (older ones are deleted; step checkpoints are
            deleted once a newer checkpoint exists).
        save_every_n_steps: also save every this many batches (None: only at epoch ends); under gradient accumulation
            at the end of the step that reaches such a count, never in the middle of one.
        directory: where to write (default: the run's ``checkpoints`` folder, set by ``fit``).

    Example:
        >>> import finetuner
        >>> from finetuner.training import TrainingCheckpoint
        >>> checkpoints = TrainingCheckpoint(save_every_n_steps=500)
        >>> run = finetuner.fit('bert-base-en', train, callbacks=[checkpoints])  # doctest: +SKIP
        >>> # killed? continue where it stopped:
        >>> run = finetuner.fit('bert-base-en', train, resume_from=run.name)  # doctest: +SKIP
    """

    def __init__(
        self, last_k_epochs: int = 1, save_every_n_steps: int | None = None, directory: str | Path | None = None
    ) -> None:
        if isinstance(last_k_epochs, bool) or not isinstance(last_k_epochs, int) or last_k_epochs < 0:
            raise ConfigError(f"last_k_epochs must be an int >= 0; received {last_k_epochs!r}")
        if save_every_n_steps is not None and (
            isinstance(save_every_n_steps, bool) or not isinstance(save_every_n_steps, int) or save_every_n_steps < 1
        ):
            raise ConfigError(f"save_every_n_steps must be an int >= 1 or None; received {save_every_n_steps!r}")
        self.last_k_epochs = last_k_epochs
        self.save_every_n_steps = save_every_n_steps
        self.directory = Path(directory) if directory is not None else None
        #: settings and data fingerprint recorded in each checkpoint (set by ``fit``)
        self.fingerprint: dict[str, Any] = {}
        #: the run name a resume hint mentions (set by ``fit``)
        self.run_name: str | None = None
        self.last_saved: Path | None = None
        self.automatic = False

    def on_train_begin(self, state: TrainState) -> None:
        if self.directory is None:
            raise ConfigError("TrainingCheckpoint(directory=...) is needed outside fit (fit uses <run>/checkpoints)")

    def _save(self, state: TrainState, name: str, *, epoch: int, batches_done: int) -> None:
        acc = state.accelerator
        assert self.directory is not None
        engine = is_engine(state.model)  # DeepSpeed: its own checkpoint format, every stage
        shards = self.directory / f".{name}.shards" if engine or is_sharded(state.model) else None
        if shards is not None:  # every rank writes its shards, then rank 0 moves them into the checkpoint
            if acc.is_main_process:
                shutil.rmtree(shards, ignore_errors=True)
                shards.parent.mkdir(parents=True, exist_ok=True)
            acc.wait_for_everyone()
            with checkpoint_write_errors(self.directory, name):  # a full disk on any rank fails every rank
                save_engine(shards, state.model) if engine else save_sharded(shards, state.model, state.optimizer)
            acc.wait_for_everyone()
        if acc is None or acc.is_main_process:
            self.last_saved = save_checkpoint(
                state,
                self.directory,
                name,
                batches_done=batches_done,
                epoch=epoch,
                extra={"fingerprint": self.fingerprint},
                shards=shards,
            )
            self._prune()
            logger.info("checkpoint saved: %s", self.last_saved)
        if acc is not None:
            acc.wait_for_everyone()

    def _prune(self) -> None:
        assert self.directory is not None and self.last_saved is not None
        epochs = sorted(p for p in self.directory.glob("epoch-*") if p.is_dir())
        keep = set(epochs[len(epochs) - self.last_k_epochs :] if self.last_k_epochs else [])
        for path in self.directory.iterdir():
            if path.is_dir() and path.name.startswith(".") and path.name.endswith(".shards"):  # left by a crash
                shutil.rmtree(path, ignore_errors=True)
            if path == self.last_saved or path in keep or not path.is_dir() or path.name.startswith("."):
                continue
            if path.name.startswith(("step-", "epoch-", "interrupt-")):
                shutil.rmtree(path, ignore_errors=True)

    def on_batch_end(self, state: TrainState) -> None:
        done = state.batch_in_epoch + 1
        synced = state.synced  # never mid gradient accumulation: a resume would lose the window's gradients
        if INTERRUPT.requested and synced:
            self._save(state, f"interrupt-{state.batches_trained:08d}", epoch=state.epoch, batches_done=done)
            raise TrainingInterrupted(
                f"training interrupted at epoch {state.epoch + 1}, batch {done}/{state.batches_per_epoch} ("
                f"{state.batches_trained} of the run); checkpoint saved at {self.last_saved}. Resume with "
                f"finetuner.fit(<the same arguments>, resume_from={self.run_name or str(self.last_saved)!r})"
            )
        n = self.save_every_n_steps
        crossed = state.batches_trained // n > (state.batches_trained - state.window) // n if n else False
        if crossed and synced and done < state.batches_per_epoch:  # the window that just closed passed a multiple
            self._save(state, f"step-{state.batches_trained:08d}", epoch=state.epoch, batches_done=done)

    def on_epoch_end(self, state: TrainState) -> None:
        if self.automatic and state.epoch + 1 >= state.config.epochs:
            # fit's own safety net skips the last epoch: the run saves its model right after, and removes these
            # checkpoints when it succeeds (a TrainingCheckpoint the user adds saves every epoch)
            return
        if self.last_k_epochs:
            self._save(state, f"epoch-{state.epoch + 1:04d}", epoch=state.epoch + 1, batches_done=0)


class ResumeFromCheckpoint(Callback):
    """Restore a checkpoint into the training state at ``on_train_begin`` (``fit`` puts it first)."""

    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = Path(checkpoint)
        self.meta: dict[str, Any] = read_checkpoint_meta(self.checkpoint)

    def on_train_begin(self, state: TrainState) -> None:
        from safetensors.torch import load_model

        meta, ckpt = self.meta, self.checkpoint
        acc = state.accelerator
        processes = acc.num_processes if acc is not None else 1
        if meta.get("batches_per_epoch") != state.batches_per_epoch or meta.get("num_processes", 1) != processes:
            raise ConfigError(
                f"checkpoint {ckpt} was taken with {meta.get('batches_per_epoch')} batches per epoch on "
                f"{meta.get('num_processes', 1)} process(es); this run has {state.batches_per_epoch} on {processes}. "
                "Resume with the same data, batch_size and number of processes."
            )
        model = acc.unwrap_model(state.model) if acc is not None else state.model
        engine = is_engine(state.model)
        now = "DeepSpeed" if engine else "FSDP" if is_sharded(model) else "neither"
        sharded = ckpt / SHARDED_DIR
        taken = "DeepSpeed" if is_engine_checkpoint(sharded) else "FSDP" if sharded.is_dir() else "neither"
        if taken != now:
            raise ConfigError(
                f"checkpoint {ckpt} was taken under {taken} (FSDP / DeepSpeed shard the model's state) and this run "
                f"is under {now}; resume with the launch configuration the run started with"
            )
        try:
            if engine:
                load_engine(ckpt / SHARDED_DIR, state.model)
            elif is_sharded(model):
                load_sharded(ckpt / SHARDED_DIR, model, state.optimizer)
            else:
                device = str(next(model.parameters()).device)
                load_model(model, str(ckpt / "model.safetensors"), strict=True, device=device)
        except (RuntimeError, OSError, ValueError) as exc:
            raise ArtifactError(f"checkpoint {ckpt} does not fit this model: {str(exc).splitlines()[0]}") from None
        if (ckpt / "loss.safetensors").is_file() and isinstance(state.loss_fn, torch.nn.Module):
            where = str(next(iter(state.loss_fn.state_dict().values())).device)  # the loss's device (tied weights)
            load_model(state.loss_fn, str(ckpt / "loss.safetensors"), strict=True, device=where)
        saved = load_torch_file(ckpt / "optimizer.pt")
        for key, target in (
            ("optimizer", state.optimizer),
            ("loss_optimizer", state.loss_optimizer),
            ("scheduler", state.scheduler),
        ):
            if saved.get(key) is not None and target is not None:
                target.load_state_dict(saved[key])
        if (ckpt / "rng.pt").is_file():
            set_rng_states(load_torch_file(ckpt / "rng.pt"))
        state.epoch = int(meta["epoch"])
        state.batches_trained = int(meta["batches_trained"])
        state.skip_batches = int(meta["batches_done"])
        state.epoch_loss_sum = float(meta.get("epoch_loss_sum", 0.0))
        state.last_loss = float(meta.get("last_loss", float("nan")))
        state.history = [dict(h) for h in meta.get("history", [])]
        load_states(state.callbacks, ckpt, meta.get("callbacks"))
        logger.info(
            "resumed from %s: epoch %d, batch %d (%d of the run)",
            ckpt,
            state.epoch + 1,
            state.skip_batches,
            state.batches_trained,
        )
