"""A Fenwick (binary indexed) tree over integer weights: weighted draws and weight changes in O(log n).

The class sampler draws a few classes per batch out of possibly millions, each with probability proportional to
its weight; a cumulative sum over every class per batch costs O(classes), this tree O(log classes) per draw and per
change. Weights are integers, so sums stay exact however many changes are made (no drift of float sums).
"""

from __future__ import annotations

import numpy as np


class WeightTree:
    """Integer weights ``w[0 .. n-1]`` whose prefix sums can be searched and whose entries can be changed, both in
    ``O(log n)`` per index, vectorised over many indices at once.

    ``find(t)`` gives, for each target ``t`` in ``[0, total)``, the first index whose running sum exceeds ``t``
    (``np.searchsorted(np.cumsum(w), t, side='right')``): with ``t`` uniform in ``[0, total)`` that is a draw with
    probability ``w[i] / total``. ``visits`` counts the tree nodes read or written, a measure of the work done.

    Args:
        weights: non-negative integers.

    Example:
        >>> tree = WeightTree([1, 0, 3])
        >>> tree.total, tree.find([0, 1, 3]).tolist()
        (4, [0, 2, 2])
        >>> tree.add([2], [-3]); tree.total, tree.find([0]).tolist()
        (1, [0])
    """

    def __init__(self, weights: np.ndarray | list[int]) -> None:
        weights = np.asarray(weights, dtype=np.int64)  # (n,)
        if weights.ndim != 1 or (weights < 0).any():
            raise ValueError("weights must be a 1-d array of non-negative integers")
        self.size = len(weights)
        # node i (1-based) holds the sum of the weights i - lowbit(i) + 1 .. i: a difference of two prefix sums
        prefix = np.concatenate([[0], np.cumsum(weights)])  # (n + 1,)
        nodes = np.arange(1, self.size + 1)
        self._tree = np.zeros(self.size + 1, dtype=np.int64)  # (n + 1,) slot 0 unused
        self._tree[1:] = prefix[nodes] - prefix[nodes - (nodes & -nodes)]
        self._total = int(prefix[-1])
        self._top = 1 << (self.size.bit_length() - 1) if self.size else 0  # the largest power of two <= n
        self.visits = 0

    @property
    def total(self) -> int:
        """The sum of all weights.

        Example:
            >>> WeightTree([2, 5]).total
            7
        """
        return self._total

    def find(self, targets: np.ndarray | list[int]) -> np.ndarray:
        """The index of every target: the first ``i`` with ``w[0] + ... + w[i] > target``.

        Args:
            targets: integers in ``[0, total)``.

        Returns:
            ``(len(targets),)`` int64 indices; an index with weight 0 is never returned.

        Example:
            >>> WeightTree([3, 0, 2]).find([0, 2, 3, 4]).tolist()
            [0, 0, 2, 2]
        """
        rest = np.array(targets, dtype=np.int64)  # (m,) what is left of each target below the node reached
        if len(rest) and (rest.min() < 0 or rest.max() >= self._total):
            raise ValueError(f"targets must lie in [0, {self._total}); received {rest.min()} .. {rest.max()}")
        pos = np.zeros(len(rest), dtype=np.int64)  # (m,) the last 1-based index whose prefix sum is <= target
        step = self._top
        while step:  # binary lifting: try to jump ``step`` further while the prefix stays <= target
            nxt = pos + step
            inside = nxt <= self.size
            value = self._tree[np.where(inside, nxt, 0)]  # (m,) slot 0 is never taken: it is masked below
            move = inside & (value <= rest)
            rest -= np.where(move, value, 0)
            pos = np.where(move, nxt, pos)
            self.visits += len(rest)
            step >>= 1
        return pos  # 1-based "last prefix <= target" is the 0-based index of the first prefix > target

    def add(self, indices: np.ndarray | list[int], deltas: np.ndarray | list[int]) -> None:
        """Add ``deltas`` to the weights at ``indices`` (the caller keeps every weight non-negative).

        Example:
            >>> tree = WeightTree([1, 1, 1]); tree.add([0, 0], [2, 1]); tree.total
            6
        """
        node = np.asarray(indices, dtype=np.int64) + 1  # (m,) 1-based
        delta = np.asarray(deltas, dtype=np.int64)  # (m,)
        self._total += int(delta.sum())
        while len(node):  # every node covering the index, bottom up
            np.add.at(self._tree, node, delta)
            self.visits += len(node)
            node = node + (node & -node)
            keep = node <= self.size
            node, delta = node[keep], delta[keep]
