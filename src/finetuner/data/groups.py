"""Duplicates in pair data: item identities, groups of pairs that share an item, and de-duplicated retrieval.

A text (or image) used in several pairs ties those pairs together: a query with three documents, or five captions
of one image. Trained as separate classes, each would be an in-batch *false negative* of the others, so
:func:`pair_groups` puts every pair connected through a shared item into one group (the connected components of
the graph whose nodes are the items and whose edges are the pairs); training treats a group as one class.
Evaluation keeps the exact pairing instead: :func:`dedup_relevance` lists every distinct query once, every
distinct index item once, and for each query the index items it is paired with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np


def item_key(item: Any) -> Hashable:
    """An identity for duplicate detection: the text itself, or an image's uri / content hash.

    Example:
        >>> item_key('a cat'), item_key(b'png-bytes') == item_key(b'png-bytes')
        ('a cat', True)
    """
    if isinstance(item, str):
        return item
    uri = getattr(item, "uri", None)
    if uri:
        return ("uri", uri)
    for value in (getattr(item, "blob", None), getattr(item, "tensor", None), item):
        if isinstance(value, (bytes, bytearray)):
            return ("bytes", hashlib.blake2b(bytes(value), digest_size=16).hexdigest())
        if value is not None and hasattr(value, "shape"):
            array = np.ascontiguousarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
            return ("array", array.shape, hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest())
    text = getattr(item, "text", None)
    if isinstance(text, str):
        return text
    return ("object", id(item))


class _UnionFind:
    """Disjoint sets over ``0..n-1`` with path halving."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def pair_groups(left_keys: Sequence[Hashable], right_keys: Sequence[Hashable], *, shared: bool = True) -> list[int]:
    """The group of every pair: pairs connected through a shared item get one group id (first-seen order).

    Args:
        left_keys, right_keys: the identities (:func:`item_key`) of each pair's two members.
        shared: whether a key on the left and the same key on the right are one item (pairs of one modality:
            a text used as a query in one pair and as a document in another); False keeps the sides apart
            (text-image pairs).

    Example:
        >>> pair_groups(['q1', 'q1', 'q2', 'q3'], ['d1', 'd2', 'd3', 'd1'])
        [0, 0, 1, 0]
        >>> pair_groups(['a', 'b'], ['b', 'c']), pair_groups(['a', 'b'], ['b', 'c'], shared=False)
        ([0, 0], [0, 1])
    """
    nodes: dict[Hashable, int] = {}
    ends = []
    for left, right in zip(left_keys, right_keys):
        a = nodes.setdefault(left if shared else (0, left), len(nodes))
        b = nodes.setdefault(right if shared else (1, right), len(nodes))
        ends.append((a, b))
    sets = _UnionFind(len(nodes))
    for a, b in ends:
        sets.union(a, b)
    codes: dict[int, int] = {}
    return [codes.setdefault(sets.find(a), len(codes)) for a, _ in ends]


def dedup_relevance(
    query_keys: Sequence[Hashable], index_keys: Sequence[Sequence[Hashable]], relevant: int | None = None
) -> tuple[list[int], list[tuple[int, int]], list[list[int]]]:
    """Distinct queries, distinct index items and, per distinct query, the index items it is paired with.

    Args:
        query_keys: the query of every row.
        index_keys: the index items of every row (several rows may share a query).
        relevant: how many of each row's index items (the first ones) are relevant to its query; None: all
            (a triplet row lists its positive, relevant, then its negatives, which are only candidates).

    Returns:
        ``(query_rows, index_refs, relevant)``: the row of the first occurrence of every distinct query; the
        ``(row, position)`` of the first occurrence of every distinct index item; and for every distinct query
        the positions (in the de-duplicated index, sorted) of all the items it is paired with.

    Example:
        >>> rows, refs, relevant = dedup_relevance(['cat', 'cat', 'dog'], [['c1'], ['c2'], ['c1']])
        >>> rows, refs, relevant
        ([0, 2], [(0, 0), (1, 0)], [[0, 1], [0]])
        >>> dedup_relevance(['q'], [['p', 'n']], relevant=1)[2]
        [[0]]
    """
    queries: dict[Hashable, int] = {}
    index: dict[Hashable, int] = {}
    query_rows: list[int] = []
    refs: list[tuple[int, int]] = []
    related: list[set[int]] = []
    for row, (query, items) in enumerate(zip(query_keys, index_keys)):
        q = queries.get(query)
        if q is None:
            q = queries[query] = len(queries)
            query_rows.append(row)
            related.append(set())
        for position, key in enumerate(items):
            j = index.get(key)
            if j is None:
                j = index[key] = len(index)
                refs.append((row, position))
            if relevant is None or position < relevant:
                related[q].add(j)
    return query_rows, refs, [sorted(r) for r in related]


def distinct(keys: Sequence[Hashable]) -> list[int]:
    """The position of the first occurrence of every distinct key, in order.

    Example:
        >>> distinct(['a', 'b', 'a', 'c'])
        [0, 1, 3]
    """
    seen: set[Hashable] = set()
    out = []
    for i, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            out.append(i)
    return out
