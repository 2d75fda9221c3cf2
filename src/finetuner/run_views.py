"""More of Finetuner's ``Run``: its artifact id, description, task, the examples as a table, the log as a live stream
and the data a synthesis run made. :class:`~finetuner.runs.Run` inherits these.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finetuner import artifacts
from finetuner.errors import ArtifactError, ConfigError

#: the task a run records in its config (``config.yml``): training (``fit``) or synthesis (``synthesize``)
TRAINING, SYNTHESIS = "training", "synthesis"
#: the file a synthesis run writes its (query, document) rows into
SYNTHESIS_FILE = "synthesized.csv"
#: the triplets of a synthesis run with a relation_miner: (query, positive, negative_1..n)
TRIPLETS_FILE = "synthesized-triplets.csv"


class RunViews:
    """The parts of Finetuner's ``Run`` beyond status, logs and metrics (mixed into :class:`~finetuner.runs.Run`).

    Example:
        >>> run = finetuner.get_run('my-run')  # doctest: +SKIP
        >>> model = finetuner.get_model(run.artifact_id)  # doctest: +SKIP
    """

    directory: Path

    def status(self) -> dict[str, str]:  # pragma: no cover - provided by Run
        raise NotImplementedError

    def logs(self) -> str:  # pragma: no cover - provided by Run
        raise NotImplementedError

    def example_results(self) -> dict[str, Any]:  # pragma: no cover - provided by Run
        raise NotImplementedError

    @property
    def config(self) -> dict[str, Any]:  # pragma: no cover - provided by Run
        raise NotImplementedError

    @property
    def artifact_id(self) -> str:
        """What names the run's artifact for ``get_model``, ``build_model`` and ``fit(model_artifact=...)``: the run
        folder's absolute path (Finetuner's was a Jina AI Cloud id). Only a finished run has one."""
        status = self.status().get("status")
        if status != "FINISHED":
            raise ArtifactError(f"run {self.directory.name} has status {status}; only a finished run has an artifact")
        return str(self.directory.resolve())

    @property
    def description(self) -> str:
        """The description given to ``fit`` or ``synthesize`` (``''`` when none was)."""
        meta = artifacts.read_run_metadata(self.directory)
        return str(meta.get("description") or self.config.get("description") or "")

    @property
    def task(self) -> str:
        """``'training'`` (a ``fit`` run) or ``'synthesis'`` (a ``synthesize`` run)."""
        return str(self.config.get("task", TRAINING))

    @property
    def train_data(self) -> str:
        """The training data a synthesis run made: the path of its CSV of (query, document) rows, which ``fit``
        reads as pairs, or with a ``relation_miner`` its CSV of ``query, positive, negative_1..n`` rows (triplets).
        A training run makes no data (a :class:`~finetuner.errors.ConfigError`, as in Finetuner)."""
        if self.task != SYNTHESIS:
            raise ConfigError(
                f"run {self.directory.name} is a {self.task} run, which makes no training data; train_data belongs to "
                "runs of finetuner.synthesize"
            )
        status = self.status().get("status")
        if status != "FINISHED":
            raise ArtifactError(
                f"synthesis run {self.directory.name} has status {status}; its data is complete once it has finished "
                "(rerun synthesize with the same run_name to continue it)"
            )
        mined = "relation_miner" in self.config
        return str(self.directory.resolve() / (TRIPLETS_FILE if mined else SYNTHESIS_FILE))

    def display_examples(self, k: int = 5) -> str:
        """A table of the top ``k`` results of the example queries before and after tuning; printed and returned."""
        from finetuner.report.table import examples_table

        table = examples_table(self.example_results(), k)
        print(table)
        return table

    def stream_logs(self, interval: float = 5, timeout: float | None = None) -> Iterator[str]:
        """The run's log line by line, following it while the run is going on (another process running it), every
        ``interval`` seconds, until the run has finished or failed.

        A run whose process was killed hard stays STARTED: ``timeout`` (seconds without a new line) ends the stream
        then (None: wait for the run to end).
        """
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise ConfigError(f"interval must be a positive number of seconds; received {interval!r}")
        sent, quiet = 0, 0.0
        while True:
            done = self.status().get("status") in ("FINISHED", "FAILED")  # read before the log: no line is missed
            lines = self.logs().splitlines()
            yield from lines[sent:]
            quiet = 0.0 if len(lines) > sent else quiet + interval
            sent = max(sent, len(lines))
            if done or (timeout is not None and quiet > timeout):
                return
            time.sleep(interval)
