"""The two towers of an open_clip model as finetuner embedding models (:class:`OpenCLIPTextTower`,
:class:`OpenCLIPVisionTower`).

An open_clip ``CLIP`` (or ``CustomTextCLIP``) is split in two
(:func:`~finetuner.models.clip.open_clip_files.split_open_clip`): the vision tower is its ``visual`` module (what
``model.encode_image`` runs); the text tower is the rest, minus ``logit_scale`` / ``logit_bias``, and embeds with
``model.encode_text``. Each saves into a self-contained folder that loads without the network
(:mod:`finetuner.models.clip.open_clip_files`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetuner.errors import ConfigError, DataError
from finetuner.models.base import EmbeddingModel, layer_list
from finetuner.models.clip.open_clip_files import (
    HF_TEXT_DIR,
    WEIGHTS_FILE,
    load_weights,
    rebuild,
    save_weights,
    split_open_clip,
    write_config,
)
from finetuner.models.clip.open_clip_names import import_open_clip
from finetuner.models.vision.backbones import timm_blocks


class _Checkpointing:
    """``gradient_checkpointing=True`` for an open_clip tower: the ``grad_checkpointing`` switches that open_clip's
    transformers and timm's models read (a Hugging Face text encoder inside is switched by the training loop)."""

    backbone: nn.Module
    supports_gradient_checkpointing = True

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        switches = [m for m in self.backbone.modules() if isinstance(getattr(m, "grad_checkpointing", None), bool)]
        hf = [m for m in self.backbone.modules() if getattr(m, "supports_gradient_checkpointing", False)]
        if not switches and not hf:
            raise ConfigError(
                f"gradient_checkpointing=True, but open_clip's {type(self.backbone).__name__} has no activation "
                "checkpointing; drop gradient_checkpointing"
            )
        for module in switches:
            module.grad_checkpointing = True


