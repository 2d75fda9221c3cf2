"""``fit`` end to end: read and check data, build model and loss, evaluate, train, evaluate, save the run."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetuner.data.datasets import labelled_loader
from finetuner.data.readers import CSVOptions
from finetuner.data.samplers import ClassSampler, RandomBatchSampler
from finetuner.data.tasks import LabelledData, PairData
from finetuner.errors import ConfigError
from finetuner.evaluation.model_eval import evaluate_sets, model_embedder, retrieval_sets
from finetuner.losses import get_loss, get_miner, needs_class_count
from finetuner.models.factory import build_model
from finetuner.models.io import save_model
from finetuner.report import metrics_table
from finetuner.runs import Run, write_yaml
from finetuner.training.checkpoint import TrainingInterrupted, deferred_interrupts
from finetuner.training.config import TrainingConfig
from finetuner.training.loop import Callback, TrainState, make_accelerator, train
from finetuner.training.resume import (
    check_fingerprint,
    checkpoint_callbacks,
    finish_checkpoints,
    resolve_resume,
    resume_hint,
    run_fingerprint,
)
from finetuner.validation import validate_fit

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


def _split(data: LabelledData, val_split: float, seed: int) -> tuple[LabelledData, LabelledData]:
    """Hold out ``val_split`` of each class (classes keep at least 2 training items)."""
    rng = np.random.default_rng(seed)
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
        hints = [
            f"{u!r} (did you mean {closest(u, valid)!r}?)" if closest(u, valid) else repr(u) for u in unknown
        ]
        raise ConfigError(
            f"fit() got unknown option(s) {', '.join(hints)}; valid options: {', '.join(valid)}"
        )
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
    seed = config.seed if config.seed is not None else 0
    _seed_everything(seed)
    train_task, eval_task = checked.train, checked.eval
    train_set, is_pairs = _train_view(train_task)
    if config.val_split > 0:
        train_set, held_out = _split(train_set, config.val_split, seed)
        eval_task = held_out

    built = build_model(
        model, output_dim=config.output_dim, freeze=config.freeze, model_options=model_options
    )
    if getattr(built, "modality", train_set.modality) != train_set.modality:
        raise ConfigError(
            f"the model encodes {built.modality} but train_data holds {train_set.modality} items; choose a "
            f"{train_set.modality} model"
        )
    loss_fn = get_loss(
        config.loss, config.loss_options, embedding_size=built.output_dim, num_classes=len(train_set.classes)
    )
    miner = get_miner(config.miner, config.miner_options)
    accelerator = make_accelerator(config)
    batch_size = config.batch_size or (64 if accelerator.device.type == "cuda" else 32)
    batch_size = min(batch_size, len(train_set))
    sampler_kind = config.sampler
    if sampler_kind == "auto":
        sampler_kind = "random" if needs_class_count(config.loss) else "class"
    if sampler_kind == "class":
        k = 2 if is_pairs else config.num_items_per_class
        batch_sampler: Any = ClassSampler(train_set.labels, batch_size, k, seed=seed)
    else:
        batch_sampler = RandomBatchSampler(len(train_set), batch_size, seed=seed)
    loader = labelled_loader(
        train_set.items,
        train_set.labels,
        getattr(built, "training_preprocess", None) or built.preprocess,  # train-time augmentation, if any
        batch_sampler,
        num_workers=config.num_workers,
        pin_memory=accelerator.device.type == "cuda",
    )

    fingerprint = run_fingerprint(config, batch_size, train_set.items, train_set.labels)
    if checkpoint is not None:
        check_fingerprint(checkpoint, fingerprint)
    if resumed_run is not None:
        run = Run(resumed_run)
    else:
        run = Run.create(config.run_name, config.experiment_name, {**config.to_dict(), "batch_size": batch_size})
    callbacks = checkpoint_callbacks(list(callbacks or []), run, fingerprint, checkpoint)
    handler = logging.FileHandler(run.directory / "logs.txt", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    run.set_status("STARTED")
    try:
        built.to(accelerator.device)
        logger.info(
            "run %s: %d training items, %d classes, batch size %d",
            run.name,
            len(train_set),
            len(train_set.classes),
            batch_size,
        )
        metrics: dict[str, dict[str, float]] = {}
        examples: dict[str, Any] = {}
        embed = model_embedder(built, eval_batch_size)
        if checkpoint is not None and run.metrics().get("before"):  # measured before the run was interrupted
            metrics["before"] = run.metrics()["before"]
            examples["before"] = run.example_results().get("before", [])
        elif eval_task is not None and accelerator.is_main_process:
            sets = retrieval_sets(eval_task)
            metrics["before"], examples["before"] = evaluate_sets(sets, embed, limit=limit)
            logger.info("before: %s", metrics["before"])
            write_yaml(run.directory / "metrics.yml", metrics)
            write_yaml(run.directory / "example-results.yml", examples)
        started = time.perf_counter()
        with deferred_interrupts():  # the first Ctrl-C saves a checkpoint after the current step
            state: TrainState = train(
                built,
                loss_fn,
                loader,
                config,
                miner=miner,
                callbacks=callbacks,
                accelerator=accelerator,
            )
        model_out = accelerator.unwrap_model(state.model)
        logger.info("trained %d epochs in %.1f s", len(state.history), time.perf_counter() - started)
        if accelerator.is_main_process:
            if eval_task is not None:
                metrics["after"], examples["after"] = evaluate_sets(
                    retrieval_sets(eval_task), embed, limit=limit
                )
                logger.info("after: %s", metrics["after"])
            _save_run(run, model_out, metrics, examples, state, to_onnx)
        accelerator.wait_for_everyone()
        run.set_status("FINISHED")
        finish_checkpoints(callbacks)
    except BaseException as exc:
        hint = resume_hint(run, exc)
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


def _save_run(
    run: Run, model: Any, metrics: dict[str, Any], examples: dict[str, Any], state: TrainState, to_onnx: bool
) -> None:
    models_dir = run.directory / "models"
    save_model(model, models_dir / "model")
    write_yaml(models_dir / "input-map.yml", {"model": getattr(model, "modality", "text")})
    write_yaml(run.directory / "metrics.yml", metrics)
    write_yaml(run.directory / "example-results.yml", examples)
    write_yaml(
        run.directory / "metadata.yml",
        {"run_name": run.name, "history": state.history, "finetuner_version": _version()},
    )
    if to_onnx:
        from finetuner.export.onnx import export_onnx

        export_onnx(model, models_dir / "model")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("finetuner")
    except PackageNotFoundError:
        return "unknown"
