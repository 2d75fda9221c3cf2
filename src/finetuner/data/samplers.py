"""Batch samplers: class-balanced (``num_items_per_class`` per class) and plain random.

Both draw the same, seeded list of *global* batches on every process (``batch_size`` is the global batch) and
yield this process's share of each (``rank``/``world_size``): every rank gets exactly ``len(sampler)`` batches
in every epoch, so DDP never waits on a rank that ran out (the hang of sentence-transformers #3348).
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from finetuner.errors import ConfigError, DataError


def _share(batch: list[int], rank: int, world_size: int) -> list[int]:
    """This rank's contiguous slice of a global batch (sizes differ by at most one)."""
    if world_size == 1:
        return batch
    bounds = np.linspace(0, len(batch), world_size + 1).round().astype(int)
    return batch[bounds[rank] : bounds[rank + 1]]


class _GlobalBatches(Sampler[list[int]]):
    """What every sampler here shares: a random stream per ``(seed, epoch)`` and this rank's share of each
    global batch."""

    def __init__(self, seed: int, rank: int, world_size: int, batch_size: int) -> None:
        if batch_size < 2 * world_size:
            raise ConfigError(f"batch_size {batch_size} is too small for {world_size} processes (need 2 each)")
        self.seed, self.epoch, self.rank, self.world_size = seed, 0, rank, world_size

    def set_epoch(self, epoch: int) -> None:
        """Choose the random stream of ``epoch`` (call before iterating, as with ``DistributedSampler``)."""
        self.epoch = epoch

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def _share(self, batch: list[int]) -> list[int]:
        return _share(batch, self.rank, self.world_size)


