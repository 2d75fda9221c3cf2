"""Embedders: ``embed(items, modality) -> (n, dim)`` for one model or a pair of towers, shared across processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from finetuner.distributed import gather_no_grad, world
from finetuner.models.inference import embed_items

#: ``embed(items, modality)`` -> ``(len(items), dim)`` on the CPU
Embedder = Callable[[list[Any], str], torch.Tensor]


def model_embedder(model: Any, batch_size: int = 64, num_workers: int = 0) -> Embedder:
    """An ``embed(items, modality)`` function for a single-modality model (the modality must match).

    Under a process group every rank embeds a share of the items and the shares are gathered once, so
    evaluation is split across the ranks.

    Example:
        >>> import torch
        >>> class Doubler(torch.nn.Module):
        ...     modality = 'text'
        ...     def preprocess(self, items):
        ...         return {'x': torch.tensor([[float(len(t)), 1.0] for t in items])}
        ...     def forward(self, x):
        ...         return 2 * x  # (batch, 2)
        >>> model_embedder(Doubler())(['ab', 'c'], 'text').tolist()
        [[4.0, 2.0], [2.0, 2.0]]
    """

    def embed(items: list[Any], modality: str) -> torch.Tensor:
        rank, size = world()
        if size == 1:
            return embed_items(model, items, batch_size=batch_size, num_workers=num_workers, progress=False)
        # distributed: each rank embeds a contiguous share, and every rank receives all of them in order
        bounds = np.linspace(0, len(items), size + 1).round().astype(int)
        share = list(items[bounds[rank] : bounds[rank + 1]])
        local = embed_items(model, share, batch_size=batch_size, num_workers=num_workers, progress=False)
        return gather_no_grad(local.to(model_device(model))).cpu()  # (len(items), dim)

    return embed


def two_tower_embedder(model: Any, batch_size: int = 64) -> Embedder:
    """``embed(items, modality)`` that sends texts to ``model.text`` and images to ``model.vision`` (a two-tower
    model such as :class:`~finetuner.models.clip.TwoTowerModel`).

    Example:
        >>> embed = two_tower_embedder(clip_model)  # doctest: +SKIP
        >>> embed(['a red square'], 'text').shape, embed(['red.png'], 'image').shape  # doctest: +SKIP
        (torch.Size([1, 512]), torch.Size([1, 512]))
    """
    text, vision = model_embedder(model.text, batch_size), model_embedder(model.vision, batch_size)

    def embed(items: list[Any], modality: str) -> torch.Tensor:
        return text(items, modality) if modality == "text" else vision(items, modality)

    return embed


def embedder_for(model: Any, batch_size: int = 64) -> Embedder:
    """The embedder of ``model``: by modality for a two-tower model, else the model itself.

    Example:
        >>> embed = embedder_for(model)  # doctest: +SKIP
    """
    from finetuner.models.clip import TwoTowerModel

    if isinstance(model, TwoTowerModel):
        return two_tower_embedder(model, batch_size)
    return model_embedder(model, batch_size)


def model_device(model: Any) -> torch.device:
    """Where the model's parameters are (the collective runs there: CUDA for NCCL, CPU for gloo).

    Example:
        >>> model_device(torch.nn.Linear(2, 2)).type
        'cpu'
    """
    return next((p.device for p in model.parameters()), torch.device("cpu"))
