"""The contract every finetuner model follows.

An :class:`EmbeddingModel` is a ``torch.nn.Module`` that knows its input modality, turns raw items into tensors
(``preprocess``, run in DataLoader workers, never in the training step) and maps those tensors to embeddings
(``forward``). It saves itself into a folder that :func:`finetuner.models.io.load_model` rebuilds offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetuner.errors import ConfigError

MODALITIES = ("text", "image")


class EmbeddingModel(nn.Module):
    """Base class: ``preprocess(items) -> inputs`` then ``forward(**inputs) -> (batch, dim)`` embeddings.

    Subclasses set ``modality`` and ``kind`` (the name :func:`~finetuner.models.io.load_model` dispatches on)
    and implement ``preprocess``, ``forward``, ``output_dim``, ``save`` and the classmethod ``load``.

    Example:
        >>> import torch
        >>> class Toy(EmbeddingModel):
        ...     modality, kind = 'text', 'toy'
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.lin = torch.nn.Linear(3, 2)
        ...     def preprocess(self, items):
        ...         return {'x': torch.tensor([[len(s), 1.0, 0.0] for s in items])}
        ...     def forward(self, x):
        ...         return self.lin(x)
        ...     @property
        ...     def output_dim(self):
        ...         return 2
        >>> Toy()(**Toy().preprocess(['ab', 'c'])).shape
        torch.Size([2, 2])
    """

    modality: str = "text"
    kind: str = "base"

    def preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """Turn a list of raw items (texts, image sources) into the keyword tensors ``forward`` takes."""
        raise NotImplementedError

    @property
    def output_dim(self) -> int:
        """The embedding size."""
        raise NotImplementedError

    def save(self, directory: str | Path) -> None:
        """Write everything needed to rebuild this model offline into ``directory``."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    @classmethod
    def load(cls, directory: str | Path, metadata: dict[str, Any]) -> EmbeddingModel:
        """Rebuild the model that :meth:`save` wrote (``metadata`` is its ``metadata.yml``)."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """The device of the model's first parameter (CPU when it has none)."""
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters that ``requires_grad`` (what the optimizer updates)."""
        return [p for p in self.parameters() if p.requires_grad]

    def backbone_layers(self) -> list[nn.Module] | None:
        """The backbone's blocks in order, which ``freeze=N`` counts from the end: by default the longest
        ``ModuleList`` of ``self.backbone`` (see :func:`layer_list`); models whose blocks live elsewhere (a
        ``Sequential`` of stages) override this."""
        found = layer_list(getattr(self, "backbone", self))
        return list(found) if found is not None else None


def layer_list(backbone: nn.Module) -> nn.ModuleList | None:
    """The backbone's longest ``ModuleList`` (its transformer layers or conv blocks), or None.

    Example:
        >>> len(layer_list(nn.Sequential(nn.ModuleList([nn.Linear(2, 2)] * 3))))
        3
    """
    best: nn.ModuleList | None = None
    for _, mod in backbone.named_modules():
        if isinstance(mod, nn.ModuleList) and (best is None or len(mod) > len(best)):
            best = mod
    return best


def freeze_backbone(
    backbone: nn.Module, setting: bool | int, what: str = "freeze", layers: Sequence[nn.Module] | None = None
) -> None:
    """Freeze ``backbone``: ``True`` all of it, an int N all but its last N layers, ``False`` nothing.

    ``layers`` are the blocks N counts from the end (default: :func:`layer_list` of ``backbone``).

    Example:
        >>> net = nn.Sequential(nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)]))
        >>> freeze_backbone(net, 1)
        >>> [p.requires_grad for p in net.parameters()]
        [False, False, True, True]
    """
    if setting is False or setting is None:
        return
    backbone.requires_grad_(False)
    if isinstance(setting, int) and not isinstance(setting, bool):
        layers = layer_list(backbone) if layers is None else layers
        if layers is None or setting < 0:
            raise ConfigError(f"{what}={setting} (unfrozen layer count) needs a layered backbone and N >= 0")
        for layer in list(layers)[max(0, len(layers) - setting) :] if setting else []:
            layer.requires_grad_(True)


def compile_for_training(module: nn.Module, backend: str = "inductor") -> nn.Module:
    """``torch.compile`` a model in place for training (``fit(compile=True)``): parameter names, and so the saved
    weights, stay as they are.

    Shapes are compiled dynamic: a text batch's length takes one of a few bucketed values and its rows one of a few
    group sizes (:mod:`finetuner.models.text.tokens`), and a graph generic in both covers them all, where one
    specialised per shape would compile once per bucket (a minute each for a bert-base on a GPU) and pass dynamo's
    recompile limit. A length-grouped batch runs one graph per group structure (one block, or N groups):
    tests/models/test_compile_shapes.py counts them.

    Example:
        >>> net = compile_for_training(nn.Linear(2, 2), backend='eager')
        >>> net(torch.ones(3, 2)).shape
        torch.Size([3, 2])
    """
    module.compile(dynamic=True, backend=backend)
    return module
