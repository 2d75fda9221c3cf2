"""DeepSpeed ZeRO (``accelerate launch --use_deepspeed``, or an accelerate config with ``distributed_type: DEEPSPEED``).

accelerate builds DeepSpeed's engine when ``train`` prepares the model and its optimizer; this module does what
``fit`` needs around that:

- :func:`configure_deepspeed`: before the engine is built, the DeepSpeed config's ``auto`` entries take the run's
  own settings (batch size per process, no accumulation inside the engine: the loop's windows tell it where they
  end, gradient clipping from ``max_grad_norm``); an explicit value that contradicts the run, or an optimizer or
  scheduler section (finetuner builds both), is refused naming both sides;
- :func:`skeleton_copy` and :func:`gather_full_weights`: the trained weights in fp32 (DeepSpeed's master copy, also
  under bf16/fp16), gathered onto rank 0 for the artifact, into a copy of the model taken before the engine was
  built (frozen weights are kept from there: under bf16 the engine holds them rounded);
- :func:`save_engine` / :func:`load_engine`: resumable checkpoints in DeepSpeed's own format (each rank writes its
  partition of the optimizer state, and under ZeRO-3 of the weights).

Under ZeRO-3 the weights are partitioned, so every forward pass is a collective call: evaluation then embeds equal
shares on every rank (:func:`finetuner.distributed.is_sharded` says so).
"""

from __future__ import annotations

import contextlib
import copy
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetuner.config import TrainingConfig
from finetuner.errors import ConfigError
from finetuner.training.sharding import launched_with, refuse_unshardable

#: the tag DeepSpeed's checkpoint files are written under, inside a checkpoint's ``sharded/`` folder
TAG = "zero"


def uses_deepspeed(accelerator: Any) -> bool:
    """Whether ``accelerator`` builds a DeepSpeed engine for the model it prepares.

    Example:
        >>> from accelerate import Accelerator
        >>> uses_deepspeed(Accelerator(cpu=True))
        False
    """
    return launched_with(accelerator, "DEEPSPEED")


def is_engine(model: Any) -> bool:
    """Whether ``model`` is a DeepSpeed engine (what accelerate's prepare returns under DeepSpeed).

    Example:
        >>> is_engine(torch.nn.Linear(2, 2))
        False
    """
    return any(klass.__name__ == "DeepSpeedEngine" for klass in type(model).__mro__)


def _settings(config: TrainingConfig, num_processes: int) -> dict[str, Any]:
    """The DeepSpeed entries the run decides: each process's share of a batch, one micro-batch per engine step
    (the loop accumulates its own windows and marks where they end), gradient clipping from ``max_grad_norm``."""
    size = config.batch_size if isinstance(config.batch_size, int) else config.default_batch_size()
    micro = max(1, math.ceil(size / num_processes))
    return {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": 1,
        "train_batch_size": micro * num_processes,
        "gradient_clipping": float(config.max_grad_norm or 0.0),
    }


def configure_deepspeed(
    accelerator: Any, model: nn.Module, config: TrainingConfig, loss_fn: nn.Module | None = None
) -> dict[str, Any]:
    """Before accelerate builds the engine: fill the DeepSpeed config's ``auto`` (or missing) entries from the run
    and refuse what contradicts it; returns the entries set.

    Raises:
        ConfigError: an optimizer or scheduler section in the DeepSpeed config, a batch size, accumulation or
            clipping value other than the run's, a two-tower model, or a loss with weights but no optimizer of its own.

    Example:
        >>> configure_deepspeed(accelerator, model, TrainingConfig(batch_size=64))  # doctest: +SKIP
        {'train_micro_batch_size_per_gpu': 32, 'gradient_accumulation_steps': 1, 'train_batch_size': 64, ...}
    """
    refuse_unshardable("DeepSpeed", model, loss_fn, config.loss_optimizer)
    plugin = accelerator.state.deepspeed_plugin
    ds_config = plugin.deepspeed_config
    for section in ("optimizer", "scheduler"):
        if section in ds_config:
            raise ConfigError(
                f"the DeepSpeed config has the section {section!r} ({ds_config[section].get('type', '?')}); finetuner "
                f"builds the {section} from fit's {section}= option: remove that section from the DeepSpeed config"
            )
    wanted = _settings(config, accelerator.num_processes)
    why = {
        "train_micro_batch_size_per_gpu": "batch_size / processes",
        "train_batch_size": "batch_size",
        "gradient_accumulation_steps": "finetuner accumulates with gradient_accumulation_steps itself",
        "gradient_clipping": "max_grad_norm",
    }
    for key, value in wanted.items():
        given = ds_config.get(key, "auto")
        if given != "auto" and given != value:
            raise ConfigError(
                f"the DeepSpeed config sets {key}={given!r}, but this run needs {value!r} ({why[key]}): set it to "
                f"'auto' in the DeepSpeed config and choose it with fit's options"
            )
        ds_config[key] = value
    return wanted


