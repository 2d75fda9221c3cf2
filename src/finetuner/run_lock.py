"""One process at a time trains a run: the run folder's lock, held from the moment the run opens until it ends.

A second ``fit`` with the same ``run_name`` is refused when it creates the folder (:meth:`finetuner.runs.Run.create`
makes it atomically); a second ``fit(resume_from=...)`` of a run that is still training is refused here, instead of
both writing checkpoints and the artifact into one folder. The lock is an ``flock`` on ``<run>/.lock``, so the
system releases it when the process ends in any way (even ``kill -9``); where ``fcntl`` does not exist (Windows)
runs are not locked.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from finetuner.artifacts import LOCK_FILE
from finetuner.errors import ArtifactError


@contextlib.contextmanager
def hold_run(directory: str | Path) -> Iterator[None]:
    """Hold the lock of the run folder ``directory`` for the block; raise :class:`~finetuner.errors.ArtifactError`
    at once when another process holds it.

    Example:
        >>> import tempfile
        >>> with hold_run(tempfile.mkdtemp()):
        ...     pass
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = Path(directory) / LOCK_FILE
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole block
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ArtifactError(
            f"run {Path(directory).name} ({directory}) is in use by {holder}: it is still training or saving. Wait "
            "for it to end (then resume it if it failed), or give this run another run_name"
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
