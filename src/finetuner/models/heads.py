"""Projection heads and pooling shared by the encoders."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from finetuner.errors import ConfigError

POOLINGS = ("mean", "cls", "max")


class ProjectionHead(nn.Module):
    """A linear map from the backbone's size to ``output_dim`` (what ``fit(..., output_dim=N)`` adds).

    The parameter names (``linear.weight``, ``linear.bias``) match sentence-transformers' ``Dense`` module so a
    saved text model loads there too.

    Example:
        >>> import torch
        >>> ProjectionHead(8, 4)(torch.zeros(2, 8)).shape
        torch.Size([2, 4])
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)  # (batch, out_dim)


def head_param_groups(model: nn.Module, learning_rate: float, head_learning_rate: float | None) -> list[dict[str, Any]]:
    """Optimizer parameter groups of ``model``'s trainable parameters: its projection head (``model.head``, the
    layer ``output_dim`` adds) at ``head_learning_rate``, the rest at ``learning_rate``; one group when
    ``head_learning_rate`` is None or the model has no head. Empty groups are left out.

    Example:
        >>> from torch import nn
        >>> model = nn.Module(); model.backbone = nn.Linear(8, 8); model.head = ProjectionHead(8, 4)
        >>> [(len(g['params']), g['lr']) for g in head_param_groups(model, 1e-4, 1e-3)]
        [(2, 0.0001), (2, 0.001)]
        >>> [(len(g['params']), g['lr']) for g in head_param_groups(model, 1e-4, None)]
        [(4, 0.0001)]
    """
    head = getattr(model, "head", None)
    head_ids = {id(p) for p in head.parameters()} if head_learning_rate is not None and head is not None else set()
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if id(p) not in head_ids], "lr": float(learning_rate)},
        {"params": [p for p in trainable if id(p) in head_ids], "lr": float(head_learning_rate or learning_rate)},
    ]
    return [g for g in groups if g["params"]]


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool token states ``(batch, seq, dim)`` into ``(batch, dim)`` using the attention ``mask``.

    Example:
        >>> import torch
        >>> h = torch.tensor([[[1.0], [3.0], [100.0]]]); m = torch.tensor([[1, 1, 0]])
        >>> pool_tokens(h, m, 'mean').item(), pool_tokens(h, m, 'max').item(), pool_tokens(h, m, 'cls').item()
        (2.0, 3.0, 1.0)
    """
    if pooling == "cls":
        return hidden[:, 0]  # (batch, dim)
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    if pooling == "mean":
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (batch, dim)
    if pooling == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).amax(1)  # (batch, dim)
    raise ConfigError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
