"""A sum tree over integer weights, 64 children per node: weighted draws and weight changes in O(log n).

The class sampler draws a few classes per batch out of possibly millions, each with probability proportional to
its weight; a cumulative sum over every class per batch costs O(classes), this tree ``O(64 * log_64(classes))`` per
draw and per change (4 levels for 16 million classes), vectorised over the draws of a batch, so a batch costs a few
dozen small numpy operations however many classes there are. Weights are integers, so sums stay exact however many
changes are made (no drift of float sums).
"""

from __future__ import annotations

import numpy as np

#: children per node: few levels (few numpy calls per search), short rows to scan at each
FANOUT = 64


class WeightTree:
    """Integer weights ``w[0 .. n-1]`` whose prefix sums can be searched and whose entries can be changed, both in
    ``O(log n)`` per index, vectorised over many indices at once.

    ``find(t)`` gives, for each target ``t`` in ``[0, total)``, the first index whose running sum exceeds ``t``
    (``np.searchsorted(np.cumsum(w), t, side='right')``): with ``t`` uniform in ``[0, total)`` that is a draw with
    probability ``w[i] / total``. ``visits`` counts the tree entries read or written, a measure of the work done.

    Args:
        weights: non-negative integers (any integer type: int32 counts are widened into the tree's own int64
            array, with no int64 copy of them on the way).
        scale, offset: the weights are ``scale * weights + offset`` (non-negative integers; computed in the tree's
            array, so a caller with counts needs no temporary array of scaled weights).

    Example:
        >>> tree = WeightTree([1, 0, 3])
        >>> tree.total, tree.find([0, 1, 3]).tolist()
        (4, [0, 2, 2])
        >>> tree.add([2], [-3]); tree.total, tree.find([0]).tolist()
        (1, [0])
        >>> WeightTree(np.array([1, 0, 3], dtype=np.int32), scale=10, offset=1).total
        43
    """

    def __init__(self, weights: np.ndarray | list[int], scale: int = 1, offset: int = 0) -> None:
        weights = np.asarray(weights)  # (n,)
        if not np.issubdtype(weights.dtype, np.integer):
            weights = weights.astype(np.int64)
        if weights.ndim != 1 or (weights < 0).any() or scale < 0 or offset < 0:
            raise ValueError("weights must be a 1-d array of non-negative integers")
        self.size = len(weights)
        # levels[0]: the weights, levels[l + 1][i]: the sum of levels[l][64 i : 64 (i + 1)]; each padded with zeros
        # to a multiple of 64, the last one exactly 64 long (the root's children)
        level = _padded(weights)
        if scale != 1:
            level[: self.size] *= scale
        if offset:
            level[: self.size] += offset
        self._levels = [level]
        while len(level) > FANOUT:
            level = _padded(level.reshape(-1, FANOUT).sum(axis=1))
            self._levels.append(level)
        self._total = int(self._levels[0].sum())
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
        node = np.zeros(len(rest), dtype=np.int64)  # (m,) the node reached, on the level above the one searched
        rows = np.arange(len(rest))
        for level in reversed(self._levels):  # from the root's children down to the weights
            children = level.reshape(-1, FANOUT)[node]  # (m, 64) the weights under each node reached
            running = np.cumsum(children, axis=1)  # (m, 64)
            child = (running <= rest[:, None]).sum(axis=1)  # (m,) the first child whose running sum exceeds rest
            rest -= running[rows, child] - children[rows, child]  # minus the children before it
            node = node * FANOUT + child
            self.visits += children.size
        return node

    def add(self, indices: np.ndarray | list[int], deltas: np.ndarray | list[int]) -> None:
        """Add ``deltas`` to the weights at ``indices`` (the caller keeps every weight non-negative).

        Example:
            >>> tree = WeightTree([1, 1, 1]); tree.add([0, 0], [2, 1]); tree.total
            6
        """
        node = np.asarray(indices, dtype=np.int64)  # (m,)
        delta = np.asarray(deltas, dtype=np.int64)  # (m,)
        self._total += int(delta.sum())
        for level in self._levels:  # the weight, then every sum above it
            np.add.at(level, node, delta)
            node = node // FANOUT
            self.visits += len(node)


def _padded(values: np.ndarray) -> np.ndarray:
    """``values`` followed by zeros up to a multiple of :data:`FANOUT` (at least one row)."""
    out = np.zeros(max(1, -(-len(values) // FANOUT)) * FANOUT, dtype=np.int64)
    out[: len(values)] = values
    return out
