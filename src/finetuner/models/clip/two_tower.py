"""The two-tower model every CLIP-style model is: a text tower and a vision tower that embed into one space.

A :class:`TwoTowerModel` trains both towers at once; it saves each tower as its own model (``clip-text``,
``clip-vision``), and each tower alone is an ordinary embedding model for ``encode``. Its towers come from a
Hugging Face CLIP model (:mod:`finetuner.models.clip.hf`), an open_clip model
(:mod:`finetuner.models.clip.open_clip`), or any text model plus any image model, ``{'text': ..., 'vision': ...}``,
each given a projection head to a shared ``output_dim`` (:func:`build_two_tower`): CLIP-style search from
single-modality pretrained models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from finetuner.config import TWO_TOWER_AUGMENT
from finetuner.errors import ConfigError
from finetuner.models.base import freeze_backbone
from finetuner.models.heads import head_param_groups

TOWERS = ("clip-text", "clip-vision")


class TwoTowerModel(nn.Module):
    """A text tower and a vision tower trained together; ``forward(text=..., image=...)`` embeds a batch of pairs.

    Args:
        text: an embedding model with ``modality == 'text'``.
        vision: an embedding model with ``modality == 'image'``.
        learning_rates: optional per-tower learning rates ``{'text': ..., 'vision': ...}`` (default: the run's).
        temperature: the softmax temperature the pretrained towers were trained with (a CLIP model's
            ``1 / exp(logit_scale)``), or None; ``CLIPLoss`` starts from it unless ``loss_options`` set one.

    Example:
        >>> from finetuner import build_model
        >>> spec = {'text': 'all-MiniLM-L6-v2', 'vision': 'efficientnet-lite0'}
        >>> model = build_model(spec, output_dim=256)  # doctest: +SKIP
        >>> text_emb, image_emb = model(text=model.text.preprocess(['a cat']),
        ...                             image=model.vision.preprocess(['cat.png']))  # doctest: +SKIP
    """

    kind = "two-tower"
    modality = "text+image"

    def __init__(
        self,
        text: nn.Module,
        vision: nn.Module,
        learning_rates: dict[str, float] | None = None,
        temperature: float | None = None,
    ) -> None:
        super().__init__()
        if getattr(text, "modality", None) != "text" or getattr(vision, "modality", None) != "image":
            raise ConfigError(
                "a two-tower model needs a text model for 'text' and an image model for 'vision'; received "
                f"{getattr(text, 'modality', type(text).__name__)} and "
                f"{getattr(vision, 'modality', type(vision).__name__)}"
            )
        if text.output_dim != vision.output_dim:
            raise ConfigError(
                f"the towers embed into different sizes (text {text.output_dim}, vision {vision.output_dim}); pass "
                "output_dim=N to give both a projection head to one size"
            )
        self.text = text
        self.vision = vision
        self.learning_rates = dict(learning_rates or {})
        self.temperature = temperature
        unknown = set(self.learning_rates) - {"text", "vision"}
        if unknown:
            raise ConfigError(f"per-tower learning rates take the keys 'text' and 'vision'; received {sorted(unknown)}")

    @property
    def output_dim(self) -> int:
        """The shared embedding size."""
        return int(self.text.output_dim)

    def towers(self) -> dict[str, nn.Module]:
        """``{'clip-text': text tower, 'clip-vision': vision tower}``: the names they are saved under."""
        return {"clip-text": self.text, "clip-vision": self.vision}

    def forward(
        self, text: dict[str, torch.Tensor], image: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.text(**text), self.vision(**image)  # (batch, dim), (batch, dim)

    def param_groups(self, learning_rate: float, head_learning_rate: float | None = None) -> list[dict[str, Any]]:
        """Optimizer parameter groups per tower, each at its own learning rate when one was given; with
        ``head_learning_rate``, each tower's projection head (the new layer ``output_dim`` added) in a group of its
        own at that rate (``fit`` sets it for towers built from ``{'text': ..., 'vision': ...}``; see
        :data:`finetuner.config.TWO_TOWER_HEAD_LR_FACTOR`)."""
        groups = []
        for name, tower in (("text", self.text), ("vision", self.vision)):
            groups += head_param_groups(tower, float(self.learning_rates.get(name, learning_rate)), head_learning_rate)
        return groups


def build_two_tower(
    spec: dict[str, Any], build_model: Callable[..., Any], *, output_dim: int | None = None, **options: Any
) -> TwoTowerModel:
    """A :class:`TwoTowerModel` from ``{'text': TEXT_MODEL, 'vision': VISION_MODEL}`` (names, folders or modules).

    Each tower gets a projection head to ``output_dim`` (default: the smaller of the two towers' sizes), so both
    embed into one space.

    Args:
        spec: ``{'text': ..., 'vision': ...}``, each what ``build_model`` takes.
        build_model: builds each tower: :func:`finetuner.models.factory.build_model` (which calls this for a dict).
        output_dim: the shared embedding size.
        **options: ``text_options`` / ``vision_options`` (each tower's ``model_options``) and ``learning_rates``.
            The vision tower trains with :data:`finetuner.config.TWO_TOWER_AUGMENT` unless ``vision_options``
            sets ``augment`` (``False``: no augmentation).

    Example:
        >>> from finetuner.models.factory import build_model
        >>> spec = {'text': 'all-MiniLM-L6-v2', 'vision': 'efficientnet-lite0'}
        >>> model = build_two_tower(spec, build_model, output_dim=128)  # doctest: +SKIP
        >>> model.output_dim  # doctest: +SKIP
        128
    """
    unknown = set(spec) - {"text", "vision"}
    if unknown or not {"text", "vision"} <= set(spec):
        raise ConfigError(f"a two-tower model takes {{'text': ..., 'vision': ...}}; received keys {sorted(spec)}")
    text_opts = dict(options.pop("text_options", None) or {})
    vision_opts = dict(options.pop("vision_options", None) or {})
    vision_opts.setdefault("augment", dict(TWO_TOWER_AUGMENT))  # open_clip's training crop (finetuner.config)
    learning_rates = options.pop("learning_rates", None)
    if options:
        raise ConfigError(
            f"unknown two-tower model_options {sorted(options)}; valid: text_options, vision_options, learning_rates"
        )
    if output_dim is None:
        probe_text = build_model(spec["text"], model_options=text_opts)
        probe_vision = build_model(spec["vision"], model_options=vision_opts)
        output_dim = min(probe_text.output_dim, probe_vision.output_dim)
    text = build_model(spec["text"], output_dim=output_dim, model_options=text_opts)
    vision = build_model(spec["vision"], output_dim=output_dim, model_options=vision_opts)
    return TwoTowerModel(text, vision, learning_rates)


def lock_towers(model: TwoTowerModel, freeze: dict[str, bool | int]) -> None:
    """Freeze per tower: ``True`` locks a tower's backbone (its head, if any, still trains; a tower without a
    head is locked whole), an int N leaves the last N backbone layers trainable, ``False`` trains it all.

    Example:
        >>> lock_towers(model, {'vision': True, 'text': False})  # doctest: +SKIP
    """
    unknown = set(freeze) - {"text", "vision"}
    if unknown:
        raise ConfigError(f"per-tower freeze takes the keys 'text' and 'vision'; received {sorted(unknown)}")
    for name, setting in freeze.items():
        tower = getattr(model, name)
        layers = tower.backbone_layers() if hasattr(tower, "backbone_layers") else None
        freeze_backbone(getattr(tower, "backbone", tower), setting, what=f"freeze[{name!r}]", layers=layers)
