"""``fit(..., resume_from=...)``: find the checkpoint, check it matches the run, wire the checkpoint callbacks."""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from finetuner.artifacts import CHECKPOINTS_DIR, CONFIG_FILE
from finetuner.config import TrainingConfig
from finetuner.errors import ConfigError, FinetunerError
from finetuner.fileio import read_yaml
from finetuner.runs import Run, get_run
from finetuner.safety import is_plain_name
from finetuner.training.checkpoint import (
    CHECKPOINT_FILE,
    ResumeFromCheckpoint,
    TrainingCheckpoint,
    checkpoints_newest_first,
    is_checkpoint,
    latest_checkpoint,
)
from finetuner.training.checkpoint_files import checkpoint_problem
from finetuner.training.loop import Callback

logger = logging.getLogger("finetuner")

#: settings that may change between the killed run and its resume (they do not change what is computed)
_MAY_CHANGE = ("device", "num_workers", "log_every", "run_name", "experiment_name", "prefetch_images")
#: settings checkpoints once recorded as None, and the values that None stood for
_RESOLVED_SINCE = {"learning_rate": 1e-05, "seed": 0, "scheduler": "constant"}


def resolve_resume(resume_from: Any) -> tuple[Path | None, Path | None, list[tuple[str, str]]]:
    """``(checkpoint folder, run folder or None, problems)`` for a run name, run folder or checkpoint folder.

    A run (or checkpoints folder) resumes from its newest checkpoint whose files are whole; a damaged newer one is
    named in a warning and skipped. A checkpoint folder given by path must be whole itself.

    Example:
        >>> resolve_resume('no-such-run')[2][0][1][:40]
        "resume_from='no-such-run': no run named "
    """
    if resume_from is None:
        return None, None, []
    if not isinstance(resume_from, (str, Path)):
        return (
            None,
            None,
            [("type", f"resume_from must be a run name or a folder; received {type(resume_from).__name__}")],
        )
    path = Path(resume_from).expanduser()
    run_dir: Path | None = None
    if path.is_dir():
        if is_checkpoint(path):
            parent = path.parent.parent
            is_run = path.parent.name == CHECKPOINTS_DIR and (parent / CONFIG_FILE).is_file()
            problem = checkpoint_problem(path)
            if problem is not None:
                siblings = checkpoints_newest_first(path.parent)
                others = [str(p) for p in siblings if p != path and not checkpoint_problem(p)]
                hint = f"; resume from an earlier one: {', '.join(others)}" if others else "; no other one is whole"
                return None, None, [("config", f"resume_from={str(resume_from)!r}: {problem}{hint}")]
            return path, (parent if is_run else None), []
        folder = path / CHECKPOINTS_DIR if (path / CHECKPOINTS_DIR).is_dir() else path
        run_dir = path if folder != path else (path.parent if (path.parent / CONFIG_FILE).is_file() else None)
    elif isinstance(resume_from, str) and is_plain_name(resume_from):
        try:
            run_dir = get_run(resume_from).directory
        except FinetunerError as exc:
            return None, None, [("config", f"resume_from={resume_from!r}: {exc}")]
        folder = run_dir / CHECKPOINTS_DIR
    else:
        return (
            None,
            None,
            [("config", f"resume_from={str(resume_from)!r} is neither a run name nor an existing folder")],
        )
    found, damaged = None, []
    for candidate in checkpoints_newest_first(folder):
        problem = checkpoint_problem(candidate)
        if problem is None:
            found = candidate
            break
        damaged.append(problem)
    if found is None:
        what = "every checkpoint there is damaged: " + "; ".join(damaged) if damaged else "no complete checkpoint"
        return (
            None,
            None,
            [
                (
                    "config",
                    f"resume_from={str(resume_from)!r}: {what} in {folder}; a run saves them with the "
                    "TrainingCheckpoint callback (fit adds one that saves at every epoch end)",
                )
            ],
        )
    for problem in damaged:
        logger.warning("skipping a damaged checkpoint: %s; resuming from the one before, %s", problem, found)
    return found, run_dir, []


def content_key(item: Any) -> str:
    """A stable identity of a training item for the resume fingerprint: a text itself, an image's uri, or a digest
    of the content of in-memory images (bytes, numpy arrays, torch tensors, PIL images, Hugging Face image dicts),
    so the same data read again gives the same key.

    Example:
        >>> import numpy as np
        >>> content_key('a cat'), content_key(np.zeros((2, 2))) == content_key(np.zeros((2, 2)))
        ('a cat', True)
    """
    if isinstance(item, str):
        return item
    if hasattr(item, "blob") and hasattr(item, "uri"):  # a Document
        if item.uri:
            return f"uri:{item.uri}"
        for value in (item.tensor, item.blob, getattr(item, "text", None)):
            if value is not None:
                return content_key(value)
        return f"document:{len(getattr(item, 'chunks', []) or [])}"
    if isinstance(item, (bytes, bytearray, memoryview)):
        return "bytes:" + hashlib.blake2b(bytes(item), digest_size=16).hexdigest()
    if hasattr(item, "shape") and hasattr(item, "dtype"):  # numpy array or torch tensor
        array = np.ascontiguousarray(item.detach().cpu().numpy() if hasattr(item, "detach") else item)
        return f"array:{array.shape}:{array.dtype}:" + hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()
    if hasattr(item, "mode") and hasattr(item, "size") and callable(getattr(item, "tobytes", None)):  # PIL image
        return f"image:{item.mode}:{item.size}:" + hashlib.blake2b(item.tobytes(), digest_size=16).hexdigest()
    if isinstance(item, dict) and ("bytes" in item or "path" in item):  # a Hugging Face image
        return content_key(item.get("bytes") or str(item.get("path")))
    if isinstance(item, (int, float, bool)):
        return repr(item)
    return f"{type(item).__name__}:{item!r}"


