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
    return DataLoader(
        LabelledDataset(items, labels),
        batch_sampler=batch_sampler,
        collate_fn=LabelledCollate(preprocess),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )


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
    return DataLoader(
        PairDataset(left, right),
        batch_sampler=batch_sampler,
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )
