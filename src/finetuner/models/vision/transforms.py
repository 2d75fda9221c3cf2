"""From RGB images to the ``pixel_values`` a vision backbone takes, and train-time augmentation.

Two transforms exist, both ``transform(images) -> (batch, 3, H, W)`` float tensors:

- :class:`ProcessorTransform`: a Hugging Face image processor (``AutoImageProcessor``), for Hugging Face models;
  transformers' PIL backend is used, so torchvision is never needed;
- :class:`ResizeNormalize`: resize the shorter side, centre-crop, scale to [0, 1] and normalise with a mean and
  std, for timm models, EfficientNet-Lite and plain ``torch.nn.Module`` backbones.

:class:`RandomResizedCropFlip` is the optional train-time augmentation (``model_options={'augment': True}``); it
works on the decoded image before the transform, so evaluation and ``encode`` never see it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from finetuner.errors import ConfigError
from finetuner.models.vision.color import jitter_colors, random_gray

#: the settings of ``model_options['augment']`` (:class:`RandomResizedCropFlip`'s arguments)
AUGMENT_KEYS = ("scale", "ratio", "flip", "color_jitter", "grayscale")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def _pair(size: int | Sequence[int], what: str) -> tuple[int, int]:
    if isinstance(size, Sequence) and not isinstance(size, str):
        values = list(size)[-2:] if len(size) in (2, 3) else []  # (height, width) or timm's (3, height, width)
        if len(values) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            return values[0], values[1]
    elif isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size, size
    raise ConfigError(f"{what} must be a positive int or (height, width); received {size!r}")


def _triple(values: Any, what: str) -> tuple[float, float, float]:
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [values] * 3
    try:
        out = tuple(float(v) for v in values)
    except TypeError:
        out = ()
    if len(out) == 1:
        out = out * 3
    if len(out) != 3 or (what == "std" and min(out) <= 0):
        raise ConfigError(
            f"{what} must be 3 numbers (one per RGB channel){' > 0' if what == 'std' else ''}; received {values!r}"
        )
    return out  # type: ignore[return-value]


class ResizeNormalize:
    """Resize the shorter side to ``size / crop_pct``, centre-crop to ``size``, scale to [0, 1], normalise.

    Args:
        input_size: the model's input size, an int or ``(height, width)``.
        mean, std: per-channel normalisation (default ImageNet's).
        crop_pct: the share of the resized image the centre crop keeps (1.0: resize straight to the size).
        interpolation: ``'bicubic'``, ``'bilinear'``, ``'lanczos'`` or ``'nearest'``.

    Example:
        >>> t = ResizeNormalize(8, mean=0.5, std=0.5)
        >>> t([Image.new('RGB', (20, 10), (255, 0, 0))]).shape
        torch.Size([1, 3, 8, 8])
    """

    kind = "resize-normalize"

    def __init__(
        self,
        input_size: int | Sequence[int],
        *,
        mean: Any = IMAGENET_MEAN,
        std: Any = IMAGENET_STD,
        crop_pct: float = 1.0,
        interpolation: str = "bicubic",
    ) -> None:
        self.size = _pair(input_size, "input_size")
        self.mean = _triple(mean, "mean")
        self.std = _triple(std, "std")
        if not isinstance(crop_pct, (int, float)) or not 0 < crop_pct <= 1:
            raise ConfigError(f"crop_pct must be a number in (0, 1]; received {crop_pct!r}")
        self.crop_pct = float(crop_pct)
        if interpolation not in _RESAMPLE:
            raise ConfigError(f"interpolation must be one of {', '.join(_RESAMPLE)}; received {interpolation!r}")
        self.interpolation = interpolation

    def _one(self, img: Image.Image) -> np.ndarray:
        h, w = self.size
        scale = max(h / img.height, w / img.width) / self.crop_pct
        # truncated, as torchvision's Resize (and so timm's transforms) size the sides; 1e-6 absorbs float error
        new_w, new_h = max(w, int(img.width * scale + 1e-6)), max(h, int(img.height * scale + 1e-6))
        if (new_w, new_h) != img.size:
            img = img.resize((new_w, new_h), _RESAMPLE[self.interpolation])
        left, top = (new_w - w) // 2, (new_h - h) // 2
        img = img.crop((left, top, left + w, top + h))
        return np.asarray(img, dtype=np.float32)  # (H, W, 3)

    def __call__(self, images: list[Image.Image], *, resized: bool = False) -> torch.Tensor:
        """Pixel values ``(batch, 3, H, W)``; ``resized=True``: the images already have the input size (a
        train-time crop resized straight to it), so they are only scaled and normalised."""
        if resized:
            h, w = self.size
            if any(img.size != (w, h) for img in images):
                raise ValueError(f"resized=True needs {w}x{h} images; received {[img.size for img in images]}")
            arrays = [np.asarray(img.convert("RGB"), dtype=np.float32) for img in images]
        else:
            arrays = [self._one(img) for img in images]
        batch = torch.from_numpy(np.stack(arrays))  # (batch, H, W, 3)
        batch = batch.permute(0, 3, 1, 2).div_(255.0)  # (batch, 3, H, W)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((batch - mean) / std).contiguous()  # (batch, 3, H, W)

    def describe(self) -> dict[str, Any]:
        """The settings (stored in ``metadata.yml``; :func:`transform_from_metadata` rebuilds from them)."""
        return {
            "type": self.kind,
            "input_size": list(self.size),
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
        }

    def save(self, directory: Path) -> None:
        """Nothing to write: the settings live in ``metadata.yml``."""


class ProcessorTransform:
    """A Hugging Face image processor as a transform.

    Example:
        >>> from transformers import ViTImageProcessor  # doctest: +SKIP
        >>> t = ProcessorTransform(ViTImageProcessor(size={'height': 16, 'width': 16}))  # doctest: +SKIP
        >>> t([Image.new('RGB', (30, 20))]).shape  # doctest: +SKIP
        torch.Size([1, 3, 16, 16])
    """

    kind = "image-processor"

    def __init__(self, processor: Any) -> None:
        if not callable(processor):
            raise ConfigError(f"image_processor must be a Hugging Face image processor; received {processor!r}")
        self.processor = processor

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        out = self.processor(images=images, return_tensors="pt")
        return out["pixel_values"].float()  # (batch, 3, H, W)

    def describe(self) -> dict[str, Any]:
        """Where the processor lives (``preprocessor_config.json`` next to the weights)."""
        return {"type": self.kind, "class": type(self.processor).__name__}

    def save(self, directory: Path) -> None:
        """Write ``preprocessor_config.json``."""
        self.processor.save_pretrained(str(directory))


def load_image_processor(name_or_path: str) -> Any:
    """``AutoImageProcessor.from_pretrained`` with transformers' PIL backend (no torchvision needed).

    Example:
        >>> processor = load_image_processor('microsoft/resnet-50')  # doctest: +SKIP
    """
    import transformers
    from transformers import AutoImageProcessor

    major = int(transformers.__version__.split(".", 1)[0])
    options = {"backend": "pil"} if major >= 5 else {"use_fast": False}
    try:
        return AutoImageProcessor.from_pretrained(name_or_path, **options)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{name_or_path} has no usable image processor ({exc}); save one next to the model "
            "(preprocessor_config.json), or pass model_options={'input_size': ..., 'mean': ..., 'std': ...}"
        ) from exc


def transform_from_metadata(directory: Path, meta: dict[str, Any]) -> ResizeNormalize | ProcessorTransform:
    """Rebuild the transform that :meth:`describe` recorded (a processor is read from ``directory``)."""
    if meta.get("type") == ProcessorTransform.kind:
        return ProcessorTransform(load_image_processor(str(directory)))
    return ResizeNormalize(
        meta["input_size"],
        mean=meta["mean"],
        std=meta["std"],
        crop_pct=meta.get("crop_pct", 1.0),
        interpolation=meta.get("interpolation", "bicubic"),
    )


class RandomResizedCropFlip:
    """Train-time augmentation: a random crop of ``scale`` x the area and an aspect ratio in ``ratio``, resized
    (once) to ``size`` -- the model's input size when the encoder's transform is a
    :class:`ResizeNormalize`, as torchvision's ``RandomResizedCrop`` does in open_clip's and timm's training
    transforms -- or else back to the image's size, then a horizontal flip with probability ``flip``, then (when
    set) SimCLR's colour distortion of strength ``color_jitter`` and grey with probability ``grayscale``
    (:mod:`~finetuner.models.vision.color`).

    Randomness comes from torch's generator, which DataLoader seeds per worker (and ``fit(seed=...)`` seeds).

    Example:
        >>> aug = RandomResizedCropFlip(scale=(0.5, 1.0))
        >>> aug(Image.new('RGB', (32, 24))).size
        (32, 24)
        >>> aug(Image.new('RGB', (32, 24)), size=(16, 16), resample='bicubic').size
        (16, 16)
    """

    def __init__(
        self,
        scale: Sequence[float] = (0.5, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        flip: float = 0.5,
        color_jitter: float = 0.0,
        grayscale: float = 0.0,
    ) -> None:
        scale, ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"augment scale must be (low, high) with 0 < low <= high <= 1; received {scale!r}")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ConfigError(f"augment ratio must be (low, high) with 0 < low <= high; received {ratio!r}")
        if not 0 <= float(flip) <= 1:
            raise ConfigError(f"augment flip is a probability in [0, 1]; received {flip!r}")
        if not 0 <= float(color_jitter) <= 1:
            raise ConfigError(f"augment color_jitter is a strength in [0, 1] (SimCLR's s); received {color_jitter!r}")
        if not 0 <= float(grayscale) <= 1:
            raise ConfigError(f"augment grayscale is a probability in [0, 1]; received {grayscale!r}")
        self.scale, self.ratio, self.flip = scale, ratio, float(flip)
        self.color_jitter, self.grayscale = float(color_jitter), float(grayscale)

    def is_random(self) -> bool:
        """Whether two calls on one image can give different images (a crop of less than the whole area, a flip
        with a probability strictly between 0 and 1, colour jitter or a random grey).

        Example:
            >>> RandomResizedCropFlip(scale=(1.0, 1.0), flip=0.0).is_random(), RandomResizedCropFlip().is_random()
            (False, True)
        """
        return self.scale[0] < 1 or 0 < self.flip < 1 or self.color_jitter > 0 or 0 < self.grayscale < 1

    def _box(self, width: int, height: int) -> tuple[int, int, int, int]:
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * float(torch.rand(())))
            aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * float(torch.rand(())))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                left = int(torch.randint(0, width - w + 1, ()))
                top = int(torch.randint(0, height - h + 1, ()))
                return left, top, left + w, top + h
        return 0, 0, width, height

    def __call__(
        self, img: Image.Image, size: tuple[int, int] | None = None, resample: str = "bilinear"
    ) -> Image.Image:
        """The augmented image, ``size`` = (height, width) (default: the image's own size)."""
        box = self._box(img.width, img.height)
        target = (size[1], size[0]) if size is not None else img.size
        out = img.resize(target, _RESAMPLE[resample], box=box)
        if self.flip and float(torch.rand(())) < self.flip:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.color_jitter:
            out = jitter_colors(out, self.color_jitter)
        if self.grayscale:
            out = random_gray(out, self.grayscale)
        return out

    def describe(self) -> dict[str, Any]:
        """The settings (stored in ``metadata.yml``)."""
        out = {"scale": list(self.scale), "ratio": list(self.ratio), "flip": self.flip}
        colors = {"color_jitter": self.color_jitter, "grayscale": self.grayscale}
        return {**out, **{k: v for k, v in colors.items() if v}}  # absent when off: older metadata is unchanged


def make_augment(option: Any) -> RandomResizedCropFlip | None:
    """The augmentation for ``model_options['augment']``: False/None (off), True (defaults) or a dict of
    :class:`RandomResizedCropFlip` settings (``scale``, ``ratio``, ``flip``, ``color_jitter``, ``grayscale``).

    Example:
        >>> make_augment(False) is None, make_augment({'flip': 0.0}).flip
        (True, 0.0)
    """
    if option is None or option is False:
        return None
    if option is True:
        return RandomResizedCropFlip()
    if isinstance(option, dict):
        unknown = sorted(set(option) - set(AUGMENT_KEYS))
        if unknown:
            raise ConfigError(f"unknown augment setting(s) {unknown}; valid: {', '.join(AUGMENT_KEYS)}")
        return RandomResizedCropFlip(**option)
    raise ConfigError(f"augment must be True, False or a dict ({', '.join(AUGMENT_KEYS)}); received {option!r}")
