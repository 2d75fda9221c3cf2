"""The streamed pairs' index in bounded memory: distinct texts and the groups of pairs that share a text, from
64-bit text hashes.

:func:`~finetuner.data.streamed.build_index` turns a file of (query, document) pairs into the items of
:meth:`~finetuner.data.shapes.PairData.as_labelled`: every distinct text once, in order of first appearance
(left, right, left, right ...), with the row and the side it was first seen on, and as its class the group of the
pairs connected through shared texts (numbered in order of first appearance). For millions of pairs the work
arrays of that build, not the index it leaves, set the process's peak memory, so each step here keeps them to a
few bytes per pair:

- the hashes are written into one array as the batches arrive (:class:`PairIndex`), not a list joined at the end;
- duplicates are found bucket by bucket (:func:`first_occurrences`: the hashes split by their low bits, each
  bucket sorted on its own), so the sort's int64 temporaries are a bucket's, not the file's;
- the text of every position is numbered by first appearance straight from those first occurrences
  (:func:`distinct_texts`), with no sort of the positions;
- the groups are found by label propagation with hooking in place, in int32 while positions fit
  (:func:`components`): every text takes the smallest text number of its group, which is the group's first text, so
  numbering the groups by first appearance needs no sort either.

Positions and numbers are int32 while they fit (:func:`~finetuner.data.samplers.index_dtype`).
"""

from __future__ import annotations

import math

import numpy as np

from finetuner.data.samplers import index_dtype

#: positions a bucket of :func:`first_occurrences` holds on average (its sort's temporaries: ~60 bytes each)
BUCKET = 2**18
#: the most buckets (each costs a pass over the hashes)
MAX_BUCKETS = 64
#: elements per step of the chunked element-wise passes (bounded temporaries)
_CHUNK = 2**16


