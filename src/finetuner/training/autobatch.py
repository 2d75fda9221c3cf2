"""``batch_size='auto'``: the largest global batch that trains without running out of memory.

The search starts at a cap (1024 on a GPU, 128 on the CPU, never more than the training items) and halves on an
out-of-memory error (accelerate's ``find_executable_batch_size`` does the retrying and cache clearing). Each try
runs the real training step (forward, loss, backward; the gradient cache when ``mini_batch_size`` is set) on a
worst-case batch, twice (the second time with the first one's gradients still held: a margin for the allocator's
fragmentation): every text row as long as the longest training text, labels as the sampler lays them out. Room for
what the probe does not allocate is held aside while it runs: the optimizer's state (two copies of the trainable
weights for Adam/AdamW, one for other optimizers) and, under DDP, gradient buckets.

Under several processes each rank probes its own share of the global batch with the loss computed over a batch as
large as the gathered one (its own embeddings repeated), without collective calls; the ranks then agree on the
smallest size that fitted everywhere. The model's weights, buffers (BatchNorm statistics) and gradients are left
as they were.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from finetuner.config import TrainingConfig
from finetuner.distributed import local_only
from finetuner.errors import ConfigError

#: upper bounds of the search, by device type
AUTO_CAP = {"cuda": 1024, "cpu": 128}


def largest_power_of_two(n: int) -> int:
    """The largest power of two <= ``n`` (``n >= 1``).

    Example:
        >>> largest_power_of_two(1000), largest_power_of_two(1024), largest_power_of_two(3)
        (512, 1024, 2)
    """
    return 1 << (int(n).bit_length() - 1)


def find_batch_size(try_batch: Callable[[int], None], start: int, multiple: int = 1, minimum: int = 2) -> int:
    """The largest batch size, from ``start`` halving (kept a multiple of ``multiple``), for which
    ``try_batch(size)`` runs without an out-of-memory error. Other errors pass through.

    Example:
        >>> def fits(size):
        ...     if size > 100:
        ...         raise RuntimeError('CUDA out of memory.')  # what torch raises, in short
        >>> find_batch_size(fits, 1024)
        64
    """
    from accelerate.utils import find_executable_batch_size

    size = max(minimum, start - start % multiple)

    def halve() -> int:
        nonlocal size
        size = size // 2
        size -= size % multiple
        return size

    @find_executable_batch_size(starting_batch_size=size, reduce_batch_size_fn=halve)
    def attempt(batch_size: int) -> int:
        if batch_size < minimum:
            raise ConfigError(
                f"batch_size='auto': even a batch of {minimum} runs out of memory on this device; free memory, "
                "use mini_batch_size, gradient_checkpointing=True or precision='bf16', or a smaller model"
            )
        try_batch(batch_size)
        return batch_size

    return attempt()


def _row_size(item: Any) -> int:
    """How much one training item weighs in memory: its token count (pairs: summed), 0 for images."""
    if isinstance(item, dict) and "input_ids" in item:
        return len(item["input_ids"])
    if isinstance(item, tuple):
        return sum(_row_size(part) for part in item)
    return 0


def worst_case_batch(loader: Any, size: int) -> tuple[Any, Any]:
    """A batch of ``size`` rows laid out like the loader's first batch (its labels, its images), every text
    replaced by the longest training text.

    Example:
        >>> inputs, labels = worst_case_batch(built.loader, 64)  # doctest: +SKIP
    """
    dataset = loader.dataset
    heaviest = dataset[max(range(len(dataset)), key=lambda i: _row_size(dataset[i][0]))][0]
    first = next(iter(loader.batch_sampler))
    # (item, label) for labelled data, (text, image) for pairs: the first member is what gets long
    rows = [(heaviest, dataset[first[j % len(first)]][1]) for j in range(size)]
    return loader.collate_fn(rows)


def _optimizer_room(model: nn.Module, config: TrainingConfig, processes: int) -> int:
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    copies = 2 if config.optimizer in ("Adam", "AdamW") else 1
    return trainable * (copies + (1 if processes > 1 else 0))


class _Repeated(nn.Module):
    """The objective over this rank's embeddings repeated ``world`` times: the gathered batch's size, computed
    without collective calls."""

    def __init__(self, objective: nn.Module, world: int) -> None:
        super().__init__()
        self.objective, self.world = objective, world

    def forward(self, embeddings: Any, labels: Any) -> torch.Tensor:
        if self.world > 1:
            if isinstance(embeddings, tuple):
                embeddings = tuple(e.repeat(self.world, 1) for e in embeddings)
            else:
                embeddings = embeddings.repeat(self.world, 1)
            labels = labels.repeat(self.world) if labels is not None else None
        with local_only():
            return self.objective(embeddings, labels)


def auto_start(device_type: str, n_items: int) -> int:
    """Where the search starts: the largest power of two within the device's cap and the number of items.

    Example:
        >>> auto_start('cuda', 100_000), auto_start('cpu', 100_000), auto_start('cpu', 50)
        (1024, 128, 32)
    """
    cap = AUTO_CAP["cuda" if device_type == "cuda" else "cpu"]
    return largest_power_of_two(max(2, min(cap, n_items)))


def probe_batch_size(
    model: nn.Module,
    objective: nn.Module,
    loader: Any,
    start: int,
    config: TrainingConfig,
    accelerator: Any,
    forward: Callable[[nn.Module, dict[str, Any]], Any] | None = None,
) -> int:
    """The global batch size for ``batch_size='auto'`` (see the module docstring).

    Args:
        model: the model, already on ``accelerator.device``.
        objective: the step's objective (:func:`~finetuner.training.loop.make_objective`), on the device.
        loader: the training loader built for a global batch of ``start`` (smaller tries take a prefix of its
            first batch: still whole groups of a class, still free of duplicate pairs).
        start: the first size tried (:func:`auto_start`).
        config: the run's settings (optimizer, precision, mini_batch_size, gradient checkpointing).
        accelerator: the run's accelerator.
        forward: how to get embeddings from ``(model, inputs)``.

    Example:
        >>> size = probe_batch_size(model, objective, loader, 1024, config, accelerator)  # doctest: +SKIP
    """
    from accelerate.utils import send_to_device

    from finetuner.training.loop import default_forward, enable_gradient_checkpointing, forward_backward

    world = accelerator.num_processes
    device = accelerator.device
    repeated = _Repeated(objective, world)
    buffers = [(b, b.detach().clone()) for b in model.buffers()]  # BatchNorm statistics move in train mode
    was_training = model.training
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)

    def try_batch(size: int) -> None:
        local = max(1, size // world)
        inputs, labels = send_to_device(worst_case_batch(loader, local), device)
        room = torch.empty(_optimizer_room(model, config, world), dtype=torch.uint8, device=device)
        try:
            model.train()
            for _ in range(2):  # the second pass runs with the first one's gradients still held: a margin
                forward_backward(model, inputs, labels, repeated, forward or default_forward, config, accelerator)
        finally:
            del room
            model.zero_grad(set_to_none=True)
            objective.zero_grad(set_to_none=True)

    try:
        found = find_batch_size(try_batch, start)
    finally:
        with torch.no_grad():
            for buffer, value in buffers:
                buffer.copy_(value)
        model.train(was_training)
    if world > 1:  # every rank must train with the same global batch: the smallest that fitted everywhere
        found = int(accelerator.gather(torch.tensor([found], device=device)).min())
    return found
