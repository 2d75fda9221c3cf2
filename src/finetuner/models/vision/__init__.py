"""Image models: a vision backbone, pooling and an optional projection head, with image decoding and the
model's own preprocessing.

- :mod:`~finetuner.models.vision.encoder`: :class:`ImageEncoder` (pooling, head, save/load) and
  :func:`load_with_module`;
- :mod:`~finetuner.models.vision.backbones`: the backbone kinds (Hugging Face, timm, EfficientNet-Lite, any
  ``torch.nn.Module``) behind one interface;
- :mod:`~finetuner.models.vision.transforms`: images to ``pixel_values``, train-time augmentation;
- :mod:`~finetuner.models.vision.builders`: from a name, folder or module to an :class:`ImageEncoder`.
"""

from finetuner.models.vision.builders import from_efficientnet_lite, from_module, from_pretrained_vision
from finetuner.models.vision.encoder import ImageEncoder, load_with_module

__all__ = ["ImageEncoder", "from_efficientnet_lite", "from_module", "from_pretrained_vision", "load_with_module"]
