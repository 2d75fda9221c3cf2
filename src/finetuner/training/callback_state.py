"""What callbacks remember across a resume: each stateful callback's ``state_dict()`` saved in the checkpoint.

A callback that keeps state between epochs (the best score and its weights, the epochs without improvement, the
weights training started from) defines ``state_dict()`` and ``load_state_dict(state)``. The state is a dict of plain
values (numbers, strings, lists: written to ``checkpoint.yml`` under ``callbacks``) and tensors or dicts of tensors
(written to ``callbacks.safetensors``). A callback is found again on resume by its class name and its place among the
callbacks of that class (``EarlyStopping``, ``EarlyStopping#2``), so a resume needs the same callbacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

TENSORS_FILE = "callbacks.safetensors"
_SEP = "/"


def stateful_callbacks(callbacks: Sequence[Any]) -> dict[str, Any]:
    """The callbacks that have a state, by their key (class name, ``#n`` for the n-th of a class).

    Example:
        >>> class Counter:
        ...     def state_dict(self): return {}
        ...     def load_state_dict(self, state): pass
        >>> list(stateful_callbacks([Counter(), object(), Counter()]))
        ['Counter', 'Counter#2']
    """
    out: dict[str, Any] = {}
    seen: dict[str, int] = {}
    for cb in callbacks:
        if not (callable(getattr(cb, "state_dict", None)) and callable(getattr(cb, "load_state_dict", None))):
            continue
        name = type(cb).__name__
        seen[name] = seen.get(name, 0) + 1
        out[name if seen[name] == 1 else f"{name}#{seen[name]}"] = cb
    return out


def split_state(callbacks: Sequence[Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(plain values by callback, flat tensors)`` of every stateful callback, ready for YAML and safetensors.

    Example:
        >>> class Best:
        ...     def state_dict(self): return {'best': 0.5, 'weights': {'w': torch.ones(2)}}
        ...     def load_state_dict(self, state): pass
        >>> plain, tensors = split_state([Best()])
        >>> plain, sorted(tensors)
        ({'Best': {'best': 0.5, 'weights/': ['w']}}, ['Best/weights/w'])
    """
    plain: dict[str, Any] = {}
    tensors: dict[str, torch.Tensor] = {}
    for key, cb in stateful_callbacks(callbacks).items():
        values: dict[str, Any] = {}
        for name, value in cb.state_dict().items():
            if isinstance(value, torch.Tensor):
                tensors[f"{key}{_SEP}{name}"] = value.detach().cpu().contiguous()
            elif isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
                for sub, tensor in value.items():
                    tensors[f"{key}{_SEP}{name}{_SEP}{sub}"] = tensor.detach().cpu().contiguous()
                values[f"{name}{_SEP}"] = sorted(value)  # the group's keys, in case it is empty of tensors
            else:
                values[name] = value
        plain[key] = values
    return plain, tensors


def save_states(callbacks: Sequence[Any], folder: Path) -> dict[str, Any]:
    """Write the callbacks' tensors to ``folder/callbacks.safetensors``; return the plain values for the YAML."""
    from safetensors.torch import save_file

    plain, tensors = split_state(callbacks)
    if tensors:
        save_file(tensors, str(Path(folder) / TENSORS_FILE))
    return plain


def load_states(callbacks: Sequence[Any], folder: Path, plain: dict[str, Any] | None) -> list[str]:
    """Give each stateful callback the state it saved in the checkpoint ``folder``; returns the keys restored.

    Example:
        >>> load_states([], Path('/nonexistent'), None)
        []
    """
    from safetensors.torch import load_file

    if not plain:
        return []
    path = Path(folder) / TENSORS_FILE
    tensors = load_file(str(path)) if path.is_file() else {}
    restored = []
    for key, cb in stateful_callbacks(callbacks).items():
        if key not in plain:
            continue
        state: dict[str, Any] = {}
        for name, value in (plain[key] or {}).items():
            if name.endswith(_SEP):  # a group of tensors
                group = name[: -len(_SEP)]
                state[group] = {sub: tensors[f"{key}{_SEP}{group}{_SEP}{sub}"] for sub in value}
            else:
                state[name] = value
        prefix = f"{key}{_SEP}"
        for flat, tensor in tensors.items():
            rest = flat[len(prefix) :] if flat.startswith(prefix) else None
            if rest is not None and _SEP not in rest:
                state[rest] = tensor
        cb.load_state_dict(state)
        restored.append(key)
    return restored
