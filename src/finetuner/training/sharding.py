"""Models sharded with FSDP2 (``accelerate launch`` with an FSDP config, ``fsdp_version: 2``).

accelerate shards the model when ``train`` prepares it (``fully_shard`` on every transformer layer, then the whole
model); this module does what ``fit`` needs around that:

- :func:`configure_fsdp`: unless the accelerate config names them, the layers to shard one by one are the model's
  own layer classes (the ``_no_split_modules`` of its Hugging Face backbones, e.g. ``BertLayer``);
- :func:`meta_copy` and :func:`gather_full_model`: before sharding, a copy of the model with no weights (on the
  ``meta`` device); after training, the full weights gathered onto rank 0 (CPU) and put into that copy, which the
  artifact is saved from;
- :func:`save_sharded` / :func:`load_sharded`: resumable checkpoints in ``torch.distributed.checkpoint``'s format,
  each rank writing and reading its own shards of the model's and the optimizer's state.

Evaluation on a sharded model needs no code here: every rank embeds an equal share (see
:func:`finetuner.evaluation.embedders.model_embedder`), since each forward pass gathers the weights collectively.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetuner.distributed import is_sharded
from finetuner.errors import ConfigError

#: the checkpoint sub-folder that holds the sharded model and optimizer state
SHARDED_DIR = "sharded"


def uses_fsdp(accelerator: Any) -> bool:
    """Whether ``accelerator`` shards the model it prepares (accelerate turns FSDP on only for GPU runs).

    Example:
        >>> from accelerate import Accelerator
        >>> uses_fsdp(Accelerator(cpu=True))
        False
    """
    return launched_with(accelerator, "FSDP")


def launched_with(accelerator: Any, engine: str) -> bool:
    """Whether ``accelerator``'s distributed type is ``engine`` (accelerate's ``DistributedType`` name: ``'FSDP'``,
    ``'DEEPSPEED'``, ...).

    Example:
        >>> from accelerate import Accelerator
        >>> launched_with(Accelerator(cpu=True), 'NO')
        True
    """
    return str(getattr(accelerator, "distributed_type", "")).split(".")[-1] == engine


def layer_class_names(model: nn.Module) -> list[str]:
    """The layer classes that Hugging Face models inside ``model`` say must not be split (their
    ``_no_split_modules``): one transformer block each, the natural unit to shard.

    Example:
        >>> from transformers import BertConfig, BertModel
        >>> bert = BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8))
        >>> layer_class_names(torch.nn.Sequential(bert))
        ['BertEmbeddings', 'BertLayer']
    """
    names: set[str] = set()
    present = {type(m).__name__ for m in model.modules()}
    for module in model.modules():
        names.update(n for n in getattr(module, "_no_split_modules", None) or () if n in present)
    return sorted(names)


def configure_fsdp(
    accelerator: Any, model: nn.Module, loss_fn: nn.Module | None = None, loss_optimizer: str | None = None
) -> None:
    """Before accelerate prepares ``model`` under FSDP: refuse FSDP1, two-tower models and a loss with weights but
    no optimizer of its own (accelerate moves only the model's parameters into the sharded optimizer); when the
    accelerate config sets no wrap policy or no layer classes, shard the model's own layer classes
    (:func:`layer_class_names`) one by one.

    Example:
        >>> configure_fsdp(accelerator, model)  # doctest: +SKIP
        >>> accelerator.state.fsdp_plugin.transformer_cls_names_to_wrap  # doctest: +SKIP
        ['BertEmbeddings', 'BertLayer']
    """
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    refuse_unshardable("FSDP", model, loss_fn, loss_optimizer)
    plugin = accelerator.state.fsdp_plugin
    if getattr(plugin, "fsdp_version", 1) != 2:
        raise ConfigError(
            f"accelerate is configured for FSDP version {getattr(plugin, 'fsdp_version', 1)}; finetuner supports "
            "FSDP2: set fsdp_version: 2 in the accelerate config (or accelerate launch --fsdp_version 2)"
        )
    if plugin.auto_wrap_policy is None and os.environ.get("FSDP_AUTO_WRAP_POLICY", "").upper() != "NO_WRAP":
        plugin.auto_wrap_policy = transformer_auto_wrap_policy  # unset: one unit per layer (NO_WRAP: one in all)
    if plugin.auto_wrap_policy is transformer_auto_wrap_policy and not plugin.transformer_cls_names_to_wrap:
        names = layer_class_names(model)
        if not names:
            raise ConfigError(
                f"FSDP: {type(model).__name__} names no transformer layer classes to shard; set "
                "fsdp_transformer_layer_cls_to_wrap (or fsdp_auto_wrap_policy: SIZE_BASED_WRAP) in the accelerate "
                "config"
            )
        plugin.transformer_cls_names_to_wrap = names


def refuse_unshardable(engine: str, model: nn.Module, loss_fn: nn.Module | None, loss_optimizer: str | None) -> None:
    """What neither FSDP nor DeepSpeed can train here: a two-tower model (each tower embeds alone, outside the
    sharded whole or the engine) and a loss with weights but no optimizer of its own (the sharded optimizer holds
    the model's parameters only).

    Example:
        >>> refuse_unshardable('FSDP', torch.nn.Linear(2, 2), None, None)
    """
    flag = {"FSDP": "--use_fsdp", "DeepSpeed": "--use_deepspeed"}.get(engine, engine)
    if hasattr(model, "text") and hasattr(model, "vision"):
        raise ConfigError(
            f"{engine}: two-tower models (CLIP) embed through each tower alone, outside the sharded whole; train them "
            f"without {flag}"
        )
    if loss_fn is not None and any(p.requires_grad for p in loss_fn.parameters()) and not loss_optimizer:
        raise ConfigError(
            f"{engine}: the loss {type(loss_fn).__name__} has weights of its own, which the model's sharded optimizer "
            "cannot hold; give them their own optimizer with loss_optimizer='SGD' (or 'Adam', ...)"
        )


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters are on the ``meta`` device (no memory); buffers and everything else
    (tokenizer, settings) are copied. :func:`gather_full_model` fills it with the trained weights.

    Example:
        >>> m = meta_copy(torch.nn.Linear(2, 3))
        >>> m.weight.device.type, m.weight.shape
        ('meta', torch.Size([3, 2]))
    """
    memo: dict[int, Any] = {
        id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for p in model.parameters()
    }
    return copy.deepcopy(model, memo)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on the CPU: gathered from every rank when ``model`` is sharded (a collective call:
    every rank must make it; rank 0 gets the tensors, the others an empty dict), else its own ``state_dict``.

    Example:
        >>> sorted(full_state_dict(torch.nn.Linear(2, 3)))
        ['bias', 'weight']
    """
    if not is_sharded(model):
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def gather_full_model(model: nn.Module, skeleton: nn.Module, rank: int) -> nn.Module | None:
    """The trained, unsharded model on rank 0: ``skeleton`` (from :func:`meta_copy`, taken before sharding) with
    the full weights gathered from every rank; ``None`` on the other ranks. Every rank must call it.

    Example:
        >>> full = gather_full_model(state.model, skeleton, accelerator.process_index)  # doctest: +SKIP
    """
    weights = full_state_dict(model)
    if rank != 0:
        return None
    skeleton.load_state_dict(weights, strict=True, assign=True)
    return skeleton.eval()


def _states(model: nn.Module, optimizer: Any) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    states: dict[str, Any] = {"model": get_model_state_dict(model)}
    if optimizer is not None:
        states["optimizer"] = get_optimizer_state_dict(model, _bare(optimizer))
    return states


def _bare(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's wrapper."""
    while hasattr(optimizer, "optimizer") and not isinstance(optimizer, torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


def save_sharded(folder: Path, model: nn.Module, optimizer: Any = None) -> None:
    """Write the sharded model's (and optimizer's) state to ``folder``, each rank its own shards
    (``torch.distributed.checkpoint``); every rank must call it, and ``folder`` must be one place all ranks see.

    Example:
        >>> save_sharded(Path('ckpt/sharded'), model, optimizer)  # doctest: +SKIP
    """
    import torch.distributed.checkpoint as dcp

    dcp.save(_states(model, optimizer), checkpoint_id=str(folder))


def load_sharded(folder: Path, model: nn.Module, optimizer: Any = None) -> None:
    """Read what :func:`save_sharded` wrote into the sharded ``model`` (and ``optimizer``), each rank its shards.

    Example:
        >>> load_sharded(Path('ckpt/sharded'), model, optimizer)  # doctest: +SKIP
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    states = _states(model, optimizer)
    dcp.load(states, checkpoint_id=str(folder))
    set_model_state_dict(model, states["model"])
    if optimizer is not None:
        set_optimizer_state_dict(model, _bare(optimizer), states["optimizer"])
