"""Parameter-efficient adapters on a model's backbone(s): ``fit(..., adapter='lora', adapter_options={...})``.

:func:`apply_adapter` wraps each backbone of a built model (both towers of a two-tower model) in a ``peft`` adapter
and records on the tower where its base comes from (:class:`AdapterInfo`), so the saved artifact holds the adapter
alone (:mod:`finetuner.models.adapters.files`) and ``get_model`` rebuilds base + adapter. :func:`merge_adapters`
folds the adapters into the weights: the model is then an ordinary one and saves as a full fine-tune does.
LoRA's options and defaults are described in :mod:`finetuner.models.adapters.lora`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from finetuner.errors import ConfigError, unknown_name
from finetuner.models.adapters.lora import lora_config, option_problems

#: the adapters ``fit(adapter=...)`` accepts
ADAPTERS = ("lora",)
#: the ``kind`` an adapter-only model folder records in its ``metadata.yml``
ADAPTER_KIND = "lora"


@dataclass
class AdapterInfo:
    """What a tower with an adapter needs to be saved alone and rebuilt: the adapter and its options, the base
    (the model name or folder ``fit`` got, and the ``build_model`` arguments), which tower of the base, and a
    digest of the base weights the adapter was trained on.

    Example:
        >>> AdapterInfo('lora', {'r': 8}, 'bert-base-en', None, {}, 'text', 'ab12').base
        'bert-base-en'
    """

    adapter: str
    options: dict[str, Any]
    base: Any
    tower: str | None
    build: dict[str, Any] = field(default_factory=dict)
    base_kind: str = ""
    digest: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A YAML-safe dict (for ``metadata.yml``)."""
        return asdict(self)


def peft_problem() -> str | None:
    """Why an adapter cannot be used here (``peft`` missing), or None.

    Example:
        >>> peft_problem() is None or 'pip install' in peft_problem()
        True
    """
    try:
        import peft  # noqa: F401
    except ImportError:
        return "adapter='lora' needs the peft library: pip install 'finetuner[peft]' (or pip install peft)"
    return None


def adapter_problems(adapter: Any, options: Any, *, model: Any, freeze: Any, model_options: Any) -> list[str]:
    """Every problem of ``fit``'s ``adapter`` and ``adapter_options`` that shows before a model is built.

    Example:
        >>> adapter_problems('lroa', {}, model='bert-base-en', freeze=False, model_options=None)
        ["unknown adapter 'lroa'; did you mean 'lora'? Valid adapter names: lora"]
        >>> adapter_problems(None, {'r': 4}, model='bert-base-en', freeze=False, model_options=None)
        ["adapter_options given without an adapter; pass adapter='lora' too"]
    """
    if adapter is None:
        return ["adapter_options given without an adapter; pass adapter='lora' too"] if options else []
    if adapter not in ADAPTERS:
        return [str(unknown_name("adapter", adapter, ADAPTERS))]
    out: list[str] = []
    problem = peft_problem()
    if problem:
        out.append(problem)
    if isinstance(options, dict):
        out += option_problems(options)
    if freeze not in (False, None):
        out.append(
            f"adapter={adapter!r} trains the adapter (and a projection head) and keeps the backbone frozen; "
            f"freeze={freeze!r} would train base weights the adapter artifact does not store: leave freeze unset"
        )
    if base_reference(model) is None:
        out.append(
            f"adapter={adapter!r} saves the adapter alone and names its base; give the model as a name, hub id or "
            f"folder (received a {type(model).__name__} instance), or save it first with model.save(folder)"
        )
    if model_options and not _plain(model_options):
        out.append(
            f"adapter={adapter!r} records model_options to rebuild the base; they must be plain values (str, "
            "numbers, lists, dicts); received objects"
        )
    return out


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def base_reference(model: Any) -> Any:
    """How an adapter artifact names its base: a model name or hub id as given, a local folder as an absolute
    path, a two-tower dict of those; None for a module instance (it cannot be named).

    Example:
        >>> base_reference('bert-base-en'), base_reference(nn.Linear(2, 2))
        ('bert-base-en', None)
    """
    if isinstance(model, (str, os.PathLike)):
        path = Path(model).expanduser()
        return str(path.resolve()) if path.exists() else os.fspath(model)
    if isinstance(model, dict):
        refs = {k: base_reference(v) for k, v in model.items()}
        return None if any(v is None for v in refs.values()) else refs
    return None


