"""open_clip models for CLIP fine-tuning (``pip install 'finetuner[open-clip]'``).

Names (Finetuner's, plus two for open_clip's own sources):

- ``'ARCH::TAG'``: an open_clip architecture with pretrained weights, as Finetuner named them:
  ``'ViT-B-32::openai'``, ``'ViT-B-32::laion2b_s34b_b79k'`` (``-`` and ``_`` in tags are the same to open_clip);
- ``'open_clip:ARCH'``: the architecture alone, randomly initialised (``'open_clip:ARCH::TAG'`` = ``'ARCH::TAG'``);
- ``'open_clip:hf-hub:ORG/REPO'``: a model on the Hugging Face hub in open_clip's format.

The model is split into a text tower and a vision tower (:mod:`finetuner.models.openclip_towers`) inside a
:class:`~finetuner.models.clip.TwoTowerModel`, so ``CLIPLoss``, per-tower ``freeze`` and learning rates,
evaluation, WiSE-FT and saving work as for any CLIP model. ``CLIPLoss`` starts from the model's own trained
temperature (``1 / exp(logit_scale)``) unless ``loss_options={'temperature': ...}`` sets one.
"""

from __future__ import annotations

import importlib
from typing import Any

from finetuner.errors import ConfigError, closest
from finetuner.models.clip import TwoTowerModel
from finetuner.models.openclip_towers import OpenCLIPTextTower, OpenCLIPVisionTower, split_open_clip

PREFIX = "open_clip:"
MIN_VERSION = (3, 0)
_OPTIONS = ("learning_rates", "augment")


def is_open_clip_name(name: str) -> bool:
    """Whether ``name`` names an open_clip model (``ARCH::TAG``, ``open_clip:...``); needs no open_clip.

    Example:
        >>> is_open_clip_name('ViT-B-32::openai'), is_open_clip_name('open_clip:RN50')
        (True, True)
        >>> is_open_clip_name('openai/clip-vit-base-patch32')
        False
    """
    return name.startswith(PREFIX) or ("::" in name and not name.startswith(("/", ".", "~")))


def parse_open_clip_name(name: str) -> tuple[str, str | None]:
    """``(model_name, pretrained_tag)`` as open_clip's ``create_model`` takes them; no validation.

    Example:
        >>> parse_open_clip_name('ViT-B-32::laion2b_s34b_b79k')
        ('ViT-B-32', 'laion2b_s34b_b79k')
        >>> parse_open_clip_name('open_clip:ViT-B-32')
        ('ViT-B-32', None)
        >>> parse_open_clip_name('open_clip:hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K')
        ('hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K', None)
    """
    rest = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    if rest.startswith("hf-hub:"):
        if "::" in rest:
            raise ConfigError(f"{name!r}: an hf-hub model brings its own weights; drop the '::TAG'")
        return rest, None
    arch, sep, tag = rest.partition("::")
    if not arch or (sep and not tag):
        raise ConfigError(
            f"cannot read the open_clip model name {name!r}; write 'ARCH::TAG' (e.g. 'ViT-B-32::openai'), "
            "'open_clip:ARCH' (random init) or 'open_clip:hf-hub:ORG/REPO'"
        )
    return arch, tag or None


def import_open_clip(what: str) -> Any:
    """``import open_clip`` (version 3 or later), or a :class:`ConfigError` saying how to install it.

    Example:
        >>> open_clip = import_open_clip("'ViT-B-32::openai'")  # doctest: +SKIP
    """
    try:
        module = importlib.import_module("open_clip")
    except ImportError as exc:
        raise ConfigError(
            f"{what} needs open_clip, which is not installed (or cannot be imported: {exc}); install it with "
            "pip install 'finetuner[open-clip]' (open_clip_torch; it needs torchvision, which must match your "
            "torch version). Hugging Face CLIP models ('clip-base-en', 'openai/clip-vit-base-patch32') work "
            "without it"
        ) from exc
    version = tuple(int(p) for p in str(getattr(module, "__version__", "0")).split(".")[:2] if p.isdigit())
    if version < MIN_VERSION:
        raise ConfigError(
            f"{what} needs open_clip_torch >= {'.'.join(map(str, MIN_VERSION))} (it loads saved towers from local "
            f"folders); installed: {getattr(module, '__version__', 'unknown')}. pip install -U 'finetuner[open-clip]'"
        )
    return module


def resolve_open_clip_name(name: str, open_clip: Any) -> tuple[str, str | None]:
    """Check an open_clip name against what open_clip knows: the architecture (case-insensitive) and the
    pretrained tag for it; the canonical ``(model_name, tag)``, or a :class:`ConfigError` with the valid ones.

    Example:
        >>> resolve_open_clip_name('vit-b-32::LAION2B-S34B-B79K', open_clip)  # doctest: +SKIP
        ('ViT-B-32', 'laion2b_s34b_b79k')
    """
    model_name, tag = parse_open_clip_name(name)
    if model_name.startswith("hf-hub:"):
        return model_name, None
    archs = list(open_clip.list_models())
    by_lower = {a.lower(): a for a in archs}
    arch = by_lower.get(model_name.replace("/", "-").lower())
    if arch is None:
        hint = closest(model_name, archs)
        raise ConfigError(
            f"unknown open_clip architecture {model_name!r} in {name!r}"
            + (f"; did you mean {hint!r}?" if hint else "")
            + f" open_clip {open_clip.__version__} knows: {', '.join(archs)}"
        )
    if tag is None:
        return arch, None
    tags = list(open_clip.list_pretrained_tags_by_model(arch))
    clean = tag.lower().replace("-", "_")  # how open_clip itself normalises tags
    if clean not in tags:
        if not tags:
            raise ConfigError(
                f"open_clip has no pretrained weights for {arch!r} (asked for {tag!r}); use 'open_clip:{arch}' for "
                "a randomly initialised model, or another architecture"
            )
        hint = closest(clean, tags)
        raise ConfigError(
            f"unknown pretrained tag {tag!r} for open_clip {arch!r}"
            + (f"; did you mean '{arch}::{hint}'?" if hint else "")
            + f" Its tags: {', '.join(tags)}"
        )
    return arch, clean


def open_clip_name_problem(name: str) -> str | None:
    """What is wrong with an open_clip model name (open_clip missing, unknown architecture or tag), or None;
    checked before ``fit`` loads anything, so it is reported with the other problems.

    Example:
        >>> open_clip_name_problem('ViT-B-32::openai') is None  # doctest: +SKIP
        True
    """
    try:
        resolve_open_clip_name(name, import_open_clip(repr(name)))
    except ConfigError as exc:
        return str(exc)
    return None


def _pretrained_quick_gelu(open_clip: Any, arch: str, tag: str | None) -> bool:
    """Whether the weights of ``tag`` were trained with QuickGELU while ``arch``'s config says GELU (OpenAI's
    weights under the plain names): open_clip then only warns; the model is built with QuickGELU instead."""
    if tag is None:
        return False
    from open_clip.pretrained import get_pretrained_cfg

    wants = bool(get_pretrained_cfg(arch, tag).get("quick_gelu", False))
    return wants and not bool((open_clip.get_model_config(arch) or {}).get("quick_gelu", False))


def build_open_clip(name: str, *, output_dim: int | None = None, **options: Any) -> TwoTowerModel:
    """A :class:`TwoTowerModel` from an open_clip name (see the module docstring), pretrained weights downloaded
    by open_clip on first use.

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
