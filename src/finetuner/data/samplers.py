"""Batch samplers: class-balanced (``num_items_per_class`` per class) and plain random.

Both draw the same, seeded list of *global* batches on every process (``batch_size`` is the global batch) and
yield this process's share of each (``rank``/``world_size``): every rank gets exactly ``len(sampler)`` batches
in every epoch, so DDP never waits on a rank that ran out (the hang of sentence-transformers #3348).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from finetuner.data.groups import pair_groups
from finetuner.data.weight_tree import WeightTree
from finetuner.errors import ConfigError, DataError


def _share(batch: list[int], rank: int, world_size: int) -> list[int]:
    """This rank's contiguous slice of a global batch (sizes differ by at most one)."""
    if world_size == 1:
        return batch
    bounds = np.linspace(0, len(batch), world_size + 1).round().astype(int)
    return batch[bounds[rank] : bounds[rank + 1]]


def index_dtype(n: int) -> type:
    """The smallest integer type of positions ``0 .. n``: int32 up to 2**31 - 1 (half of int64's memory per item),
    else int64.

    Example:
        >>> index_dtype(10**6).__name__, index_dtype(2**31).__name__
        ('int32', 'int64')
    """
    return np.int32 if n < 2**31 else np.int64


def class_members(labels: np.ndarray) -> list[np.ndarray]:
    """The items of every class, classes in sorted order, items in order: one sort, not a scan per class (a million
    classes of pairs take a second, not hours).

    Example:
        >>> [m.tolist() for m in class_members(np.array([1, 0, 1, 2, 0]))]
        [[1, 4], [0, 2], [3]]
    """
    order = np.argsort(labels, kind="stable")  # (items,) grouped by class, each class in item order
    starts = np.flatnonzero(np.diff(labels[order])) + 1
    return np.split(order, starts) if len(order) else []


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
        # the classes as one array of item positions grouped by class (a few bytes per item, for millions of them)
        index = index_dtype(len(labels))  # positions as int32 while they fit: half the memory per item and class
        self._order = np.argsort(labels, kind="stable").astype(index)  # (items,)
        starts = np.flatnonzero(np.diff(labels[self._order]))
        starts += 1
        self._bounds = np.concatenate([[0], starts, [len(labels)]] if len(labels) else [[0]], dtype=index)
        del starts
        sizes = np.diff(self._bounds)  # (classes,)
        self.num_classes = len(sizes)
        if self.num_classes < 2:
            raise DataError(
                f"the data has {self.num_classes} class(es); metric learning needs at least 2 classes "
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
        small = int((sizes < k).sum())
        if small:
            warnings.warn(
                f"{small} of {self.num_classes} classes have fewer than num_items_per_class={k} items; "
                "their batches carry fewer items of that class",
                stacklevel=2,
            )
        # batches may be shorter than batch_size (small classes), hence the name: the sampler shards them itself
        self.max_batch_size = batch_size
        self.num_items_per_class = k
        self.classes_per_batch = min(batch_size // k, self.num_classes)
        # every rank needs a share of every global batch (an empty one would leave DDP waiting): the smallest batch
        # these classes can make must hold an item per process
        smallest = int(np.sort(np.minimum(sizes, k))[: self.classes_per_batch].sum())
        if smallest < world_size:
            raise ConfigError(
                f"{world_size} processes each need a share of every batch, but the class sampler's batches can hold "
                f"as few as {smallest} items ({self.classes_per_batch} classes of up to {k} items, some classes "
                "smaller); raise batch_size or num_items_per_class, or train on fewer processes"
            )
        super().__init__(seed, rank, world_size, batch_size)
        # groups of k items per class: computed from the bounds where needed, not kept (4 bytes per class less)
        self._len = max(1, math.ceil(int((-(-sizes // k)).sum()) / self.classes_per_batch))

    @property
    def classes(self) -> list[np.ndarray]:
        """The items of every class (classes in sorted label order)."""
        return np.split(self._order, self._bounds[1:-1])

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[list[int]]:
        """Every class is shuffled and cut into groups of k (a short last group topped up with the class's first
        items); each batch draws ``classes_per_batch`` distinct classes with probability proportional to their
        groups left (+ 0.001, so a class that ran out is still drawn, rarely, and reshuffled) and takes one group of
        each. The draws search a tree of the weights: O(log classes) per class drawn, not O(classes) per batch."""
        rng = self._rng()
        k, bounds = self.num_items_per_class, self._bounds
        shuffled = self._shuffle_within_classes(rng)  # (items,) every class's items in a new order, in its slice
        remaining = np.diff(bounds)  # (classes,) groups left (k items each); they are taken from the end
        remaining += k - 1
        remaining //= k
        tree = WeightTree(remaining, scale=_SCALE, offset=1)  # weights scaled in the tree's array: no int64 temporary
        self._tree = tree  # kept for inspection (tests count the nodes it visits)
        for _ in range(self._len):
            # (m,) classes in the order drawn; the first ``out`` of them are out of the tree (weight 0)
            chosen, out = _draw_distinct(tree, rng, self.classes_per_batch, remaining)
            start, end = bounds[chosen].astype(np.int64), bounds[chosen + 1].astype(np.int64)  # (m,)
            groups = -(-(end - start) // k)  # (m,) groups of k items of each class
            left = remaining[chosen].astype(np.int64)  # (m,)
            for c in chosen[left == 0]:  # ran out: reshuffled and its groups dealt again
                shuffled[bounds[c] : bounds[c + 1]] = rng.permutation(self._order[bounds[c] : bounds[c + 1]])
            g = np.where(left == 0, groups, left) - 1  # (m,) the group each class gives now
            remaining[chosen] = g
            weight = np.where(np.arange(len(chosen)) < out, 0, left * _SCALE + 1)  # (m,) in the tree now
            tree.add(chosen, g * _SCALE + 1 - weight)  # one group less (back in the tree if the draw took it out)
            first = start + g * k
            short = (end - start) % k
            # a short last group (of a class with more than one) is topped up with the class's first k - short items
            top_up = np.where((g == groups - 1) & (groups > 1) & (short > 0), k - short, 0)  # (m,)
            starts = np.stack([first, start], 1).ravel()  # (2m,) each class's group, then its top-up
            lengths = np.stack([np.minimum(first + k, end) - first, top_up], 1).ravel()  # (2m,)
            yield self._share(_gather(shuffled, starts, lengths))

    def _shuffle_within_classes(self, rng: np.random.Generator) -> np.ndarray:
        """``_order`` with the items of every class in a random order: items sorted by (class, random rank), in
        chunks of about a million items (bounded temporaries), instead of one permutation per class."""
        n, bounds = len(self._order), self._bounds
        out = np.empty_like(self._order)
        cuts = np.unique(np.searchsorted(bounds, np.arange(0, n, _CHUNK), side="right") - 1)
        cuts = np.append(cuts[cuts < self.num_classes], self.num_classes)  # classes cuts[j] .. cuts[j+1]-1
        for a, b in itertools.pairwise(cuts):
            lo, hi = int(bounds[a]), int(bounds[b])
            # (class within chunk) * items + random rank: unique keys, so any sort algorithm gives the same order
            key = np.repeat(np.arange(b - a, dtype=np.int64) * (hi - lo), np.diff(bounds[a : b + 1]))
            key += rng.permutation(hi - lo)
            order = np.argsort(key)  # (hi - lo,)
            del key  # before the gather: a smaller peak
            out[lo:hi] = self._order[lo:hi][order]
        return out


#: class weights are ``_SCALE * groups left + 1``: integers proportional to groups left + 1/_SCALE
_SCALE = 1000
#: items shuffled per sort in :meth:`ClassSampler._shuffle_within_classes`
_CHUNK = 1 << 20


def _draw_distinct(
    tree: WeightTree, rng: np.random.Generator, m: int, remaining: np.ndarray
) -> tuple[np.ndarray, int]:
    """``m`` distinct indices drawn one after another, each with probability proportional to its weight among
    those not drawn yet (successive sampling, as ``rng.choice(replace=False, p=...)``): draws with replacement in
    rounds, keeping the new ones in the order drawn; before another round, those found are taken out of the tree
    (weight ``_SCALE * remaining + 1`` -> 0).

    Returns:
        The indices, and how many of the first ones are out of the tree (weight 0) for the caller to put back.
    """
    found = np.empty(0, dtype=np.int64)
    while True:
        drawn = tree.find(rng.integers(0, tree.total, size=m - len(found)))
        _, first = np.unique(drawn, return_index=True)
        new = drawn[np.sort(first)]  # distinct, in the order first drawn (earlier rounds' ones are out of the tree)
        out = len(found)
        found = np.concatenate([found, new])
        if len(found) == m:
            return found, out
        tree.add(new, -(remaining[new].astype(np.int64) * _SCALE + 1))


def _gather(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> list[int]:
    """``values[starts[0]:starts[0] + lengths[0]] + values[starts[1]: ...] + ...`` as one list of ints."""
    offsets = np.cumsum(lengths) - lengths  # (segments,) where each segment begins in the result
    return values[np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))].tolist()


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
    """Shuffled batches of pairs (or rows) holding at most one pair of each group: no item occurs twice.

    For in-batch-negative losses (CLIP, triplet rows): a caption or image repeated within a batch would be a false
    negative, and so would a pair connected to another one through shared items (caption a with images 1 and 2,
    caption b with image 2: a's image 2 is a positive of a, not a negative). Pairs are grouped by
    :func:`~finetuner.data.groups.pair_groups` (the two sides kept apart), or by the ``groups`` given; a pair whose
    group is already in the batch being filled waits for the next one. Every epoch has exactly
    ``max(1, len // batch_size)`` full batches: when only pairs of the batch's groups are left (a group much larger
    than the others), the pairs come round again in a new order, so the other groups fill the batch (the big
    group's remaining pairs are seen in other epochs). The batch holds at most as many pairs as there are groups.

    Args:
        left_keys, right_keys: hashable identities of each pair's members (the text; the image's uri or bytes hash).
        batch_size: pairs per global batch.
        seed, rank, world_size: as for :class:`ClassSampler`.
        groups: the group of every pair (default: :func:`~finetuner.data.groups.pair_groups` of the keys).

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
        groups: Sequence[int] | None = None,
    ) -> None:
        if batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2 for in-batch negatives; received {batch_size}")
        if len(left_keys) != len(right_keys):
            raise ValueError("left_keys and right_keys differ in length")
        if len(left_keys) < 2:
            raise DataError(f"in-batch negatives need at least 2 pairs; the data has {len(left_keys)}")
        self.left = list(left_keys)
        self.right = list(right_keys)
        self.groups = list(groups) if groups is not None else pair_groups(self.left, self.right, shared=False)
        n_groups = len(set(self.groups))
        if n_groups < 2:
            raise DataError(
                f"all {len(self.left)} pairs are tied together through shared items (one group), so a batch could "
                "hold one of them only; in-batch negatives need pairs that share nothing"
            )
        self.batch_size = min(batch_size, len(self.left), n_groups)
        if self.batch_size < min(batch_size, len(self.left)):
            warnings.warn(
                f"the pairs form {n_groups} groups (pairs sharing an item); a batch holds one pair of a group, so "
                f"batches hold {self.batch_size} pairs, not {batch_size}",
                stacklevel=2,
            )
        super().__init__(seed, rank, world_size, self.batch_size)

    def __len__(self) -> int:
        return max(1, len(self.left) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = self._rng()
        queue = deque(int(i) for i in rng.permutation(len(self.left)))
        waiting: dict[int, deque[int]] = {}  # pairs that clashed with an earlier batch, by group, first in line
        for _ in range(len(self)):
            batch: list[int] = []
            used: set[int] = set()
            for group in list(waiting)[: self.batch_size]:
                batch.append(waiting[group].popleft())
                used.add(group)
                if not waiting[group]:
                    del waiting[group]
            while len(batch) < self.batch_size:
                if not queue:  # only pairs of this batch's groups were left: they come round again
                    queue.extend(int(i) for i in rng.permutation(len(self.left)))
                i = queue.popleft()
                if self.groups[i] in used:
                    waiting.setdefault(self.groups[i], deque()).append(i)
                    continue
                batch.append(i)
                used.add(self.groups[i])
            yield self._share(batch)
