"""Losses and miners by name.

Metric-learning losses and miners come from pytorch-metric-learning (any class of ``pytorch_metric_learning.losses``
/ ``.miners``); the contrastive losses for pairs and CLIP live in :mod:`finetuner.losses.contrastive`, the losses for
triplet rows and scored pairs in :mod:`finetuner.losses.rows`. A loss sees embeddings and labels, never a model:
``loss(embeddings, labels, indices_tuple=None)`` (scored pairs: ``loss(left, right, scores)``).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from finetuner import aliases
from finetuner.errors import ConfigError, InputTypeError, unknown_name
from finetuner.losses.contrastive import LOSSES as CONTRASTIVE_LOSSES
from finetuner.losses.distill import ROW_DISTILL_LOSSES
from finetuner.losses.matryoshka import MatryoshkaLoss, split_options
from finetuner.losses.rows import SCORED_LOSSES
from finetuner.losses.unsupervised import UNSUPERVISED_LOSSES

OWN_LOSSES = {**CONTRASTIVE_LOSSES, **SCORED_LOSSES, **ROW_DISTILL_LOSSES}

#: what ``loss='auto'`` (the default) means for each kind of training data. Scored pairs: CoSENT, which uses only
#: the order of the scores (any scale trains) and keeps a gradient where the squared error of CosineSimilarityLoss
#: is already small; sentence-transformers recommends it over CosineSimilarityLoss for the same reasons.
AUTO_LOSSES = {
    "labelled": "TripletMarginLoss",
    "pairs": "InfoNCELoss",
    "clip": "CLIPLoss",
    "triplets": "InfoNCELoss",
    "scored": "CoSENTLoss",
}

#: the losses each kind of row data trains with (the other kinds take any metric loss)
ROW_LOSSES = {
    "triplets": ("InfoNCELoss", "TripletMarginLoss", *ROW_DISTILL_LOSSES),
    "scored": ("CoSENTLoss", "CosineSimilarityLoss"),
}


def resolve_loss(loss: Any, data_kind: str) -> Any:
    """The loss to use: ``'auto'`` becomes the default for the data (labelled items: TripletMarginLoss; pairs of
    one modality and triplets: InfoNCELoss, in-batch negatives; text-image pairs: CLIPLoss; scored pairs:
    CoSENTLoss); anything else stays.

    Example:
        >>> resolve_loss('auto', 'pairs'), resolve_loss('auto', 'labelled'), resolve_loss('ArcFaceLoss', 'labelled')
        ('InfoNCELoss', 'TripletMarginLoss', 'ArcFaceLoss')
        >>> resolve_loss('auto', 'triplets'), resolve_loss('auto', 'scored')
        ('InfoNCELoss', 'CoSENTLoss')
    """
    return AUTO_LOSSES[data_kind] if isinstance(loss, str) and loss.lower() == "auto" else loss

#: losses whose constructor needs the embedding size / class count (filled in automatically)
_NEEDS_CLASSES = ("num_classes", "embedding_size")


def _pml_classes(module_name: str, base_name: str) -> dict[str, type]:
    import importlib

    module = importlib.import_module(f"pytorch_metric_learning.{module_name}")
    base = getattr(module, base_name)
    return {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, base) and obj is not base and not name.startswith("Base")
    }


def list_losses() -> list[str]:
    """Every loss name ``fit(loss=...)`` accepts.

    Example:
        >>> 'TripletMarginLoss' in list_losses() and 'ArcFaceLoss' in list_losses()
        True
    """
    names = set(_pml_classes("losses", "BaseMetricLossFunction")) | set(OWN_LOSSES) | set(UNSUPERVISED_LOSSES)
    return sorted(names)


def list_miners() -> list[str]:
    """Every miner name ``fit(miner=...)`` accepts.

    Example:
        >>> 'TripletMarginMiner' in list_miners()
        True
    """
    return sorted(_pml_classes("miners", "BaseMiner"))


def loss_class(name: str) -> type:
    """The class behind a loss name (pytorch-metric-learning's or finetuner's own; case-insensitive), or a clear
    error with the closest name.

    Example:
        >>> loss_class('infonceloss').__name__
        'InfoNCELoss'
    """
    own = {**OWN_LOSSES, **UNSUPERVISED_LOSSES}
    return _lookup(name, "loss", {**_pml_classes("losses", "BaseMetricLossFunction"), **own})


def miner_class(name: str) -> type:
    """The pytorch-metric-learning class behind a miner name (case-insensitive), or a clear error with the closest
    name.

    Example:
        >>> miner_class('multisimilarityminer').__name__
        'MultiSimilarityMiner'
    """
    return _lookup(name, "miner", _pml_classes("miners", "BaseMiner"))


def needs_class_count(loss: str | nn.Module) -> bool:
    """Whether the loss learns per-class weights (ArcFace, CosFace, ProxyAnchor, ...).

    Example:
        >>> needs_class_count('ArcFaceLoss'), needs_class_count('TripletMarginLoss')
        (True, False)
    """
    if isinstance(loss, nn.Module):
        return any(True for _ in loss.parameters())
    params = init_params(loss_class(loss))
    return all(p in params for p in _NEEDS_CLASSES)


def init_params(cls: type) -> set[str]:
    """The keyword arguments a class's constructor takes, following ``**kwargs`` up to the bases that take them
    (CosFaceLoss passes ``num_classes`` and ``embedding_size`` on to LargeMarginSoftmaxLoss that way).

    Example:
        >>> sorted({'num_classes', 'embedding_size'} & init_params(loss_class('CosFaceLoss')))
        ['embedding_size', 'num_classes']
    """
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass in (nn.Module, object) or "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def _lookup(name: str, what: str, table: dict[str, type]) -> type:
    if name in table:
        return table[name]
    for key, cls in table.items():
        if key.lower() == name.lower():
            return cls
    raise unknown_name(what, name, table, aliases.LOSSES if what == "loss" else None)


def _construct(cls: type, options: dict[str, Any], what: str) -> Any:
    try:
        return cls(**options)
    except TypeError as exc:
        params = [
            p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")
        ]
        raise ConfigError(
            f"{what} {cls.__name__} cannot be built with options {sorted(options)}: {exc}. "
            f"Its options are: {', '.join(params)}"
        ) from exc


def get_loss(
    loss: str | nn.Module,
    options: dict[str, Any] | None = None,
    *,
    embedding_size: int | None = None,
    num_classes: int | None = None,
) -> nn.Module:
    """A loss module from a name (plus ``loss_options``), or the instance itself.

    ``embedding_size`` and ``num_classes`` are passed to losses that need them (ArcFace, CosFace, ...) unless
    the options already set them. ``matryoshka_dims`` (and ``matryoshka_weights``) in the options wrap the loss in a
    :class:`~finetuner.losses.matryoshka.MatryoshkaLoss` over those prefixes (checked against ``embedding_size``).

    Example:
        >>> import torch
        >>> loss = get_loss('TripletMarginLoss', {'margin': 0.2})
        >>> emb = torch.tensor([[1., 0], [1, .1], [0, 1], [.1, 1], [-1, 0], [-1, .1]])
        >>> float(loss(emb, torch.tensor([0, 0, 1, 1, 2, 2]))) < 0.2
        True
    """
    options = dict(options or {})
    if isinstance(loss, nn.Module):
        if options:
            raise ConfigError(
                "loss_options only apply to a loss given by name; configure the instance instead"
            )
        return loss
    if isinstance(loss, str) and loss.lower() == "auto":
        raise ConfigError("loss='auto' stands for the data's loss: resolve it first with resolve_loss(loss, data_kind)")
    if not isinstance(loss, str):
        raise InputTypeError(f"loss must be a name or a torch.nn.Module; received {type(loss).__name__}")
    matryoshka, options = split_options(options)
    if matryoshka:
        inner = get_loss(loss, options, embedding_size=embedding_size, num_classes=num_classes)
        dims, weights = matryoshka.get("matryoshka_dims") or [], matryoshka.get("matryoshka_weights")
        return MatryoshkaLoss(inner, dims, weights, embedding_size=embedding_size)
    cls = loss_class(loss)
    params = init_params(cls)
    if "embedding_size" in params and "embedding_size" not in options and embedding_size is not None:
        options["embedding_size"] = embedding_size
    if "num_classes" in params and "num_classes" not in options and num_classes is not None:
        options["num_classes"] = num_classes
    return _construct(cls, options, "loss")


def get_miner(miner: str | nn.Module | None, options: dict[str, Any] | None = None) -> nn.Module | None:
    """A miner module from a name (plus ``miner_options``), the instance itself, or None.

    Example:
        >>> type(get_miner('TripletMarginMiner', {'margin': 0.2})).__name__
        'TripletMarginMiner'
    """
    options = dict(options or {})
    if miner is None:
        if options:
            raise ConfigError("miner_options given without a miner; pass miner='...' too")
        return None
    if isinstance(miner, nn.Module):
        return miner
    if not isinstance(miner, str):
        raise InputTypeError(f"miner must be a name or a torch.nn.Module; received {type(miner).__name__}")
    return _construct(miner_class(miner), options, "miner")


__all__ = [
    "AUTO_LOSSES",
    "ROW_LOSSES",
    "get_loss",
    "get_miner",
    "list_losses",
    "list_miners",
    "loss_class",
    "miner_class",
    "needs_class_count",
    "resolve_loss",
]