def towers_of(model: Any) -> dict[str | None, Any]:
    """``{tower name: tower}`` of a two-tower model, else ``{None: model}``.

    Example:
        >>> towers_of('m')
        {None: 'm'}
    """
    if callable(getattr(model, "towers", None)):
        return dict(model.towers())
    return {None: model}


def has_adapter(model: Any) -> bool:
    """Whether ``model`` (or one of its towers) carries an adapter.

    Example:
        >>> has_adapter(nn.Linear(2, 2))
        False
    """
    return any(getattr(t, "adapter_info", None) is not None for t in towers_of(model).values())


def weights_digest(module: nn.Module) -> str:
    """A digest of ``module``'s weights: every tensor's name, shape and up to 256 values spread over it. Two
    different checkpoints of one architecture differ in it; it takes milliseconds even for large models.

    Example:
        >>> import torch
        >>> a = nn.Linear(2, 2); b = nn.Linear(2, 2)
        >>> weights_digest(a) == weights_digest(a), weights_digest(a) == weights_digest(b)
        (True, False)
    """
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // 256)
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(flat[::step][:256].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def apply_adapter(
    model: Any, adapter: str, options: dict[str, Any], *, base: Any, build: dict[str, Any] | None = None
) -> Any:
    """Wrap every backbone of ``model`` in a ``peft`` adapter (in place; returns ``model``).

    Args:
        model: the built model (a single model or a two-tower one).
        adapter: ``'lora'``.
        options: ``adapter_options`` (see :mod:`finetuner.models.adapters.lora`).
        base: the base's name or folder (:func:`base_reference`), recorded to rebuild it.
        build: the ``build_model`` arguments that built ``model`` (``output_dim``, ``model_options``).

    Raises:
        ConfigError: a target layer name matches nothing (the message lists the layer names), a tower has no
            backbone, or already carries an adapter.

    Example:
        >>> model = apply_adapter(build_model('all-MiniLM-L6-v2'), 'lora', {'r': 8}, base='all-MiniLM-L6-v2')
        ... # doctest: +SKIP
    """
    from peft import get_peft_model

    if adapter not in ADAPTERS:
        raise unknown_name("adapter", adapter, ADAPTERS)
    for name, tower in towers_of(model).items():
        where = f"{name or 'the model'}'s backbone"
        backbone = getattr(tower, "backbone", None)
        if not isinstance(backbone, nn.Module):
            raise ConfigError(f"adapter={adapter!r} needs a model with a backbone; {type(tower).__name__} has none")
        if getattr(tower, "adapter_info", None) is not None:
            raise ConfigError(
                f"{where} already carries a {tower.adapter_info.adapter} adapter (the model is an adapter artifact); "
                "train it further without adapter=..., or start from its base"
            )
        digest = weights_digest(backbone)
        config = lora_config(backbone, options, where=f"{where} ({type(backbone).__name__})")
        base_kind = str(tower.metadata().get("kind", "")) if hasattr(tower, "metadata") else ""
        tower.backbone = get_peft_model(backbone, config)
        tower.adapter_info = AdapterInfo(adapter, dict(options), base, name, dict(build or {}), base_kind, digest)
    return model


def merge_adapters(model: Any) -> Any:
    """Fold each tower's adapter into its backbone's weights (in place; returns ``model``): the model is then an
    ordinary one that saves as a full fine-tune does (sentence-transformers layout for text), and exports to ONNX.

    Example:
        >>> merge_adapters(nn.Linear(2, 2))  # nothing to merge
        Linear(in_features=2, out_features=2, bias=True)
    """
    for tower in towers_of(model).values():
        if getattr(tower, "adapter_info", None) is None:
            continue
        tower.backbone = tower.backbone.merge_and_unload()
        tower.adapter_info = None
    return model


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts.

    Example:
        >>> lin = nn.Linear(3, 2); lin.bias.requires_grad_(False)
        Parameter containing:...
        >>> parameter_counts(lin)
        (6, 8)
    """
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


__all__ = [
    "ADAPTERS",
    "ADAPTER_KIND",
    "AdapterInfo",
    "adapter_problems",
    "apply_adapter",
    "base_reference",
    "has_adapter",
    "merge_adapters",
    "parameter_counts",
    "peft_problem",
    "towers_of",
    "weights_digest",
]
