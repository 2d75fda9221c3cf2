"""The loss of every training step, read back without making the host wait for the GPU.

A training step only queues work on a GPU; reading a value back (``float(loss)``, ``if not torch.isfinite(loss)``)
makes the host wait until the GPU has done everything queued before it, so the next step cannot be queued while the
GPU works. :class:`AsyncReader` copies each step's loss into pinned host memory behind a CUDA event and hands it over
once the event has passed (``event.query()`` never waits); :class:`LossMonitor` keeps the epoch's running mean from
those values and raises :class:`NonFiniteLossError` for a NaN or infinite loss.

A non-finite loss must never reach the weights. With a fused Adam/AdamW (the default on a GPU) the loop tells the
optimizer (``found_inf``) and the optimizer skips that update on the device, so the check can wait for the value
(:func:`defers_finite_check`); otherwise the loss is checked before the update, which reads it back every step.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from typing import Any

import torch

from finetuner.config import TrainingConfig
from finetuner.errors import FinetunerError


class NonFiniteLossError(FinetunerError, RuntimeError):
    """The loss became NaN or infinite; training stopped before that step changed the weights."""


def defers_finite_check(accelerator: Any, optimizer: Any, loss_optimizer: Any, config: TrainingConfig) -> bool:
    """Whether the loss's finiteness is checked when its value arrives instead of stalling the GPU every step.

    A fused Adam/AdamW (the default on CUDA) skips a step on the device when told the loss is not finite
    (``found_inf``, as mixed-precision loss scaling does), so the loop hands it that flag and raises once the value
    has been read back (a step or two later): the weights never take a non-finite update either way. Not with fp16
    loss scaling (which sets the flag itself, and reads it back), a separate loss optimizer, or gradient
    accumulation (a bad micro-batch would reach a later update).

    Example:
        >>> from accelerate import Accelerator
        >>> opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(1))], fused=True)
        >>> defers_finite_check(Accelerator(cpu=True), opt, None, TrainingConfig())  # the CPU never stalls a GPU
        False
    """
    inner = getattr(optimizer, "optimizer", optimizer)
    return bool(
        accelerator.device.type == "cuda"
        and inner.defaults.get("fused")
        and accelerator.scaler is None
        and loss_optimizer is None
        and config.gradient_accumulation_steps == 1
    )


def non_finite_error(value: float, epoch: int, batch: int, overall: int, deferred: bool) -> NonFiniteLossError:
    """The error for a non-finite loss at ``epoch``/``batch`` (the ``overall``-th batch of the run).

    Example:
        >>> str(non_finite_error(float('nan'), 2, 1, 5, deferred=False))[:52]
        'the loss became nan at epoch 2, batch 1 (5 of the ru'
    """
    when = f"the loss became {value} at epoch {epoch}, batch {batch} ({overall} of the run); "
    if deferred:
        what = (
            "its update was skipped on the device, so the weights never took it; training stopped as soon as the "
            "value was read back. "
        )
    else:
        what = "training stopped before this step changed the weights. "
    return NonFiniteLossError(
        when + what + "Lower the learning_rate, set max_grad_norm, or check the data for NaN/inf values; resume from "
        "the last checkpoint with fit(..., resume_from=<run name>)"
    )


class AsyncReader:
    """Small device tensors read back in order, without waiting: on CUDA each is copied into pinned host memory
    behind an event and handed over once the event has passed; elsewhere at once.

    Example:
        >>> reader = AsyncReader(torch.device('cpu'))
        >>> reader.post(torch.tensor([1.5]), 'step 1')
        >>> [(values.tolist(), tag) for values, tag in reader.ready()]
        [([1.5], 'step 1')]
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.pending: deque[tuple[Any, torch.Tensor, Any]] = deque()
        self.free: dict[tuple[Any, ...], list[torch.Tensor]] = {}  # host buffers to reuse, by shape and dtype

    def post(self, values: torch.Tensor, tag: Any) -> None:
        """Start reading ``values`` (a 1-d tensor on the device) back; ``tag`` comes back with them."""
        spare = self.free.get((tuple(values.shape), values.dtype))
        # pinned buffers are reused once read: allocating pinned memory can itself wait for the device
        host = spare.pop() if spare else torch.empty(values.shape, dtype=values.dtype, pin_memory=self.cuda)
        host.copy_(values.detach(), non_blocking=self.cuda)
        event = None
        if self.cuda:
            event = torch.cuda.Event()
            event.record()
        self.pending.append((event, host, tag))

    def ready(self, wait: bool = False) -> Iterator[tuple[Any, Any]]:
        """The values (numpy arrays) and tags whose copies have finished, oldest first; all of them when ``wait``."""
        while self.pending:
            event, host, tag = self.pending[0]
            if event is not None and not event.query():
                if not wait:
                    return
                event.synchronize()
            self.pending.popleft()
            yield host.numpy().copy(), tag  # host memory: reading it waits for nothing
            self.free.setdefault((tuple(host.shape), host.dtype), []).append(host)


class LossMonitor:
    """The running mean of an epoch's losses on the host, and the finiteness check of every step's loss.

    Args:
        device: where the losses are computed.
        optimizer: the (inner) optimizer, told ``found_inf`` when ``deferred``.
        deferred: check finiteness when the value arrives (the optimizer skips a bad update itself); else before
            each update, reading the loss back.

    Example:
        >>> monitor = LossMonitor(torch.device('cpu'), None, deferred=False)
        >>> for step, loss in enumerate([2.0, 4.0], start=1):
        ...     monitor.observe(torch.tensor(loss), (1, step, step))
        >>> monitor.collect(wait=True); monitor.mean()
        3.0
    """

    def __init__(self, device: torch.device, optimizer: Any, deferred: bool) -> None:
        self.reader = AsyncReader(device)
        self.optimizer, self.deferred = optimizer, deferred
        self.total, self.count = 0.0, 0

    def start_epoch(self, total: float = 0.0, count: int = 0) -> None:
        """A new epoch's mean (a resumed epoch starts from the losses of its batches already done)."""
        self.total, self.count = float(total), int(count)

    def observe(self, loss: torch.Tensor, where: tuple[int, int, int], first_in_window: bool = True) -> None:
        """Take this batch's loss, before the optimizer step; ``where`` is ``(epoch, batch, batch of the run)``.
        With gradient accumulation, ``first_in_window`` says whether the batch opens a new accumulation window:
        a non-finite loss anywhere in the window makes the fused step skip the window's update."""
        value = loss.detach().float().reshape(1)  # (1,)
        if self.deferred:
            bad = (~torch.isfinite(value)).float().reshape(())  # the fused step skips the update when set
            previous = getattr(self.optimizer, "found_inf", None)
            if not first_in_window and isinstance(previous, torch.Tensor):
                bad = torch.maximum(bad, previous.reshape(()))
            self.optimizer.found_inf = bad
        elif not torch.isfinite(value).all():  # reads it back: checked before the update, the weights stay good
            raise non_finite_error(float(value[0]), *where, deferred=False)
        self.reader.post(value, where)

    def collect(self, wait: bool = False) -> None:
        """Add the losses that have arrived (all of them when ``wait``) to the mean; raise for a non-finite one."""
        for values, where in self.reader.ready(wait):
            value = float(values[0])
            if not math.isfinite(value):
                raise non_finite_error(value, *where, deferred=self.deferred)
            self.total += value
            self.count += 1

    def mean(self) -> float:
        """The mean loss of the epoch's batches read back so far (NaN before the first)."""
        return self.total / self.count if self.count else float("nan")
