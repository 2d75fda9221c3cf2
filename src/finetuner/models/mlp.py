"""``mlp``: a small multi-layer perceptron over feature vectors (Finetuner's model for tensor inputs).

Items are 1-D vectors: Documents whose ``tensor`` is one-dimensional, numpy arrays or torch tensors (see
:mod:`finetuner.data.vectors`). ``model_options`` are Finetuner's: ``input_size`` (required: the vectors' length),
``hidden_sizes`` (the sizes of the linear layers; none: the identity), ``bias``, ``activation`` between the layers
(``'relu'`` by default; ``None`` for none) and ``l2`` (L2-normalise the output). Saved as safetensors with its
settings in ``metadata.yml``; exports to ONNX like the other models.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from finetuner.data.vectors import VECTOR, as_array
from finetuner.errors import ConfigError, DataError
from finetuner.models.base import EmbeddingModel
from finetuner.models.heads import ProjectionHead

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, None: None}
WEIGHTS_FILE = "model.safetensors"
OPTIONS = ("input_size", "hidden_sizes", "bias", "activation", "l2")


class MLPEncoder(EmbeddingModel):
    """Linear layers (with an activation between them) over feature vectors, an optional head and L2 norm.

    Args:
        input_size: the length of the input vectors.
        hidden_sizes: the output size of each linear layer, in order (empty: no layers, the input is the output).
        bias: whether the linear layers have a bias.
        activation: ``'relu'``, ``'gelu'``, ``'tanh'``, ``'sigmoid'`` or None, between the layers (not after the last).
        l2: L2-normalise the embeddings.
        output_dim: a projection head to this size (``fit(output_dim=...)``).

    Example:
        >>> import numpy as np
        >>> model = MLPEncoder(4, [8, 3])
        >>> model(**model.preprocess([np.ones(4), np.zeros(4)])).shape
        torch.Size([2, 3])
    """

    modality = VECTOR
    kind = "mlp"

    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int] = (),
        *,
        bias: bool = True,
        activation: str | None = "relu",
        l2: bool = False,
        output_dim: int | None = None,
    ) -> None:
        super().__init__()
        _check(input_size, hidden_sizes, bias, activation, l2)
        self.input_size = int(input_size)
        self.hidden_sizes = [int(h) for h in hidden_sizes]
        self.bias, self.activation, self.l2 = bool(bias), activation, bool(l2)
        sizes = [self.input_size, *self.hidden_sizes]
        self.backbone = nn.ModuleList(nn.Linear(a, b, bias=self.bias) for a, b in itertools.pairwise(sizes))
        self.act = ACTIVATIONS[activation]() if activation is not None else None
        self.head = ProjectionHead(sizes[-1], output_dim) if output_dim else None

    @property
    def hidden_dim(self) -> int:
        """The size after the layers (before the head)."""
        return self.hidden_sizes[-1] if self.hidden_sizes else self.input_size

    @property
    def output_dim(self) -> int:
        return self.head.linear.out_features if self.head is not None else self.hidden_dim

    def preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """Stack the vectors (Documents with a 1-D ``tensor``, arrays or tensors) into ``(batch, input_size)``."""
        rows = []
        for i, item in enumerate(items):
            value = getattr(item, "tensor", item) if not isinstance(item, (list, tuple)) else item
            if value is None or isinstance(value, str):
                raise DataError(
                    f"the mlp model received {type(item).__name__} at position {i}; it embeds feature vectors "
                    "(Documents with a 1-D tensor, arrays)"
                )
            row = as_array(value)
            if row.shape != (self.input_size,):
                raise DataError(
                    f"the mlp model takes vectors of length {self.input_size} (model_options input_size); item {i} has "
                    f"shape {row.shape}"
                )
            rows.append(torch.from_numpy(row))
        return {"features": torch.stack(rows) if rows else torch.zeros(0, self.input_size)}  # (batch, input_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features.float()  # (batch, input_size)
        for i, layer in enumerate(self.backbone):
            x = layer(x)  # (batch, hidden_sizes[i])
            if self.act is not None and i < len(self.backbone) - 1:
                x = self.act(x)
        if self.head is not None:
            x = self.head(x)  # (batch, output_dim)
        return nn.functional.normalize(x, dim=-1) if self.l2 else x

    def backbone_layers(self) -> list[nn.Module]:
        """The linear layers, which ``freeze=N`` and ``layer_wise_lr_decay`` count."""
        return list(self.backbone)

    def check_items(self, items: Sequence[Any]) -> None:
        """Refuse data whose vectors do not have ``input_size`` values (called before training)."""
        for i, item in enumerate(items):
            shape = tuple(getattr(getattr(item, "tensor", item), "shape", ()))
            if shape != (self.input_size,):
                raise DataError(
                    f"model='mlp' has input_size={self.input_size} (model_options), but item {i} of the training data "
                    f"is a vector of shape {shape}; set model_options={{'input_size': {shape[0] if shape else '?'}}}"
                )

    def example_items(self) -> tuple[list[Any], list[Any]]:
        """Two batches of inputs for the ONNX export's trace and parity check."""
        gen = torch.Generator().manual_seed(0)
        return (
            [torch.randn(self.input_size, generator=gen).numpy() for _ in range(2)],
            [torch.randn(self.input_size, generator=gen).numpy() for _ in range(3)],
        )

    def metadata(self) -> dict[str, Any]:
        """What ``metadata.yml`` records for this model."""
        return {
            "kind": self.kind,
            "modality": self.modality,
            "input_size": self.input_size,
            "hidden_sizes": list(self.hidden_sizes),
            "bias": self.bias,
            "activation": self.activation,
            "l2": self.l2,
            "output_dim": self.output_dim,
            "head": self.head is not None,
        }

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(d / WEIGHTS_FILE))

    @classmethod
    def load(cls, directory: str | Path, metadata: dict[str, Any]) -> MLPEncoder:
        model = cls(
            metadata["input_size"],
            metadata.get("hidden_sizes", []),
            bias=metadata.get("bias", True),
            activation=metadata.get("activation"),
            l2=metadata.get("l2", False),
            output_dim=metadata.get("output_dim") if metadata.get("head") else None,
        )
        model.load_state_dict(load_file(str(Path(directory) / WEIGHTS_FILE)))
        return model


