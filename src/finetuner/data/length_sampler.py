"""``sampler='length'``: batches of positive pairs of similar length (fewer padded tokens), on the samplers'
global-batch scheme (:mod:`finetuner.data.samplers`)."""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np

from finetuner.data.samplers import _GlobalBatches, class_members
from finetuner.errors import DataError


class LengthBucketPairSampler(_GlobalBatches):
    """Batches of positive pairs of similar length (``sampler='length'``), for pairs stored as classes.

    Without ``labels``, items ``2i`` and ``2i + 1`` form pair ``i``. With ``labels`` (the classes of
    :meth:`~finetuner.data.shapes.PairData.as_labelled`, where pairs sharing an item form one class), each epoch
    cuts every class into random pairs of its items (an odd one out pairs with another member) and a batch holds at
    most one pair of a class, so every label is in a batch exactly twice and no item twice. Each epoch the pairs are
    shuffled, cut into blocks of ``bucket_batches`` batches, sorted by length inside a block and cut into batches,
    whose order is shuffled again. Texts of similar length pad to similar lengths, so a batch carries fewer padded
    tokens; the batches still hold in-batch negatives from anywhere in a block. Every epoch has exactly ``len`` full
    batches: when large classes leave too few others to fill them, the pairs are cut again in a new order and the
    small classes come round again (a batch holds at most as many pairs as there are classes).

    Args:
        lengths: the token count of every item (both members of every pair).
        batch_size: items per global batch (two per pair; rounded down to an even number).
        seed, rank, world_size: as for :class:`ClassSampler`.
        bucket_batches: batches per sorted block (larger: less padding, less random batches).
        labels: the class of every item (None: consecutive pairs).

    Example:
        >>> s = LengthBucketPairSampler([1, 2, 9, 9, 1, 1, 8, 9], batch_size=4, seed=0)
        >>> sorted(sorted(b) for b in s)
        [[0, 1, 4, 5], [2, 3, 6, 7]]
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        bucket_batches: int = 50,
        labels: Sequence[int] | None = None,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.classes: list[np.ndarray] | None = None
        if labels is not None and not np.array_equal(np.asarray(labels), np.arange(len(lengths)) // 2):
            self.classes = class_members(np.asarray(labels))
            if any(len(c) < 2 for c in self.classes):
                raise DataError("every class of pairs needs at least two items (a pair)")
            num_pairs = sum((len(c) + 1) // 2 for c in self.classes)
        elif len(lengths) % 2:
            raise ValueError("pairs as classes of two have an even number of items")
        else:
            num_pairs = len(lengths) // 2
        self.num_pairs = num_pairs
        self.pairs_per_batch = max(2, batch_size // 2)
        if num_pairs < 2:
            raise DataError(f"in-batch negatives need at least 2 pairs; the data has {num_pairs}")
        n_classes = len(self.classes) if self.classes is not None else num_pairs
        if n_classes < 2:
            raise DataError("all pairs are tied together through shared items (one class); in-batch negatives need two")
        if self.pairs_per_batch > n_classes:
            warnings.warn(
                f"the pairs form {n_classes} groups (pairs sharing an item); a batch holds one pair of a group, so "
                f"batches hold {2 * n_classes} items, not {batch_size}",
                stacklevel=2,
            )
            self.pairs_per_batch = n_classes
        super().__init__(seed, rank, world_size, 2 * self.pairs_per_batch)
        self.bucket_batches = bucket_batches

    def __len__(self) -> int:
        return max(1, self.num_pairs // self.pairs_per_batch)

    def _pairs(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """This epoch's pairs of items ``(num_pairs, 2)`` and the class of each pair."""
        if self.classes is None:
            items = np.arange(2 * self.num_pairs).reshape(-1, 2)
            return items, np.arange(self.num_pairs)
        pairs: list[tuple[int, int]] = []
        owners: list[int] = []
        for c, members in enumerate(self.classes):
            order = rng.permutation(members) if len(members) > 2 else members
            cut = [(int(order[i]), int(order[i + 1])) for i in range(0, len(order) - 1, 2)]
            if len(order) % 2:  # the odd one out pairs with another member of its class
                cut.append((int(order[-1]), int(rng.choice(order[:-1]))))
            pairs += cut
            owners += [c] * len(cut)
        return np.asarray(pairs), np.asarray(owners)

    def __iter__(self) -> Iterator[list[int]]:
        rng = self._rng()
        batches: list[list[int]] = []
        carried: list[tuple[int, int, int]] = []  # (class, item, item) whose class was in every batch of its block
        while len(batches) < len(self):  # a large class can leave too few others: its pairs come round again
            items, owners = self._pairs(rng)  # (num_pairs, 2), (num_pairs,)
            pair_lengths = self.lengths[items].max(axis=1)  # (num_pairs,)
            order = rng.permutation(len(items))
            block = self.pairs_per_batch * self.bucket_batches
            for start in range(0, len(order), block):
                chunk = order[start : start + block]
                chunk = chunk[np.argsort(pair_lengths[chunk], kind="stable")]
                entries = [*carried, *((int(owners[p]), int(items[p, 0]), int(items[p, 1])) for p in chunk)]
                full, carried = _fill(entries, self.pairs_per_batch)
                batches += [[i for _, a, b in batch for i in (a, b)] for batch in full]
        for b in rng.permutation(len(batches))[: len(self)]:
            yield self._share(batches[b])


def _fill(
    entries: list[tuple[int, int, int]], size: int
) -> tuple[list[list[tuple[int, int, int]]], list[tuple[int, int, int]]]:
    """Cut ``(class, item, item)`` pairs (in order) into full batches of ``size`` holding one pair per class; returns
    them and the pairs left over (a pair whose class is in the batch being filled waits for the next batch)."""
    batches: list[list[tuple[int, int, int]]] = []
    waiting = deque(entries)
    while len(waiting) >= size:
        batch: list[tuple[int, int, int]] = []
        used: set[int] = set()
        deferred: list[tuple[int, int, int]] = []
        while waiting and len(batch) < size:
            entry = waiting.popleft()
            if entry[0] in used:
                deferred.append(entry)
                continue
            batch.append(entry)
            used.add(entry[0])
        waiting.extendleft(reversed(deferred))
        if len(batch) < size:
            return batches, [*batch, *waiting]
        batches.append(batch)
    return batches, list(waiting)
