"""The one training loop: 1..N processes on accelerate, losses that see embeddings and labels."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate.utils import send_to_device
from torch import nn
from tqdm.auto import tqdm

from finetuner.config import TrainingConfig
from finetuner.distributed import average_gradients
from finetuner.errors import FinetunerError
from finetuner.losses.step_loss import MetricObjective, PairObjective, ScoredObjective, TripletObjective
from finetuner.models.attention import attention_backends
from finetuner.models.base import compile_for_training
from finetuner.training.gradcache import batch_length, cached_backward
from finetuner.training.loss_monitor import LossMonitor, defers_finite_check
from finetuner.training.loss_monitor import NonFiniteLossError as NonFiniteLossError  # re-exported
from finetuner.training.optimizers import build_loss_optimizer, build_optimizer, build_scheduler
from finetuner.training.sharding import configure_fsdp, uses_fsdp
from finetuner.training.zero import configure_deepspeed, is_engine, uses_deepspeed


def batch_seed(seed: int, batch: int, process_index: int = 0) -> int:
    """The torch seed of one training batch: the randomness of the run's batch ``n`` (dropout, miners) depends only
    on ``(seed, n, process)``, so a run resumed from a checkpoint takes exactly the steps the uninterrupted run took.

    Example:
        >>> batch_seed(0, 5) == batch_seed(0, 5) != batch_seed(0, 6)
        True
    """
    return (seed * 1_000_003 + batch * 7919 + process_index) % (2**63 - 1)


@dataclass
class TrainState:
    """What callbacks see and may change (``stop = True`` ends training after the current batch/epoch).

    ``batches_trained`` counts the (micro-)batches trained so far in the run; with ``gradient_accumulation_steps``
    N the optimizer steps once every N of them, counted from each epoch's start (an epoch's last window may be
    shorter: accumulation never straddles an epoch's end). ``batch_in_epoch`` is the current batch's index in its
    epoch; ``synced`` says whether the optimizer stepped after it (a window closed), ``window`` how many batches
    that window holds. ``callbacks`` are the run's callbacks (a checkpoint saves their states).
    """

    model: nn.Module
    config: TrainingConfig
    accelerator: Any = None
    optimizer: Any = None
    scheduler: Any = None
    epoch: int = 0
    batches_trained: int = 0
    batch_in_epoch: int = 0
    batches_per_epoch: int = 0
    last_loss: float = float("nan")
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    stop: bool = False
    loss_fn: Any = None
    loss_optimizer: Any = None
    #: batches of the current epoch already done before a resume (the loop skips them, once)
    skip_batches: int = 0
    #: sum of the losses of the current epoch so far (a tensor while training; a float set by a resume)
    epoch_loss_sum: Any = None
    synced: bool = True
    window: int = 1
    callbacks: list[Any] = field(default_factory=list)

    @property
    def step(self) -> int:
        """The former name of :attr:`batches_trained` (callbacks written against it keep working)."""
        return self.batches_trained

    @step.setter
    def step(self, value: int) -> None:
        self.batches_trained = value


class Callback:
    """Hooks called by the loop; override the ones you need.

    Example:
        >>> class PrintEpoch(Callback):
        ...     def on_epoch_end(self, state):
        ...         print('epoch', state.epoch, 'loss', round(state.last_loss, 3))
    """

    def on_train_begin(self, state: TrainState) -> None:
        """Before the first step."""

    def on_epoch_begin(self, state: TrainState) -> None:
        """Before each epoch."""

    def on_batch_end(self, state: TrainState) -> None:
        """After each batch (an optimizer step, or under gradient accumulation a part of one)."""

    def on_epoch_end(self, state: TrainState) -> None:
        """After each epoch (evaluation callbacks put their figures in ``state.metrics``)."""

    def on_train_end(self, state: TrainState) -> None:
        """After the last epoch (also after an early stop)."""


def make_accelerator(config: TrainingConfig) -> Any:
    """An ``accelerate.Accelerator`` for ``config.device`` / ``config.precision`` (bf16 on capable GPUs).

    Example:
        >>> make_accelerator(TrainingConfig(device='cpu')).device.type
        'cpu'
    """
    from accelerate import Accelerator

    cpu = config.device_type() == "cpu"
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if not cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    # gradient accumulation is the loop's own (windows restart at each epoch; see train), so accelerate neither
    # divides the loss nor skips optimizer steps by its own count
    try:
        return Accelerator(cpu=cpu, mixed_precision=precision)
    except ValueError as error:
        launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 or torch.distributed.is_initialized()
        if "already been initialized" not in str(error) or launched:
            raise
    # an earlier fit in this Python process left accelerate's process-wide state set for another precision or device
    # (a second fit with precision='bf16' after one without): one process starts that state afresh, as accelerate's
    # own tests do; a launched process group keeps it (its ranks share it), and accelerate's error stands there
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    return Accelerator(cpu=cpu, mixed_precision=precision)


def enable_gradient_checkpointing(model: nn.Module) -> int:
    """Turn on activation recomputation in every Hugging Face backbone inside ``model``; returns how many.

    Example:
        >>> enable_gradient_checkpointing(torch.nn.Linear(2, 2))
        Traceback (most recent call last):
        ...
        finetuner.errors.FinetunerError: gradient_checkpointing=True, but Linear holds no Hugging Face model
    """
    found = 0
    for module in model.modules():
        if not getattr(module, "supports_gradient_checkpointing", 0):
            continue
        if hasattr(module, "activation_checkpointing_enable"):  # transformers 5's name
            module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        elif hasattr(module, "gradient_checkpointing_enable"):  # transformers 4, open_clip towers
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            continue
        found += 1
    if not found:
        raise FinetunerError(f"gradient_checkpointing=True, but {type(model).__name__} holds no Hugging Face model")
    return found


def default_forward(model: nn.Module, inputs: dict[str, Any]) -> Any:
    """``model(**inputs)``: the embeddings ``(batch, dim)``, or a ``(text, image)`` pair of them for two towers;
    attention on the kernels :mod:`finetuner.models.attention` chose."""
    with attention_backends(next((p.device for p in model.parameters()), None)):
        return model(**inputs)


def make_objective(loss_fn: nn.Module, miner: nn.Module | None = None) -> nn.Module:
    """What a step minimises: a two-tower or row objective as it is, a metric loss (with its miner) over the global
    batch.

    Example:
        >>> from finetuner.losses import get_loss
        >>> type(make_objective(get_loss('TripletMarginLoss'))).__name__
        'MetricObjective'
    """
    if isinstance(loss_fn, (PairObjective, TripletObjective, ScoredObjective)):
        return loss_fn
    return MetricObjective(loss_fn, miner)


def forward_backward(
    model: nn.Module,
    inputs: dict[str, Any],
    labels: torch.Tensor,
    objective: nn.Module,
    forward: Callable[[nn.Module, dict[str, Any]], Any],
    config: TrainingConfig,
    accelerator: Any,
    window: int = 1,
) -> torch.Tensor:
    """One batch's loss and its gradients: in one pass, or through the gradient cache when ``mini_batch_size``
    is set and the batch is larger (the same step the automatic batch size probes). Under gradient accumulation the
    gradients are those of ``loss / window`` (``window``: the batches accumulated into one step), so a step of
    accumulated batches is the mean over them, as one large batch's would be; the loss returned is the batch's own.

    Example:
        >>> loss = forward_backward(model, inputs, labels, objective, default_forward, config, acc)  # doctest: +SKIP
    """
    if config.mini_batch_size and batch_length(inputs) > config.mini_batch_size:

        def loss_scale(loss: torch.Tensor) -> torch.Tensor:  # what accelerator.backward does to a loss
            loss = loss / window if window > 1 else loss
            return accelerator.scaler.scale(loss) if accelerator.scaler is not None else loss

        return cached_backward(
            model,
            inputs,
            labels,
            objective,
            forward,
            config.mini_batch_size,
            autocast=accelerator.autocast,
            no_sync=accelerator.no_sync,
            scale=loss_scale,
        )
    with accelerator.autocast():
        embeddings = forward(model, inputs)  # (batch, dim), or a (text, image) pair of them
    loss = objective(embeddings, labels)
    if is_engine(model):  # DeepSpeed: the loop marks where a window ends and steps the engine there
        model.backward(loss / window if window > 1 else loss)
    else:
        accelerator.backward(loss / window if window > 1 else loss)
    return loss


def train(
    model: nn.Module,
    loss_fn: nn.Module,
    loader: torch.utils.data.DataLoader,
    config: TrainingConfig,
    *,
    miner: nn.Module | None = None,
    callbacks: Sequence[Callback] = (),
    accelerator: Any = None,
    forward: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor] | None = None,
    progress: bool = True,
) -> TrainState:
    """Train ``model`` on ``loader``'s ``(inputs, labels)`` batches with ``loss_fn(embeddings, labels, tuples)``.

    Args:
        model: the embedding model (``model(**inputs) -> (batch, dim)``).
        loss_fn: a metric-learning loss taking ``(embeddings, labels, indices_tuple)``.
        loader: yields ``(inputs, labels)``; its batch sampler may have ``set_epoch``.
        config: the run's settings.
        miner: an optional pytorch-metric-learning miner.
        callbacks: hooks (evaluation, checkpoints, early stopping, loggers).
        accelerator: an ``accelerate.Accelerator`` (built from ``config`` when None).
        forward: how to get embeddings from ``(model, inputs)`` (default ``model(**inputs)``).
        progress: show a progress bar per epoch (on the main process of each machine).

    Example:
        >>> state = train(model, get_loss('TripletMarginLoss'), loader, TrainingConfig(epochs=1))  # doctest: +SKIP
        >>> state.history[-1]['loss']  # doctest: +SKIP
        0.12
    """
    accelerator = accelerator or make_accelerator(config)
    # The loader is not prepared by accelerate: our batch samplers already yield each rank's share of the global
    # batch, and accelerate would shard them again. So gradient accumulation is done here, not by accelerate (whose
    # windows only restart at an epoch's end for a loader it prepared): windows of `accumulate` batches counted from
    # each epoch's start, the last one shorter when the epoch does not divide evenly.
    batch_sampler = loader.batch_sampler
    accumulate = config.gradient_accumulation_steps
    total_steps = math.ceil(len(loader) / accumulate) * config.epochs
    optimizer = build_optimizer(config, model, loss_fn)
    loss_optimizer = build_loss_optimizer(config, loss_fn)
    scheduler = build_scheduler(config, optimizer, max(1, total_steps))
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if config.compile:
        compile_for_training(model)  # in place: parameter names (and saved weights) stay as they are
    if uses_fsdp(accelerator):  # accelerate shards the model here (FSDP2: each transformer layer, then the rest)
        configure_fsdp(accelerator, model, loss_fn, config.loss_optimizer)
    elif uses_deepspeed(accelerator):  # accelerate builds DeepSpeed's engine here (ZeRO stage from its config)
        configure_deepspeed(accelerator, model, config, loss_fn)
    model, optimizer = accelerator.prepare(model, optimizer)
    engine = is_engine(model)
    loss_fn = loss_fn.to(accelerator.device)
    objective = make_objective(loss_fn, miner).to(accelerator.device)
    loss_params = [p for p in loss_fn.parameters() if p.requires_grad]
    forward = forward or default_forward
    # (DeepSpeed's engine owns the update: no fused optimizer to hand a non-finite flag to)
    deferred = not engine and defers_finite_check(accelerator, optimizer, loss_optimizer, config)
    # each batch's loss is read back without waiting for the GPU (training/loss_monitor.py)
    monitor = LossMonitor(accelerator.device, getattr(optimizer, "optimizer", optimizer), deferred)
    state = TrainState(model, config, accelerator, optimizer, scheduler, batches_per_epoch=len(loader))
    state.loss_fn, state.loss_optimizer = loss_fn, loss_optimizer
    state.callbacks = list(callbacks)
    seed = config.seed if config.seed is not None else 0
    for cb in callbacks:
        cb.on_train_begin(state)  # a resume callback restores weights, optimizer and counters here
    for epoch in range(state.epoch, config.epochs):
        state.epoch = epoch
        if hasattr(batch_sampler, "set_epoch"):
            batch_sampler.set_epoch(epoch)
        if hasattr(loader, "set_epoch"):  # accelerate's loader would otherwise count epochs from 0 itself
            loader.set_epoch(epoch)
        model.train()
        for cb in callbacks:
            cb.on_epoch_begin(state)
        if state.stop:  # e.g. an early stop restored by a resume
            break
        skip, state.skip_batches = state.skip_batches, 0
        running = torch.zeros((), device=accelerator.device)  # the epoch's loss sum, for checkpoints
        if skip:
            running += float(state.epoch_loss_sum or 0.0)
        monitor.start_epoch(float(state.epoch_loss_sum or 0.0) if skip else 0.0, skip)
        state.epoch_loss_sum = running
        bar = tqdm(
            accelerator.skip_first_batches(loader, skip) if skip else loader,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not (progress and accelerator.is_local_main_process),
            dynamic_ncols=True,
            total=len(loader),
            initial=skip,
        )
        for seen, batch in enumerate(bar, start=skip + 1):
            state.batch_in_epoch = seen - 1
            start = (seen - 1) // accumulate * accumulate  # the first batch of this accumulation window
            state.window = min(accumulate, len(loader) - start)
            state.synced = seen - start == state.window  # the window's last batch: the optimizer steps
            torch.manual_seed(batch_seed(seed, state.batches_trained, accelerator.process_index))
            inputs, labels = send_to_device(batch, accelerator.device, non_blocking=True)
            if engine:  # reductions and the update wait for the window's last batch
                model.set_gradient_accumulation_boundary(state.synced)
            with contextlib.nullcontext() if state.synced or engine else accelerator.no_sync(model):
                loss = forward_backward(
                    model, inputs, labels, objective, forward, config, accelerator, window=state.window
                )
            where = (epoch + 1, seen, state.batches_trained + 1)
            monitor.observe(loss, where, first_in_window=seen == start + 1)  # before the update
            if state.synced:
                average_gradients(loss_params)  # DDP only averages the model's own gradients
                if engine:  # clips by max_grad_norm (its config's gradient_clipping), steps, zeroes the gradients
                    model.step()
                else:
                    if config.max_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                    optimizer.step()
                if loss_optimizer is not None:
                    loss_optimizer.step()
                    loss_optimizer.zero_grad(set_to_none=True)
                if scheduler is not None:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            running += loss.detach()
            state.batches_trained += 1
            # the losses read back so far (raises for a non-finite one); all of them at the epoch's end
            monitor.collect(wait=seen == len(loader))
            if seen % config.log_every == 0 or seen == len(loader):
                state.last_loss = monitor.mean()
                bar.set_postfix(loss=f"{state.last_loss:.4f}")
            for cb in callbacks:
                cb.on_batch_end(state)
            if state.stop:
                break
        monitor.collect(wait=True)  # after an early stop, the losses still on their way
        state.last_loss = monitor.mean()
        state.history.append({"epoch": epoch + 1, "loss": state.last_loss})
        for cb in callbacks:
            cb.on_epoch_end(state)
        if state.stop:
            break
    accelerator.wait_for_everyone()
    for cb in callbacks:
        cb.on_train_end(state)
    return state