def skeleton_copy(model: nn.Module, keep_frozen: bool) -> nn.Module:
    """A copy of ``model`` taken before the engine is built: trainable parameters on the ``meta`` device (no
    memory; :func:`gather_full_weights` fills them), frozen ones copied when ``keep_frozen`` (rank 0, which saves
    the artifact: they never change, and under bf16 the engine would hand them back rounded), else ``meta``.

    A model that Hugging Face built already partitioned (ZeRO-3's ``zero3_init_flag``, accelerate's default for
    stage 3) has its frozen parameters gathered for the copy: every rank must then call this.

    Example:
        >>> layer = torch.nn.Linear(2, 3); layer.bias.requires_grad_(False)
        Parameter containing:
        tensor([...])
        >>> copy_ = skeleton_copy(layer, keep_frozen=True)
        >>> copy_.weight.device.type, torch.equal(copy_.bias, layer.bias)
        ('meta', True)
    """
    memo: dict[int, Any] = {}
    for p in model.parameters():
        shape = tuple(getattr(p, "ds_shape", p.shape))  # a partitioned parameter holds none of its elements
        if p.requires_grad:
            copied = torch.empty(shape, dtype=p.dtype, device="meta")
        else:
            with _gathered(p):
                copied = p.detach().to("cpu", copy=True) if keep_frozen else torch.empty(shape, device="meta")
        memo[id(p)] = nn.Parameter(copied, requires_grad=p.requires_grad)
    skeleton = copy.deepcopy(model, memo)
    if any(hasattr(p, "ds_id") for p in model.parameters()):
        # Hugging Face's partitioned load records every legacy renaming (LayerNorm.gamma, ...) as applied, and
        # save_pretrained would write the artifact under those old names: forget them (its own mapping stays)
        for module in skeleton.modules():
            if getattr(module, "_weight_conversions", None):
                module._weight_conversions = None
    return skeleton


def _gathered(param: nn.Parameter) -> Any:
    """The whole of a parameter ZeRO-3 partitioned, for the block's duration (a collective call); else nothing."""
    if not hasattr(param, "ds_id"):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters([param], modifier_rank=None)


def gather_full_weights(module: nn.Module, skeleton: nn.Module, rank: int) -> nn.Module | None:
    """The trained model on rank 0: ``skeleton`` (from :func:`skeleton_copy`) with every trained parameter's fp32
    master copy gathered from the engine's partitions (a collective call: every rank must make it, parameter by
    parameter, so no rank ever holds more than one whole parameter besides its shards); ``None`` on other ranks.

    Example:
        >>> full = gather_full_weights(accelerator.unwrap_model(engine), skeleton, rank)  # doctest: +SKIP
    """
    from deepspeed.utils import safe_get_full_fp32_param

    weights: dict[str, torch.Tensor] = {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue  # the skeleton holds it (rank 0)
        full = safe_get_full_fp32_param(param)  # (param's shape) fp32, on every rank
        if full is None:
            raise RuntimeError(f"DeepSpeed holds no fp32 copy of the trained parameter {name!r}")
        if rank == 0:
            weights[name] = full.detach().to("cpu", copy=True)
    if rank != 0:
        return None
    buffers = {name: b.detach().cpu() for name, b in module.named_buffers()}
    state = skeleton.state_dict()
    for name, value in {**buffers, **weights}.items():
        if name in state:
            state[name] = value.to(state[name].dtype) if state[name].is_floating_point() else value
    meta = [name for name, value in state.items() if value.device.type == "meta"]
    if meta:
        raise RuntimeError(f"DeepSpeed: no weights gathered for {meta[:5]}")
    skeleton.load_state_dict(state, strict=True, assign=True)
    return skeleton.eval()


def save_engine(folder: Path, engine: Any) -> None:
    """Write the engine's state (model, optimizer partitions) into ``folder`` in DeepSpeed's format; every rank
    must call it, and ``folder`` must be one place all ranks see.

    Example:
        >>> save_engine(Path('ckpt/sharded'), engine)  # doctest: +SKIP
    """
    engine.save_checkpoint(str(folder), tag=TAG, save_latest=False)


def load_engine(folder: Path, engine: Any) -> None:
    """Read what :func:`save_engine` wrote into ``engine`` (weights and optimizer state; the learning-rate schedule
    is finetuner's own, restored with the rest of the checkpoint).

    Example:
        >>> load_engine(Path('ckpt/sharded'), engine)  # doctest: +SKIP
    """
    path, _ = engine.load_checkpoint(
        str(folder), tag=TAG, load_module_strict=True, load_optimizer_states=True, load_lr_scheduler_states=False
    )
    if path is None:
        raise RuntimeError(f"no DeepSpeed checkpoint under {folder / TAG}")


def is_engine_checkpoint(folder: Path) -> bool:
    """Whether ``folder`` (a checkpoint's ``sharded/``) holds DeepSpeed's files rather than FSDP's.

    Example:
        >>> is_engine_checkpoint(Path('/nonexistent'))
        False
    """
    return (folder / TAG).is_dir()
