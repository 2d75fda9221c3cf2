"""How a run trains and evaluates, by task: labelled items (metric learning) or CLIP pairs (two towers)."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from finetuner.data.datasets import PairCollate, labelled_loader, pair_loader
from finetuner.data.samplers import ClassSampler, LengthBucketPairSampler, PairBatchSampler, RandomBatchSampler
from finetuner.data.tasks import LabelledData, PairData
from finetuner.errors import ConfigError, DataError
from finetuner.evaluation.model_eval import Embedder, RetrievalSets, evaluate_sets, model_embedder, retrieval_sets
from finetuner.losses import get_loss, get_miner, needs_class_count, resolve_loss
from finetuner.losses.objective import PairObjective
from finetuner.models.clip import TwoTowerModel
from finetuner.training.config import TrainingConfig


@dataclass
class Plan:
    """Everything the loop and the evaluations need for one run."""

    loader: torch.utils.data.DataLoader
    loss: nn.Module
    miner: nn.Module | None
    batch_size: int
    summary: str
    embed: Embedder
    #: (metric-name prefix, retrieval sets): '' for the main direction, 'image_to_text/' for CLIP's other one
    evaluations: list[tuple[str, RetrievalSets]] = field(default_factory=list)


def _training_inputs(model: Any, items: list[Any], device_type: str, **options: Any) -> tuple[list[Any], Any]:
    """The items as the train loader holds them and the collate-time preprocessing: the model's own
    ``training_inputs`` (texts tokenised once, batches of bounded shapes), else the items and ``preprocess``."""
    if hasattr(model, "training_inputs"):
        return model.training_inputs(items, device_type, **options)
    if hasattr(model, "pretokenize"):  # open_clip's text tower: fixed-length tokens
        return model.pretokenize(items), model.collate_tokens
    return items, getattr(model, "training_preprocess", None) or model.preprocess


def plan_labelled(
    model: Any,
    train: LabelledData,
    pairs_as_classes: bool,
    evaluation: LabelledData | PairData | None,
    config: TrainingConfig,
    accelerator: Any,
    seed: int,
    eval_batch_size: int,
) -> Plan:
    """Metric learning on labelled items (same-modality pairs come as classes of two)."""
    name = resolve_loss(config.loss, "pairs" if pairs_as_classes else "labelled")
    loss = get_loss(name, config.loss_options, embedding_size=model.output_dim, num_classes=len(train.classes))
    if isinstance(loss, PairObjective) or type(loss).__name__ == "CLIPLoss":
        raise ConfigError("CLIPLoss trains two towers on text-image pairs; for labelled items use a metric loss")
    miner = get_miner(config.miner, config.miner_options)
    batch_size = min(config.batch_size or (64 if accelerator.device.type == "cuda" else 32), len(train))
    shard = {"rank": accelerator.process_index, "world_size": accelerator.num_processes}
    kind = config.sampler
    if kind == "auto":
        kind = "random" if needs_class_count(name) else "class"
    workers = config.workers(accelerator.device.type)
    items, preprocess = _training_inputs(model, train.items, accelerator.device.type, num_workers=workers)
    if kind == "length":
        if not pairs_as_classes or not hasattr(model, "pretokenize"):
            raise ConfigError("sampler='length' batches text pairs of similar length; this run has no text pairs")
        lengths = [len(row["input_ids"]) for row in items]
        sampler: Any = LengthBucketPairSampler(lengths, batch_size, seed=seed, **shard)
    elif kind == "class":
        k = 2 if pairs_as_classes else config.num_items_per_class
        sampler = ClassSampler(train.labels, batch_size, k, seed=seed, **shard)
    else:
        sampler = RandomBatchSampler(len(train), batch_size, seed=seed, **shard)
    loader = labelled_loader(
        items,
        train.labels,
        preprocess,
        sampler,
        workers,
        pin_memory=accelerator.device.type == "cuda",
    )
    summary = f"{len(train)} {train.modality} items, {len(train.classes)} classes, batch size {batch_size}"
    evaluations = [("", retrieval_sets(evaluation))] if evaluation is not None else []
    return Plan(loader, loss, miner, batch_size, summary, model_embedder(model, eval_batch_size), evaluations)


def item_key(item: Any) -> object:
    """An identity for duplicate detection: the text itself, or an image's uri / content hash.

    Example:
        >>> item_key('a cat'), item_key(b'png-bytes') == item_key(b'png-bytes')
        ('a cat', True)
    """
    if isinstance(item, str):
        return item
    uri = getattr(item, "uri", None)
    if uri:
        return ("uri", uri)
    for value in (getattr(item, "blob", None), getattr(item, "tensor", None), item):
        if isinstance(value, (bytes, bytearray)):
            return ("bytes", hashlib.blake2b(bytes(value), digest_size=16).hexdigest())
        if value is not None and hasattr(value, "shape"):
            array = np.ascontiguousarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
            return ("array", array.shape, hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest())
    return ("object", id(item))


def two_tower_embedder(model: TwoTowerModel, batch_size: int) -> Embedder:
    """``embed(items, modality)`` that sends texts to the text tower and images to the vision tower."""
    text, vision = model_embedder(model.text, batch_size), model_embedder(model.vision, batch_size)

    def embed(items: list[Any], modality: str) -> torch.Tensor:
        return text(items, modality) if modality == "text" else vision(items, modality)

    return embed


def clip_loss_options(model: TwoTowerModel, options: dict[str, Any] | None) -> dict[str, Any]:
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


def plan_clip(
    model: Any,
    train: PairData,
    evaluation: LabelledData | PairData | None,
    config: TrainingConfig,
    accelerator: Any,
    seed: int,
    eval_batch_size: int,
) -> Plan:
    """Contrastive training of two towers on text-image pairs with a duplicate-free batch sampler."""
    if not isinstance(model, TwoTowerModel):
        raise ConfigError(
            "text-image pairs train a two-tower model: a CLIP model ('clip-base-en', 'openai/clip-vit-base-patch32')"
            " or model={'text': TEXT_MODEL, 'vision': VISION_MODEL}; received a single "
            f"{getattr(model, 'modality', type(model).__name__)} model"
        )
    name = resolve_loss(config.loss, "clip")
    if str(name).lower() != "cliploss":
        raise ConfigError(f"two-tower training on text-image pairs takes loss='CLIPLoss'; received {config.loss!r}")
    loss = get_loss("CLIPLoss", clip_loss_options(model, config.loss_options))
    if config.miner is not None:
        raise ConfigError("miners apply to labelled metric learning, not to CLIP pairs; drop miner=")
    batch_size = min(config.batch_size or (64 if accelerator.device.type == "cuda" else 32), len(train))
    shard = {"rank": accelerator.process_index, "world_size": accelerator.num_processes}
    sampler = PairBatchSampler(
        [item_key(t) for t in train.left], [item_key(i) for i in train.right], batch_size, seed=seed, **shard
    )
    device_type, workers = accelerator.device.type, config.workers(accelerator.device.type)
    # one padded block of text per batch: the gradient cache slices a two-tower batch's pairs by rows
    left, text_preprocess = _training_inputs(model.text, train.left, device_type, num_workers=workers, max_groups=1)
    right, image_preprocess = _training_inputs(model.vision, train.right, device_type, num_workers=workers)
    collate = PairCollate(text_preprocess, image_preprocess)
    loader = pair_loader(
        left,
        right,
        collate,
        sampler,
        workers,
        pin_memory=accelerator.device.type == "cuda",
    )
    evaluations: list[tuple[str, RetrievalSets]] = []
    if evaluation is not None:
        if not isinstance(evaluation, PairData) or {evaluation.left_modality, evaluation.right_modality} != {
            "text",
            "image",
        }:
            raise DataError("eval_data for a CLIP run must be text-image pairs, like train_data")
        evaluations = [
            ("", retrieval_sets(evaluation, "left-to-right")),
            ("image_to_text/", retrieval_sets(evaluation, "right-to-left")),
        ]
    if config.num_items_per_class != 4:
        warnings.warn("num_items_per_class does not apply to CLIP pairs; ignored", stacklevel=3)
    summary = f"{len(train)} text-image pairs, batch size {batch_size}"
    return Plan(
        loader, PairObjective(loss), None, batch_size, summary, two_tower_embedder(model, eval_batch_size), evaluations
    )


def run_evaluations(plan: Plan, limit: int) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """All of a plan's evaluations: the metrics (prefixed by direction) and example retrievals of the main one."""
    metrics: dict[str, float] = {}
    examples: list[dict[str, Any]] = []
    for prefix, sets in plan.evaluations:
        values, shown = evaluate_sets(sets, plan.embed, limit=limit, num_examples=0 if prefix else 3)
        metrics.update({f"{prefix}{k}": v for k, v in values.items()})
        examples = examples or shown
    return metrics, examples
