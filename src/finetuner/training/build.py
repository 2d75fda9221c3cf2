"""``fit``'s third phase: build what the plan needs, the model first, then the loss, the loader and the embedder.

:func:`build` gives a :class:`BuiltFit`. ``batch_size='auto'`` becomes a number here (the size a resumed run used,
or the largest that trains in memory, measured on the built model); the callbacks that measure the run get the
loss and the embedder; the run's fingerprint is taken, and a resume is refused when it differs from the
checkpoint's.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from finetuner import artifacts
from finetuner.config import TrainingConfig
from finetuner.data.datasets import PairCollate, RowCollate, labelled_loader, pair_loader, row_loader
from finetuner.data.groups import item_key
from finetuner.data.length_sampler import LengthBucketPairSampler
from finetuner.data.samplers import ClassSampler, PairBatchSampler, RandomBatchSampler
from finetuner.data.shapes import RowData
from finetuner.data.streamed import StreamedData
from finetuner.errors import ConfigError
from finetuner.evaluation.embedders import Embedder, embedder_for
from finetuner.fileio import read_yaml
from finetuner.losses import get_loss, get_miner
from finetuner.losses.step_loss import PairObjective, ScoredObjective, TripletObjective
from finetuner.models import build_model
from finetuner.models.adapters import apply_adapter, base_reference, parameter_counts
from finetuner.models.clip import TwoTowerModel
from finetuner.training.autobatch import auto_start, probe_batch_size
from finetuner.training.callbacks import bind_callbacks
from finetuner.training.check import CheckedFit
from finetuner.training.checkpoint import CHECKPOINT_FILE
from finetuner.training.denoising import prepare_denoising
from finetuner.training.distill import prepare_distillation, prepare_margin_distillation
from finetuner.training.loop import make_accelerator, make_objective
from finetuner.training.plan import FitPlan
from finetuner.training.resume import check_fingerprint, run_fingerprint
from finetuner.training.streaming import streamed_loaders
from finetuner.training.unsupervised import check_views_differ

logger = logging.getLogger("finetuner")

#: a loader for a given global batch size
LoaderFactory = Callable[[int], torch.utils.data.DataLoader]


@dataclass
class BuiltFit:
    """What the train phase runs: the model, the accelerator, the loss (a metric loss, or for two towers a pair
    objective) and miner, the loader, the evaluation embedder, the settings with the batch size measured, and the
    fingerprint a checkpoint records."""

    model: nn.Module
    accelerator: Any
    config: TrainingConfig
    loss: nn.Module
    miner: nn.Module | None
    loader: torch.utils.data.DataLoader
    embed: Embedder
    fingerprint: dict[str, Any]


def build(checked: CheckedFit, fit_plan: FitPlan) -> BuiltFit:
    """Build the run (see the module docstring); the model is loaded here, after every check has passed.

    Example:
        >>> built = build(checked, plan(checked))  # doctest: +SKIP
        >>> built.config.batch_size, type(built.loss).__name__  # doctest: +SKIP
        (32, 'TripletMarginLoss')
    """
    config, options = checked.config, checked.options
    seed_everything(checked.seed)
    source = artifacts.model_source(checked.model)  # a saved artifact trains on as its model
    model = build_model(source, output_dim=config.output_dim, freeze=config.freeze, model_options=options.model_options)
    if config.adapter:  # LoRA: the backbone freezes, the adapter (and a head) train; the artifact names its base
        build_args = {"output_dim": config.output_dim, "model_options": options.model_options}
        apply_adapter(model, config.adapter, config.adapter_options, base=base_reference(source), build=build_args)
        trainable, total = parameter_counts(model)
        logger.info("adapter %s: %d of %d parameters train", config.adapter, trainable, total)
    accelerator = make_accelerator(config)
    check_views_differ(model, config.loss, options.model_options)  # SimCSE's from dropout, SimCLR's augmentation
    _check_model_fits(model, fit_plan)
    miner = None
    if fit_plan.task == "clip":
        clip_options = clip_loss_options(model, config.loss_options)
        loss: nn.Module = PairObjective(get_loss("CLIPLoss", clip_options, embedding_size=model.output_dim))
    elif fit_plan.task == "triplets":
        num_negatives = checked.train.num_negatives  # type: ignore[union-attr]  # triplet data
        row_loss = get_loss(config.loss, config.loss_options, embedding_size=model.output_dim)
        prepare_margin_distillation(row_loss, fit_plan.train, accelerator)  # type: ignore[arg-type]  # RowData
        loss = TripletObjective(row_loss, num_negatives)
    elif fit_plan.task == "scored":
        loss = ScoredObjective(get_loss(config.loss, config.loss_options, embedding_size=model.output_dim))
    else:
        n_classes = len(fit_plan.train.classes)  # type: ignore[union-attr]  # labelled data in a metric run
        loss = get_loss(config.loss, config.loss_options, embedding_size=model.output_dim, num_classes=n_classes)
        miner = get_miner(config.miner, config.miner_options)
        items = getattr(fit_plan.train, "items", None)  # None for streamed data (read batch by batch)
        prepare_distillation(loss, items, model.output_dim, accelerator)
        damaged = prepare_denoising(loss, model, items, checked.seed)  # TSDAE: the model embeds damaged texts
        if damaged is not None:
            fit_plan = dataclasses.replace(fit_plan, train=dataclasses.replace(fit_plan.train, items=damaged))
    make_loader = _loader_factory(model, fit_plan, config, accelerator, checked.seed)
    loader = None
    if config.batch_size == "auto":
        config, loader = _measure_batch_size(config, make_loader, model, (loss, miner), accelerator, checked)
    loader = loader or make_loader(int(config.batch_size))  # type: ignore[arg-type]  # a number from here on
    embed = embedder_for(model, options.eval_batch_size)
    bind_callbacks(checked.callbacks, loss, embed, int(config.batch_size), config.num_items_per_class, checked.seed)
    fingerprint = run_fingerprint(config, int(config.batch_size), fit_plan.train)
    if isinstance(fit_plan.train, StreamedData):  # its digest, taken in the index pass, stands for its items
        fingerprint.update(data=fit_plan.train.digest, num_items=len(fit_plan.train))
    if checked.checkpoint is not None:
        check_fingerprint(checked.checkpoint, fingerprint)
    return BuiltFit(model, accelerator, config, loss, miner, loader, embed, fingerprint)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's random generators.

    Example:
        >>> seed_everything(0); a = torch.rand(1); seed_everything(0); bool(torch.rand(1) == a)
        True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def clip_loss_options(model: Any, options: dict[str, Any] | None) -> dict[str, Any]:
    """``CLIPLoss`` options: the user's, with the temperature the pretrained model was trained with (open_clip
    models keep it as ``logit_scale``) unless the user set one; other models start at CLIP's 0.07.

    Example:
        >>> from types import SimpleNamespace
        >>> clip_loss_options(SimpleNamespace(temperature=0.01), None)
        {'temperature': 0.01}
        >>> clip_loss_options(SimpleNamespace(temperature=0.01), {'temperature': 0.05})
        {'temperature': 0.05}
    """
    out = dict(options or {})
    temperature = getattr(model, "temperature", None)
    if temperature is not None and "temperature" not in out:
        out["temperature"] = float(temperature)
    return out


def _check_model_fits(model: Any, fit_plan: FitPlan) -> None:
    """Text-image pairs train a two-tower model; labelled items a model of their modality."""
    if fit_plan.task == "clip":
        if not isinstance(model, TwoTowerModel):
            raise ConfigError(
                "text-image pairs train a two-tower model: a CLIP model ('clip-base-en', "
                "'openai/clip-vit-base-patch32') or model={'text': TEXT_MODEL, 'vision': VISION_MODEL}; received a "
                f"single {getattr(model, 'modality', type(model).__name__)} model"
            )
        return
    modality = fit_plan.train.modality  # type: ignore[union-attr]  # labelled data in a metric run
    if getattr(model, "modality", modality) != modality:
        raise ConfigError(
            f"the model encodes {model.modality} but train_data holds {modality} items; choose a {modality} model"
        )
    check_items = getattr(model, "check_items", None)  # a model that can tell unusable items up front (mlp's size)
    if callable(check_items):
        check_items(fit_plan.train.items)  # type: ignore[union-attr]
    if fit_plan.sampler == "length" and not hasattr(model, "pretokenize"):
        raise ConfigError("sampler='length' batches text pairs of similar length; this run has no text pairs")


def _training_inputs(model: Any, items: list[Any], device: str, **options: Any) -> tuple[Any, Any]:
    """The items as the train loader holds them and the collate-time preprocessing: the model's own
    ``training_inputs`` (texts tokenised once into batches of bounded shapes, images decoded once when they fit;
    see docs/performance.md), else the items and ``preprocess`` per batch."""
    if hasattr(model, "training_inputs"):
        return model.training_inputs(items, device, **options)
    if hasattr(model, "pretokenize"):  # open_clip's text tower: fixed-length tokens
        return model.pretokenize(items), model.collate_tokens
    return items, getattr(model, "training_preprocess", None) or model.preprocess


def _loader_factory(
    model: Any, fit_plan: FitPlan, config: TrainingConfig, accelerator: Any, seed: int
) -> LoaderFactory:
    """Loaders of the planned data and sampler for any batch size (the items are prepared once)."""
    shard = {"rank": accelerator.process_index, "world_size": accelerator.num_processes}
    device = accelerator.device.type
    workers, pin = config.workers(device), device == "cuda"
    data = fit_plan.train
    if isinstance(data, StreamedData):
        args = (fit_plan.sampler, fit_plan.items_per_class, seed, shard, workers, pin, device)
        return streamed_loaders(model, data, *args)
    if isinstance(data, RowData):
        return _row_loaders(model, data, fit_plan, device, workers, pin, seed, shard)
    if fit_plan.task == "clip":
        # the captions of a two-tower batch as one padded block: the gradient cache cuts its pairs by rows
        left, text_preprocess = _training_inputs(
            model.text, data.left, device, num_workers=workers, max_groups=1  # type: ignore[union-attr]
        )
        right, image_preprocess = _training_inputs(
            model.vision, data.right, device, num_workers=workers  # type: ignore[union-attr]
        )
        collate = PairCollate(text_preprocess, image_preprocess)
        left_keys = [item_key(t) for t in data.left]  # type: ignore[union-attr]
        right_keys = [item_key(i) for i in data.right]  # type: ignore[union-attr]

        def pairs(batch_size: int) -> torch.utils.data.DataLoader:
            sampler = PairBatchSampler(left_keys, right_keys, batch_size, seed=seed, **shard)
            return pair_loader(left, right, collate, sampler, workers, pin_memory=pin)

        return pairs
    items, preprocess = _training_inputs(model, data.items, device, num_workers=workers)  # type: ignore[union-attr]
    labels = data.labels  # type: ignore[union-attr]

    def labelled(batch_size: int) -> torch.utils.data.DataLoader:
        if fit_plan.sampler == "length":
            lengths = [len(row["input_ids"]) for row in items]
            sampler: Any = LengthBucketPairSampler(lengths, batch_size, seed=seed, labels=labels, **shard)
        elif fit_plan.sampler == "class":
            sampler = ClassSampler(labels, batch_size, fit_plan.items_per_class, seed=seed, **shard)
        else:
            sampler = RandomBatchSampler(len(labels), batch_size, seed=seed, **shard)
        return labelled_loader(items, labels, preprocess, sampler, workers, pin_memory=pin)

    return labelled


def _row_loaders(
    model: Any, data: RowData, fit_plan: FitPlan, device: str, workers: int, pin: bool, seed: int, shard: dict
) -> LoaderFactory:
    """Loaders of triplet rows (one row of a duplicate group per batch) or scored pairs (random batches); a batch of
    ``batch_size`` rows is embedded as one flat batch of their items, column by column."""
    items, preprocess = _training_inputs(model, data.items, device, num_workers=workers)
    collate = RowCollate(preprocess, scores=fit_plan.task == "scored")
    first, second = [row[0] for row in data.rows], [row[1] for row in data.rows]

    def rows(batch_size: int) -> torch.utils.data.DataLoader:
        if fit_plan.sampler == "pairs":
            sampler: Any = PairBatchSampler(first, second, batch_size, seed=seed, groups=data.groups, **shard)
        else:
            sampler = RandomBatchSampler(len(data), batch_size, seed=seed, **shard)
        return row_loader(items, data.rows, data.targets, collate, sampler, workers, pin_memory=pin)

    return rows


def _measure_batch_size(
    config: TrainingConfig,
    make_loader: LoaderFactory,
    model: nn.Module,
    loss_and_miner: tuple[nn.Module, nn.Module | None],
    accelerator: Any,
    checked: CheckedFit,
) -> tuple[TrainingConfig, torch.utils.data.DataLoader | None]:
    """``batch_size='auto'``: the size a resumed run used, else the largest that trains in memory (probed from
    :func:`~finetuner.training.autobatch.auto_start`); with the probe's loader when it is the one to train with."""
    if checked.checkpoint is not None:  # a resumed run keeps the batch size it started with
        saved = (read_yaml(checked.checkpoint / CHECKPOINT_FILE) or {}).get("fingerprint") or {}
        if _is_size(saved.get("batch_size")):
            return dataclasses.replace(config, batch_size=int(saved["batch_size"])), None
    start = auto_start(accelerator.device.type, len(checked.train))
    loader = make_loader(start)
    model.to(accelerator.device)
    objective = make_objective(*loss_and_miner).to(accelerator.device)
    found = probe_batch_size(model, objective, loader, start, config, accelerator)
    logger.info("batch_size='auto': %d (tried from %d)", found, start)
    return dataclasses.replace(config, batch_size=found), (loader if found == start else None)


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 2
