"""Experiments: the folders that group runs under the runs directory (``$FINETUNER_HOME/runs/<experiment>/<run>``),
listed, fetched, created and deleted with Finetuner's functions.

Deleting removes folders from this machine for good; only run folders (holding ``config.yml`` or ``status.yml``)
and experiment folders directly under the runs directory are ever removed.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from pathlib import Path

from finetuner import artifacts
from finetuner.errors import ArtifactError, ConfigError
from finetuner.runs import Run, get_run, list_runs, runs_root
from finetuner.safety import is_plain_name

DEFAULT_EXPERIMENT = "default"


class Experiment:
    """An experiment (Finetuner's ``Experiment``): a name and the runs made under it.

    Example:
        >>> experiment = create_experiment('quora')  # doctest: +SKIP
        >>> [run.name for run in experiment.list_runs()]  # doctest: +SKIP
        []
    """

    def __init__(self, name: str) -> None:
        self.name = _plain(name, "experiment name")
        self.directory = runs_root() / self.name

    @property
    def status(self) -> str:
        """``'ACTIVE'`` while the experiment's folder exists (Finetuner's status), else ``'DELETED'``."""
        return "ACTIVE" if self.directory.is_dir() else "DELETED"

    @property
    def created_at(self) -> str:
        """When the experiment's folder was made (ISO 8601, local time)."""
        return _dt.datetime.fromtimestamp(self.directory.stat().st_ctime).isoformat(timespec="seconds")

    @property
    def description(self) -> str:
        """Experiments have no description here (Finetuner's was empty unless set on the cloud): ``''``."""
        return ""

    def get_run(self, name: str) -> Run:
        """A run of this experiment by name."""
        return get_run(name, self.name)

    def list_runs(self, page: int = 1, size: int | None = None) -> list[Run]:
        """The experiment's runs, oldest first (see :func:`~finetuner.runs.list_runs`)."""
        return list_runs(self.name, page, size)

    def delete_run(self, name: str) -> None:
        """Delete one run of this experiment (its folder, for good)."""
        delete_run(name, self.name)

    def delete_runs(self) -> None:
        """Delete every run of this experiment."""
        delete_runs(self.name)

    def __repr__(self) -> str:
        return f"Experiment(name={self.name!r}, status={self.status!r})"


def create_experiment(name: str = DEFAULT_EXPERIMENT) -> Experiment:
    """Make an experiment's folder (nothing happens when it exists) and return the experiment.

    Example:
        >>> create_experiment('a/b')
        Traceback (most recent call last):
        ...
        finetuner.errors.ConfigError: experiment name must be a plain folder name (no '/', '\\\\', ':' or '..'); ...
    """
    experiment = Experiment(name)
    experiment.directory.mkdir(parents=True, exist_ok=True)
    return experiment


def get_experiment(name: str) -> Experiment:
    """An existing experiment by name.

    Example:
        >>> get_experiment('no-such-experiment')
        Traceback (most recent call last):
        ...
        finetuner.errors.ArtifactError: no experiment named 'no-such-experiment' under ...
    """
    experiment = Experiment(name)
    if not experiment.directory.is_dir():
        raise ArtifactError(f"no experiment named {name!r} under {runs_root()}")
    return experiment


def list_experiments(page: int = 1, size: int | None = None) -> list[Experiment]:
    """The experiments, by name; with ``size``, the ``page``-th group of ``size`` (Finetuner's paging).

    Example:
        >>> isinstance(list_experiments(), list)
        True
    """
    for key, value in (("page", page), ("size", 1 if size is None else size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be an int >= 1; received {value!r}")
    root = runs_root()
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and is_plain_name(p.name)) if root.is_dir() else []
    found = [Experiment(n) for n in names]
    return found if size is None else found[(page - 1) * size : page * size]


def delete_experiment(name: str) -> Experiment:
    """Delete an experiment and every run in it; returns the (now deleted) experiment."""
    experiment = get_experiment(name)
    _remove(experiment.directory)
    return experiment


def delete_experiments() -> list[Experiment]:
    """Delete every experiment and all their runs; returns them."""
    deleted = list_experiments()
    for experiment in deleted:
        _remove(experiment.directory)
    return deleted


def delete_run(run_name: str, experiment_name: str | None = None) -> None:
    """Delete a run (its folder, for good); without ``experiment_name`` the run must be the only one of that name.

    Example:
        >>> delete_run('no-such-run')
        Traceback (most recent call last):
        ...
        finetuner.errors.ArtifactError: no run named 'no-such-run' under ...
    """
    _plain(run_name, "run name")
    if experiment_name is None:
        matches = [p for p in runs_root().glob(f"*/{run_name}") if p.is_dir()] if runs_root().is_dir() else []
        if len(matches) > 1:
            where = ", ".join(p.parent.name for p in matches)
            raise ConfigError(
                f"runs named {run_name!r} exist in several experiments ({where}); pass experiment_name to say which"
            )
    _remove_run(get_run(run_name, experiment_name).directory)


def delete_runs(experiment_name: str | None = None) -> None:
    """Delete every run of one experiment, or of all experiments (the experiments stay)."""
    for run in list_runs(experiment_name):
        _remove_run(run.directory)


def _remove_run(folder: Path) -> None:
    if not ((folder / artifacts.CONFIG_FILE).is_file() or (folder / artifacts.STATUS_FILE).is_file()):
        raise ArtifactError(f"{folder} does not look like a run folder (no config.yml or status.yml); not deleted")
    _remove(folder)


def _remove(folder: Path) -> None:
    """Remove a folder inside the runs directory (never a link, never anything outside it)."""
    root = runs_root().resolve()
    if folder.is_symlink() or root not in folder.resolve().parents:
        raise ArtifactError(f"{folder} is not a folder inside the runs directory {root}; not deleted")
    shutil.rmtree(folder)


def _plain(name: str, what: str) -> str:
    if not is_plain_name(name):
        raise ConfigError(f"{what} must be a plain folder name (no '/', '\\\\', ':' or '..'); received {name!r}")
    return name
