"""Runs: one fine-tuning job, its folder under the local runs directory, and its artifact.

A run folder has the artifact layout itself (:mod:`finetuner.artifacts`) plus ``status.yml`` and ``checkpoints/``;
``save_artifact`` copies it, without those two, atomically. The runs directory is ``$FINETUNER_HOME/runs`` (default
``~/.finetuner/runs``).
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from finetuner import artifacts
from finetuner.errors import ArtifactError, ConfigError
from finetuner.fileio import STAGING_PATTERNS, apply_umask, read_yaml, write_yaml
from finetuner.run_views import RunViews

STATUSES = ("CREATED", "STARTED", "FINISHED", "FAILED")


def runs_root() -> Path:
    """Where runs live: ``$FINETUNER_HOME/runs``, default ``~/.finetuner/runs``.

    Example:
        >>> runs_root().name
        'runs'
    """
    return Path(os.environ.get("FINETUNER_HOME", Path.home() / ".finetuner")).expanduser() / "runs"


def new_run_name() -> str:
    """A readable, unique run name: ``run-YYYYmmdd-HHMMSS-xxxx``."""
    return f"run-{_dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"


class Run(RunViews):
    """A fine-tuning run (Finetuner's ``Run``): status, logs, metrics and the saved artifact; its artifact id, a table
    of its example results and a live view of its log (:class:`~finetuner.run_views.RunViews`).

    Example:
        >>> run = finetuner.fit(model='all-MiniLM-L6-v2', train_data=train, eval_data=evals)  # doctest: +SKIP
        >>> run.status()['status'], sorted(run.metrics())  # doctest: +SKIP
        ('FINISHED', ['after', 'before'])
        >>> path = run.save_artifact('artifacts/')  # doctest: +SKIP
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @classmethod
    def create(cls, name: str | None, experiment_name: str | None, config: dict[str, Any]) -> Run:
        """Make a new run folder under the runs directory and record its config."""
        name = name or new_run_name()
        directory = runs_root() / (experiment_name or "default") / name
        directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            directory.mkdir()  # atomic: of two runs started with one name at once, exactly one gets the folder
        except FileExistsError:
            raise ArtifactError(
                f"a run named {name!r} already exists at {directory}; choose another run_name (or continue that "
                f"run with resume_from={name!r})"
            ) from None
        run = cls(directory)
        write_yaml(directory / artifacts.CONFIG_FILE, config)
        run.set_status("CREATED")
        return run

    @property
    def name(self) -> str:
        """The run's name (its folder name)."""
        return self.directory.name

    @property
    def config(self) -> dict[str, Any]:
        """The settings the run was started with."""
        return read_yaml(self.directory / artifacts.CONFIG_FILE, {})

    def set_status(self, status: str, details: str = "") -> None:
        """Record the run's status (one of CREATED, STARTED, FINISHED, FAILED)."""
        write_yaml(self.directory / artifacts.STATUS_FILE, {"status": status, "details": details})

    def status(self) -> dict[str, str]:
        """``{'status': ..., 'details': ...}`` as Finetuner reported it."""
        return read_yaml(self.directory / artifacts.STATUS_FILE, {"status": "CREATED", "details": ""})

    def logs(self) -> str:
        """The run's log text."""
        path = self.directory / artifacts.LOG_FILE
        return path.read_text(encoding="utf-8") if path.is_file() else ""

    def metrics(self) -> dict[str, dict[str, float]]:
        """``{'before': {...}, 'after': {...}}`` retrieval metrics on the evaluation data (empty without it)."""
        return read_yaml(self.directory / artifacts.METRICS_FILE, {}) or {}

    def display_metrics(self) -> str:
        """A before/after table of the metrics; printed and returned."""
        from finetuner.report.table import metrics_table

        table = metrics_table(self.metrics())
        print(table)
        return table

    def example_results(self) -> dict[str, Any]:
        """A few evaluation queries with their top results before and after tuning."""
        return read_yaml(self.directory / artifacts.EXAMPLES_FILE, {}) or {}

    def save_artifact(self, directory: str | Path = "tuned_model") -> str:
        """Copy the run's artifact into ``directory/<run name>`` atomically and return that path.

        The copy is made under a temporary name and renamed into place, so the target is never half-written.
        """
        if self.status().get("status") != "FINISHED":
            raise ArtifactError(
                f"run {self.name} has status {self.status().get('status')}; only a finished run saves"
            )
        target_root = Path(directory).expanduser()
        target_root.mkdir(parents=True, exist_ok=True)
        target = target_root / self.name
        tmp = Path(tempfile.mkdtemp(dir=target_root, prefix=f".{self.name}."))
        try:
            staged = tmp / self.name
            shutil.copytree(
                self.directory, staged, ignore=shutil.ignore_patterns(*artifacts.RUN_ONLY, *STAGING_PATTERNS)
            )
            apply_umask(staged)  # the modes a new folder gets here, whatever the run folder's files have
            if target.exists():
                old = tmp / "replaced"
                os.replace(target, old)
            os.replace(staged, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return str(target)

    def __repr__(self) -> str:
        return f"Run(name={self.name!r}, status={self.status().get('status')!r})"


def get_run(run_name: str, experiment_name: str | None = None) -> Run:
    """An earlier run by name from the runs directory (Finetuner's ``get_run(run_name, experiment_name)``); without
    ``experiment_name`` every experiment is searched.

    Example:
        >>> get_run('no-such-run')
        Traceback (most recent call last):
        ...
        finetuner.errors.ArtifactError: no run named 'no-such-run' under ...
    """
    root = runs_root()
    candidates = [root / experiment_name / run_name] if experiment_name else list(root.glob(f"*/{run_name}"))
    for c in candidates:
        if c.is_dir():
            return Run(c)
    where = f"experiment {experiment_name!r} under {root}" if experiment_name else str(root)
    raise ArtifactError(f"no run named {run_name!r} under {where}")


def list_runs(experiment_name: str | None = None, page: int = 1, size: int | None = None) -> list[Run]:
    """The runs in the runs directory (one experiment or all), oldest first; with ``size``, the ``page``-th group
    of ``size`` runs (Finetuner's paging: page 2 of size 50 is runs 51 to 100).

    Example:
        >>> list_runs(page=0)
        Traceback (most recent call last):
        ...
        finetuner.errors.ConfigError: page must be an int >= 1; received 0
    """
    for key, value in (("page", page), ("size", 1 if size is None else size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be an int >= 1; received {value!r}")
    root = runs_root()
    folders = (root / experiment_name).glob("*") if experiment_name else root.glob("*/*")
    runs = [
        Run(f) for f in sorted(folders, key=lambda p: p.stat().st_mtime) if (f / artifacts.CONFIG_FILE).is_file()
    ]
    return runs if size is None else runs[(page - 1) * size : page * size]


def resolve_folder(ref: str | Path) -> Path:
    """An artifact or run folder from its path or a run's name.

    Example:
        >>> resolve_folder('no/such/folder')
        Traceback (most recent call last):
        ...
        finetuner.errors.ArtifactError: no/such/folder is neither an artifact folder nor a run name (...
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    if isinstance(ref, str) and "/" not in ref:
        return get_run(ref).directory
    raise ArtifactError(
        f"{ref} is neither an artifact folder nor a run name (a pretrained model, such as a Hugging Face hub id, loads "
        "with finetuner.build_model)"
    )
