"""Datasets and collation: items are preprocessed (tokenised, decoded) in DataLoader workers, not in the step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

Preprocess = Callable[[list[Any]], dict[str, torch.Tensor]]


class LabelledDataset(Dataset):
    """``(item, label)`` by position.

    Example:
        >>> LabelledDataset(['a', 'b'], [0, 1])[1]
        ('b', 1)
    """

    def __init__(self, items: Sequence[Any], labels: Sequence[int]) -> None:
        self.items = items
        self.labels = labels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.items[i], self.labels[i]


class LabelledCollate:
    """Turn ``[(item, label), ...]`` into ``(model inputs, labels tensor)`` with the model's preprocessing.

    Example:
        >>> collate = LabelledCollate(lambda xs: {'n': torch.tensor([len(x) for x in xs])})
        >>> collate([('ab', 0), ('c', 1)])
        ({'n': tensor([2, 1])}, tensor([0, 1]))
    """

    def __init__(self, preprocess: Preprocess) -> None:
        self.preprocess = preprocess

    def __call__(self, batch: list[tuple[Any, int]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        items = [item for item, _ in batch]
        labels = torch.tensor([label for _, label in batch], dtype=torch.long)
        return self.preprocess(items), labels


def _loader(
    dataset: Dataset, batch_sampler: Sampler[list[int]], collate: Any, num_workers: int, pin_memory: bool
) -> DataLoader:
    """The DataLoader every loader here builds: ``batch_sampler`` and ``collate``, workers persisting across epochs."""
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )


def labelled_loader(
    items: Sequence[Any],
    labels: Sequence[int],
    preprocess: Preprocess,
    batch_sampler: Sampler[list[int]],
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over labelled items with ``batch_sampler`` (workers persist across epochs).

    Example:
        >>> from finetuner.data.samplers import RandomBatchSampler
        >>> loader = labelled_loader(['a', 'bb'], [0, 1], lambda xs: {'n': torch.tensor([len(x) for x in xs])},
        ...                          RandomBatchSampler(2, 2))
        >>> len(loader)
        1
    """
    return _loader(LabelledDataset(items, labels), batch_sampler, LabelledCollate(preprocess), num_workers, pin_memory)


class PairDataset(Dataset):
    """``(left, right)`` by position (a CLIP pair: text, image).

    Example:
        >>> PairDataset(['a cat'], ['cat.png'])[0]
        ('a cat', 'cat.png')
    """

    def __init__(self, left: Sequence[Any], right: Sequence[Any]) -> None:
        self.left = left
        self.right = right

    def __len__(self) -> int:
        return len(self.left)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        return self.left[i], self.right[i]


class PairCollate:
    """Turn ``[(text, image), ...]`` into ``({'text': ..., 'image': ...}, pair indices)`` with each tower's
    preprocessing (run in DataLoader workers).

    Example:
        >>> lengths = lambda xs: {'n': torch.tensor([len(x) for x in xs])}
        >>> collate = PairCollate(lengths, lambda xs: {'m': torch.ones(len(xs))})
        >>> collate([('ab', 'x.png'), ('c', 'y.png')])[0]['text']
        {'n': tensor([2, 1])}
    """

    def __init__(self, text_preprocess: Preprocess, image_preprocess: Preprocess) -> None:
        self.text_preprocess = text_preprocess
        self.image_preprocess = image_preprocess

    def __call__(self, batch: list[tuple[Any, Any]]) -> tuple[dict[str, dict[str, torch.Tensor]], torch.Tensor]:
        texts = [t for t, _ in batch]
        images = [i for _, i in batch]
        inputs = {"text": self.text_preprocess(texts), "image": self.image_preprocess(images)}
        return inputs, torch.arange(len(batch))


def pair_loader(
    left: Sequence[Any],
    right: Sequence[Any],
    collate: PairCollate,
    batch_sampler: Sampler[list[int]],
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over pairs with ``batch_sampler`` (workers persist across epochs).

    Example:
        >>> from finetuner.data.samplers import PairBatchSampler
        >>> f = lambda xs: {'n': torch.tensor([len(x) for x in xs])}
        >>> len(pair_loader(['a', 'b'], ['x', 'y'], PairCollate(f, f), PairBatchSampler(['a', 'b'], ['x', 'y'], 2)))
        1
    """
    return _loader(PairDataset(left, right), batch_sampler, collate, num_workers, pin_memory)


class RowDataset(Dataset):
    """Rows of items by position: ``(the row's items, its targets)`` (a triplet row, a scored pair).

    Example:
        >>> RowDataset(['q', 'p', 'n'], [(0, 1, 2)], [(0, 0, -1)])[0]
        (('q', 'p', 'n'), (0, 0, -1))
    """

    def __init__(self, items: Sequence[Any], rows: Sequence[Sequence[int]], targets: Sequence[Sequence[float]]) -> None:
        self.items = items
        self.rows = rows
        self.targets = targets

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[tuple[Any, ...], Sequence[float]]:
        return tuple(self.items[j] for j in self.rows[i]), self.targets[i]


class RowCollate:
    """Turn rows into one flat batch, column by column (all first members, then all second members, ...), and
    their targets into a tensor: for triplets the group of every member in the same flat order, for scored pairs
    the ``(batch,)`` scores (``scores=True``).

    Example:
        >>> collate = RowCollate(lambda xs: {'x': xs})
        >>> collate([(['q1', 'p1', 'n1'], (0, 0, -1)), (['q2', 'p2', 'n2'], (1, 1, 0))])
        ({'x': ['q1', 'q2', 'p1', 'p2', 'n1', 'n2']}, tensor([ 0,  1,  0,  1, -1,  0]))
        >>> RowCollate(lambda xs: {'x': xs}, scores=True)([(['a', 'b'], (0.5,))])[1]
        tensor([0.5000])
    """

    def __init__(self, preprocess: Preprocess, scores: bool = False) -> None:
        self.preprocess = preprocess
        self.scores = scores

    def __call__(self, batch: Sequence[tuple[Sequence[Any], Sequence[float]]]) -> tuple[dict[str, Any], torch.Tensor]:
        columns = list(zip(*(items for items, _ in batch)))
        flat = [item for column in columns for item in column]
        if self.scores:
            targets = torch.tensor([t[0] for _, t in batch], dtype=torch.float32)  # (batch,)
        else:
            targets = torch.tensor([t for column in zip(*(t for _, t in batch)) for t in column], dtype=torch.long)
        return self.preprocess(flat), targets


def row_loader(
    items: Sequence[Any],
    rows: Sequence[Sequence[int]],
    targets: Sequence[Sequence[float]],
    collate: RowCollate,
    batch_sampler: Sampler[list[int]],
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over rows with ``batch_sampler`` (workers persist across epochs).

    Example:
        >>> from finetuner.data.samplers import RandomBatchSampler
        >>> loader = row_loader(['a', 'b', 'c'], [(0, 1), (0, 2)], [(1.0,), (0.0,)],
        ...                     RowCollate(lambda xs: {'x': xs}, scores=True), RandomBatchSampler(2, 2))
        >>> len(loader)
        1
    """
    return _loader(RowDataset(items, rows, targets), batch_sampler, collate, num_workers, pin_memory)
