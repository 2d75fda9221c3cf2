"""Checks of ``fit``'s options: names, numbers, types and the device, every problem at once."""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetuner import aliases, artifacts
from finetuner.config import SCHEDULERS, TrainingConfig
from finetuner.errors import ArtifactError, ConfigError, closest, unknown_name
from finetuner.losses.matryoshka import option_problems as matryoshka_problems
from finetuner.losses.matryoshka import split_options
from finetuner.models.adapters import adapter_problems
from finetuner.safety import is_plain_name
from finetuner.validation.launcher import launcher_problems
from finetuner.validation.report import ValidationReport
from finetuner.validation.schedules import scheduler_problems

#: the settings that may be None in fit() and mean "empty"
DICT_OPTIONS = (
    "loss_options",
    "miner_options",
    "optimizer_options",
    "scheduler_options",
    "loss_optimizer_options",
    "adapter_options",
)
_HOOKS = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end")


def accepted_options(cls: type) -> set[str] | None:
    """The keyword options a class's constructor accepts, following ``**kwargs`` up the bases (None: any).

    Example:
        >>> 'margin' in accepted_options(__import__('pytorch_metric_learning.losses').losses.TripletMarginLoss)
        True
    """
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass in (nn.Module, object):
            return names
        if "__init__" not in vars(klass):
            continue
        try:
            params = inspect.signature(klass.__init__).parameters.values()
        except (TypeError, ValueError):
            return None
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None


