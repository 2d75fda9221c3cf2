"""Column names and what they say: the role names users already have (sentence-transformers' datasets,
Finetuner), and the small tests the layout rules need (:mod:`finetuner.data.schema`)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from finetuner.data.options import CSVOptions
from finetuner.data.table import DOCUMENT, ITEM, LABEL, NEGATIVE, QUERY, SCORE
from finetuner.errors import ConfigError

LABEL_NAMES = frozenset({"finetuner_label", "label", "labels", "class"})
SCORE_NAMES = frozenset(
    {"finetuner_score", "score", "scores", "similarity", "similarity_score", "relevance", "relevance_score"}
)
QUERY_NAMES = frozenset(
    {"query", "anchor", "question", "sentence1", "sentence_1", "text1", "text_1", "query_text", "query_image",
     "image1", "image_1"}
)  # fmt: skip
DOCUMENT_NAMES = frozenset(
    {"document", "doc", "passage", "positive", "pos", "answer", "sentence2", "sentence_2", "text2", "text_2",
     "response", "document_image", "image2", "image_2"}
)  # fmt: skip
#: item columns without a side: the item of labelled data, or either member of a pair (text and image: CLIP)
ITEM_NAMES = frozenset(
    {"text", "sentence", "item", "content", "caption", "image", "img", "image_path", "image_url", "uri", "url",
     "path", "file", "filename", "file_name"}
)  # fmt: skip
ID_NAMES = frozenset({"id", "idx", "_id", "uid", "key"})
_NEGATIVE = re.compile(r"(hard_?)?(neg|negative|negatives)(_?\d+)?")
#: words in the name of an unused column that suggest a role no column fills (such a column is refused)
SUGGESTS = {
    NEGATIVE: {"neg", "negative", "negatives", "hardneg", "hard_negative"},
    SCORE: {"score", "scores", "similarity", "sim", "relevance", "rating", "ratings"},
    LABEL: {"label", "labels", "class"},
}
KNOWN_NAMES = LABEL_NAMES | SCORE_NAMES | QUERY_NAMES | DOCUMENT_NAMES | ITEM_NAMES | ID_NAMES


def canonical(name: Any) -> str:
    """A column name as the rules compare it: stripped, lower case, spaces and ``-`` as ``_``.

    Example:
        >>> canonical(' Negative-1 ')
        'negative_1'
    """
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def name_role(name: Any) -> str | None:
    """The role a column name gives (``'item'`` for side-less item names, ``'id'`` for id columns), or None.

    Example:
        >>> [name_role(n) for n in ('anchor', 'negative_2', 'Sentence2', 'text', 'score', 'image_id', 'category')]
        ['query', 'negative', 'document', 'item', 'score', 'id', None]
    """
    key = canonical(name)
    for names, role in (
        (LABEL_NAMES, LABEL),
        (SCORE_NAMES, SCORE),
        (QUERY_NAMES, QUERY),
        (DOCUMENT_NAMES, DOCUMENT),
        (ITEM_NAMES, ITEM),
        (ID_NAMES, "id"),
    ):
        if key in names:
            return role
    if _NEGATIVE.fullmatch(key):
        return NEGATIVE
    return "id" if key.rsplit("_", 1)[-1] in ID_NAMES else None


def is_number(value: Any) -> bool:
    """A finite number, or a str that reads as one (``'0.8'``); not a bool.

    Example:
        >>> [is_number(v) for v in (0.5, '1', ' -2e-1 ', 'high', True, float('nan'))]
        [True, True, True, False, False, False]
    """
    if isinstance(value, bool) or value is None:
        return False
    try:
        return math.isfinite(float(value.strip() if isinstance(value, str) else value))
    except (TypeError, ValueError):
        return False


def choose_columns(
    width: int, names: Sequence[Any] | None, options: CSVOptions | None, what: str
) -> tuple[list[int], list[str] | None, list[int]]:
    """Apply ``CSVOptions.columns``: the columns to read, their names, and the unchosen columns (kept in tags).

    Example:
        >>> choose_columns(3, ['q', 'p', 'n'], CSVOptions(columns={'q': 'anchor'}), 'data')[1]
        ['anchor', 'p', 'n']
        >>> choose_columns(3, ['q', 'p', 'n'], CSVOptions(columns=('p', 'q')), 'data')
        ([1, 0], ['q', 'p', 'n'], [2])
    """
    given = options.columns if options is not None else None
    names = [str(n) for n in names] if names is not None else None
    if given is None:
        return list(range(width)), names, []
    lowered = [canonical(n) for n in names] if names else []
    if isinstance(given, Mapping):  # renames: {column (name or index): new name}
        renamed = list(names) if names is not None else [f"column_{i + 1}" for i in range(width)]
        for column, new in given.items():
            i = _ref(column, lowered, width)
            if i is None:
                raise _no_column(column, names, width, what)
            renamed[i] = str(new)
        return list(range(width)), renamed, []
    refs = [_ref(c, lowered, width) for c in given]
    if all(r is not None for r in refs):
        chosen = [r for r in refs if r is not None]
        if len(set(chosen)) != len(chosen):
            twice = next(given[k] for k, r in enumerate(chosen) if chosen.count(r) > 1)
            raise ConfigError(
                f"{what}: CSVOptions.columns={tuple(given)!r} names column {twice!r} twice; the columns must differ."
            )
        return chosen, names, [i for i in range(width) if i not in chosen]
    if names is None and len(given) == width and all(isinstance(c, str) for c in given):
        return list(range(width)), [str(c) for c in given], []  # a name for every column of rows without names
    raise _no_column(next(c for c, r in zip(given, refs) if r is None), names, width, what)


def _no_column(bad: Any, names: list[str] | None, width: int, what: str) -> ConfigError:
    if isinstance(bad, int) and not isinstance(bad, bool):
        return ConfigError(
            f"{what}: CSVOptions.columns index {bad} is out of range; the data has {width} columns, so use "
            f"0..{width - 1}."
        )
    if names is None:
        return ConfigError(
            f"{what}: CSVOptions.columns names {bad!r} but the data has no header row and {width} columns: give "
            f"one name per column (e.g. {example_names(width)}), or choose columns by 0-based index."
        )
    return ConfigError(
        f"{what}: CSVOptions.columns names {bad!r}, which is not a column; the columns are {', '.join(names)}. "
        "Choose columns by name or 0-based index, or rename them with CSVOptions(columns={column: new_name})."
    )


def _ref(column: Any, lowered: list[str], width: int) -> int | None:
    if isinstance(column, int) and not isinstance(column, bool):
        return column if 0 <= column < width else None
    key = canonical(column)
    return lowered.index(key) if key in lowered else None


def example_names(width: int) -> list[str]:
    """Role names for ``width`` columns, for messages.

    Example:
        >>> example_names(3), example_names(4)
        (['anchor', 'positive', 'negative'], ['anchor', 'positive', 'negative_1', 'negative_2'])
    """
    return {2: ["text", "label"], 3: ["anchor", "positive", "negative"]}.get(
        width, ["anchor", "positive", *(f"negative_{i}" for i in range(1, width - 1))]
    )
