"""CLIP models: a text tower and a vision tower that embed into one space, trained together.

- :mod:`~finetuner.models.clip.two_tower`: :class:`TwoTowerModel` (what every CLIP model here is), the generic
  two-tower builder (any text model plus any image model) and per-tower freezing;
- :mod:`~finetuner.models.clip.hf`: Hugging Face CLIP (``openai/clip-vit-base-patch32``, alias ``clip-base-en``);
- :mod:`~finetuner.models.clip.open_clip`: open_clip models (``'ViT-B-32::openai'``), with their names in
  :mod:`~finetuner.models.clip.open_clip_names`, their towers in :mod:`~finetuner.models.clip.open_clip_towers`
  and their saved files in :mod:`~finetuner.models.clip.open_clip_files`.

:func:`build_clip` is the ``'clip'`` family's builder (see :mod:`finetuner.models.registry`).
"""

from __future__ import annotations

from typing import Any

from finetuner.models.clip.hf import CLIPTextTower, CLIPVisionTower, build_hf_clip
from finetuner.models.clip.open_clip import build_open_clip
from finetuner.models.clip.open_clip_names import is_open_clip_name
from finetuner.models.clip.open_clip_towers import OpenCLIPTextTower, OpenCLIPVisionTower
from finetuner.models.clip.two_tower import TwoTowerModel, build_two_tower, lock_towers


def build_clip(name_or_path: str, *, output_dim: int | None = None, **options: Any) -> TwoTowerModel:
    """The ``'clip'`` family's builder: open_clip names (``'ViT-B-32::openai'``, ``'open_clip:...'``) go to
    :func:`~finetuner.models.clip.open_clip.build_open_clip`, anything else to Hugging Face CLIP
    (:func:`~finetuner.models.clip.hf.build_hf_clip`).

    Example:
        >>> model = build_clip('ViT-B-32::openai')  # doctest: +SKIP
    """
    builder = build_open_clip if is_open_clip_name(name_or_path) else build_hf_clip
    return builder(name_or_path, output_dim=output_dim, **options)


__all__ = [
    "CLIPTextTower",
    "CLIPVisionTower",
    "OpenCLIPTextTower",
    "OpenCLIPVisionTower",
    "TwoTowerModel",
    "build_clip",
    "build_two_tower",
    "lock_towers",
]
