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
from typing import Any

import torch
from torch import nn

from finetuner.models.text.tokens import GROUPS, RESTORE, is_grouped

Inputs = dict[str, Any]


def batch_length(inputs: Inputs) -> int:
    """The batch size of (possibly nested, possibly length-grouped) keyword tensors.

    Example:
        >>> batch_length({'text': {'input_ids': torch.zeros(5, 3)}})
        5
    """
    if is_grouped(inputs):
        return sum(batch_length(group) for group in inputs[GROUPS])
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


def pieces(inputs: Inputs, size: int) -> tuple[list[Inputs], torch.Tensor | None]:
    """The mini-batches of at most ``size`` rows a batch is embedded in, and how to put their rows back in order.

    A plain batch is cut in consecutive rows (None: the pieces' rows are already in order). A length-grouped text
    batch (:mod:`finetuner.models.text.tokens`) is cut within each group, so a mini-batch of short queries pads
    to their length, not the documents'; the concatenated pieces taken at the returned positions are the batch.

    Example:
        >>> [p['x'].tolist() for p in pieces({'x': torch.arange(5)}, 2)[0]]
        [[0, 1], [2, 3], [4]]
    """
    groups, restore = (inputs[GROUPS], inputs[RESTORE]) if is_grouped(inputs) else ([inputs], None)
    out: list[Inputs] = []
    for group in groups:
        n = batch_length(group)
        out += [slice_inputs(group, start, min(start + size, n)) for start in range(0, n, size)]
    return out, restore


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
    parts, restore = pieces(inputs, mini_batch_size)
    device = labels.device
    states: list[_RandomState] = []
    cached: list[list[torch.Tensor]] = []
    with torch.no_grad():
        for part in parts:
            states.append(_RandomState(device))
            with autocast():
                cached.append([e.detach() for e in _split_embeddings(forward(model, part))])
    # (batch, dim) leaves per output (one, or two for two towers), rows in the pieces' order
    leaves = [torch.cat([p[j] for p in cached]).float().requires_grad_() for j in range(len(cached[0]))]
    del cached
    ordered = [leaf[restore] if restore is not None else leaf for leaf in leaves]  # the batch's own row order
    loss = objective(tuple(ordered) if len(ordered) > 1 else ordered[0], labels)
    (scale(loss) if scale is not None else loss).backward()  # gradients w.r.t. the embeddings (+ loss params)
    del ordered
    grads = [leaf.grad for leaf in leaves]
    del leaves
    after = _RandomState(device)
    start = 0
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        context = no_sync(model) if (no_sync is not None and not last) else nullcontext()
        with context:
            states[k].restore()
            with autocast():
                outputs = _split_embeddings(forward(model, part))
            stop = start + outputs[0].shape[0]
            torch.autograd.backward([o.float() for o in outputs], [g[start:stop] for g in grads])
            del outputs
        start = stop
    after.restore()
    return loss.detach()