def _check_keys(
    report: ValidationReport, what: str, cls: type, options: dict[str, Any], skip: Sequence[str] = ()
) -> None:
    valid = accepted_options(cls)
    if valid is None:
        return
    valid -= {"params", *skip}
    for key in options:
        if key not in valid:
            hint = closest(str(key), valid)
            did = f" (did you mean {hint!r}?)" if hint else ""
            report.add(
                "config",
                f"{what} {cls.__name__} has no option {key!r}{did}; its options are: {', '.join(sorted(valid))}",
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_device(report: ValidationReport, device: Any, precision: Any) -> None:
    if not isinstance(device, str):
        return  # TrainingConfig.problems reports the type
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            built = torch.version.cuda or "none (a CPU-only build)"
            report.add(
                "config",
                f"device={device!r} but no CUDA device is available (torch.cuda.is_available() is False; torch's "
                f"CUDA version: {built}). Use device='cpu', or device='auto' to take a GPU when there is one.",
            )
        elif device.startswith("cuda:"):
            index = device[5:]
            count = torch.cuda.device_count()
            if not index.isdigit() or int(index) >= count:
                report.add(
                    "config",
                    f"device={device!r} names no GPU: this machine has {count} CUDA device(s), cuda:0 to "
                    f"cuda:{count - 1}.",
                )
    elif device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        report.add("config", "device='mps' but Apple's MPS backend is not available here; use 'cpu' or 'auto'.")
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if precision == "fp16" and on_cpu:
        report.add("config", "precision='fp16' needs a CUDA GPU; on the CPU use precision='no' or 'bf16'.")


def _check_artifact(report: ValidationReport, name: str, path: Path) -> None:
    """A saved artifact trains on as its model; one of several models (CLIP's towers) must be named."""
    try:
        names = list(artifacts.read_input_map(path))
    except ArtifactError as exc:  # a damaged input map
        report.add("config", f"model {name!r}: {exc}")
        return
    if len(names) > 1:
        folders = " or ".join(repr(str(path / artifacts.MODELS_DIR / n)) for n in names)
        report.add(
            "config",
            f"model {name!r} is an artifact of {len(names)} models ({', '.join(names)}); fit one of them: "
            f"model={folders}",
        )


def _check_model(report: ValidationReport, model: Any, model_options: Any) -> None:
    if model_options is not None and not isinstance(model_options, dict):
        report.add("type", f"model_options must be a dict or None; received {type(model_options).__name__}")
    elif model_options and "prompts" in model_options:
        from finetuner.models.prompts import prompt_option_problems

        for problem in prompt_option_problems(model, model_options["prompts"]):
            report.add("config", problem)
    if isinstance(model, (nn.Module, dict)):
        return
    if not isinstance(model, (str, os.PathLike)):
        report.add(
            "type",
            f"model must be a model name, a Hugging Face hub id, a local folder or a torch.nn.Module; received "
            f"{type(model).__name__}",
        )
        return
    from finetuner.models.clip.open_clip_names import is_open_clip_name, open_clip_name_problem
    from finetuner.models.registry import MODELS

    name = os.fspath(model)
    path = Path(name).expanduser()
    if not name.strip():
        report.add("config", "model is an empty string; give a model name (see finetuner.list_models())")
    elif path.exists():
        if not path.is_dir():
            report.add("config", f"model {name!r} is a file; give a model folder, a hub id or a model name")
        elif artifacts.is_artifact(path):
            _check_artifact(report, name, path)
    elif name.startswith((".", "/", "~", "\\")) or isinstance(model, os.PathLike) or os.sep + os.sep in name:
        report.add(
            "config", f"model {name!r} looks like a local folder but there is no such folder ({path.absolute()})"
        )
    elif is_open_clip_name(name):
        problem = open_clip_name_problem(name)
        if problem:
            report.add("config", problem)
    elif name.lower() in {k.lower() for k in MODELS}:
        source = next(spec.source for key, spec in MODELS.items() if key.lower() == name.lower())
        problem = open_clip_name_problem(source) if is_open_clip_name(source) else None  # clip-base-multi
        if problem:
            report.add("config", f"model {name!r} is {source!r}: {problem}")
    elif "/" not in name and ":" not in name:
        err = unknown_name("model", name, MODELS, aliases.MODELS)
        report.add("config", f"{err} (or give a Hugging Face hub id like 'org/name', or a local folder)")


def _check_loss_and_miner(report: ValidationReport, config: TrainingConfig) -> None:
    from finetuner.losses import loss_class, miner_class

    if isinstance(config.loss, str) and config.loss.lower() == "auto":
        pass  # resolved by the data (validate_fit), where its options are checked too
    elif isinstance(config.loss, str):
        try:
            cls = loss_class(config.loss)
        except ConfigError as exc:
            report.add("config", str(exc))
        else:
            if isinstance(config.loss_options, dict):
                _check_keys(report, "loss", cls, split_options(config.loss_options)[1])
    elif not isinstance(config.loss, nn.Module):
        report.add("type", f"loss must be a loss name or a torch.nn.Module; received {type(config.loss).__name__}")
    elif config.loss_options:
        report.add("config", "loss_options only apply to a loss given by name; configure the loss instance instead")
    if config.miner is None:
        if config.miner_options:
            report.add("config", "miner_options given without a miner; pass miner='...' too")
    elif isinstance(config.miner, str):
        try:
            cls = miner_class(config.miner)
        except ConfigError as exc:
            report.add("config", str(exc))
        else:
            if isinstance(config.miner_options, dict):
                _check_keys(report, "miner", cls, config.miner_options)
    elif not isinstance(config.miner, nn.Module):
        report.add(
            "type", f"miner must be a miner name, a torch.nn.Module or None; received {type(config.miner).__name__}"
        )


def _check_optimizer_and_scheduler(report: ValidationReport, config: TrainingConfig) -> None:
    from finetuner.config import OPTIMIZERS

    for name, options, what in (
        (config.optimizer, config.optimizer_options, "optimizer"),
        (config.loss_optimizer, config.loss_optimizer_options, "loss_optimizer"),
    ):
        if isinstance(name, str) and name in OPTIMIZERS and isinstance(options, dict):
            own = {k: v for k, v in options.items() if not (what == "optimizer" and k == "layer_wise_lr_decay")}
            _check_keys(report, what, getattr(torch.optim, name), own, skip=("lr",) if what == "optimizer" else ())
            if what == "optimizer" and "lr" in options:
                report.add("config", "set the learning rate with learning_rate=..., not optimizer_options={'lr': ...}")
            decay = options.get("layer_wise_lr_decay", 1.0) if what == "optimizer" else 1.0
            if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay <= 1:
                report.add(
                    "config",
                    "optimizer_options['layer_wise_lr_decay'] (each layer's learning rate is this times the rate of "
                    f"the layer above) must be a number in (0, 1]; received {decay!r}",
                )
    options = config.scheduler_options if isinstance(config.scheduler_options, dict) else {}
    if config.scheduler is None or config.scheduler in SCHEDULERS:  # an unknown name is reported on its own
        for message in scheduler_problems(config.scheduler, options):
            report.add("config", message)


def _check_callbacks(report: ValidationReport, callbacks: Any) -> None:
    if callbacks is None:
        return
    if not isinstance(callbacks, (list, tuple)):
        report.add("type", f"callbacks must be a list of callbacks; received {type(callbacks).__name__}")
        return
    for i, cb in enumerate(callbacks):
        if isinstance(cb, type):
            report.add("type", f"callbacks[{i}] is the class {cb.__name__}, not an instance; write {cb.__name__}(...)")
        elif not all(callable(getattr(cb, hook, None)) for hook in _HOOKS):
            report.add(
                "type",
                f"callbacks[{i}] is a {type(cb).__name__}, not a callback; subclass finetuner.training.Callback "
                f"(hooks: {', '.join(_HOOKS)})",
            )


def check_options(
    report: ValidationReport,
    config: TrainingConfig,
    *,
    model: Any,
    callbacks: Any = None,
    csv_options: Any = None,
    model_options: Any = None,
    eval_given: bool = False,
    fit_only: dict[str, Any] | None = None,
) -> None:
    """Add every problem of ``fit``'s options to ``report`` (nothing is built or loaded).

    Example:
        >>> report = ValidationReport()
        >>> check_options(report, TrainingConfig(epochs=0, loss='TripletMarginLos', device='cpu'), model='bert-base-en')
        >>> [m.split(';')[0] for m in report.messages()]
        ['epochs must be an int >= 1', "unknown loss 'TripletMarginLos'"]
    """
    from finetuner.data.options import CSVOptions

    for message in config.problems():
        report.add("config", message)
    for key in DICT_OPTIONS:
        value = getattr(config, key)
        if not isinstance(value, dict):
            report.add("type", f"{key} must be a dict (or None); received {type(value).__name__} {value!r:.60}")
        elif any(not isinstance(k, str) for k in value):
            report.add("type", f"{key} keys must be option names (str); received {sorted(map(repr, value))}")
    _check_model(report, model, model_options)
    _check_loss_and_miner(report, config)
    for message in matryoshka_problems(config.loss_options if isinstance(config.loss_options, dict) else {}):
        report.add("config", message)
    _check_optimizer_and_scheduler(report, config)
    _check_device(report, config.device, config.precision)
    for message in launcher_problems(config, callbacks):
        report.add("config", message)
    _check_callbacks(report, callbacks)
    for message in adapter_problems(
        config.adapter, config.adapter_options, model=model, freeze=config.freeze, model_options=model_options
    ):
        report.add("config", message)
    if csv_options is not None and not isinstance(csv_options, CSVOptions):
        report.add("type", f"csv_options must be a finetuner.CSVOptions; received {type(csv_options).__name__}")
    for key in ("run_name", "experiment_name"):
        value = getattr(config, key)
        if value is not None and not is_plain_name(value):
            report.add("config", f"{key} must be a plain folder name (no '/', '\\\\', ':' or '..'); received {value!r}")
    if not (_is_int(config.log_every) and config.log_every >= 1):
        report.add("config", f"log_every must be an int >= 1; received {config.log_every!r}")
    norm = config.max_grad_norm
    if norm is not None and not (
        isinstance(norm, (int, float)) and not isinstance(norm, bool) and 0 < norm < float("inf")
    ):
        report.add("config", f"max_grad_norm must be a positive number or None; received {norm!r}")
    def _freeze_ok(value: Any) -> bool:
        return isinstance(value, bool) or (_is_int(value) and value >= 0)

    freeze = config.freeze
    if isinstance(freeze, dict):
        if set(freeze) - {"text", "vision"} or not all(_freeze_ok(v) for v in freeze.values()):
            report.add(
                "config",
                "freeze per tower takes {'text': ..., 'vision': ...} with True, False or a layer count >= 0; "
                f"received {freeze!r}",
            )
    elif not _freeze_ok(freeze):
        report.add("config", f"freeze must be True, False or a layer count >= 0; received {freeze!r}")
    if eval_given and isinstance(config.val_split, (int, float)) and config.val_split > 0:
        report.add("config", "give either eval_data or val_split, not both")
    for key, value in (fit_only or {}).items():
        if key in ("eval_batch_size", "limit") and not (_is_int(value) and value >= 1):
            report.add("config", f"{key} must be an int >= 1; received {value!r}")
        elif key in ("to_onnx", "verbose") and not isinstance(value, bool):
            report.add("type", f"{key} must be True or False; received {value!r}")
