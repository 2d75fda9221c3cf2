"""CLIP: two towers (text, vision) that embed into one space.

Two ways to get one:

- a Hugging Face CLIP model (``openai/clip-vit-base-patch32``, alias ``clip-base-en``): its text and vision
  transformers with CLIP's own projections (:class:`CLIPTextTower`, :class:`CLIPVisionTower`);
- any text encoder plus any vision encoder, ``{'text': ..., 'vision': ...}``, each given a projection head to a
  shared ``output_dim`` (:func:`build_two_tower`): CLIP-style search from single-modality pretrained models.

A :class:`TwoTowerModel` trains both towers at once; it saves each tower as its own model (``clip-text``,
``clip-vision``), and each tower alone is an ordinary embedding model for ``encode``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetuner.errors import ConfigError
from finetuner.models.base import EmbeddingModel, freeze_backbone
from finetuner.models.text import Pretokenized

TOWERS = ("clip-text", "clip-vision")


class CLIPTextTower(Pretokenized, EmbeddingModel):
    """A Hugging Face ``CLIPTextModelWithProjection`` with its tokenizer (embeddings in CLIP's joint space).

    Example:
        >>> from transformers import CLIPTextConfig, CLIPTextModelWithProjection
        >>> cfg = CLIPTextConfig(vocab_size=99, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        ...                      num_attention_heads=2, projection_dim=8)
        >>> tower = CLIPTextTower(CLIPTextModelWithProjection(cfg), tokenizer=None)
        >>> tower(input_ids=torch.tensor([[1, 5, 2]]), attention_mask=torch.ones(1, 3, dtype=torch.long)).shape
        torch.Size([1, 8])
    """

    modality = "text"
    kind = "clip-text-hf"

    def __init__(self, backbone: nn.Module, tokenizer: Any, max_length: int = 77) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.head = None
        self._input_names = ["input_ids", "attention_mask"]

    @property
    def output_dim(self) -> int:
        return int(self.backbone.config.projection_dim)

    def preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        from finetuner.errors import DataError

        bad = [i for i, t in enumerate(items) if not isinstance(t, str)]
        if bad:
            raise DataError(f"the CLIP text tower encodes str; item {bad[0]} is {type(items[bad[0]]).__name__}")
        batch = self.tokenizer(
            list(items), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).text_embeds  # (batch, proj)

    def metadata(self) -> dict[str, Any]:
        """What ``metadata.yml`` records."""
        return {
            "kind": self.kind,
            "modality": self.modality,
            "max_length": self.max_length,
            "output_dim": self.output_dim,
        }

    def save(self, directory: str | Path) -> None:
        self.backbone.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def load(cls, directory: str | Path, metadata: dict[str, Any]) -> CLIPTextTower:
        from transformers import AutoTokenizer, CLIPTextModelWithProjection

        return cls(
            CLIPTextModelWithProjection.from_pretrained(directory),
            AutoTokenizer.from_pretrained(directory),
            int(metadata.get("max_length", 77)),
        )


class CLIPVisionTower(EmbeddingModel):
    """A Hugging Face ``CLIPVisionModelWithProjection`` with its image processor.

    Images are read with :func:`finetuner.data.images.load_image` (paths, URLs, data URIs, bytes, arrays,
    Documents) in ``preprocess``, i.e. in DataLoader workers.

    Example:
        >>> from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
        >>> cfg = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        ...                        image_size=32, patch_size=16, projection_dim=8)
        >>> tower = CLIPVisionTower(CLIPVisionModelWithProjection(cfg), processor=None)
        >>> tower(pixel_values=torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 8])
    """

    modality = "image"
    kind = "clip-vision-hf"

    def __init__(self, backbone: nn.Module, processor: Any) -> None:
        super().__init__()
        self.backbone = backbone
        self.processor = processor
        self.head = None

    @property
    def output_dim(self) -> int:
        return int(self.backbone.config.projection_dim)

    def preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        from finetuner.data.images import load_image

        images = [load_image(item) for item in items]
        return {"pixel_values": self.processor(images=images, return_tensors="pt")["pixel_values"]}

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixel_values=pixel_values).image_embeds  # (batch, proj)

    def metadata(self) -> dict[str, Any]:
        """What ``metadata.yml`` records."""
        return {"kind": self.kind, "modality": self.modality, "output_dim": self.output_dim}

    def save(self, directory: str | Path) -> None:
        self.backbone.save_pretrained(directory, safe_serialization=True)
        self.processor.save_pretrained(directory)

    @classmethod
    def load(cls, directory: str | Path, metadata: dict[str, Any]) -> CLIPVisionTower:
        from transformers import AutoImageProcessor, CLIPVisionModelWithProjection

        return cls(
            CLIPVisionModelWithProjection.from_pretrained(directory), AutoImageProcessor.from_pretrained(directory)
        )


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

    def param_groups(self, learning_rate: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups: one per tower, each with its own learning rate when one was given."""
        groups = []
        for name, tower in (("text", self.text), ("vision", self.vision)):
            params = [p for p in tower.parameters() if p.requires_grad]
            if params:
                groups.append({"params": params, "lr": float(self.learning_rates.get(name, learning_rate))})
        return groups


