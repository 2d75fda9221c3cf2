"""Decode training images once: resized and cropped ``uint8`` pixels kept in memory, normalised on the device.

Without random augmentation an image gives the same ``pixel_values`` every epoch, so decoding, resizing and cropping
it again each epoch is wasted work: on a 2-core CPU it is a few milliseconds an image, on a GPU it is what keeps
the GPU waiting (a CLIP step at 4000 pairs/s needs 4000 decoded 224 px images a second). :func:`decode_once` does it
once before training, in DataLoader workers when there are some, and keeps ``(3, H, W)`` ``uint8`` rows (150 KB an
image at 224 px) when they all fit in :func:`cache_budget`. A batch is then a stack of rows (:class:`PixelCollate`),
a quarter of the bytes of float pixels to copy to the device, where the model's forward rescales and normalises them
(:class:`Normalizer`) exactly as the transform would have.

The cached path is taken only when it reproduces the transform: checked on a few images before training (1e-5).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from finetuner.data.images import load_image

#: environment variable: the most memory (GiB) decoded training images may take (default: see cache_budget)
BUDGET_ENV = "FINETUNER_IMAGE_CACHE_GB"


def cache_budget() -> int:
    """Bytes decoded training images may take: ``FINETUNER_IMAGE_CACHE_GB``, else 4 GiB or an eighth of the
    machine's memory, whichever is smaller.

    Example:
        >>> 0 < cache_budget() <= 4 * 2**30
        True
    """
    value = os.environ.get(BUDGET_ENV, "").strip()
    if value:
        return int(float(value) * 2**30)
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        physical = 16 * 2**30
    return int(min(4 * 2**30, physical // 8))


class Normalizer:
    """``(pixels * rescale - mean) / std`` per channel: a transform's last step, applied on the device to ``uint8``
    pixels.

    Example:
        >>> n = Normalizer(1 / 255, [0.5] * 3, [0.5] * 3)
        >>> n(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)).flatten().tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(self, rescale: float, mean: Sequence[float], std: Sequence[float]) -> None:
        self.rescale = float(rescale)
        self.mean = torch.tensor([float(m) for m in mean]).view(1, 3, 1, 1)
        self.std = torch.tensor([float(s) for s in std]).view(1, 3, 1, 1)
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.device not in self._on:  # moved once per device, not every step
            self._on[pixels.device] = (self.mean.to(pixels.device), self.std.to(pixels.device))
        mean, std = self._on[pixels.device]
        return (pixels.float() * self.rescale - mean) / std  # (batch, 3, H, W), the memory format of pixels


class _ResizeCrop:
    """A :class:`~finetuner.models.vision.transforms.ResizeNormalize` without its normalisation."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, images: list[Any]) -> torch.Tensor:
        rows = [self.transform._one(img).astype(np.uint8) for img in images]  # (H, W, 3) each, integral values
        return torch.from_numpy(np.stack(rows)).permute(0, 3, 1, 2).contiguous()  # (batch, 3, H, W)


class _ProcessorCrop:
    """A Hugging Face image processor without its rescaling and normalisation."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, images: list[Any]) -> torch.Tensor:
        out = self.processor(images=images, return_tensors="pt", do_rescale=False, do_normalize=False)
        return out["pixel_values"]  # (batch, 3, H, W), checked to be integral by decode_once


def split_transform(transform: Any) -> tuple[Any, Normalizer] | None:
    """``(crop, normalizer)`` such that ``normalizer(crop(images))`` is ``transform(images)``: ``crop`` decodes to
    ``(batch, 3, H, W)`` pixel values 0..255; None for a transform that cannot be split.

    Example:
        >>> from finetuner.models.vision.transforms import ResizeNormalize
        >>> from PIL import Image
        >>> crop, norm = split_transform(ResizeNormalize(8))
        >>> crop([Image.new('RGB', (20, 10))]).dtype
        torch.uint8
    """
    from finetuner.models.vision.transforms import ProcessorTransform, ResizeNormalize

    if isinstance(transform, ResizeNormalize):
        return _ResizeCrop(transform), Normalizer(1 / 255, transform.mean, transform.std)
    processor = getattr(transform, "processor", None)
    if isinstance(transform, ProcessorTransform) and processor is not None:
        if not (getattr(processor, "do_rescale", False) and getattr(processor, "do_normalize", False)):
            return None
        return _ProcessorCrop(processor), Normalizer(
            processor.rescale_factor, processor.image_mean, processor.image_std
        )
    return None


