"""The report of the check before training: every problem found, of every kind, raised as one error."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from finetuner.errors import (
    ConfigError,
    DataError,
    FinetunerError,
    InputTypeError,
    ValidationError,
    ValidationTypeError,
)

#: how many problems the error message lists (``error.problems`` always holds all of them)
SHOWN = 25
#: how many problems are kept at most (a data set where every row is bad does not fill the memory)
KEPT = 10_000
KINDS = ("data", "config", "type")


@dataclass
class ValidationReport:
    """Problems (``kind`` ``'data'``, ``'config'`` or ``'type'``) and warnings, in the order found.

    Example:
        >>> report = ValidationReport()
        >>> report.add("config", "epochs must be an int >= 1; received 0")
        >>> report.add("data", "train_data item 3 (id 'a'): empty text")
        >>> report.error().problems
        ['epochs must be an int >= 1; received 0', "train_data item 3 (id 'a'): empty text"]
        >>> type(report.error()).__name__
        'ValidationError'
    """

    problems: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dropped: int = 0

    def add(self, kind: str, message: str) -> None:
        """Record one problem of ``kind``."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; received {kind!r}")
        if len(self.problems) >= KEPT:
            self.dropped += 1
            return
        self.problems.append((kind, message))

    def add_error(self, exc: FinetunerError) -> None:
        """Record the problems carried by an error raised by a reader or a registry."""
        kind = "type" if isinstance(exc, InputTypeError) else "data" if isinstance(exc, DataError) else "config"
        for message in getattr(exc, "problems", None) or [str(exc)]:
            self.add(kind, message)

    def warn(self, message: str) -> None:
        """Record a warning (shown with ``warnings.warn`` when the report passes)."""
        self.warnings.append(message)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def messages(self) -> list[str]:
        """Every problem's message."""
        return [message for _, message in self.problems]

    def error(self) -> FinetunerError:
        """One error for all problems: the kind's own class when all share a kind, else a ValidationError."""
        kinds = {kind for kind, _ in self.problems}
        messages = self.messages()
        total = len(messages) + self.dropped
        lines = messages[:SHOWN]
        more = total - len(lines)
        if total == 1:
            text = messages[0]
        else:
            text = f"{total} problems found before training (nothing was trained; fix them and run again):\n  - "
            text += "\n  - ".join(lines)
            if more:
                text += f"\n  ... and {more} more (all of them are in this error's .problems)"
        if kinds == {"data"}:
            return DataError(text, messages)
        if kinds == {"config"}:
            err: FinetunerError = ConfigError(text)
        elif kinds == {"type"}:
            err = InputTypeError(text)
        elif "type" in kinds:
            return ValidationTypeError(text, messages)
        else:
            return ValidationError(text, messages)
        err.problems = messages  # type: ignore[attr-defined]
        return err

    def raise_if_problems(self) -> None:
        """Raise :meth:`error` when there is any problem; otherwise show the warnings.

        Example:
            >>> ValidationReport().raise_if_problems()
        """
        if self.problems:
            raise self.error()
        for message in self.warnings:
            warnings.warn(message, stacklevel=3)