def build_hf_clip(name_or_path: str, *, output_dim: int | None = None, **options: Any) -> TwoTowerModel:
    """A :class:`TwoTowerModel` from a Hugging Face CLIP model (hub id or local folder).

    Example:
        >>> model = build_hf_clip('openai/clip-vit-base-patch32')  # doctest: +SKIP
    """
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoTokenizer,
        CLIPTextModelWithProjection,
        CLIPVisionModelWithProjection,
    )

    if output_dim is not None:
        raise ConfigError("a Hugging Face CLIP model keeps its own projection; output_dim is not supported for it")
    config = AutoConfig.from_pretrained(name_or_path)
    text_config, vision_config = config.text_config, config.vision_config
    text_config.projection_dim = vision_config.projection_dim = config.projection_dim  # the joint space's size
    text = CLIPTextTower(
        CLIPTextModelWithProjection.from_pretrained(name_or_path, config=text_config),
        AutoTokenizer.from_pretrained(name_or_path),
    )
    vision = CLIPVisionTower(
        CLIPVisionModelWithProjection.from_pretrained(name_or_path, config=vision_config),
        AutoImageProcessor.from_pretrained(name_or_path),
    )
    temperature = trained_temperature(name_or_path, config.logit_scale_init_value)
    return TwoTowerModel(text, vision, options.pop("learning_rates", None), temperature=temperature)


def trained_temperature(name_or_path: str, init_logit_scale: float) -> float:
    """The temperature a Hugging Face CLIP checkpoint was trained with: ``1 / exp(logit_scale)`` read from its
    safetensors weights (one tensor, nothing else loaded), else from the config's initial ``logit_scale``.

    Example:
        >>> trained_temperature('openai/clip-vit-base-patch32', 2.6592)  # doctest: +SKIP
        0.01
    """
    from safetensors import safe_open
    from transformers.utils import cached_file

    try:
        index = cached_file(name_or_path, "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False)
        if index:
            shard = json.loads(Path(index).read_text(encoding="utf-8"))["weight_map"].get("logit_scale")
            path = cached_file(name_or_path, shard) if shard else None
        else:
            path = cached_file(name_or_path, "model.safetensors", _raise_exceptions_for_missing_entries=False)
        if path:
            with safe_open(path, framework="pt") as weights:
                names = list(weights.keys())  # a safetensors handle lists its tensors without loading them
                if "logit_scale" in names:
                    return float(torch.exp(-weights.get_tensor("logit_scale").float().reshape(-1)[0]))
    except (OSError, ValueError, KeyError):
        pass  # no safetensors weights to read it from: the config's initial value
    return float(math.exp(-init_logit_scale))


def build_two_tower(spec: dict[str, Any], *, output_dim: int | None = None, **options: Any) -> TwoTowerModel:
    """A :class:`TwoTowerModel` from ``{'text': TEXT_MODEL, 'vision': VISION_MODEL}`` (names, folders or modules).

    Each tower gets a projection head to ``output_dim`` (default: the smaller of the two towers' sizes), so both
    embed into one space. ``options`` may hold ``text_options`` / ``vision_options`` (each tower's
    ``model_options``) and ``learning_rates``.

    Example:
        >>> spec = {'text': 'all-MiniLM-L6-v2', 'vision': 'efficientnet-lite0'}
        >>> model = build_two_tower(spec, output_dim=128)  # doctest: +SKIP
        >>> model.output_dim  # doctest: +SKIP
        128
    """
    from finetuner.models.factory import build_model

    unknown = set(spec) - {"text", "vision"}
    if unknown or not {"text", "vision"} <= set(spec):
        raise ConfigError(f"a two-tower model takes {{'text': ..., 'vision': ...}}; received keys {sorted(spec)}")
    text_opts = dict(options.pop("text_options", None) or {})
    vision_opts = dict(options.pop("vision_options", None) or {})
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
