"""``fit`` end to end: read and check data, build model and loss, evaluate, train, evaluate, save the run."""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetuner import artifacts
from finetuner.config import TrainingConfig
from finetuner.data.readers import CSVOptions
from finetuner.data.tasks import LabelledData, PairData
from finetuner.errors import ConfigError
from finetuner.fileio import read_yaml
from finetuner.losses import resolve_loss
from finetuner.models.factory import build_model
from finetuner.report import metrics_table
from finetuner.runs import Run, new_run_name, runs_root
from finetuner.training.autobatch import auto_start, probe_batch_size
from finetuner.training.callbacks import bind_callbacks, prepare_callbacks
from finetuner.training.checkpoint import CHECKPOINT_FILE, TrainingInterrupted, deferred_interrupts
from finetuner.training.loop import Callback, TrainState, make_accelerator, make_objective, train
from finetuner.training.plan import item_key, plan_clip, plan_labelled, run_evaluations
from finetuner.training.resume import (
    check_fingerprint,
    checkpoint_callbacks,
    finish_checkpoints,
    resolve_resume,
    resume_hint,
    run_fingerprint,
)
from finetuner.validation import data_kind, validate_fit

logger = logging.getLogger("finetuner")

_FIT_ONLY = ("callbacks", "csv_options", "model_options", "to_onnx", "verbose", "eval_batch_size", "limit")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _model_name(model: Any) -> str:
    if isinstance(model, (str, Path)):
        return str(model)
    if isinstance(model, dict):
        return "{" + ", ".join(f"{k}: {_model_name(v)}" for k, v in model.items()) + "}"
    return type(model).__name__


def _split(data: LabelledData | PairData, val_split: float, seed: int) -> tuple[Any, Any]:
    """Hold out ``val_split`` of the data: per class for labelled items (each class keeps 2+ training items),
    at random for pairs."""
    rng = np.random.default_rng(seed)
    if isinstance(data, PairData):
        order = rng.permutation(len(data))
        n_val = min(max(1, round(len(data) * val_split)), len(data) - 2)
        return _take_pairs(data, sorted(order[n_val:])), _take_pairs(data, sorted(order[:n_val]))
    labels = np.asarray(data.labels)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_val = min(round(len(members) * val_split), max(0, len(members) - 2))
        val_idx += members[:n_val].tolist()
        train_idx += members[n_val:].tolist()

    def take(idx: list[int]) -> LabelledData:
        idx = sorted(idx)
        return LabelledData(
            [data.items[i] for i in idx],
            [data.labels[i] for i in idx],
            data.classes,
            [data.ids[i] for i in idx],
            data.modality,
        )

    return take(train_idx), take(val_idx)


def _take_pairs(data: PairData, idx: list[int]) -> PairData:
    return PairData(
        [data.left[i] for i in idx],
        [data.right[i] for i in idx],
        data.left_modality,
        data.right_modality,
        [data.ids[i] for i in idx],
        [data.labels[i] for i in idx] if data.labels is not None else None,
    )


def _train_view(data: LabelledData | PairData) -> tuple[LabelledData, bool]:
    if isinstance(data, PairData):
        return data.as_labelled(), True
    return data, False


