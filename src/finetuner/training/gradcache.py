"""Large contrastive batches in small memory: the gradient-cache method (Gao et al., 2021, "GradCache").

1. embed the batch in mini-batches without building a graph (remembering each mini-batch's RNG state);
2. compute the loss on the full batch of embeddings and backpropagate to the embeddings only;
3. re-embed each mini-batch with the same RNG state, now with a graph, and backpropagate the cached embedding
   gradients through it.

The gradients equal full-batch backpropagation (tests/training/test_gradcache.py checks 1e-5); activation memory
is that of one mini-batch. Under DDP, all but the last mini-batch run in ``no_sync``, so the gradients are
all-reduced once per step, not once per mini-batch.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from itertools import pairwise
from typing import Any

import torch
from torch import nn

Inputs = dict[str, Any]


def batch_length(inputs: Inputs) -> int:
    """The batch size of (possibly nested) keyword tensors.

    Example:
        >>> batch_length({'text': {'input_ids': torch.zeros(5, 3)}})
        5
    """
    for value in inputs.values():
        return batch_length(value) if isinstance(value, dict) else int(value.shape[0])
    raise ValueError("empty inputs")


def slice_inputs(inputs: Inputs, start: int, stop: int) -> Inputs:
    """Rows ``start:stop`` of every tensor in (possibly nested) keyword inputs.

    Example:
        >>> slice_inputs({'x': torch.arange(6)}, 2, 4)
        {'x': tensor([2, 3])}
    """
    return {k: slice_inputs(v, start, stop) if isinstance(v, dict) else v[start:stop] for k, v in inputs.items()}


class _RandomState:
    """CPU (and current CUDA device) RNG state, so a re-run of a forward draws the same dropout masks."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.device = device

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


def _split_embeddings(embeddings: Any) -> list[torch.Tensor]:
    return list(embeddings) if isinstance(embeddings, (tuple, list)) else [embeddings]


def cached_backward(
    model: nn.Module,
    inputs: Inputs,
    labels: torch.Tensor,
    objective: Callable[[Any, torch.Tensor], torch.Tensor],
    forward: Callable[[nn.Module, Inputs], Any],
    mini_batch_size: int,
    *,
    autocast: Callable[[], Any] = nullcontext,
    no_sync: Callable[[nn.Module], Any] | None = None,
    scale: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Backpropagate ``objective(forward(model, inputs), labels)`` mini-batch by mini-batch; return the loss.

    Args:
        model: the (possibly DDP-wrapped) model.
        inputs: the full batch's keyword tensors (nested for two towers).
        labels: the batch's labels.
        objective: the loss on embeddings (a tensor, or a tuple for two towers) and labels.
        forward: ``forward(model, inputs) -> embeddings``.
        mini_batch_size: rows per forward/backward pass.
        autocast: a context manager factory for mixed precision (``accelerator.autocast``).
        no_sync: ``accelerator.no_sync`` (skip DDP's all-reduce for all but the last mini-batch).
        scale: applied to the loss before its backward (fp16 loss scaling, gradient-accumulation division).

    Example:
        >>> model = torch.nn.Linear(4, 2)
        >>> loss = cached_backward(model, {'x': torch.randn(8, 4)}, torch.zeros(8),
        ...                        lambda e, y: e.pow(2).mean(), lambda m, i: m(i['x']), mini_batch_size=3)
        >>> model.weight.grad.shape
        torch.Size([2, 4])
    """
    n = batch_length(inputs)
    bounds = [*range(0, n, mini_batch_size), n]
    device = labels.device
    states: list[_RandomState] = []
    pieces: list[list[torch.Tensor]] = []
    with torch.no_grad():
        for start, stop in pairwise(bounds):
            states.append(_RandomState(device))
            with autocast():
                pieces.append(
                    [e.detach() for e in _split_embeddings(forward(model, slice_inputs(inputs, start, stop)))]
                )
    # (batch, dim) leaves per output (one, or two for two towers)
    leaves = [torch.cat([p[j] for p in pieces]).float().requires_grad_() for j in range(len(pieces[0]))]
    loss = objective(tuple(leaves) if len(leaves) > 1 else leaves[0], labels)
    (scale(loss) if scale is not None else loss).backward()  # gradients w.r.t. the embeddings (+ loss params)
    grads = [leaf.grad for leaf in leaves]
    after = _RandomState(device)
    for k, (start, stop) in enumerate(pairwise(bounds)):
        last = k == len(bounds) - 2
        context = no_sync(model) if (no_sync is not None and not last) else nullcontext()
        with context:
            states[k].restore()
            with autocast():
                outputs = _split_embeddings(forward(model, slice_inputs(inputs, start, stop)))
            torch.autograd.backward([o.float() for o in outputs], [g[start:stop] for g in grads])
    after.restore()
    return loss.detach()
