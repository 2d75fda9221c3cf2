"""The report of the check before training: every problem found, in every category, raised as one error."""

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
#: what a problem is about: the data, an option's value, or an argument's type (each has its own error class)
CATEGORIES = ("data", "config", "type")


@dataclass
class ValidationReport:
    """Problems (``(category, message)``, the category ``'data'``, ``'config'`` or ``'type'``) and warnings, in the
    order found.

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

    def add(self, category: str, message: str) -> None:
        """Record one problem of ``category`` (one of :data:`CATEGORIES`)."""
        if category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES}; received {category!r}")
        if len(self.problems) >= KEPT:
            self.dropped += 1
            return
        self.problems.append((category, message))

    def add_error(self, exc: FinetunerError) -> None:
        """Record the problems carried by an error raised by a reader or a registry."""
        category = "type" if isinstance(exc, InputTypeError) else "data" if isinstance(exc, DataError) else "config"
        for message in getattr(exc, "problems", None) or [str(exc)]:
            self.add(category, message)

    def warn(self, message: str) -> None:
        """Record a warning (shown with ``warnings.warn`` when the report passes)."""
        self.warnings.append(message)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def messages(self) -> list[str]:
        """Every problem's message."""
        return [message for _, message in self.problems]

    def error(self) -> FinetunerError:
        """One error for all problems: the category's own class when all share one, else a ValidationError."""
        categories = {category for category, _ in self.problems}
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
        if categories == {"data"}:
            return DataError(text, messages)
        if categories == {"config"}:
            err: FinetunerError = ConfigError(text)
        elif categories == {"type"}:
            err = InputTypeError(text)
        elif "type" in categories:
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
