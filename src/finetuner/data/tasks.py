"""From Documents to what training and evaluation consume.

Two shapes of data exist:

- :class:`LabelledData`: items with class labels (``tags['finetuner_label']``); same label = relevant.
- :class:`PairData`: positive pairs (root Documents with two chunks): text/text query-document pairs, or CLIP
  text/image pairs. For single-modality training a pair becomes a two-item class (label = pair index).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from finetuner.data.documents import LABEL_TAG, Document, DocumentArray
from finetuner.data.vectors import VECTOR, is_vector
from finetuner.errors import DataError


@dataclass
class LabelledData:
    """Items with integer class codes.

    Attributes:
        items: model inputs: ``str`` for text, the :class:`Document` itself for images (decoded later).
        labels: one class code per item (``classes[code]`` is the user's label).
        classes: the distinct labels in first-seen order.
        ids: the documents' ids (used for ``exclude_self``).
        modality: ``'text'`` or ``'image'``.
    """

    items: list[Any]
    labels: list[int]
    classes: list[Hashable]
    ids: list[str]
    modality: str

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class PairData:
    """Positive pairs: ``left[i]`` belongs with ``right[i]``.

    Attributes:
        left, right: model inputs of each side (``str`` or image :class:`Document`).
        left_modality, right_modality: ``'text'`` or ``'image'``.
        ids: the root documents' ids.
        labels: optional class labels of the roots (used as relevance in evaluation when present).
    """

    left: list[Any]
    right: list[Any]
    left_modality: str
    right_modality: str
    ids: list[str]
    labels: list[Hashable] | None = field(default=None)

    def __len__(self) -> int:
        return len(self.left)

    def as_labelled(self) -> LabelledData:
        """Pairs of one modality as classes of two: item 2i and 2i+1 share label i.

        Example:
            >>> p = PairData(['q1', 'q2'], ['d1', 'd2'], 'text', 'text', ['a', 'b'])
            >>> p.as_labelled().items, p.as_labelled().labels
            (['q1', 'd1', 'q2', 'd2'], [0, 0, 1, 1])
        """
        if self.left_modality != self.right_modality:
            raise DataError(
                f"pairs of {self.left_modality} and {self.right_modality} need a two-tower (CLIP) model; "
                "a single-modality model takes labelled items or same-modality pairs"
            )
        items: list[Any] = []
        for a, b in zip(self.left, self.right):
            items += [a, b]
        n = len(self.left)
        ids = [f"{i}:{side}" for i in self.ids for side in ("0", "1")]
        return LabelledData(items, [i // 2 for i in range(2 * n)], list(range(n)), ids, self.left_modality)


def doc_modality(doc: Document) -> str:
    """``'text'``, ``'image'`` or ``'vector'`` (a 1-D tensor, :mod:`finetuner.data.vectors`): the chunk's stated
    modality, else guessed from its content fields.

    Example:
        >>> doc_modality(Document(text='hi')), doc_modality(Document(uri='a.png'))
        ('text', 'image')
    """
    if doc.modality in ("text", "image", VECTOR):
        return doc.modality
    if doc.text is not None:
        return "text"
    if is_vector(doc.tensor):
        return VECTOR
    if doc.uri is not None or doc.blob is not None or doc.tensor is not None:
        return "image"
    return "unknown"


def model_input(doc: Document, modality: str) -> Any:
    """What the model's ``preprocess`` receives for ``doc``: its text, or the Document for an image."""
    return doc.text if modality == "text" else doc


def _is_pair_root(doc: Document) -> bool:
    return len(doc.chunks) > 0 and doc.content is None and doc.uri is None


def to_task_data(docs: DocumentArray, name: str = "data") -> LabelledData | PairData:
    """Sort Documents into :class:`LabelledData` or :class:`PairData`.

    Raises a :class:`~finetuner.errors.DataError` listing every item that fits neither form.

    Example:
        >>> da = DocumentArray([Document(text='a', tags={'finetuner_label': 'x'}),
        ...                     Document(text='b', tags={'finetuner_label': 'y'})])
        >>> to_task_data(da).classes
        ['x', 'y']
    """
    if len(docs) == 0:
        raise DataError(f"{name} is empty: give at least two classes with two items each")
    pair_roots = [_is_pair_root(d) for d in docs]
    if all(pair_roots):
        return _pairs(docs, name)
    if any(pair_roots):
        first = pair_roots.index(True) if not pair_roots[0] else pair_roots.index(False)
        raise DataError(
            f"{name} mixes pair documents (with chunks) and labelled documents, first at item {first}; "
            "use one form for the whole data set"
        )
    return _labelled(docs, name)


def _labelled(docs: DocumentArray, name: str) -> LabelledData:
    problems: list[str] = []
    modalities = {doc_modality(d) for d in docs}
    codes: dict[Hashable, int] = {}
    labels: list[int] = []
    for i, doc in enumerate(docs):
        where = f"{name} item {i} (id {doc.id!r})"
        if not isinstance(doc.tags, dict):
            problems.append(f"{where}: tags must be a dict; received {type(doc.tags).__name__}")
            continue
        if LABEL_TAG not in doc.tags:
            problems.append(f"{where}: no tags['{LABEL_TAG}']; every item of labelled data needs a label")
            continue
        label = doc.tags[LABEL_TAG]
        if not _usable_label(label):
            problems.append(f"{where}: label {label!r:.60} is not a usable label (use a str or int)")
            continue
        labels.append(codes.setdefault(label, len(codes)))
        if doc_modality(doc) == "unknown":
            problems.append(f"{where}: no content; set text, uri, blob or tensor")
    if len(modalities - {"unknown"}) > 1:
        kinds = " and ".join(m for m in ("text", "image", VECTOR) if m in modalities)
        problems.append(f"{name} mixes {kinds} items; a single-modality model takes one kind")
    if problems:
        raise DataError(f"{name} has {len(problems)} problem(s):\n  " + "\n  ".join(problems), problems)
    modality = (modalities - {"unknown"}).pop()
    items = [model_input(d, modality) for d in docs]
    return LabelledData(items, labels, list(codes), [d.id for d in docs], modality)


def _usable_label(label: Any) -> bool:
    """Hashable (a tuple holding a list is not), not None and not NaN (NaN != NaN would make a class per item)."""
    if label is None or (isinstance(label, float) and label != label):
        return False
    try:
        hash(label)
    except TypeError:
        return False
    return True


def _pairs(docs: DocumentArray, name: str) -> PairData:
    problems: list[str] = []
    left: list[Any] = []
    right: list[Any] = []
    kinds: set[tuple[str, str]] = set()
    for i, root in enumerate(docs):
        where = f"{name} item {i} (id {root.id!r})"
        if len(root.chunks) != 2:
            problems.append(f"{where}: a pair needs exactly 2 chunks; found {len(root.chunks)}")
            continue
        mods = [doc_modality(c) for c in root.chunks]
        if "unknown" in mods:
            problems.append(f"{where}: chunk {mods.index('unknown')} has no content")
            continue
        a, b = root.chunks
        if mods == ["image", "text"]:  # CLIP pairs are stored text first
            a, b, mods = b, a, ["text", "image"]
        kinds.add((mods[0], mods[1]))
        left.append(model_input(a, mods[0]))
        right.append(model_input(b, mods[1]))
    if len(kinds) > 1:
        problems.append(f"{name} mixes pair kinds {sorted(kinds)}; use one kind of pair throughout")
    if problems:
        raise DataError(f"{name} has {len(problems)} problem(s):\n  " + "\n  ".join(problems), problems)
    (lm, rm) = kinds.pop()
    labels = [d.tags.get(LABEL_TAG) for d in docs]
    return PairData(
        left, right, lm, rm, [d.id for d in docs], labels if all(x is not None for x in labels) else None
    )
