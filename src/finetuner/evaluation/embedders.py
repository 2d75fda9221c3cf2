"""Embedders: ``embed(items, modality) -> (n, dim)`` for one model or a pair of towers, shared across processes.

A model with query / document prompts (:mod:`finetuner.models.prompts`) gives a :class:`PromptedEmbedder`, which
also takes the role of the items (``embed(items, modality, role='query')``); :func:`embed_as` calls any embedder
with a role, so evaluation puts the query prompt before queries and the document prompt before the index.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from finetuner.distributed import gather_no_grad, is_sharded, world
from finetuner.models.inference import embed_items
from finetuner.models.prompts import for_role, model_prompts

#: ``embed(items, modality)`` -> ``(len(items), dim)`` on the CPU
Embedder = Callable[[list[Any], str], torch.Tensor]


def model_embedder(model: Any, batch_size: int = 64, num_workers: int = 0) -> Embedder:
    """An ``embed(items, modality)`` function for a single-modality model (the modality must match).

    Under a process group every rank embeds a share of the items and the shares are gathered once, so
    evaluation is split across the ranks; a sharded model (FSDP) embeds equal shares on every rank (the shorter
    ones padded), since each of its forward passes is a collective call.

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

    prompts = model_prompts(model)

    def embed(items: list[Any], modality: str) -> torch.Tensor:
        rank, size = world()
        if size == 1:
            return embed_items(model, items, batch_size=batch_size, num_workers=num_workers, progress=False)
        # distributed: each rank embeds a contiguous share, and every rank receives all of them in order
        bounds = np.linspace(0, len(items), size + 1).round().astype(int)
        share = list(items[bounds[rank] : bounds[rank + 1]])
        real = len(share)
        if items and is_sharded(model):  # every forward pass gathers the weights: all ranks run as many (equal shares)
            share += [items[0]] * (int(np.diff(bounds).max()) - real)
        local = embed_items(model, share, batch_size=batch_size, num_workers=num_workers, progress=False)[:real]
        return gather_no_grad(local.to(model_device(model))).cpu()  # (len(items), dim)

    return PromptedEmbedder(embed, prompts) if prompts else embed


class PromptedEmbedder:
    """An embedder that puts a model's prompt before texts of a known role.

    Args:
        embed: the plain embedder.
        prompts: ``{'query': ..., 'document': ...}``.

    Example:
        >>> seen = []
        >>> embed = PromptedEmbedder(lambda items, modality: seen.append(items), {'query': 'query: '})
        >>> _ = embed(['a cat'], 'text', role='query'); _ = embed(['a cat'], 'text')
        >>> seen
        [['query: a cat'], ['a cat']]
    """

    def __init__(self, embed: Embedder, prompts: dict[str, str]) -> None:
        self.embed = embed
        self.prompts = dict(prompts)

    def __call__(self, items: list[Any], modality: str, role: str | None = None) -> torch.Tensor:
        return self.embed(for_role(items, self.prompts, role), modality)


def embed_as(embed: Embedder, items: list[Any], modality: str, role: str | None) -> torch.Tensor:
    """``embed(items, modality)`` with the prompt of ``role`` when the embedder has prompts.

    Example:
        >>> embed_as(lambda items, modality: items, ['a cat'], 'text', 'query')
        ['a cat']
    """
    if isinstance(embed, PromptedEmbedder):
        return embed(items, modality, role)
    return embed(items, modality)


def two_tower_embedder(model: Any, batch_size: int = 64, num_workers: int = 0) -> Embedder:
    """``embed(items, modality)`` that sends texts to ``model.text`` and images to ``model.vision`` (a two-tower
    model such as :class:`~finetuner.models.clip.TwoTowerModel`).

    Example:
        >>> embed = two_tower_embedder(clip_model)  # doctest: +SKIP
        >>> embed(['a red square'], 'text').shape, embed(['red.png'], 'image').shape  # doctest: +SKIP
        (torch.Size([1, 512]), torch.Size([1, 512]))
    """
    text = model_embedder(model.text, batch_size, num_workers)
    vision = model_embedder(model.vision, batch_size, num_workers)

    def embed(items: list[Any], modality: str) -> torch.Tensor:
        return text(items, modality) if modality == "text" else vision(items, modality)

    return embed


def embedder_for(model: Any, batch_size: int = 64, num_workers: int = 0) -> Embedder:
    """The embedder of ``model``: by modality for a two-tower model, else the model itself (``num_workers``
    DataLoader processes preprocess the items).

    Example:
        >>> embed = embedder_for(model)  # doctest: +SKIP
    """
    from finetuner.models.clip import TwoTowerModel

    if isinstance(model, TwoTowerModel):
        return two_tower_embedder(model, batch_size, num_workers)
    return model_embedder(model, batch_size, num_workers)


def model_device(model: Any) -> torch.device:
    """Where the model's parameters are (the collective runs there: CUDA for NCCL, CPU for gloo).

    Example:
        >>> model_device(torch.nn.Linear(2, 2)).type
        'cpu'
    """
    return next((p.device for p in model.parameters()), torch.device("cpu"))
