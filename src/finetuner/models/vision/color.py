"""Colour distortion for train-time augmentation, on PIL images (no torchvision): random brightness, contrast,
saturation and hue, and random conversion to grey.

SimCLR (Chen et al. 2020, figure 5 and table 1) found random crops *with* colour distortion to be the composition
that matters for contrastive learning from images: with crops alone, two views of one image share their colour
histogram, and a network can match them by colour without learning anything else. Its recipe, which
:func:`jitter_colors` follows: brightness, contrast and saturation factors drawn from ``[1 - 0.8 s, 1 + 0.8 s]``, a
hue shift from ``[-0.2 s, 0.2 s]`` of the colour circle, the four applied in a random order, the whole with
probability 0.8; then grey with probability 0.2.

Randomness comes from torch's generator, as for the crops (:class:`~finetuner.models.vision.transforms
.RandomResizedCropFlip`), so DataLoader workers and ``fit(seed=...)`` seed it.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageEnhance

#: the probability that the colour jitter applies at all (SimCLR's)
JITTER_PROBABILITY = 0.8


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def shift_hue(img: Image.Image, shift: float) -> Image.Image:
    """``img`` with its hue turned by ``shift`` of the colour circle (in [-0.5, 0.5]).

    Example:
        >>> red = Image.new('RGB', (2, 2), (255, 0, 0))
        >>> shift_hue(red, 1 / 3).getpixel((0, 0))  # a third of the circle: red to green
        (0, 255, 0)
    """
    hsv = np.asarray(img.convert("HSV")).copy()  # (H, W, 3) uint8
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(shift * 255)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def jitter_colors(img: Image.Image, strength: float) -> Image.Image:
    """With probability 0.8, ``img`` with random brightness, contrast, saturation (factors in ``[1 - 0.8 s,
    1 + 0.8 s]``) and hue (a shift in ``[-0.2 s, 0.2 s]``), in a random order; else ``img`` itself.

    Args:
        img: an RGB image.
        strength: SimCLR's ``s`` (0: no change; 0.5 was its CIFAR-10 setting, 1.0 its ImageNet one).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> img = Image.new('RGB', (4, 4), (200, 50, 50))
        >>> jitter_colors(img, 0.0).getpixel((0, 0))
        (200, 50, 50)
        >>> len({jitter_colors(img, 1.0).getpixel((0, 0)) for _ in range(10)}) > 1
        True
    """
    if strength <= 0 or float(torch.rand(())) >= JITTER_PROBABILITY:
        return img
    spread = 0.8 * strength
    for step in torch.randperm(4).tolist():
        if step == 3:
            img = shift_hue(img, _uniform(-0.2 * strength, 0.2 * strength))
            continue
        factor = _uniform(max(0.0, 1 - spread), 1 + spread)
        enhancer = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)[step]
        img = enhancer(img).enhance(factor)
    return img


def random_gray(img: Image.Image, probability: float) -> Image.Image:
    """``img`` in grey (kept as three channels) with ``probability``, else ``img`` itself.

    Example:
        >>> random_gray(Image.new('RGB', (1, 1), (255, 0, 0)), 1.0).getpixel((0, 0))
        (76, 76, 76)
    """
    if probability > 0 and float(torch.rand(())) < probability:
        return img.convert("L").convert("RGB")
    return img
