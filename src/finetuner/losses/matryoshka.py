"""Matryoshka embeddings: one loss trains every prefix of the embedding, so short vectors work on their own.

``fit(..., loss_options={'matryoshka_dims': [384, 256, 128, 64]})`` wraps the run's loss (a metric loss such as
TripletMarginLoss or InfoNCELoss, or CLIPLoss) in :class:`MatryoshkaLoss`: the loss of the first ``d`` dimensions,
for each listed ``d``, summed with ``matryoshka_weights`` (default 1 each). Evaluation then reports the metrics at
each dimension too (``metrics.yml``'s ``by_dimension``), and ``encode(model, items, dim=N)`` gives the short vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from finetuner.errors import ConfigError

#: the ``loss_options`` keys this module reads (the rest go to the wrapped loss)
MATRYOSHKA_KEYS = ("matryoshka_dims", "matryoshka_weights")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def option_problems(options: dict[str, Any]) -> list[str]:
    """Every problem of the Matryoshka ``loss_options`` that shows without a model.

    Example:
        >>> option_problems({'matryoshka_dims': [64, 64, 0]})
        ["loss_options['matryoshka_dims'] must be a list of distinct ints >= 1; received [64, 64, 0]"]
        >>> option_problems({'matryoshka_dims': [128, 64], 'matryoshka_weights': [1.0]})
        ["loss_options['matryoshka_weights'] must be one number > 0 per dimension (2); received [1.0]"]
    """
    out: list[str] = []
    dims = options.get("matryoshka_dims")
    weights = options.get("matryoshka_weights")
    if dims is None:
        if weights is not None:
            out.append("loss_options['matryoshka_weights'] given without 'matryoshka_dims'; add the dimensions")
        return out
    if (
        not isinstance(dims, (list, tuple))
        or not dims
        or not all(_is_int(d) and d >= 1 for d in dims)
        or len(set(dims)) != len(dims)
    ):
        out.append(f"loss_options['matryoshka_dims'] must be a list of distinct ints >= 1; received {dims!r}")
        return out
    if weights is not None and (
        not isinstance(weights, (list, tuple))
        or len(weights) != len(dims)
        or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in weights)
    ):
        out.append(
            f"loss_options['matryoshka_weights'] must be one number > 0 per dimension ({len(dims)}); received "
            f"{weights!r}"
        )
    return out


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(matryoshka options, the wrapped loss's options)``.

    Example:
        >>> split_options({'matryoshka_dims': [8, 4], 'margin': 0.2})
        ({'matryoshka_dims': [8, 4]}, {'margin': 0.2})
    """
    ours = {k: v for k, v in options.items() if k in MATRYOSHKA_KEYS}
    return ours, {k: v for k, v in options.items() if k not in MATRYOSHKA_KEYS}


class MatryoshkaLoss(nn.Module):
    """The weighted sum of ``loss`` over prefixes of the embeddings: ``sum_d w_d * loss(emb[:, :d], ...)``.

    Called like the wrapped loss: ``(embeddings, labels, indices_tuple)`` for a metric loss (a miner's index tuples
    hold for every prefix), ``(text, image)`` for a pair loss, whose two embeddings are both cut.

    Args:
        loss: the loss on full embeddings (it must have no parameters of the embedding's size).
        dims: the prefix sizes, each at most ``embedding_size``.
        weights: a weight per size (default 1 each).
        embedding_size: the model's embedding size, to refuse larger dims (None: not checked here).

    Example:
        >>> from finetuner.losses import get_loss
        >>> loss = MatryoshkaLoss(get_loss('TripletMarginLoss'), [4, 2])
        >>> emb, labels = torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])
        >>> full, short = get_loss('TripletMarginLoss')(emb, labels), get_loss('TripletMarginLoss')(emb[:, :2], labels)
        >>> torch.allclose(loss(emb, labels), full + short)
        True
    """

    def __init__(
        self,
        loss: nn.Module,
        dims: Sequence[int],
        weights: Sequence[float] | None = None,
        embedding_size: int | None = None,
    ) -> None:
        super().__init__()
        problems = option_problems({"matryoshka_dims": list(dims), "matryoshka_weights": weights})
        if problems:
            raise ConfigError("; ".join(problems))
        if embedding_size is not None and max(dims) > embedding_size:
            too_big = sorted(d for d in dims if d > embedding_size)
            raise ConfigError(
                f"loss_options['matryoshka_dims'] {too_big} exceed the model's embedding size {embedding_size}; "
                f"give dimensions up to {embedding_size} (e.g. {_suggest(embedding_size)})"
            )
        if any(p.numel() > 1 for p in loss.parameters()):  # a temperature is fine; a class-weight matrix is not
            raise ConfigError(
                f"matryoshka_dims works with losses on the embeddings alone; {type(loss).__name__} learns weights of "
                "the full embedding size (a proxy or class loss). Use TripletMarginLoss, InfoNCELoss, "
                "MultiSimilarityLoss, NTXentLoss, ..."
            )
        self.loss = loss
        self.dims = sorted((int(d) for d in dims), reverse=True)
        order = sorted(range(len(dims)), key=lambda i: -int(dims[i]))
        self.weights = [float(weights[i]) for i in order] if weights is not None else [1.0] * len(dims)

    def forward(self, embeddings: torch.Tensor, *rest: Any, **kwargs: Any) -> torch.Tensor:
        pair = bool(rest) and torch.is_tensor(rest[0]) and rest[0].is_floating_point() and rest[0].dim() == 2
        total = embeddings.new_zeros(())
        for dim, weight in zip(self.dims, self.weights):
            if pair:  # (text, image): both towers' embeddings are cut
                value = self.loss(embeddings[:, :dim], rest[0][:, :dim], *rest[1:], **kwargs)
            else:
                value = self.loss(embeddings[:, :dim], *rest, **kwargs)  # (batch, dim) prefix
            total = total + weight * value
        return total


def _suggest(size: int) -> list[int]:
    out = [size]
    while out[-1] // 2 >= 32 and len(out) < 5:
        out.append(out[-1] // 2)
    return out


def matryoshka_dims(loss: Any) -> list[int]:
    """The prefix sizes a (possibly wrapped) loss trains, largest first; empty for any other loss.

    Example:
        >>> from finetuner.losses import get_loss
        >>> matryoshka_dims(get_loss('TripletMarginLoss', {'matryoshka_dims': [2, 4]})), matryoshka_dims(None)
        ([4, 2], [])
    """
    for module in loss.modules() if isinstance(loss, nn.Module) else ():
        if isinstance(module, MatryoshkaLoss):
            return list(module.dims)
    return []
