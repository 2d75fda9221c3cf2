"""A run's log file: ``fit`` records the ``finetuner`` logger's messages from INFO up in the run's ``logs.txt``,
without changing what the caller's own logging shows.

The library sets no logging level for good: :func:`run_log` lowers the ``finetuner`` logger's level to INFO only
while a run trains, and passes on to the caller's handlers (and Python's last-resort stderr handler) only the records
they would have received anyway; afterwards the logger is as it was. Applications choose what to show (the
``finetuner`` command does, in :mod:`finetuner.cli`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(message)s"


class _AsBefore(logging.Handler):
    """Hands a record to the handlers that would have had it without :func:`run_log`: the logger's own and those
    up the hierarchy (while propagating), else Python's last resort, each at its own level."""

    def __init__(self, level: int, own: list[logging.Handler], parent: logging.Logger | None) -> None:
        super().__init__(level)
        self.own = own
        self.parent = parent

    def emit(self, record: logging.LogRecord) -> None:
        handlers = list(self.own)
        node = self.parent
        while node is not None:
            handlers += node.handlers
            node = node.parent if node.propagate else None
        if not handlers and logging.lastResort is not None:
            handlers = [logging.lastResort]
        for handler in handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


@contextlib.contextmanager
def run_log(path: Path | None, name: str = "finetuner") -> Iterator[None]:
    """Write the ``name`` logger's records from INFO up to ``path`` while the block runs (nothing when None).

    Example:
        >>> import tempfile
        >>> log = Path(tempfile.mkdtemp()) / 'logs.txt'
        >>> level = logging.getLogger('finetuner').level
        >>> with run_log(log):
        ...     logging.getLogger('finetuner').info('trained')
        >>> 'INFO trained' in log.read_text(), logging.getLogger('finetuner').level == level
        (True, True)
    """
    if path is None:
        yield
        return
    logger = logging.getLogger(name)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    shown = logger.getEffectiveLevel()
    saved = (logger.level, logger.propagate, list(logger.handlers))
    if shown > logging.INFO:  # the caller's logging would not see INFO: hand it only what it would have seen
        gate = _AsBefore(shown, saved[2], logger.parent if logger.propagate else None)
        logger.handlers = [handler, gate]
        logger.propagate = False
        logger.setLevel(logging.INFO)
    else:
        logger.addHandler(handler)
    try:
        yield
    finally:
        logger.handlers = saved[2]
        logger.propagate = saved[1]
        logger.setLevel(saved[0])
        handler.close()
