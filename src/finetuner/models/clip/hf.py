"""Hugging Face CLIP (``openai/clip-vit-base-patch32``, alias ``clip-base-en``) as two towers.

Its text and vision transformers keep CLIP's own projections (:class:`CLIPTextTower`, :class:`CLIPVisionTower`);
:func:`build_hf_clip` puts them in a :class:`~finetuner.models.clip.two_tower.TwoTowerModel` with the temperature
the checkpoint was trained with. Each tower saves as a Hugging Face folder (``kind`` ``clip-text-hf`` /
``clip-vision-hf``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetuner.errors import ConfigError, DataError
from finetuner.models.base import EmbeddingModel
from finetuner.models.clip.two_tower import TwoTowerModel
from finetuner.models.text.masks import device_mask, takes_device_mask
from finetuner.models.text.tokens import Pretokenized, embed_grouped, is_grouped


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

    def __init__(self, backbone: nn.Module, tokenizer: Any, max_length: int | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.max_length = token_limit(backbone, tokenizer, max_length)
        self.head = None
        self._input_names = ["input_ids", "attention_mask"]
        # causal + padding mask made on the device: no host sync per forward (finetuner.models.text.masks)
        self._device_mask = takes_device_mask(backbone, causal=True, output="text_embeds")

    @property
    def output_dim(self) -> int:
        return int(self.backbone.config.projection_dim)

    def preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        bad = [i for i, t in enumerate(items) if not isinstance(t, str)]
        if bad:
            raise DataError(f"the CLIP text tower encodes str; item {bad[0]} is {type(items[bad[0]]).__name__}")
        return self.tokenize(list(items))  # padded to a bucketed length (finetuner.models.text.tokens)

    def forward(self, **inputs: Any) -> torch.Tensor:
        """CLIP's projected text embeddings ``(batch, proj)`` of a padded or length-grouped batch. Extra right
        padding changes nothing: CLIP pools the first end-of-text token, and padding is masked out."""
        return embed_grouped(self._embed, inputs) if is_grouped(inputs) else self._embed(inputs)

    def _embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]  # (batch, seq) each
        if self._device_mask:
            mask = device_mask(mask, causal=True)  # (batch, 1, seq, seq)
        return self.backbone(input_ids=ids, attention_mask=mask).text_embeds  # (batch, proj)

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
            metadata.get("max_length"),  # never beyond the text tower's positions (token_limit)
        )


def token_limit(backbone: nn.Module, tokenizer: Any, wanted: int | None = None) -> int:
    """The longest token sequence the text tower takes: its position embeddings (``max_position_embeddings``: 77
    for OpenAI's CLIP, other sizes elsewhere), the tokenizer's ``model_max_length`` when smaller, and ``wanted``
    (a saved tower's limit, or a user's) when smaller still.

    Example:
        >>> from types import SimpleNamespace
        >>> tower = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=248))
        >>> token_limit(tower, SimpleNamespace(model_max_length=10**30)), token_limit(tower, None, 64)
        (248, 64)
    """
    config = getattr(backbone, "config", None)
    limits = [getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None), wanted]
    usable = [int(v) for v in limits if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 10**6]
    return min(usable) if usable else 77


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
        self._normalizer: Any = None  # set by training_inputs for its uint8 decode-once batches

    @property
    def output_dim(self) -> int:
        return int(self.backbone.config.projection_dim)

    def preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        from finetuner.data.images import load_image

        images = [load_image(item) for item in items]
        return {"pixel_values": self.processor(images=images, return_tensors="pt")["pixel_values"]}

    def training_inputs(self, items: list[Any], device_type: str, num_workers: int = 0) -> tuple[Any, Any]:
        """Images decoded, resized and cropped once when they fit in memory
        (:func:`~finetuner.models.vision.pixels.decode_once`), else decoded per batch in the loader."""
        from finetuner.models.vision.pixels import PixelCollate, decode_once, split_transform
        from finetuner.models.vision.transforms import ProcessorTransform

        transform = ProcessorTransform(self.processor)
        cache = decode_once(items, transform, num_workers=num_workers)
        if cache is None:
            return items, self.preprocess
        split = split_transform(transform)
        self._normalizer = split[1] if split is not None else None
        return cache, PixelCollate()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """CLIP's projected image embeddings ``(batch, proj)`` of float pixels, or of ``uint8`` decode-once pixels
        (normalised here, on the device)."""
        if pixel_values.dtype == torch.uint8:
            normalizer = getattr(self, "_normalizer", None)
            if normalizer is None:
                raise DataError("uint8 pixels come from training_inputs' decode-once batches; use preprocess")
            pixel_values = normalizer(pixel_values)  # (batch, 3, H, W) float
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