class _Decode(Dataset):
    def __init__(self, items: Sequence[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return load_image(self.items[i])


class CachedPixels(Sequence):
    """Decoded training images: ``cache[i]`` is image ``i``'s ``(3, H, W)`` ``uint8`` pixels (a view)."""

    def __init__(self, pixels: torch.Tensor) -> None:
        self.pixels = pixels  # (n, 3, H, W) uint8

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def __getitem__(self, i: Any) -> torch.Tensor:
        return self.pixels[i]

    @property
    def nbytes(self) -> int:
        """Memory the pixels take."""
        return self.pixels.numel() * self.pixels.element_size()


class PixelCollate:
    """Stack cached ``uint8`` rows into ``{'pixel_values': (batch, 3, H, W) uint8}``, channels-last when the model
    runs that way (so the copy to the device needs no reordering there).

    Example:
        >>> PixelCollate()([torch.zeros(3, 4, 4, dtype=torch.uint8)] * 2)['pixel_values'].shape
        torch.Size([2, 3, 4, 4])
    """

    def __init__(self, channels_last: bool = False) -> None:
        self.channels_last = channels_last

    def __call__(self, rows: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        batch = torch.stack(list(rows))  # (batch, 3, H, W) uint8
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return {"pixel_values": batch}


def decode_once(
    items: Sequence[Any], transform: Any, *, num_workers: int = 0, budget: int | None = None, check: int = 4
) -> CachedPixels | None:
    """Decode, resize and crop every image once into ``uint8`` rows, or None when that cannot be done faithfully
    or would not fit: the transform cannot be split, its crop is not integral, or ``len(items)`` rows would exceed
    ``budget`` bytes (default :func:`cache_budget`). The first ``check`` images are compared with ``transform``
    itself (1e-5) before anything is kept.

    Example:
        >>> from finetuner.models.vision.transforms import ResizeNormalize
        >>> import numpy as np
        >>> cache = decode_once([np.zeros((20, 20, 3), np.uint8)] * 3, ResizeNormalize(8))
        >>> len(cache), cache[0].shape
        (3, torch.Size([3, 8, 8]))
    """
    split = split_transform(transform)
    if split is None or not len(items):
        return None
    crop, normalize = split
    probe = [load_image(item) for item in items[: max(1, check)]]
    pixels = crop(probe)  # (check, 3, H, W)
    if pixels.dtype != torch.uint8:
        if pixels.is_floating_point() and bool((pixels == pixels.round()).all()) and 0 <= pixels.min() <= 255:
            pixels = pixels.round().to(torch.uint8)
        else:
            return None
    if not torch.allclose(normalize(pixels), transform(probe).float(), atol=1e-5, rtol=0):
        return None
    need = len(items) * pixels[0].numel()
    if need > (cache_budget() if budget is None else budget):
        return None
    out = torch.empty((len(items), *pixels.shape[1:]), dtype=torch.uint8)  # (n, 3, H, W)
    loader = DataLoader(_Decode(items), batch_size=64, num_workers=num_workers, collate_fn=crop)
    start = 0
    for batch in loader:
        batch = batch.round().to(torch.uint8) if batch.dtype != torch.uint8 else batch
        out[start : start + len(batch)] = batch
        start += len(batch)
    if num_workers:
        out.share_memory_()  # training workers read it without a copy, also when they are spawned
    return CachedPixels(out)
