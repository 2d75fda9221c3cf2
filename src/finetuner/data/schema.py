"""Which column plays which role: the rules shared by every row-shaped source (CSV files, tuples, dicts,
DataFrames, Hugging Face datasets). docs/data.md states them for users; in short:

**Names decide** when the columns have names (a CSV header, DataFrame columns, dataset features, dict keys;
``CSVOptions(columns=[...])`` naming every column of rows without names; ``CSVOptions(columns={column: name})``
renaming some). Names follow sentence-transformers' datasets and Finetuner
(case and ``-``/space ignored): a label column (:data:`LABEL_NAMES`) beside one item column (:data:`ITEM_NAMES`)
makes labelled items; two item columns make pairs (:data:`QUERY_NAMES` first, :data:`DOCUMENT_NAMES` second,
otherwise in column order); plus negative columns (``negative``, ``negative_1``, ``neg``, ``hard_negative``...)
they make triplets, plus a score column (:data:`SCORE_NAMES`) scored pairs. A label beside two item columns
(``sentence1,sentence2,label``) is refused: the label could be a score or a class of the pair.

**Column count decides** without names. A CSV file: two columns are told apart by their values (image sources
in the second column: text-image pairs; every value of the second column repeated: ``item,label``; no value
repeated: ``query,document`` pairs, Finetuner's ``is_labeled=False`` reading; anything else is refused), three
columns whose third holds numbers are scored pairs ``(a, b, score)`` (Finetuner), anything else is refused.
Tuples: ``(item, label)`` (a text-image pair when every second element is an image source), ``(a, b, score)``
with a number third, ``(anchor, positive, negative, ...)`` otherwise. Two named columns whose names settle
nothing (``sentence_text,sentiment``) are read like a two-column file.

``CSVOptions(is_labeled=True/False)`` fixes labelled or not; a layout that contradicts it is refused.
**Other columns** go to each row's ``tags`` (kept, never trained on), except a name that suggests a role no
column fills (``neg...``, ``score``, ``similarity``, ``relevance``, ``rating``, ``label``, ``class``): refused,
naming the column, so a negative or score column under another name is never silently left out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from finetuner.data.columns import (
    ID_NAMES,
    LABEL_NAMES,
    SUGGESTS,
    canonical,
    choose_columns,
    example_names,
    is_number,
    name_role,
)
from finetuner.data.items import is_missing, looks_like_image
from finetuner.data.options import CSVOptions
from finetuner.data.table import DOCUMENT, ITEM, LABEL, NEGATIVE, QUERY, SCORE
from finetuner.errors import DataError


@dataclass(frozen=True)
class Layout:
    """Which source column fills which role, and where the other columns go.

    Attributes:
        roles: the role of every table column.
        positions: the source column of every table column.
        names: how messages name every table column (``"column 'anchor'"``, ``"column 2"``).
        extras: ``(source column, tag name)`` of the columns kept in ``tags``.
        description: how the roles were decided, in words (for messages).
    """

    roles: tuple[str, ...]
    positions: tuple[int, ...]
    names: tuple[str, ...]
    extras: tuple[tuple[int, str], ...]
    description: str


def plan_layout(
    width: int,
    names: Sequence[Any] | None,
    rows: Sequence[tuple[str, Sequence[Any]]],
    options: CSVOptions | None,
    *,
    what: str,
    tuples: bool = False,
) -> Layout:
    """The layout of rows of ``width`` cells (rules in the module docstring).

    Args:
        width: the number of columns.
        names: the column names (a header, keys, DataFrame columns), or None.
        rows: the ``(where, cells)`` rows that will be read (values decide a two-column file without names).
        options: the user's CSVOptions (``is_labeled``, ``columns``), or None.
        what: how messages name the data (``"train_data 'train.csv'"``).
        tuples: the rows are Python tuples (their own rules without names).

    Raises:
        DataError: the layout is ambiguous or contradicts ``is_labeled``; the message names the columns seen and
            the option that settles it.
        ConfigError: ``CSVOptions.columns`` names a column that does not exist.

    Example:
        >>> plan_layout(3, ['anchor', 'positive', 'negative'], [], None, what='data').roles
        ('query', 'document', 'negative')
        >>> plan_layout(3, None, [('line 1', ['a', 'b', '0.5'])], None, what='data').roles
        ('query', 'document', 'score')
    """
    if width < 2:
        shown = f" ({', '.join(map(str, names))})" if names else ""
        raise DataError(
            f"{what}: found {width} column{shown}; need two or more: item,label, query,document (text,image for "
            "CLIP), anchor,positive,negative... If the file has more columns, check the delimiter "
            "(CSVOptions(dialect=...))."
        )
    labelled = options.is_labeled if options is not None else None
    chosen, names, extras = choose_columns(width, names, options, what)
    plan = _Plan(chosen, names, rows, labelled, what, tuples)
    roles = plan.decide()
    used = {i for i, _ in roles}
    for i in chosen:
        if i not in used:
            extras.append(i)
    plan.check_extras([i for i in extras if i in chosen], roles)
    label = (lambda i: f"column {str(names[i])!r}") if names else (lambda i: f"column {i + 1}")
    tag = (lambda i: str(names[i])) if names else (lambda i: f"column_{i + 1}")
    return Layout(
        tuple(r for _, r in roles),
        tuple(i for i, _ in roles),
        tuple(label(i) for i, _ in roles),
        tuple((i, tag(i)) for i in sorted(extras)),
        plan.description,
    )


class _Plan:
    """One decision: the chosen columns' roles from their names, their count and (two columns) their values."""

    def __init__(
        self,
        chosen: list[int],
        names: list[str] | None,
        rows: Sequence[tuple[str, Sequence[Any]]],
        labelled: bool | None,
        what: str,
        tuples: bool,
    ) -> None:
        self.chosen = chosen
        self.names = names
        self.rows = rows
        self.labelled = labelled
        self.what = what
        self.tuples = tuples
        self.description = ""

    # ---- messages ----------------------------------------------------------------------------------------------
    def seen(self) -> str:
        if self.names:
            return "the columns " + ", ".join(repr(self.names[i]) for i in self.chosen)
        first = self.rows[0][1] if self.rows else None
        shown = ", ".join(_short(first[i]) for i in self.chosen) if first is not None else "no rows"
        kind = "elements" if self.tuples else "columns without a header"
        where = f" ({self.rows[0][0]}: {shown})" if self.rows else ""
        return f"{len(self.chosen)} {kind}{where}"

    def refuse(self, reason: str, fix: str) -> DataError:
        return DataError(f"{self.what}: {self.seen()}: {reason}. {fix}")

    # ---- the decision ------------------------------------------------------------------------------------------
    def decide(self) -> list[tuple[int, str]]:
        if self.names is not None:
            roles = self.by_names()
            if roles is not None:
                return roles
        return self.by_count()

    def by_names(self) -> list[tuple[int, str]] | None:
        """Roles from the names; None when the names settle nothing and two columns can be read by position."""
        assert self.names is not None
        found: dict[str, list[int]] = {}
        for i in self.chosen:
            found.setdefault(name_role(self.names[i]) or "?", []).append(i)
        labels, scores, negatives = found.get(LABEL, []), found.get(SCORE, []), found.get(NEGATIVE, [])
        content = [i for i in self.chosen if name_role(self.names[i]) in (QUERY, DOCUMENT, ITEM)]
        unknown = found.get("?", [])
        self.description = f"the column names {', '.join(self.names[i] for i in self.chosen)}"
        if len(labels) > 1 or len(scores) > 1:
            several = labels if len(labels) > 1 else scores
            raise self.refuse(
                f"{self._names_of(several)} are all {'label' if several is labels else 'score'} columns",
                "Choose the columns to read with CSVOptions(columns=[...]); the others are kept in tags.",
            )
        if labels:
            if self.labelled is False:
                raise self.refuse(
                    f"CSVOptions(is_labeled=False) reads pairs, but {self._names_of(labels)} is a label column",
                    "Drop is_labeled=False to read labelled items, or choose the pair's columns with "
                    "CSVOptions(is_labeled=False, columns=[query, document]) (the label is then kept in tags).",
                )
            if scores or negatives:
                raise self.refuse(
                    f"a label column beside {self._names_of(scores + negatives)}: labelled items have no scores or "
                    "negatives",
                    "Choose the columns to read with CSVOptions(columns=[...]).",
                )
            items = content or (unknown if len(unknown) == 1 else [])
            if len(items) == 1 or (len(items) > 1 and self.labelled):
                return [(items[0], ITEM), (labels[0], LABEL)]
            if len(items) > 1:
                raise self.refuse(
                    f"a label column beside {len(items)} item columns ({self._names_of(items)}): the label may be a "
                    "score of the pair or a class of the pair",
                    f"For scored pairs rename the label: CSVOptions(columns={{{self.names[labels[0]]!r}: 'score'}}); "
                    "for labelled items choose the item: CSVOptions(is_labeled=True, columns=[item, label]).",
                )
            raise self.refuse(
                "a label column but no item column",
                "Name the item column, e.g. CSVOptions(columns={'my_text': 'text'}).",
            )
        if self.labelled:
            return None if len(self._considered()) == 2 else self._no_label_column()
        if negatives or scores:
            if len(content) != 2 or (negatives and scores):
                extra = "negatives and a score" if negatives and scores else f"{len(content)} item columns"
                raise self.refuse(
                    f"{'negatives' if negatives else 'a score'} need exactly two item columns (query and "
                    f"positive); found {extra}",
                    "Name the columns anchor, positive, negative_1, ... or sentence1, sentence2, score: rename them "
                    "with CSVOptions(columns={old_name: new_name, ...}).",
                )
            pair = self._pair(content)
            return pair + ([(i, NEGATIVE) for i in negatives] or [(scores[0], SCORE)])
        if len(content) == 2:
            return self._pair(content)
        if len(content) > 2:
            raise self.refuse(
                f"{len(content)} item columns ({self._names_of(content)}); a pair has two",
                "Choose the pair's columns with CSVOptions(columns=[query, document]); the others are kept in tags.",
            )
        if len(self._considered()) == 2:
            return None
        raise self.refuse(
            "the names do not say which column is the item, the label or the members of a pair",
            "Name the roles by renaming columns, e.g. CSVOptions(columns={'my_text': 'text', 'my_class': 'label'}) "
            "(role names: text, label, query, document, anchor, positive, negative_1, score, ...; other names are "
            "kept in tags), or choose the columns to read, e.g. CSVOptions(is_labeled=True, columns=('text', "
            "'category')).",
        )

    def _names_of(self, columns: list[int]) -> str:
        assert self.names is not None
        return ", ".join(repr(self.names[i]) for i in columns)

    def _considered(self) -> list[int]:
        assert self.names is not None
        return [i for i in self.chosen if name_role(self.names[i]) != "id"]

    def _no_label_column(self) -> list[tuple[int, str]]:
        raise self.refuse(
            "CSVOptions(is_labeled=True) reads item,label rows, but no column is a label "
            f"({', '.join(sorted(LABEL_NAMES))})",
            "Choose the item and label: CSVOptions(is_labeled=True, columns=('image', 'category')), or drop "
            "is_labeled=True to read pairs.",
        )

    def _pair(self, content: list[int]) -> list[tuple[int, str]]:
        assert self.names is not None
        a, b = content
        if name_role(self.names[a]) == DOCUMENT or name_role(self.names[b]) == QUERY:
            a, b = b, a
        return [(a, QUERY), (b, DOCUMENT)]

    def by_count(self) -> list[tuple[int, str]]:
        """Roles by position: the rules for rows without names (or two columns whose names settle nothing)."""
        cols = self._considered() if self.names is not None else self.chosen
        n = len(cols)
        if self.names is None:
            self.description = f"{n} {'elements per tuple' if self.tuples else 'columns without a header'}"
        if self.labelled:
            if self.tuples and n > 2:
                raise self.refuse(
                    f"{n}-tuples are not (item, label), which CSVOptions(is_labeled=True) reads",
                    "Give (item, label) 2-tuples, or choose two elements with CSVOptions(columns=(0, 1)); without "
                    "is_labeled=True, (a, b, score) are scored pairs and (anchor, positive, negative, ...) triplets.",
                )
            return [(cols[0], ITEM), (cols[1], LABEL)]  # other columns: tags (is_labeled=True says so)
        if n == 2:
            if self.labelled is False:
                return [(cols[0], QUERY), (cols[1], DOCUMENT)]
            return self._two_by_values(cols)
        if self.tuples:
            return self._tuple_roles(cols)
        if n == 3 and (self.labelled is False or all(is_number(c[cols[2]]) for _, c in self.rows)):
            self.description += " (Finetuner's (a, b, score) rule: numbers in the third)"
            return [(cols[0], QUERY), (cols[1], DOCUMENT), (cols[2], SCORE)]
        reason = (
            "the third column holds more than numbers, so they are not (a, b, score) scored pairs"
            if n == 3
            else f"{n} columns without names have no fixed meaning"
        )
        raise self.refuse(
            reason,
            f"Name the columns: a header row, or CSVOptions(columns={example_names(n)}) for triplets, "
            f"CSVOptions(columns={['text', 'label', *(f'tag_{i}' for i in range(1, n - 1))]}) for labelled items "
            "(other names are kept in tags); or CSVOptions(is_labeled=True) reads the first two as item,label.",
        )

    def _two_by_values(self, cols: list[int]) -> list[tuple[int, str]]:
        second = [(where, cells[cols[1]]) for where, cells in self.rows if not is_missing(cells[cols[1]])]
        images = [looks_like_image(v) for _, v in second]
        if second and all(images):
            self.description += " (image sources in the second: text-image pairs)"
            return [(cols[0], QUERY), (cols[1], DOCUMENT)]
        settle = (
            "Pass CSVOptions(is_labeled=True) for item,label rows or CSVOptions(is_labeled=False) for (query, "
            "document) pairs"
        )
        cli = " (CLI: --csv-labeled / --csv-pairs)."
        if any(images):
            odd = second[images.index(False) if images[0] else images.index(True)]
            raise self.refuse(
                f"the second column holds image sources in some rows and not in others (e.g. {odd[0]}: "
                f"{_short(odd[1])})",
                settle + " (text and image in either order), or fix the rows" + cli,
            )
        if self.tuples:
            self.description += ": (item, label)"
            return [(cols[0], ITEM), (cols[1], LABEL)]
        counts = Counter(_plain(v) for _, v in second)
        once = [(w, v) for w, v in second if counts[_plain(v)] == 1]
        if not once:
            self.description += " (every value of the second column repeated: item,label)"
            return [(cols[0], ITEM), (cols[1], LABEL)]
        if len(once) == len(second):
            self.description += " (no value of the second column repeated: query,document pairs)"
            return [(cols[0], QUERY), (cols[1], DOCUMENT)]
        repeated = next(v for _, v in second if counts[_plain(v)] > 1)
        values = f"{len(once)} values of the second column occur" if len(once) > 1 else "1 value occurs"
        raise self.refuse(
            f"cannot tell item,label rows from (query, document) pairs: {values} once (e.g. {_short(once[0][1])} "
            f"on {once[0][0]}) and others repeat (e.g. {_short(repeated)})",
            settle + ", Finetuner's default" + cli,
        )

    def _tuple_roles(self, cols: list[int]) -> list[tuple[int, str]]:
        n = len(cols)
        numbers = [[is_number(c[i]) for i in cols[2:]] for _, c in self.rows]
        if n == 3 and all(flags[0] for flags in numbers):
            self.description += ": (a, b, score)"
            return [(cols[0], QUERY), (cols[1], DOCUMENT), (cols[2], SCORE)]
        with_number = next((w for (w, _), flags in zip(self.rows, numbers) if any(flags)), None)
        if with_number is not None:
            without = next((w for (w, _), flags in zip(self.rows, numbers) if not flags[0]), None)
            other = f", {without} does not" if without else f", but {n}-tuples are not (a, b, score)"
            raise self.refuse(
                f"{with_number} holds a number after its first two elements{other}",
                "Give (a, b, score) 3-tuples for scored pairs or (anchor, positive, negative, ...) for triplets.",
            )
        self.description += ": (anchor, positive, negative, ...)"
        return [(cols[0], QUERY), (cols[1], DOCUMENT), *((i, NEGATIVE) for i in cols[2:])]

    def check_extras(self, extras: list[int], roles: list[tuple[int, str]]) -> None:
        """Refuse an unused column whose name suggests a role that no column fills."""
        if not self.names:
            return
        filled = {r for _, r in roles}
        for i in extras:
            words = set(re.split(r"[^a-z]+", canonical(self.names[i]))) - {""}
            if words & ID_NAMES:
                continue
            for role, hints in SUGGESTS.items():
                if words & hints and role not in filled:
                    raise self.refuse(
                        f"column {self.names[i]!r} looks like a {role} column but is not read as one (the data is "
                        f"read as {'/'.join(sorted(filled))})",
                        f"Name its role by renaming it, e.g. CSVOptions(columns={{{self.names[i]!r}: "
                        f"{'negative_1' if role == NEGATIVE else role!r}}}), or choose the columns to read with "
                        "CSVOptions(columns=[...]) to keep it in tags.",
                    )


def _plain(value: Any) -> Any:
    value = value.strip() if isinstance(value, str) else value
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
