"""``fit(..., resume_from=...)``: find the checkpoint, check it matches the run, wire the checkpoint callbacks."""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    is_checkpoint,
    latest_checkpoint,
)
from finetuner.training.loop import Callback

logger = logging.getLogger("finetuner")

#: settings that may change between the killed run and its resume (they do not change what is computed)
_MAY_CHANGE = ("device", "num_workers", "log_every", "run_name", "experiment_name")


def resolve_resume(resume_from: Any) -> tuple[Path | None, Path | None, list[tuple[str, str]]]:
    """``(checkpoint folder, run folder or None, problems)`` for a run name, run folder or checkpoint folder.

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
            run_dir = parent if is_run else None
            return path, run_dir, []
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
    found = latest_checkpoint(folder) if folder.is_dir() else None
    if found is None:
        return (
            None,
            None,
            [
                (
                    "config",
                    f"resume_from={str(resume_from)!r}: no complete checkpoint in {folder}; a run saves them with "
                    "the TrainingCheckpoint callback (fit adds one that saves at every epoch end)",
                )
            ],
        )
    return found, run_dir, []


def _data_digest(items: Sequence[Any], labels: Sequence[int]) -> str:
    digest = hashlib.sha256()
    for item, label in zip(items, labels):
        key = item if isinstance(item, str) else (getattr(item, "uri", None) or getattr(item, "id", repr(item)))
        digest.update(f"{key}\x1f{label}\x1e".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


def run_fingerprint(
    config: TrainingConfig, batch_size: int, items: Sequence[Any], labels: Sequence[int]
) -> dict[str, Any]:
    """What a resumed run must share with the checkpoint: the settings that shape training and the data.

    Example:
        >>> run_fingerprint(TrainingConfig(), 8, ['a', 'b'], [0, 1])['batch_size']
        8
    """
    settings = {k: v for k, v in config.to_dict().items() if k not in _MAY_CHANGE}
    settings = {
        k: (v if isinstance(v, (str, int, float, bool, type(None), dict, list)) else repr(v))
        for k, v in settings.items()
    }
    settings["batch_size"] = int(batch_size)
    return {**settings, "data": _data_digest(items, labels), "num_items": len(items)}


def check_fingerprint(checkpoint: Path, fingerprint: dict[str, Any]) -> None:
    """Raise a :class:`ConfigError` listing every setting or data difference between the checkpoint and this run."""
    saved = (read_yaml(checkpoint / CHECKPOINT_FILE) or {}).get("fingerprint") or {}
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
    Ctrl-C); its checkpoints are removed when the run finishes.
    """
    out: list[Callback] = [ResumeFromCheckpoint(checkpoint)] if checkpoint is not None else []
    out += list(callbacks)
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