class ClassSampler(_GlobalBatches):
    """Batches of up to ``batch_size`` items made of groups of ``num_items_per_class`` items of one class.

    Every batch holds at least two classes (never a single-class batch, whose metric-learning gradient is zero).
    An epoch has ``ceil(groups / classes_per_batch)`` batches, so each item is seen about once per epoch; a class
    that runs out of items is reshuffled and reused. Classes smaller than ``num_items_per_class`` contribute all
    their items (with a warning); when ``batch_size`` cannot hold two groups, ``num_items_per_class`` is lowered
    with a warning.

    Args:
        labels: one class code per item.
        batch_size: items per batch.
        num_items_per_class: items of one class that appear together in a batch.
        seed: the epoch ``e`` uses the random stream ``(seed, e)``.
        rank, world_size: this process and the process count; each rank yields its slice of every batch.

    Example:
        >>> s = ClassSampler([0, 0, 1, 1, 2, 2, 3, 3], batch_size=4, num_items_per_class=2, seed=0)
        >>> len(s), all(len({[0, 0, 1, 1, 2, 2, 3, 3][i] for i in b}) == 2 for b in s)
        (2, True)
    """

    def __init__(
        self,
        labels: Sequence[int],
        batch_size: int,
        num_items_per_class: int = 4,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        labels = np.asarray(labels)
        if batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2 for metric learning; received {batch_size}")
        if num_items_per_class < 1:
            raise ConfigError(f"num_items_per_class must be at least 1; received {num_items_per_class}")
        self.classes = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        if len(self.classes) < 2:
            raise DataError(
                f"the data has {len(self.classes)} class(es); metric learning needs at least 2 classes "
                "(items with the same label are positives, other labels are negatives)"
            )
        k = num_items_per_class
        if batch_size < 2 * k:
            k = max(1, batch_size // 2)
            warnings.warn(
                f"batch_size {batch_size} cannot hold two classes of num_items_per_class={num_items_per_class}; "
                f"using num_items_per_class={k}",
                stacklevel=2,
            )
        small = sum(len(c) < k for c in self.classes)
        if small:
            warnings.warn(
                f"{small} of {len(self.classes)} classes have fewer than num_items_per_class={k} items; "
                "their batches carry fewer items of that class",
                stacklevel=2,
            )
        # batches may be shorter than batch_size (small classes), hence the name: the sampler shards them itself
        self.max_batch_size = batch_size
        self.num_items_per_class = k
        self.classes_per_batch = min(batch_size // k, len(self.classes))
        super().__init__(seed, rank, world_size, batch_size)
        groups = sum(math.ceil(len(c) / k) for c in self.classes)
        self._len = max(1, math.ceil(groups / self.classes_per_batch))

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[list[int]]:
        rng = self._rng()
        k = self.num_items_per_class
        pools: list[list[np.ndarray]] = [[] for _ in self.classes]
        remaining = np.zeros(len(self.classes))

        def refill(c: int) -> None:
            order = rng.permutation(self.classes[c])
            groups = [order[i : i + k] for i in range(0, len(order), k)]
            if len(groups) > 1 and len(groups[-1]) < k:  # top up the last group from the same class
                extra = rng.choice(order[: len(order) - len(groups[-1])], k - len(groups[-1]), replace=False)
                groups[-1] = np.concatenate([groups[-1], extra])
            pools[c] = groups
            remaining[c] = len(groups)

        for c in range(len(self.classes)):
            refill(c)
        for _ in range(self._len):
            weights = remaining + 1e-3  # exhausted classes are still drawn, rarely, and refilled
            chosen = rng.choice(
                len(self.classes), self.classes_per_batch, replace=False, p=weights / weights.sum()
            )
            batch: list[int] = []
            for c in chosen:
                if not pools[c]:
                    refill(c)
                batch.extend(int(i) for i in pools[c].pop())
                remaining[c] = len(pools[c])
            yield self._share(batch)


class RandomBatchSampler(_GlobalBatches):
    """Shuffled batches of ``batch_size`` (for ArcFace-style losses that need no in-batch positives).

    The last, partial batch is dropped when there is more than one batch, so every batch has the same size.

    Example:
        >>> s = RandomBatchSampler(10, batch_size=4, seed=0)
        >>> len(s), sorted(len(b) for b in s)
        (2, [4, 4])
    """

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive; received {batch_size}")
        self.num_items = num_items
        self.batch_size = min(batch_size, num_items)
        super().__init__(seed, rank, world_size, self.batch_size)

    def __len__(self) -> int:
        return max(1, self.num_items // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = self._rng().permutation(self.num_items)
        for b in range(len(self)):
            batch = [int(i) for i in order[b * self.batch_size : (b + 1) * self.batch_size]]
            yield self._share(batch)


class PairBatchSampler(_GlobalBatches):
    """Shuffled batches of pairs in which no left item and no right item occurs twice.

    For in-batch-negative losses (CLIP): a caption or image repeated within a batch would be a false negative.
    A pair that clashes with the batch being filled waits for the next one. Every epoch has
    ``max(1, len // batch_size)`` full batches (the remainder is seen in other epochs, as the order changes).

    Args:
        left_keys, right_keys: hashable identities of each pair's members (the text; the image's uri or bytes hash).
        batch_size: pairs per global batch.
        seed, rank, world_size: as for :class:`ClassSampler`.

    Example:
        >>> s = PairBatchSampler(['a', 'b', 'a', 'c'], ['1', '2', '3', '4'], batch_size=2, seed=0)
        >>> all(len({['a', 'b', 'a', 'c'][i] for i in b}) == len(b) for b in s)
        True
    """

    def __init__(
        self,
        left_keys: Sequence[object],
        right_keys: Sequence[object],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2 for in-batch negatives; received {batch_size}")
        if len(left_keys) != len(right_keys):
            raise ValueError("left_keys and right_keys differ in length")
        if len(left_keys) < 2:
            raise DataError(f"in-batch negatives need at least 2 pairs; the data has {len(left_keys)}")
        self.left = list(left_keys)
        self.right = list(right_keys)
        self.batch_size = min(batch_size, len(self.left))
        super().__init__(seed, rank, world_size, self.batch_size)

    def __len__(self) -> int:
        return max(1, len(self.left) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        queue = deque(int(i) for i in self._rng().permutation(len(self.left)))
        for _ in range(len(self)):
            batch: list[int] = []
            used_left: set[object] = set()
            used_right: set[object] = set()
            deferred: list[int] = []
            while queue and len(batch) < self.batch_size:
                i = queue.popleft()
                if self.left[i] in used_left or self.right[i] in used_right:
                    deferred.append(i)  # clashes with this batch: first in line for the next one
                    continue
                batch.append(i)
                used_left.add(self.left[i])
                used_right.add(self.right[i])
            queue.extendleft(reversed(deferred))
            if len(batch) < 2:  # only duplicates are left (the same on every rank, so counts stay equal)
                return
            yield self._share(batch)


class LengthBucketPairSampler(_GlobalBatches):
    """Batches of positive pairs of similar length (``sampler='length'``), for pairs stored as classes of two.

    Items ``2i`` and ``2i + 1`` form pair ``i``. Each epoch the pairs are shuffled, cut into blocks of
    ``bucket_batches`` batches, sorted by length inside a block and cut into batches, whose order is shuffled
    again. Texts of similar length pad to similar lengths, so a batch carries fewer padded tokens; the batches
    still hold in-batch negatives from anywhere in a block. Every epoch has ``len`` full batches.

    Args:
        lengths: the token count of every item (both members of every pair).
        batch_size: items per global batch (two per pair; rounded down to an even number).
        seed, rank, world_size: as for :class:`ClassSampler`.
        bucket_batches: batches per sorted block (larger: less padding, less random batches).

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
    ) -> None:
        if len(lengths) % 2:
            raise ValueError("pairs as classes of two have an even number of items")
        self.pair_lengths = np.maximum(np.asarray(lengths)[0::2], np.asarray(lengths)[1::2])
        self.pairs_per_batch = max(2, batch_size // 2)
        if len(self.pair_lengths) < 2:
            raise DataError(f"in-batch negatives need at least 2 pairs; the data has {len(self.pair_lengths)}")
        super().__init__(seed, rank, world_size, 2 * self.pairs_per_batch)
        self.bucket_batches = bucket_batches

    def __len__(self) -> int:
        return max(1, len(self.pair_lengths) // self.pairs_per_batch)

    def __iter__(self) -> Iterator[list[int]]:
        rng = self._rng()
        order = rng.permutation(len(self.pair_lengths))
        block = self.pairs_per_batch * self.bucket_batches
        batches: list[np.ndarray] = []
        for start in range(0, len(order), block):
            chunk = order[start : start + block]
            chunk = chunk[np.argsort(self.pair_lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.pairs_per_batch] for i in range(0, len(chunk), self.pairs_per_batch)]
        full = [b for b in batches if len(b) == self.pairs_per_batch]
        chosen = [full[i] for i in rng.permutation(len(full))][: len(self)]
        for pairs in chosen:
            batch = [int(i) for p in pairs for i in (2 * p, 2 * p + 1)]
            yield self._share(batch)
