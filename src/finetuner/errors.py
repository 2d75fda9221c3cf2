"""Errors raised by finetuner.

Every error raised for bad user input is a subclass of :class:`FinetunerError` and of the matching built-in
(``ValueError`` or ``TypeError``), so ``except ValueError`` keeps working. Messages say what was received, what
is valid and how to fix it, naming the offending item.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FinetunerError(Exception):
    """Base class of all errors finetuner raises on purpose."""


class DataError(FinetunerError, ValueError):
    """Training or evaluation data that cannot be used (names the item: index, id, uri or CSV line).

    Example:
        >>> raise DataError("item 3 (id 'a1'): no content; give text, uri, blob or tensor")
        Traceback (most recent call last):
        ...
        finetuner.errors.DataError: item 3 (id 'a1'): no content; give text, uri, blob or tensor
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        #: every problem found, one line each (a validation pass reports all of them at once)
        self.problems: list[str] = problems if problems is not None else [message]


class ConfigError(FinetunerError, ValueError):
    """An option of ``fit`` (or the CLI) that is out of range or names nothing known."""


class InputTypeError(FinetunerError, TypeError):
    """An argument of the wrong type."""


class ArtifactError(FinetunerError, ValueError):
    """A saved artifact that is missing, incomplete or unsafe to load."""


class StorageError(FinetunerError, OSError):
    """A file could not be written (disk full, read-only, no permission); the message says what was kept intact."""


class ModelUnavailableError(FinetunerError, OSError):
    """A pretrained model that is neither local nor cached and cannot be downloaded (offline, or no network)."""


class ValidationError(DataError, ConfigError):
    """The check before training found problems of several kinds (data and options); ``.problems`` lists all.

    It is a :class:`DataError` and a :class:`ConfigError`, so code catching either sees it.

    Example:
        >>> err = ValidationError("2 problems", ["train_data is empty", "epochs must be >= 1"])
        >>> isinstance(err, DataError) and isinstance(err, ConfigError), len(err.problems)
        (True, 2)
    """


class ValidationTypeError(ValidationError, InputTypeError):
    """A :class:`ValidationError` whose problems include an argument of the wrong type (also a ``TypeError``)."""


#: how alike (``difflib`` ratio) a name must be to a valid one to be suggested: a typo ('epoch', 'margn',
#: 'TripletMarginLos') is, a different word that shares a prefix ('model_artifact' / 'model_options': 0.59) is not
SIMILARITY = 0.75


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name closest to ``name``, or None when nothing is close (see :data:`SIMILARITY`).

    Example:
        >>> closest('TripletMarginLos', ['TripletMarginLoss', 'ArcFaceLoss'])
        'TripletMarginLoss'
        >>> closest('model_artifact', ['model_options', 'output_dim']) is None
        True
    """
    valid = list(valid)
    lowered = {v.lower(): v for v in valid}
    if name.lower() in lowered:
        return lowered[name.lower()]
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=SIMILARITY)
    return lowered[match[0]] if match else None


def suggest(name: str, valid: Iterable[str], aliases: dict[str, str] | None = None) -> str:
    """A hint for an unknown ``name``: what a known alias means here (``aliases``: name -> advice), else the
    closest valid name, else ``''``.

    Example:
        >>> suggest('lr', ['learning_rate', 'epochs'], {'lr': "use learning_rate=..."})
        'use learning_rate=...'
        >>> suggest('epoch', ['learning_rate', 'epochs'])
        "did you mean 'epochs'?"
        >>> suggest('model_artifact', ['model_options'])
        ''
    """
    advice = (aliases or {}).get(name.lower())
    if advice:
        return advice
    hint = closest(name, valid)
    return f"did you mean {hint!r}?" if hint else ""


def unknown_name(what: str, name: object, valid: Iterable[str], aliases: dict[str, str] | None = None) -> ConfigError:
    """Build the error for an unknown registry name, listing the valid names and a hint (a known alias's advice
    from ``aliases``, else the closest valid name).

    Example:
        >>> str(unknown_name('loss', 'TripletMarginLos', ['TripletMarginLoss', 'ArcFaceLoss']))[:51]
        "unknown loss 'TripletMarginLos'; did you mean 'Trip"
    """
    valid = sorted(valid)
    hint = suggest(str(name), valid, aliases)
    did_you_mean = f"; {hint}" if hint else ""
    return ConfigError(f"unknown {what} {name!r}{did_you_mean} Valid {what} names: {', '.join(valid)}")
