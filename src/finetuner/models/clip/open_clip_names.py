"""open_clip model names, and the open_clip import (``pip install 'finetuner[open-clip]'``).

Names (Finetuner's, plus two for open_clip's own sources):

- ``'ARCH::TAG'``: an open_clip architecture with pretrained weights, as Finetuner named them:
  ``'ViT-B-32::openai'``, ``'ViT-B-32::laion2b_s34b_b79k'`` (``-`` and ``_`` in tags are the same to open_clip);
- ``'open_clip:ARCH'``: the architecture alone, randomly initialised (``'open_clip:ARCH::TAG'`` = ``'ARCH::TAG'``);
- ``'open_clip:hf-hub:ORG/REPO'``: a model on the Hugging Face hub in open_clip's format.

:func:`is_open_clip_name` and :func:`parse_open_clip_name` need no open_clip; :func:`resolve_open_clip_name` checks
a name against what the installed open_clip knows, and :func:`import_open_clip` imports it with a clear error.
"""

from __future__ import annotations

import importlib
from typing import Any

from finetuner.errors import ConfigError, closest

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