def build_mlp(source: str, *, output_dim: int | None = None, **options: Any) -> MLPEncoder:
    """The ``'mlp'`` family's builder: an :class:`MLPEncoder` from ``model_options`` (random initial weights).

    Example:
        >>> build_mlp('mlp', input_size=128, hidden_sizes=[32]).output_dim
        32
        >>> build_mlp('mlp')
        Traceback (most recent call last):
        ...
        finetuner.errors.ConfigError: model='mlp' needs model_options={'input_size': N}, the length of the feature ...
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown model_options {unknown} for model='mlp'; valid: {', '.join(OPTIONS)}")
    if "input_size" not in options:
        raise ConfigError(
            "model='mlp' needs model_options={'input_size': N}, the length of the feature vectors (and "
            "'hidden_sizes': [...] for its layers)"
        )
    return MLPEncoder(
        options["input_size"],
        options.get("hidden_sizes", ()),
        bias=options.get("bias", True),
        activation=options.get("activation", "relu"),
        l2=options.get("l2", False),
        output_dim=output_dim,
    )


def _check(input_size: Any, hidden_sizes: Any, bias: Any, activation: Any, l2: Any) -> None:
    def size(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    problems = []
    if not size(input_size):
        problems.append(f"input_size must be an int >= 1; received {input_size!r}")
    if isinstance(hidden_sizes, (str, bytes)) or not isinstance(hidden_sizes, Sequence):
        problems.append(f"hidden_sizes must be a list of ints; received {hidden_sizes!r}")
    elif not all(size(h) for h in hidden_sizes):
        problems.append(f"hidden_sizes must hold ints >= 1; received {list(hidden_sizes)!r}")
    if activation not in ACTIVATIONS:
        problems.append(f"activation must be one of relu, gelu, tanh, sigmoid or None; received {activation!r}")
    for name, value in (("bias", bias), ("l2", l2)):
        if not isinstance(value, bool):
            problems.append(f"{name} must be True or False; received {value!r}")
    if problems:
        raise ConfigError("model='mlp': " + "; ".join(problems))
