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

from finetuner.data.groups import pair_groups
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
    """Shuffled batches of pairs holding at most one pair of each group: no left or right item occurs twice.

    For in-batch-negative losses (CLIP): a caption or image repeated within a batch would be a false negative, and
    so would a pair connected to another one through shared items (caption a with images 1 and 2, caption b with
    image 2: a's image 2 is a positive of a, not a negative). Pairs are grouped by
    :func:`~finetuner.data.groups.pair_groups` (the two sides kept apart); a pair whose group is already in the
    batch being filled waits for the next one. Every epoch has ``max(1, len // batch_size)`` batches (the remainder
    is seen in other epochs, as the order changes); when only pairs of the batch's groups are left, the epoch ends
    early (on every rank alike).

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
        self.groups = pair_groups(self.left, self.right, shared=False)
        self.batch_size = min(batch_size, len(self.left))
        super().__init__(seed, rank, world_size, self.batch_size)

    def __len__(self) -> int:
        return max(1, len(self.left) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        queue = deque(int(i) for i in self._rng().permutation(len(self.left)))
        for _ in range(len(self)):
            batch: list[int] = []
            used: set[int] = set()
            deferred: list[int] = []
            while queue and len(batch) < self.batch_size:
                i = queue.popleft()
                if self.groups[i] in used:
                    deferred.append(i)  # clashes with this batch: first in line for the next one
                    continue
                batch.append(i)
                used.add(self.groups[i])
            queue.extendleft(reversed(deferred))
            if len(batch) < 2:  # only duplicates are left (the same on every rank, so counts stay equal)
                return
            yield self._share(batch)


class LengthBucketPairSampler(_GlobalBatches):
    """Batches of positive pairs of similar length (``sampler='length'``), for pairs stored as classes.

    Without ``labels``, items ``2i`` and ``2i + 1`` form pair ``i``. With ``labels`` (the classes of
    :meth:`~finetuner.data.shapes.PairData.as_labelled`, where pairs sharing an item form one class), each epoch
    cuts every class into random pairs of its items (an odd one out pairs with another member) and a batch holds at
    most one pair of a class, so every label is in a batch exactly twice and no item twice. Each epoch the pairs are
    shuffled, cut into blocks of ``bucket_batches`` batches, sorted by length inside a block and cut into batches,
    whose order is shuffled again. Texts of similar length pad to similar lengths, so a batch carries fewer padded
    tokens; the batches still hold in-batch negatives from anywhere in a block. Every epoch has ``len`` full
    batches (fewer only when large classes leave too few others to fill them; on every rank alike).

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
            labels = np.asarray(labels)
            self.classes = [np.flatnonzero(labels == c) for c in np.unique(labels)]
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
        items, owners = self._pairs(rng)  # (num_pairs, 2), (num_pairs,)
        pair_lengths = self.lengths[items].max(axis=1)  # (num_pairs,)
        order = rng.permutation(len(items))
        block = self.pairs_per_batch * self.bucket_batches
        batches: list[list[int]] = []
        carried: list[int] = []  # pairs whose class was already in every batch of their block
        for start in range(0, len(order), block):
            chunk = order[start : start + block]
            chunk = [*carried, *chunk[np.argsort(pair_lengths[chunk], kind="stable")].tolist()]
            full, carried = _fill(chunk, owners, self.pairs_per_batch)
            batches += full
        chosen = [batches[i] for i in rng.permutation(len(batches))][: len(self)]
        for pairs in chosen:
            yield self._share([int(i) for p in pairs for i in items[p]])


def _fill(pairs: list[int], owners: np.ndarray, size: int) -> tuple[list[list[int]], list[int]]:
    """Cut ``pairs`` (in order) into full batches of ``size`` holding one pair per class; returns them and the
    pairs left over (a pair whose class is in the batch being filled waits for the next batch)."""
    batches: list[list[int]] = []
    waiting = deque(pairs)
    while len(waiting) >= size:
        batch: list[int] = []
        used: set[int] = set()
        deferred: list[int] = []
        while waiting and len(batch) < size:
            p = waiting.popleft()
            if owners[p] in used:
                deferred.append(p)
                continue
            batch.append(p)
            used.add(int(owners[p]))
        waiting.extendleft(reversed(deferred))
        if len(batch) < size:
            return batches, [*batch, *waiting]
        batches.append(batch)
    return batches, list(waiting)