class PairIndex:
    """The text hashes of the usable pairs, added batch by batch, and from them the items and their classes.

    Args:
        capacity: how many pairs are expected (the file's rows); the arrays grow if more come.
        rows: the number of rows of the file (the type of the row positions; default ``capacity``).
        bucket_size: positions per bucket of :func:`first_occurrences`.

    Example:
        >>> index = PairIndex(3)
        >>> index.add(np.array([[7, 8], [9, 10], [7, 11]], dtype=np.uint64), np.array([0, 1, 2]))
        >>> [a.tolist() for a in index.classes()[:3]]  # rows, sides, classes of the distinct texts
        [[0, 0, 1, 1, 2], [0, 1, 0, 1, 1], [0, 0, 1, 1, 0]]
    """

    def __init__(self, capacity: int, rows: int | None = None, bucket_size: int = BUCKET) -> None:
        self._hashes: np.ndarray | None = np.empty((capacity, 2), dtype=np.uint64)  # (capacity, 2) left, right
        self._rows: np.ndarray | None = np.empty(capacity, dtype=index_dtype(capacity if rows is None else rows))
        self._count = 0
        self.bucket_size = bucket_size

    def __len__(self) -> int:
        return self._count

    def add(self, hashes: np.ndarray, rows: np.ndarray) -> None:
        """Appends pairs: their ``(n, 2)`` left and right text hashes and their ``(n,)`` rows in the file."""
        if self._hashes is None or self._rows is None:
            raise RuntimeError("PairIndex.classes() has already consumed the hashes")
        end = self._count + len(hashes)
        if end > len(self._hashes):  # more pairs than announced: grow by half (rare; copies once)
            size = max(end, len(self._hashes) * 3 // 2)
            self._hashes = np.resize(self._hashes, (size, 2))
            self._rows = np.resize(self._rows, size)
        self._hashes[self._count : end] = hashes
        self._rows[self._count : end] = rows
        self._count = end

    def classes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """The distinct texts in order of first appearance and the group of each; frees the hashes as it goes (it
        can be called once).

        Returns:
            ``rows`` (the row of every distinct text's first appearance), ``sides`` (int8: 0 left, 1 right),
            ``labels`` (its group, numbered by first appearance) and the number of groups.
        """
        if self._hashes is None or self._rows is None:
            raise RuntimeError("PairIndex.classes() can be called once")
        hashes, pair_rows = self._hashes[: self._count], self._rows[: self._count]
        self._hashes = self._rows = None  # the hashes are freed as soon as the duplicates are found
        first = first_occurrences(hashes.reshape(-1), self.bucket_size)  # (2 * pairs,)
        del hashes
        ids, keep = distinct_texts(first)  # (2 * pairs,) text numbers, (texts,) their first positions
        del first
        sides = (keep & 1).astype(np.int8)  # (texts,)
        keep >>= 1  # the pair of each text's first appearance
        rows = pair_rows[keep]  # (texts,)
        del keep, pair_rows
        labels, num_classes = components(ids.reshape(-1, 2), len(rows))
        return rows, sides, labels, num_classes


def first_occurrences(values: np.ndarray, bucket_size: int = BUCKET) -> np.ndarray:
    """For every position, the position where its value first occurs.

    The values are split into buckets by their low bits (hashes: about equal buckets; up to :data:`MAX_BUCKETS`,
    each found by a chunked pass over the values) and each bucket is sorted on its own (stable, so equal values
    keep their order and the first of a run is the first occurrence): temporaries of a bucket's size, beside the
    result's 4 bytes per position (int32 while positions fit).

    Args:
        values: ``(n,)`` unsigned integers (64-bit text hashes).
        bucket_size: positions per bucket, on average.

    Example:
        >>> first_occurrences(np.array([5, 3, 5, 5, 3, 9], dtype=np.uint64)).tolist()
        [0, 1, 0, 0, 1, 5]
    """
    n = len(values)
    first = np.empty(n, dtype=index_dtype(n))  # (n,)
    buckets = min(MAX_BUCKETS, 1 << max(0, math.ceil(math.log2(max(n, 1) / bucket_size))))
    mask = np.uint64(buckets - 1)
    for bucket in range(buckets):
        where = _positions(values, mask, np.uint64(bucket)) if buckets > 1 else np.arange(n)  # (b,) ascending
        bucket_values = values[where]
        order = np.argsort(bucket_values, kind="stable")  # (b,) equal values together, in position order
        where, bucket_values = where[order], bucket_values[order]
        del order
        starts = np.empty(len(where), dtype=bool)  # (b,) the first of every run of equal values
        starts[:1] = True
        np.not_equal(bucket_values[1:], bucket_values[:-1], out=starts[1:])
        del bucket_values
        first[where] = where[starts][np.cumsum(starts) - 1]
    return first


def _positions(values: np.ndarray, mask: np.uint64, bucket: np.uint64) -> np.ndarray:
    """The positions (ascending) of the values whose low bits ``values & mask`` are ``bucket``, found chunk by
    chunk."""
    found = [
        np.flatnonzero((values[start : start + _CHUNK] & mask) == bucket) + start
        for start in range(0, len(values), _CHUNK)
    ]
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def distinct_texts(first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The number of every position's text, texts numbered in order of first appearance, and the position of each
    text's first appearance.

    Args:
        first: ``(n,)`` the position where each position's text first occurs (:func:`first_occurrences`).

    Returns:
        ``(n,)`` text numbers and ``(texts,)`` first positions (ascending), both of ``first``'s type.

    Example:
        >>> [a.tolist() for a in distinct_texts(np.array([0, 1, 0, 0, 1, 5]))]
        [[0, 1, 0, 0, 1, 2], [0, 1, 5]]
    """
    n, kind = len(first), first.dtype
    is_first = np.empty(n, dtype=bool)  # (n,)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        np.equal(first[start:stop], np.arange(start, stop, dtype=kind), out=is_first[start:stop])
    ids = np.cumsum(is_first, dtype=kind)  # (n,) at a first occurrence: its text's number + 1
    ids -= 1
    keep = np.empty(int(ids[-1]) + 1 if n else 0, dtype=kind)  # (texts,)
    filled = 0
    for start in range(0, n, _CHUNK):
        found = np.flatnonzero(is_first[start : start + _CHUNK]) + start  # (found,) this chunk's first occurrences
        keep[filled : filled + len(found)] = found
        filled += len(found)
    del is_first
    for start in range(0, n, _CHUNK):  # in place: the entries read (first occurrences) are never changed
        ids[start : start + _CHUNK] = ids[first[start : start + _CHUNK]]
    return ids, keep


def components(edges: np.ndarray, num_nodes: int) -> tuple[np.ndarray, int]:
    """The connected components of a graph, numbered in order of their smallest node.

    Label propagation in place: each edge gives the smaller label of its ends to both ends and to the nodes those
    labels name (hooking, as in Shiloach-Vishkin: a chain of 2 million links in any order takes 17 rounds, not
    thousands), then every node takes its label's label (pointer jumping), until nothing changes; labels only fall, so
    an unchanged sum means a fixed point, where every node holds the smallest node of its component. With nodes
    numbered in order of first appearance that node is the component's first, so numbering the components in order
    of their smallest node numbers them in order of first appearance.

    Args:
        edges: ``(m, 2)`` node numbers in ``0 .. num_nodes - 1`` (int32 or int64).
        num_nodes: the number of nodes (nodes without an edge are components of their own).

    Returns:
        ``(num_nodes,)`` the component of every node (``edges``' type), and the number of components.

    Example:
        >>> labels, count = components(np.array([[0, 3], [1, 2], [2, 4]]), 6)
        >>> labels.tolist(), count
        ([0, 1, 1, 0, 1, 2], 3)
    """
    kind = edges.dtype
    comp = np.arange(num_nodes, dtype=kind)  # (nodes,) the smallest node known to share each node's component
    total = int(comp.sum(dtype=np.int64))
    while True:
        for start in range(0, len(edges), _CHUNK):
            left, right = edges[start : start + _CHUNK, 0], edges[start : start + _CHUNK, 1]  # (chunk,) each
            to_left, to_right = comp[left], comp[right]  # (chunk,) each: the labels of the edge's ends
            low = np.minimum(to_left, to_right)  # (chunk,)
            for node in (left, right, to_left, to_right):  # the ends and their labels (hooking the label's node
                np.minimum.at(comp, node, low)  # too: long chains in any order take O(log n) rounds, not O(n))
        for start in range(0, num_nodes, _CHUNK):  # jump to the label's label
            comp[start : start + _CHUNK] = comp[comp[start : start + _CHUNK]]
        now = int(comp.sum(dtype=np.int64))
        if now == total:
            break
        total = now
    # numbered in place, in node order: a component's smallest node (its root, comp[i] == i) takes the next
    # number; any other node takes its root's, already numbered in an earlier chunk or numbered in this one
    count = 0
    for start in range(0, num_nodes, _CHUNK):
        stop = min(num_nodes, start + _CHUNK)
        chunk = comp[start:stop]  # (chunk,) the roots
        is_root = chunk == np.arange(start, stop, dtype=kind)  # (chunk,)
        number = np.cumsum(is_root, dtype=kind) + kind.type(count - 1)  # (chunk,) at the roots: their numbers
        inside = chunk >= start  # (chunk,) the root is in this chunk
        comp[start:stop] = np.where(
            inside, number[np.where(inside, chunk - start, 0)], comp[np.where(inside, 0, chunk)]
        )
        count += int(is_root.sum())
    return comp, count
