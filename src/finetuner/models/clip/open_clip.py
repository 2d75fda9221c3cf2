"""open_clip models for CLIP fine-tuning (``pip install 'finetuner[open-clip]'``): :func:`build_open_clip`.

The names it takes are described in :mod:`finetuner.models.clip.open_clip_names`. The model is split into a text
tower and a vision tower (:mod:`finetuner.models.clip.open_clip_towers`) inside a
:class:`~finetuner.models.clip.two_tower.TwoTowerModel`, so ``CLIPLoss``, per-tower ``freeze`` and learning rates,
evaluation, WiSE-FT and saving work as for any CLIP model. ``CLIPLoss`` starts from the model's own trained
temperature (``1 / exp(logit_scale)``) unless ``loss_options={'temperature': ...}`` sets one.
"""

from __future__ import annotations

from typing import Any

from finetuner.errors import ConfigError
from finetuner.models.clip.open_clip_files import split_open_clip
from finetuner.models.clip.open_clip_names import import_open_clip, resolve_open_clip_name
from finetuner.models.clip.open_clip_towers import OpenCLIPTextTower, OpenCLIPVisionTower
from finetuner.models.clip.two_tower import TwoTowerModel

_OPTIONS = ("learning_rates", "augment")


def _pretrained_quick_gelu(open_clip: Any, arch: str, tag: str | None) -> bool:
    """Whether the weights of ``tag`` were trained with QuickGELU while ``arch``'s config says GELU (OpenAI's
    weights under the plain names): open_clip then only warns; the model is built with QuickGELU instead."""
    if tag is None:
        return False
    from open_clip.pretrained import get_pretrained_cfg

    wants = bool(get_pretrained_cfg(arch, tag).get("quick_gelu", False))
    return wants and not bool((open_clip.get_model_config(arch) or {}).get("quick_gelu", False))


def build_open_clip(name: str, *, output_dim: int | None = None, **options: Any) -> TwoTowerModel:
    """A :class:`TwoTowerModel` from an open_clip name (see :mod:`finetuner.models.clip.open_clip_names`),
    pretrained weights downloaded by open_clip on first use.

    ``options`` (``model_options``): ``learning_rates`` (``{'text': ..., 'vision': ...}``) and ``augment``
    (``True`` or a dict of open_clip ``AugmentationCfg`` fields: open_clip's train transform for training images).

    Example:
        >>> model = build_open_clip('ViT-B-32::laion2b_s34b_b79k')  # doctest: +SKIP
        >>> model.output_dim, model.temperature  # doctest: +SKIP
        (512, 0.01)
    """
    if output_dim is not None:
        raise ConfigError("an open_clip model keeps its own projection to one space; output_dim is not supported")
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown model_options {unknown} for an open_clip model; valid: {', '.join(_OPTIONS)}")
    open_clip = import_open_clip(repr(name))
    model_name, tag = resolve_open_clip_name(name, open_clip)
    quick_gelu = _pretrained_quick_gelu(open_clip, model_name, tag)
    # no base-tower weights either for a random init (open_clip would fetch a Hugging Face text encoder's)
    model = open_clip.create_model(
        model_name, pretrained=tag, force_quick_gelu=quick_gelu, pretrained_image=False, pretrained_text=False
    )
    if not isinstance(model, (open_clip.CLIP, open_clip.CustomTextCLIP)):
        raise ConfigError(
            f"{name!r} is an open_clip {type(model).__name__}; finetuner fine-tunes open_clip's CLIP and "
            "CustomTextCLIP models (two towers), not captioning models"
        )
    model_cfg = open_clip.get_model_config(model_name)
    if model_cfg is None:
        raise ConfigError(f"open_clip has no model config for {model_name!r}")
    if quick_gelu:
        model_cfg["quick_gelu"] = True
    for tower_cfg, flag in (("vision_cfg", "timm_model_pretrained"), ("text_cfg", "hf_model_pretrained")):
        if flag in model_cfg.get(tower_cfg, {}):
            model_cfg[tower_cfg][flag] = False  # the saved towers carry the weights
    preprocess_cfg = dict(open_clip.get_model_preprocess_cfg(model))
    config = {"model_cfg": model_cfg, "preprocess_cfg": _plain(preprocess_cfg)}
    tokenizer = open_clip.get_tokenizer(model_name)
    text_part, visual, temperature = split_open_clip(model)
    text = OpenCLIPTextTower(text_part, tokenizer, config, name)
    vision = OpenCLIPVisionTower(visual, config, name, options.get("augment"))
    return TwoTowerModel(text, vision, options.get("learning_rates"), temperature=temperature)


def _plain(value: Any) -> Any:
    """Tuples to lists (JSON), recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
