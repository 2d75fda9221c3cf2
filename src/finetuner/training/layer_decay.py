"""Layer-wise learning-rate decay (Finetuner's ``optimizer_options={'layer_wise_lr_decay': 0.98}``).

The top of the model learns at the run's learning rate and every layer below at ``decay`` times the rate of the
layer above it, so the lower layers keep more of what pretraining taught them:

- the projection head, the pooling and whatever comes after the backbone's last block (final norms, a CLIP tower's
  projection): the full rate;
- block ``i`` of ``L`` (counted from the bottom, the blocks ``freeze=N`` counts): ``rate * decay ** (L - 1 - i)``;
- the embeddings and whatever comes before the first block: ``rate * decay ** L``.

A two-tower (CLIP) model decays each tower on its own, from that tower's rate.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from finetuner.errors import ConfigError

OPTION = "layer_wise_lr_decay"


def layer_decay_groups(model: nn.Module, learning_rate: float, decay: float) -> list[dict[str, Any]]:
    """Optimizer parameter groups of ``model``'s trainable parameters, one per learning rate (see the module).

    Example:
        >>> from finetuner.models.base import EmbeddingModel
        >>> class Net(EmbeddingModel):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.embed = nn.Embedding(5, 2)
        ...         self.backbone = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
        ...         self.head = nn.Linear(2, 2)
        >>> [round(g['lr'], 4) for g in layer_decay_groups(Net(), 1.0, 0.5)]
        [0.25, 0.5, 1.0]
    """
    if not isinstance(decay, (int, float)) or isinstance(decay, bool) or not 0 < decay <= 1:
        raise ConfigError(f"{OPTION} must be a number in (0, 1]; received {decay!r}")
    towers = model.towers() if callable(getattr(model, "towers", None)) else None
    if towers:  # a two-tower model: each tower decays from its own rate
        rates = getattr(model, "learning_rates", {}) or {}
        groups = []
        for name, tower in towers.items():
            groups += layer_decay_groups(tower, float(rates.get(name.replace("clip-", ""), learning_rate)), decay)
        return groups
    depths = _depths(model)
    by_depth: dict[int, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            by_depth.setdefault(depths(name, param), []).append(param)
    ordered = sorted(by_depth.items(), reverse=True)  # the embeddings first, the top last
    return [{"params": params, "lr": learning_rate * decay**depth} for depth, params in ordered]


def _depths(model: nn.Module) -> Any:
    """``depth(name, param)``: 0 at the top, ``L`` for the embeddings (see the module docstring)."""
    layers = model.backbone_layers() if callable(getattr(model, "backbone_layers", None)) else None
    if not layers:
        raise ConfigError(
            f"{OPTION} gives each layer of the backbone its own learning rate, but {type(model).__name__} has no "
            "layered backbone (a transformer's or CNN's blocks); drop the option for this model"
        )
    count = len(layers)
    layer_of = {id(p): i for i, layer in enumerate(layers) for p in layer.parameters()}
    names = {id(m): n for n, m in model.named_modules()}
    holders = set()  # the modules that hold a block: their own parameters are not "below" the blocks
    for layer in layers:
        parts = names.get(id(layer), "").split(".")
        holders |= {".".join(parts[:k]) for k in range(len(parts))}
    seen_layer = False

    def depth(name: str, param: nn.Parameter) -> int:
        nonlocal seen_layer
        if id(param) in layer_of:
            seen_layer = True
            return count - 1 - layer_of[id(param)]
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        below = not seen_layer and owner not in holders  # registered before the blocks, in a module of its own
        return count if "embed" in name.lower() or below else 0

    return depth
