"""The options each learning-rate schedule takes, checked before anything is built.

Every schedule takes ``scheduler_step`` (``'batch'``, the default: the rate changes after every optimizer step;
``'epoch'``: after every epoch, as in Finetuner 0.7.2+, and the step counts below count epochs). Schedules with a
warmup take ``num_warmup_steps`` or ``warmup_ratio``; schedules that end take ``num_training_steps`` (``'auto'``,
the default: the whole run); the rest are transformers' own options of that schedule (``num_cycles`` for the cosine
schedules, ``lr_end`` and ``power`` for ``polynomial``, ``timescale`` for ``inverse_sqrt``).
"""

from __future__ import annotations

import inspect
from typing import Any

from finetuner.errors import suggest

#: when the rate changes: after every optimizer step, or after every epoch
SCHEDULER_STEPS = ("batch", "epoch")
#: the schedules that have no warmup phase, and those that do not end (no ``num_training_steps``)
NO_WARMUP = ("constant",)
NO_END = ("constant", "constant_with_warmup", "inverse_sqrt")
#: arguments of transformers' schedule functions that fit sets itself
_SET_BY_FIT = ("optimizer", "last_epoch", "num_warmup_steps", "num_training_steps")


def scheduler_options(scheduler: str) -> list[str]:
    """Every ``scheduler_options`` key the schedule takes.

    Example:
        >>> scheduler_options('linear')
        ['num_training_steps', 'num_warmup_steps', 'scheduler_step', 'warmup_ratio']
        >>> scheduler_options('constant')
        ['scheduler_step']
    """
    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION, SchedulerType

    params = inspect.signature(TYPE_TO_SCHEDULER_FUNCTION[SchedulerType(scheduler)]).parameters
    own = {"scheduler_step"}
    if scheduler not in NO_WARMUP:
        own |= {"num_warmup_steps", "warmup_ratio"}
    if scheduler not in NO_END:
        own.add("num_training_steps")
    return sorted(own | {p for p in params if p not in _SET_BY_FIT})


def scheduler_problems(scheduler: str | None, options: dict[str, Any]) -> list[str]:
    """What is wrong with ``scheduler_options`` for ``scheduler`` (a known schedule name or None), one message each.

    Example:
        >>> scheduler_problems('linear', {'scheduler_step': 'batch', 'num_training_steps': 'auto'})
        []
        >>> scheduler_problems('constant', {'num_warmup_steps': 10})[0][:71]
        "scheduler 'constant' has no option 'num_warmup_steps' (it has no warmup"
    """
    if not options:
        return []
    if scheduler is None:
        return ["scheduler_options given without a scheduler; pass scheduler='linear' (or another) too"]
    valid = scheduler_options(scheduler)
    out = []
    for key in options:
        if key in valid:
            continue
        if key in ("num_warmup_steps", "warmup_ratio"):
            hint = "it has no warmup: use scheduler='constant_with_warmup'"
        elif key == "num_training_steps":
            hint = "it does not end: its rate does not depend on the run's length"
        else:
            hint = suggest(str(key), valid)
        out.append(
            f"scheduler {scheduler!r} has no option {key!r}"
            + (f" ({hint})" if hint else "")
            + f"; its options are: {', '.join(valid)}"
        )
    step = options.get("scheduler_step", "batch")
    if step not in SCHEDULER_STEPS:
        out.append(
            f"scheduler_options['scheduler_step'] must be 'batch' (the rate changes after every optimizer step) or "
            f"'epoch' (after every epoch); received {step!r}"
        )
    warmup, ratio, length = (options.get(k) for k in ("num_warmup_steps", "warmup_ratio", "num_training_steps"))
    if warmup is not None and not (_is_int(warmup) and warmup >= 0):
        out.append(f"scheduler_options['num_warmup_steps'] must be an int >= 0; received {warmup!r}")
    if ratio is not None and not (isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and 0 <= ratio < 1):
        out.append(f"scheduler_options['warmup_ratio'] must be a number in [0, 1); received {ratio!r}")
    if warmup is not None and ratio is not None:
        out.append("scheduler_options sets both num_warmup_steps and warmup_ratio; give one of them")
    if length is not None and length != "auto" and not (_is_int(length) and length >= 1):
        out.append(
            "scheduler_options['num_training_steps'] must be 'auto' (the whole run) or an int >= 1 (the schedule's "
            f"length in {'epochs' if step == 'epoch' else 'optimizer steps'}); received {length!r}"
        )
    if _is_int(warmup) and _is_int(length) and warmup > length:
        out.append(f"scheduler_options: num_warmup_steps ({warmup}) is longer than num_training_steps ({length})")
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