def _data_digest(data: Any) -> str:
    """A digest of the training data as the loader reads it: its items (or pair members) and labels."""
    h = hashlib.sha256()
    for name in ("items", "left", "right", "labels", "classes"):
        values = getattr(data, name, None)
        if not isinstance(values, (list, tuple)):
            continue
        h.update(f"\x1d{name}\x1d".encode())
        for value in values:
            h.update(content_key(value).encode("utf-8", "surrogatepass") + b"\x1e")
    return h.hexdigest()[:16]


def run_fingerprint(config: TrainingConfig, batch_size: int, data: Any) -> dict[str, Any]:
    """What a resumed run must share with the checkpoint: the settings that shape training and the data (by
    content: :func:`content_key`).

    Example:
        >>> from finetuner.data.shapes import LabelledData
        >>> data = LabelledData(['a', 'b'], [0, 1], ['x', 'y'], ['1', '2'], 'text')
        >>> run_fingerprint(TrainingConfig(), 8, data)['batch_size']
        8
    """
    settings = {k: v for k, v in config.to_dict().items() if k not in _MAY_CHANGE}
    settings = {
        k: (v if isinstance(v, (str, int, float, bool, type(None), dict, list)) else repr(v))
        for k, v in settings.items()
    }
    settings["batch_size"] = int(batch_size)
    return {**settings, "data": _data_digest(data), "num_items": len(data)}


def check_fingerprint(checkpoint: Path, fingerprint: dict[str, Any]) -> None:
    """Raise a :class:`ConfigError` listing every setting or data difference between the checkpoint and this run."""
    saved = dict((read_yaml(checkpoint / CHECKPOINT_FILE) or {}).get("fingerprint") or {})
    for key, before in _RESOLVED_SINCE.items():  # recorded as None before the effective values were
        if key in saved and saved[key] is None:
            saved[key] = before
    diffs = [
        f"{key}: checkpoint {saved.get(key)!r}, now {fingerprint.get(key)!r}"
        for key in sorted(set(saved) | set(fingerprint))
        if saved.get(key) != fingerprint.get(key)
    ]
    if diffs:
        raise ConfigError(
            f"cannot resume from {checkpoint}: this run differs from the one that saved it; resume with the same "
            "model, data and settings (only device, num_workers and log_every may change). Differences:\n  "
            + "\n  ".join(diffs)
        )


def checkpoint_callbacks(
    callbacks: Sequence[Callback], run: Run, fingerprint: dict[str, Any], checkpoint: Path | None
) -> list[Callback]:
    """The callbacks with a resume first (when resuming) and a TrainingCheckpoint bound to the run's folder.

    When the user gave no TrainingCheckpoint, one is added that saves at every epoch end but the last (and on
    Ctrl-C); its checkpoints are removed when the run finishes. The resume comes last, so its ``on_train_begin``
    runs after every other callback's.
    """
    out: list[Callback] = list(callbacks)
    savers = [cb for cb in out if isinstance(cb, TrainingCheckpoint)]
    if not savers:
        auto = TrainingCheckpoint(last_k_epochs=1)
        auto.automatic = True
        out.append(auto)
        savers = [auto]
    for cb in savers:
        if cb.directory is None:
            cb.directory = run.directory / CHECKPOINTS_DIR
        cb.fingerprint = fingerprint
        cb.run_name = run.name
    if checkpoint is not None:  # last: the others start as in a fresh run (WiSE-FT keeps the pretrained weights),
        out.append(ResumeFromCheckpoint(checkpoint))  # then it restores the weights, counters and their states
    return out


def finish_checkpoints(callbacks: Sequence[Callback]) -> None:
    """After a successful run: remove the checkpoints of the automatic TrainingCheckpoint."""
    for cb in callbacks:
        if isinstance(cb, TrainingCheckpoint) and cb.automatic and cb.directory is not None:
            shutil.rmtree(cb.directory, ignore_errors=True)


def resume_hint(run: Run, exc: BaseException) -> str | None:
    """A line saying where the last good checkpoint is and how to resume, for a failed or interrupted run."""
    folder = run.directory / CHECKPOINTS_DIR
    last = latest_checkpoint(folder) if folder.is_dir() else None
    if last is None:
        return None
    return (
        f"the last good checkpoint is {last}; resume with finetuner.fit(<the same arguments>, resume_from={run.name!r})"
    )