class OpenCLIPTextTower(_Checkpointing, EmbeddingModel):
    """The text half of an open_clip model with its tokenizer; ``forward`` is ``model.encode_text``.

    Every text is tokenised to the model's fixed ``context_length`` (open_clip's positional embeddings have that
    size). For training the texts are tokenised once up front (``pretokenize``), stored without their trailing
    padding, and padded back per batch (``collate_tokens``): the same tensors as ``preprocess`` gives.

    Args:
        backbone: the open_clip model without its ``visual`` tower (see :func:`split_open_clip`).
        tokenizer: ``open_clip.get_tokenizer(...)`` for the model.
        config: ``{'model_cfg': ..., 'preprocess_cfg': ...}`` (written as ``open_clip_config.json``).
        source: the name it was built from (recorded in ``metadata.yml``).

    Example:
        >>> model = finetuner.build_model('ViT-B-32::openai')  # doctest: +SKIP
        >>> model.text(**model.text.preprocess(['a photo of a cat'])).shape  # doctest: +SKIP
        torch.Size([1, 512])
    """

    modality = "text"
    kind = "open-clip-text"

    def __init__(self, backbone: nn.Module, tokenizer: Any, config: dict[str, Any], source: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.config = copy.deepcopy(config)
        self.source = source
        self.head = None
        hf = getattr(tokenizer, "tokenizer", None)
        self.pad_id = int(getattr(hf, "pad_token_id", None) or 0)

    @property
    def output_dim(self) -> int:
        return int(self.config["model_cfg"]["embed_dim"])

    @property
    def context_length(self) -> int:
        """The tokenised length of every text."""
        return int(self.tokenizer.context_length)

    def preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """Tokenise texts to ``input_ids`` of shape ``(batch, context_length)``."""
        bad = [i for i, t in enumerate(items) if not isinstance(t, str)]
        if bad:
            raise DataError(
                f"the open_clip text tower encodes str; item {bad[0]} is {type(items[bad[0]]).__name__} "
                "(for images use the vision tower)"
            )
        return {"input_ids": self.tokenizer(list(items)).long()}  # (batch, context_length)

    def pretokenize(self, items: list[str]) -> list[dict[str, list[int]]]:
        """Token ids of every text without the trailing padding, computed once before training."""
        ids = self.preprocess(items)["input_ids"]  # (n, context_length)
        keep = (ids != self.pad_id).long()
        lengths = (keep * torch.arange(1, ids.shape[1] + 1)).amax(dim=1)  # (n,) up to the last non-pad token
        return [{"input_ids": row[: int(n)].tolist()} for row, n in zip(ids, lengths)]

    def collate_tokens(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        """Pad pre-tokenised rows back to ``context_length``: the tensors ``preprocess`` would give."""
        batch = torch.full((len(rows), self.context_length), self.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            batch[i, : len(row["input_ids"])] = torch.as_tensor(row["input_ids"], dtype=torch.long)
        return {"input_ids": batch}  # (batch, context_length)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.backbone.encode_text(input_ids)  # (batch, embed_dim)

    def backbone_layers(self) -> list[nn.Module] | None:
        """The transformer blocks (``transformer.resblocks``, or a Hugging Face encoder's layers)."""
        found = layer_list(self.backbone)
        return list(found) if found is not None else None

    def metadata(self) -> dict[str, Any]:
        """What ``metadata.yml`` records."""
        return {
            "kind": self.kind,
            "modality": self.modality,
            "source": self.source,
            "output_dim": self.output_dim,
            "context_length": self.context_length,
        }

    def save(self, directory: str | Path) -> None:
        """``open_clip_config.json``, the text weights, and a Hugging Face tokenizer / text config if used."""
        d = Path(directory)
        write_config(d, self.config)
        save_weights(self.backbone, d / WEIGHTS_FILE)
        if self.config["model_cfg"].get("text_cfg", {}).get("hf_tokenizer_name"):
            self.tokenizer.save_pretrained(str(d))  # get_tokenizer('local-dir:...') reads it from the folder
        hf_text = getattr(getattr(self.backbone, "text", None), "config", None)
        if self.config["model_cfg"].get("text_cfg", {}).get("hf_model_name") and hf_text is not None:
            hf_text.save_pretrained(str(d / HF_TEXT_DIR))

    @classmethod
    def load(cls, directory: str | Path, metadata: dict[str, Any]) -> OpenCLIPTextTower:
        """Rebuild the architecture offline, keep the text half, load the saved weights."""
        d = Path(directory)
        model, config = rebuild(d, keep="text")
        text, _, _ = split_open_clip(model)
        load_weights(text, d)
        tokenizer = import_open_clip(f"loading {d}").get_tokenizer(f"local-dir:{d.absolute()}")
        return cls(text, tokenizer, config, str(metadata.get("source", d)))


def image_transforms(preprocess_cfg: dict[str, Any], augment: Any) -> tuple[Any, Any]:
    """open_clip's eval transform for ``preprocess_cfg`` and, when ``augment`` is on, its train transform
    (``True``: open_clip's defaults, a random resized crop of 90-100% of the image; a dict: open_clip
    ``AugmentationCfg`` fields such as ``scale``, ``ratio``, ``color_jitter``).

    Example:
        >>> evaluate, train = image_transforms({'size': 224}, augment=False)  # doctest: +SKIP
    """
    open_clip = import_open_clip("an open_clip image transform")
    cfg = dict(preprocess_cfg)
    size = cfg.get("size", 224)
    settings = {
        "image_size": tuple(size) if isinstance(size, list) else size,
        "mean": tuple(cfg["mean"]) if cfg.get("mean") is not None else None,
        "std": tuple(cfg["std"]) if cfg.get("std") is not None else None,
        "resize_mode": cfg.get("resize_mode"),
        "interpolation": cfg.get("interpolation"),
        "fill_color": int(cfg.get("fill_color", 0) or 0),
    }
    evaluate = open_clip.image_transform(is_train=False, **settings)
    if augment is None or augment is False:
        return evaluate, None
    if augment is not True and not isinstance(augment, dict):
        raise ConfigError(f"augment must be True, False or a dict of open_clip AugmentationCfg; received {augment!r}")
    try:
        aug_cfg = open_clip.AugmentationCfg(**(augment if isinstance(augment, dict) else {}))
        train = open_clip.image_transform(is_train=True, aug_cfg=aug_cfg, **settings)
    except (TypeError, ValueError, AssertionError) as exc:
        valid = ", ".join(open_clip.AugmentationCfg.__dataclass_fields__)
        raise ConfigError(
            f"augment={augment!r} is not a valid open_clip augmentation ({exc}); fields: {valid}"
        ) from None
    return evaluate, train


class OpenCLIPVisionTower(_Checkpointing, EmbeddingModel):
    """The vision half of an open_clip model (its ``visual`` module: what ``model.encode_image`` runs) with
    open_clip's own image transform.

    ``preprocess`` decodes any image source finetuner reads (paths, URLs, data URIs, bytes, arrays, Documents;
    see :func:`finetuner.data.images.load_image`) and applies open_clip's eval transform;
    ``training_preprocess`` applies its train transform when ``augment`` is on.

    Args:
        visual: the open_clip model's ``visual`` module.
        config: ``{'model_cfg': ..., 'preprocess_cfg': ...}`` (written as ``open_clip_config.json``).
        source: the name it was built from.
        augment: ``None``/``False`` (off), ``True`` or a dict of open_clip ``AugmentationCfg`` fields.

    Example:
        >>> model = finetuner.build_model('ViT-B-32::openai')  # doctest: +SKIP
        >>> model.vision(**model.vision.preprocess(['cat.png'])).shape  # doctest: +SKIP
        torch.Size([1, 512])
    """

    modality = "image"
    kind = "open-clip-vision"

    def __init__(self, visual: nn.Module, config: dict[str, Any], source: str, augment: Any = None) -> None:
        super().__init__()
        self.backbone = visual
        self.config = copy.deepcopy(config)
        self.source = source
        self.augment = augment if augment not in (None, False) else None
        self.head = None
        self.transform, self.train_transform = image_transforms(self.config.get("preprocess_cfg", {}), self.augment)

    @property
    def output_dim(self) -> int:
        return int(self.config["model_cfg"]["embed_dim"])

    def _pixels(self, items: list[Any], transform: Any) -> dict[str, torch.Tensor]:
        from finetuner.data.images import load_image

        return {"pixel_values": torch.stack([transform(load_image(item)) for item in items])}  # (batch, 3, H, W)

    def preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """Decode every image and apply open_clip's eval transform."""
        return self._pixels(items, self.transform)

    def training_preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """:meth:`preprocess` with open_clip's train transform when ``augment`` is on."""
        return self._pixels(items, self.train_transform or self.transform)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.backbone(pixel_values)
        return out[0] if isinstance(out, tuple) else out  # (batch, embed_dim)

    def backbone_layers(self) -> list[nn.Module] | None:
        """The blocks ``freeze=N`` counts: a ViT's ``transformer.resblocks``, a timm trunk's ``blocks`` /
        ``stages`` / ``layers``, or a modified ResNet's four stages and its attention pool."""
        visual = self.backbone
        trunk = getattr(visual, "trunk", None)
        if trunk is not None and timm_blocks(trunk):  # open_clip's TimmModel
            return timm_blocks(trunk)
        if all(hasattr(visual, f"layer{i}") for i in range(1, 5)):  # ModifiedResNet
            return [getattr(visual, f"layer{i}") for i in range(1, 5)] + [visual.attnpool]
        found = layer_list(visual)
        return list(found) if found is not None else None

    def metadata(self) -> dict[str, Any]:
        """What ``metadata.yml`` records."""
        return {
            "kind": self.kind,
            "modality": self.modality,
            "source": self.source,
            "output_dim": self.output_dim,
            "augment": self.augment,
        }

    def save(self, directory: str | Path) -> None:
        """``open_clip_config.json`` and the vision weights (named ``visual.*``, as in the whole model)."""
        d = Path(directory)
        write_config(d, self.config)
        save_weights(self.backbone, d / WEIGHTS_FILE, prefix="visual.")

    @classmethod
    def load(cls, directory: str | Path, metadata: dict[str, Any]) -> OpenCLIPVisionTower:
        """Rebuild the architecture offline, keep the vision half, load the saved weights."""
        d = Path(directory)
        model, config = rebuild(d, keep="vision")
        _, visual, _ = split_open_clip(model)
        del model
        load_weights(visual, d, prefix="visual.")
        return cls(visual, config, str(metadata.get("source", d)), metadata.get("augment"))