def run_fit(
    model: Any,
    train_data: Any,
    eval_data: Any = None,
    *,
    callbacks: Sequence[Callback] | None = None,
    csv_options: CSVOptions | None = None,
    model_options: dict[str, Any] | None = None,
    to_onnx: bool = False,
    verbose: bool = True,
    eval_batch_size: int = 64,
    limit: int = 20,
    resume_from: str | Path | None = None,
    **settings: Any,
) -> Run:
    """Everything ``finetuner.fit`` does (see there); the settings are :class:`TrainingConfig`'s fields.

    Every option and every data item is checked before a model is loaded (:mod:`finetuner.validation`); all
    problems come in one error. ``resume_from`` (a run name, run folder or checkpoint folder) continues a run
    that was killed or interrupted from its last checkpoint, given the same arguments.

    Example:
        >>> run = run_fit('all-MiniLM-L6-v2', [('a', 'x'), ('b', 'x'), ('c', 'y'), ('d', 'y')])  # doctest: +SKIP
    """
    unknown = sorted(set(settings) - set(TrainingConfig.__dataclass_fields__))
    if unknown:
        from finetuner.errors import closest

        valid = [*sorted(set(TrainingConfig.__dataclass_fields__) | set(_FIT_ONLY)), "eval_data", "resume_from"]
        hints = [f"{u!r} (did you mean {closest(u, valid)!r}?)" if closest(u, valid) else repr(u) for u in unknown]
        raise ConfigError(f"fit() got unknown option(s) {', '.join(hints)}; valid options: {', '.join(valid)}")
    for key in (
        "loss_options",
        "miner_options",
        "optimizer_options",
        "scheduler_options",
        "loss_optimizer_options",
    ):
        if settings.get(key) is None:
            settings.pop(key, None)
    config = TrainingConfig(model=_model_name(model), **settings)
    checkpoint, resumed_run, resume_problems = resolve_resume(resume_from)
    # options and data first: every problem surfaces, all at once, before a model is loaded
    fit_only = {"eval_batch_size": eval_batch_size, "limit": limit, "to_onnx": to_onnx, "verbose": verbose}
    checked = validate_fit(
        model,
        train_data,
        eval_data,
        config,
        callbacks=callbacks,
        csv_options=csv_options,
        model_options=model_options,
        fit_only=fit_only,
        extra_problems=resume_problems,
    )
    if to_onnx:
        from finetuner.export.onnx import check_onnx_available

        check_onnx_available()  # before training, not after it
    seed = config.seed if config.seed is not None else 0
    _seed_everything(seed)
    train_task, eval_task = checked.train, checked.eval
    kind = data_kind(train_task)
    # loss='auto' becomes the data's default, which is also what config.yml records
    config = dataclasses.replace(config, loss=resolve_loss(config.loss, kind))
    is_clip = kind == "clip"
    if config.val_split > 0:
        train_task, eval_task = _split(train_task, config.val_split, seed)
    if not is_clip:
        train_set, pairs_as_classes = _train_view(train_task)
    # the callbacks' own data and monitored names are checked before a model is loaded
    callbacks = prepare_callbacks(callbacks, eval_task)

    source = artifacts.model_source(model)  # a saved artifact trains on as its model
    built = build_model(source, output_dim=config.output_dim, freeze=config.freeze, model_options=model_options)
    accelerator = make_accelerator(config)
    if not is_clip and getattr(built, "modality", train_set.modality) != train_set.modality:
        raise ConfigError(
            f"the model encodes {built.modality} but train_data holds {train_set.modality} items; choose a "
            f"{train_set.modality} model"
        )

    def make_plan(config: TrainingConfig) -> Any:
        if is_clip:
            return plan_clip(built, train_task, eval_task, config, accelerator, seed, eval_batch_size)
        return plan_labelled(built, train_set, pairs_as_classes, eval_task, config, accelerator, seed, eval_batch_size)

    if config.batch_size == "auto":
        config, plan = _auto_batch_size(config, make_plan, built, accelerator, checkpoint, len(train_task))
    else:
        plan = make_plan(config)
    batch_size = plan.batch_size
    bind_callbacks(callbacks, plan.loss, plan.embed, batch_size, config.num_items_per_class, seed)
    if is_clip:
        keys = [repr((item_key(a), item_key(b))) for a, b in zip(train_task.left, train_task.right)]
        fingerprint = run_fingerprint(config, batch_size, keys, list(range(len(keys))))
    else:
        fingerprint = run_fingerprint(config, batch_size, train_set.items, train_set.labels)
    if checkpoint is not None:
        check_fingerprint(checkpoint, fingerprint)

    run = _open_run(accelerator, config, {**config.to_dict(), "batch_size": batch_size}, resumed_run)
    callbacks = checkpoint_callbacks(list(callbacks or []), run, fingerprint, checkpoint)
    main = accelerator.is_main_process
    handler: logging.Handler = (
        logging.FileHandler(run.directory / artifacts.LOG_FILE, encoding="utf-8") if main else logging.NullHandler()
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    if main:
        run.set_status("STARTED")
    try:
        built.to(accelerator.device)
        logger.info("run %s: %s", run.name, plan.summary)
        metrics: dict[str, dict[str, float]] = {}
        examples: dict[str, Any] = {}
        if checkpoint is not None and run.metrics().get("before"):  # measured before the run was interrupted
            metrics["before"] = run.metrics()["before"]
            examples["before"] = run.example_results().get("before", [])
        elif plan.evaluations:  # every rank embeds a share; all ranks compute the same figures
            metrics["before"], examples["before"] = run_evaluations(plan, limit)
            logger.info("before: %s", metrics["before"])
            if main:
                artifacts.write_results(run.directory, metrics, examples)
        started = time.perf_counter()
        with deferred_interrupts():  # the first Ctrl-C saves a checkpoint after the current step
            state: TrainState = train(
                built,
                plan.loss,
                plan.loader,
                config,
                miner=plan.miner,
                callbacks=callbacks,
                accelerator=accelerator,
            )
        model_out = accelerator.unwrap_model(state.model)
        logger.info("trained %d epochs in %.1f s", len(state.history), time.perf_counter() - started)
        if plan.evaluations:
            metrics["after"], examples["after"] = run_evaluations(plan, limit)
            logger.info("after: %s", metrics["after"])
        if main:
            _save_run(run, model_out, metrics, examples, state, to_onnx)
        accelerator.wait_for_everyone()
        if main:
            run.set_status("FINISHED")
        finish_checkpoints(callbacks)
    except BaseException as exc:
        hint = resume_hint(run, exc)
        if main:
            run.set_status("FAILED", f"{type(exc).__name__}: {exc}" + (f"\n{hint}" if hint else ""))
        logger.exception("run %s failed%s", run.name, f"; {hint}" if hint else "")
        if hint and hasattr(exc, "add_note") and not isinstance(exc, TrainingInterrupted):
            exc.add_note(hint)
        raise
    finally:
        logger.removeHandler(handler)
        handler.close()
    if verbose and metrics and accelerator.is_main_process:
        print(metrics_table(metrics))
    return run


def _auto_batch_size(
    config: TrainingConfig, make_plan: Any, model: Any, accelerator: Any, checkpoint: Path | None, n_items: int
) -> tuple[TrainingConfig, Any]:
    """``batch_size='auto'``: the size a resumed run used, else the largest that trains in memory (probed)."""
    if checkpoint is not None:  # a resumed run keeps the batch size it started with
        saved = (read_yaml(checkpoint / CHECKPOINT_FILE) or {}).get("fingerprint") or {}
        if _is_size(saved.get("batch_size")):
            config = dataclasses.replace(config, batch_size=int(saved["batch_size"]))
            return config, make_plan(config)
    start = auto_start(accelerator.device.type, n_items)
    plan = make_plan(dataclasses.replace(config, batch_size=start))
    model.to(accelerator.device)
    objective = make_objective(plan.loss, plan.miner).to(accelerator.device)
    found = probe_batch_size(model, objective, plan.loader, plan.batch_size, config, accelerator)
    logger.info("batch_size='auto': %d (tried from %d)", found, plan.batch_size)
    config = dataclasses.replace(config, batch_size=found)
    return config, (plan if found == plan.batch_size else make_plan(config))


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 2


def _open_run(accelerator: Any, config: TrainingConfig, recorded: dict[str, Any], resumed: Path | None) -> Run:
    """Rank 0 creates the run folder (or reopens a resumed one); other ranks get the same run."""
    if resumed is not None:
        return Run(resumed)
    name = config.run_name or new_run_name()
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        name = broadcast_object_list([name])[0]
    if accelerator.is_main_process:
        run = Run.create(name, config.experiment_name, recorded)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        run = Run(runs_root() / (config.experiment_name or "default") / name)
    return run


def _save_run(
    run: Run, model: Any, metrics: dict[str, Any], examples: dict[str, Any], state: TrainState, to_onnx: bool
) -> None:
    folders = artifacts.save_models(run.directory, model)
    artifacts.write_results(run.directory, metrics, examples)
    artifacts.write_run_metadata(run.directory, run.name, state.history)
    if to_onnx:
        from finetuner.export.onnx import export_onnx

        for name, tower in artifacts.model_towers(model).items():
            export_onnx(tower, folders[name])
    from finetuner.report import write_report_safely

    write_report_safely(run.directory)
