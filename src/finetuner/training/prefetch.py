"""``fit(prefetch_images=True)`` and ``fit(on_image_error=...)``: remote images fetched before a model is loaded.

Every ``http(s)://`` image of the training and evaluation data is downloaded into the disk cache
(:func:`finetuner.data.remote.prefetch`: bounded parallelism, a progress bar, transient failures retried), so
training reads them from disk and a dead link is found before the first epoch, not in the middle of one. What a
failure does is the per-item policy ``on_image_error``:

- ``'fail'`` (the default): one error lists every item whose image could not be fetched (which data, index, URL and
  why); nothing is trained;
- ``'skip'``: those items (for pairs: the pairs they belong to) are left out; the count is logged as a warning and
  the run's log names every one. ``'skip'`` fetches before training even without ``prefetch_images``.

On several processes, rank 0's list of failures is the one every process goes by, so all train on the same data.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

from finetuner.config import TrainingConfig
from finetuner.data.images import DEFAULT_TIMEOUT
from finetuner.data.remote import is_remote, prefetch
from finetuner.data.shapes import LabelledData, PairData, ScoredPairData, TripletData
from finetuner.errors import DataError

logger = logging.getLogger("finetuner")

#: the fields of each data shape that hold model inputs (where remote images are); the row-aligned lists of a
#: shape (inputs, labels, ids, groups, scores) are what a skipped row is removed from
_MEMBERS = {
    LabelledData: ("items",),
    PairData: ("left", "right"),
    TripletData: ("queries", "positives", "negatives"),
    ScoredPairData: ("left", "right"),
}


@dataclass
class Fetched:
    """The data with the failed items left out (under ``'skip'``) and one line per item skipped."""

    train: LabelledData | PairData
    eval: LabelledData | PairData | None
    skipped: list[str] = field(default_factory=list)


def remote_uri(item: Any) -> str | None:
    """The ``http(s)://`` URL an item's image is read from (None for text, local files, bytes, arrays, or a Document
    whose ``blob`` or ``tensor`` is read before its ``uri``).

    Example:
        >>> from finetuner.data.documents import Document
        >>> remote_uri(Document(uri='https://example.org/a.png')), remote_uri('a cat')
        ('https://example.org/a.png', None)
    """
    if hasattr(item, "blob") and hasattr(item, "uri"):  # a Document
        if item.tensor is not None or item.blob is not None:
            return None
        item = item.uri
    return item.strip() if is_remote(item) else None


def fetch_images(
    train: LabelledData | PairData,
    evals: LabelledData | PairData | None,
    config: TrainingConfig,
    progress: bool = True,
) -> Fetched:
    """Fetch the remote images of ``train`` and ``evals`` when ``config`` asks for it; apply ``on_image_error``.

    Raises:
        DataError: some images could not be fetched and the policy is ``'fail'`` (every failed item listed), or
            ``'skip'`` left too little data to train on.

    Example:
        >>> data = LabelledData(['a', 'b'], [0, 1], ['x', 'y'], ['1', '2'], 'text')
        >>> fetch_images(data, None, TrainingConfig(prefetch_images=True)).skipped
        []
    """
    if not (config.prefetch_images or config.on_image_error == "skip"):
        return Fetched(train, evals)
    named = [("train_data", train), *([("eval_data", evals)] if evals is not None else [])]
    where: list[tuple[str, int, str]] = []  # (data name, row index, url)
    for name, data in named:
        for member in _MEMBERS[type(data)]:
            for index, row in enumerate(getattr(data, member)):
                for item in row if isinstance(row, tuple) else (row,):  # a triplet row's negatives: a tuple
                    url = remote_uri(item)
                    if url is not None:
                        where.append((name, index, url))
    if not where:
        return Fetched(train, evals)
    failures = _agreed(prefetch([u for _, _, u in where], timeout=DEFAULT_TIMEOUT, progress=progress), config)
    failed = [(name, index, url) for name, index, url in where if url in failures]
    if not failed:
        return Fetched(train, evals)
    lines = [f"{name} item {index} ({url}): {failures[url]}" for name, index, url in failed]
    if config.on_image_error == "fail":
        shown = lines[:50] + ([f"... and {len(lines) - 50} more"] if len(lines) > 50 else [])
        raise DataError(
            f"{len(lines)} remote image(s) could not be fetched before training:\n  " + "\n  ".join(shown) + "\n"
            "Fix or remove these items, or pass on_image_error='skip' to train without them",
            problems=lines,
        )
    drop: dict[str, set[int]] = {}
    for name, index, _ in failed:
        drop.setdefault(name, set()).add(index)
    kept = {name: _without(data, drop.get(name, set()), name) for name, data in named}
    logger.warning(
        "on_image_error='skip': left out %d item(s) whose image could not be fetched; the run's log names them",
        len(lines),
    )
    return Fetched(kept["train_data"], kept.get("eval_data"), lines)


def _agreed(failures: dict[str, str], config: TrainingConfig) -> dict[str, str]:
    """Rank 0's failures on every process (each fetched for itself; all must leave out the same items)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return failures
    from accelerate.utils import broadcast_object_list

    from finetuner.training.loop import make_accelerator

    make_accelerator(config)  # sets up the process group (build reuses it)
    return dict(broadcast_object_list([failures])[0])


def _without(data: LabelledData | PairData, drop: set[int], name: str) -> LabelledData | PairData:
    """``data`` without the rows in ``drop``; a :class:`DataError` when too little is left to train or evaluate."""
    if not drop:
        return data
    keep = [i for i in range(len(data)) if i not in drop]
    changes = {}
    for attribute in (f.name for f in fields(data)):
        values = getattr(data, attribute)
        if isinstance(values, list) and len(values) == len(data) and attribute != "classes":
            changes[attribute] = [values[i] for i in keep]
    left = replace(data, **changes)
    classes = len(set(left.labels)) if isinstance(left, LabelledData) else len(left)
    if len(left) < 2 or classes < 2:
        raise DataError(
            f"{name}: on_image_error='skip' left {len(left)} item(s) of {len(data)}, too few to use; fix the image "
            "URLs (the run's log names each one)"
        )
    return left
