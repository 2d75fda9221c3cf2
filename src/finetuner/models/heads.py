"""Projection heads and pooling shared by the encoders."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from finetuner.errors import ConfigError

POOLINGS = ("mean", "cls", "max", "gem")
#: what may follow a projection head's linear map
HEAD_ACTIVATIONS = (None, "tanh")
#: the options of GeM pooling and their defaults (Finetuner's ``pooler_options``)
GEM_OPTIONS = {"p": 3.0, "eps": 1e-6}


class ProjectionHead(nn.Module):
    """A linear map from the backbone's size to ``output_dim`` (what ``fit(..., output_dim=N)`` adds).

    The parameter names (``linear.weight``, ``linear.bias``) match sentence-transformers' ``Dense`` module so a
    saved text model loads there too. ``activation='tanh'`` follows the linear map with tanh, as the ``Dense``
    module of some sentence-transformers models does (distiluse-base-multilingual).

    Example:
        >>> import torch
        >>> ProjectionHead(8, 4)(torch.zeros(2, 8)).shape
        torch.Size([2, 4])
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, activation: str | None = None) -> None:
        super().__init__()
        if activation not in HEAD_ACTIVATIONS:
            raise ConfigError(f"unknown head activation {activation!r}; valid: None, 'tanh'")
        self.linear = nn.Linear(in_dim, out_dim, bias=bias)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)  # (batch, out_dim)
        return torch.tanh(out) if self.activation == "tanh" else out


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


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, pooling: str, **options: float) -> torch.Tensor:
    """Pool token states ``(batch, seq, dim)`` into ``(batch, dim)`` using the attention ``mask``.

    ``'gem'`` is the generalised mean over the non-padding tokens, ``mean(clamp(x, eps) ** p) ** (1 / p)``
    (``options``: ``p``, default 3, and ``eps``, default 1e-6): the mean at ``p=1``, tending to the max as ``p``
    grows; values below ``eps`` count as ``eps``.

    Example:
        >>> import torch
        >>> h = torch.tensor([[[1.0], [3.0], [100.0]]]); m = torch.tensor([[1, 1, 0]])
        >>> pool_tokens(h, m, 'mean').item(), pool_tokens(h, m, 'max').item(), pool_tokens(h, m, 'cls').item()
        (2.0, 3.0, 1.0)
        >>> round(pool_tokens(h, m, 'gem', p=1.0).item(), 4), round(pool_tokens(h, m, 'gem', p=2.0).item(), 4)
        (2.0, 2.2361)
    """
    if pooling == "cls":
        return hidden[:, 0]  # (batch, dim)
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    if pooling == "mean":
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (batch, dim)
    if pooling == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).amax(1)  # (batch, dim)
    if pooling == "gem":
        p = float(options.get("p", GEM_OPTIONS["p"]))
        eps = float(options.get("eps", GEM_OPTIONS["eps"]))
        powered = hidden.float().clamp(min=eps).pow(p) * m.float()  # (batch, seq, dim), padding zeroed
        mean = powered.sum(1) / m.float().sum(1).clamp(min=1e-9)  # (batch, dim)
        return mean.pow(1.0 / p).to(hidden.dtype)  # (batch, dim)
    raise ConfigError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")


def check_pooling_options(pooling: str, options: dict[str, Any] | None) -> dict[str, float]:
    """The pooling options checked: only GeM takes any (``p`` > 0, ``eps`` > 0); returned with their defaults.

    Example:
        >>> check_pooling_options('gem', {'p': 2.4})
        {'p': 2.4, 'eps': 1e-06}
        >>> check_pooling_options('mean', {'p': 2})
        Traceback (most recent call last):
        ...
        finetuner.errors.ConfigError: pooling options {'p': 2} apply to GeM pooling only; use pooling='gem' ...
    """
    options = dict(options or {})
    if pooling != "gem":
        if options:
            raise ConfigError(
                f"pooling options {options} apply to GeM pooling only; use pooling='gem' (Finetuner: "
                "model_options={'pooler': 'GeM', 'pooler_options': {...}}) or drop them"
            )
        return {}
    unknown = sorted(set(options) - set(GEM_OPTIONS))
    if unknown:
        raise ConfigError(f"GeM pooling has no option(s) {unknown}; its options are p (default 3) and eps (1e-6)")
    out = {**GEM_OPTIONS, **options}
    for key, value in out.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise ConfigError(f"GeM pooling option {key} must be a positive number; received {value!r}")
    return {k: float(v) for k, v in out.items()}


def changed_pooling_options(options: dict[str, float]) -> dict[str, float]:
    """The pooling options that differ from their defaults (what a saved model's metadata records).

    Example:
        >>> changed_pooling_options({'p': 2.0, 'eps': 1e-6})
        {'p': 2.0}
    """
    return {k: v for k, v in options.items() if v != GEM_OPTIONS.get(k)}


class GeMPooling(nn.Module):
    """GeM token pooling as a sentence-transformers module: what a GeM-pooled text model's ``modules.json`` names,
    so ``SentenceTransformer(path, trust_remote_code=True)`` (with finetuner installed) pools as finetuner does.

    Args:
        p, eps: see :func:`pool_tokens`.

    Example:
        >>> import torch
        >>> out = GeMPooling(p=1.0)({'token_embeddings': torch.ones(1, 2, 3), 'attention_mask': torch.ones(1, 2)})
        >>> out['sentence_embedding'].shape
        torch.Size([1, 3])
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, word_embedding_dimension: int | None = None) -> None:
        super().__init__()
        self.p, self.eps, self.dim = float(p), float(eps), word_embedding_dimension

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pooled = pool_tokens(features["token_embeddings"], features["attention_mask"], "gem", p=self.p, eps=self.eps)
        features["sentence_embedding"] = pooled  # (batch, dim)
        return features

    def get_sentence_embedding_dimension(self) -> int | None:
        return self.dim

    @classmethod
    def load(cls, input_path: str) -> GeMPooling:
        """Read ``config.json`` of the pooling folder (sentence-transformers' loading protocol)."""
        import json
        from pathlib import Path

        cfg = json.loads((Path(input_path) / "config.json").read_text(encoding="utf-8"))
        p, eps = cfg.get("p", GEM_OPTIONS["p"]), cfg.get("eps", GEM_OPTIONS["eps"])
        return cls(p, eps, cfg.get("word_embedding_dimension"))
