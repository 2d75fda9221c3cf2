"""The bounded-memory pair index (finetuner.data.pair_index) gives element for element the output of the
straightforward np.unique-based build it replaced (kept here as the reference), on random pair hashes with shared
texts, chains, self-pairs and duplicates."""

from __future__ import annotations

import numpy as np
import pytest

from finetuner.data.pair_index import PairIndex, components, distinct_texts, first_occurrences
from finetuner.data.samplers import index_dtype


def reference(hashes: np.ndarray, pair_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The build before the bounded-memory one (finetuner 2026-12-02, streamed._pairs_as_classes), unchanged."""
    index = index_dtype(len(hashes) * 2)
    flat = hashes.reshape(-1)
    uniques, first, node = np.unique(flat, return_index=True, return_inverse=True)
    first, node = first.astype(index), node.astype(index).reshape(-1, 2)
    comp = np.arange(len(uniques), dtype=index)
    while True:
        low = np.minimum(comp[node[:, 0]], comp[node[:, 1]])
        new = comp.copy()
        np.minimum.at(new, node[:, 0], low)
        np.minimum.at(new, node[:, 1], low)
        new = new[new]
        if np.array_equal(new, comp):
            break
        comp = new
    keep = np.sort(first)
    groups = comp[np.searchsorted(uniques, flat[keep])]
    _, first_group, codes = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_group))
    return pair_rows[keep // 2], (keep % 2).astype(np.int8), order[codes].astype(index), len(first_group)


def random_pairs(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 2) uint64 hashes mixing every hard case: texts shared by many pairs, chains (in order, reversed,
    shuffled), self-pairs, repeated pairs, and 64-bit values (high bits set) as well as small ones."""
    pool = rng.integers(0, 2**64, size=max(2, n), dtype=np.uint64)  # distinct-ish 64-bit "hashes"
    pool[: max(1, n // 10)] = np.arange(max(1, n // 10), dtype=np.uint64)  # and some small values
    kind = rng.integers(0, 5, size=n)  # which case each pair is
    texts = rng.integers(0, max(2, n // rng.integers(1, 6)), size=(n, 2))  # shared texts: a small vocabulary
    chain = np.arange(n)
    texts[kind == 1, 1] = texts[kind == 1, 0]  # self-pairs
    links = np.flatnonzero(kind == 2)  # chains: t_i - t_(i+1), in a random direction and order
    start = rng.integers(0, n)
    texts[links, 0] = (start + chain[: len(links)]) % len(pool)
    texts[links, 1] = (start + chain[: len(links)] + 1) % len(pool)
    if rng.random() < 0.5:
        texts[links] = texts[links[::-1]]
    flip = rng.random(n) < 0.5
    texts[flip] = texts[flip][:, ::-1]
    dups = np.flatnonzero(kind == 3)  # repeats of earlier (or later) pairs
    texts[dups] = texts[rng.integers(0, n, size=len(dups))]
    fresh = kind == 4  # texts seen nowhere else
    texts[fresh] = rng.integers(n // 2, len(pool), size=(int(fresh.sum()), 2))
    return pool[texts % len(pool)]


@pytest.mark.parametrize("seed", range(40))
def test_the_bounded_memory_build_equals_the_reference_element_for_element(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.choice([2, 3, 5, 17, 100, 999, 5000])) if seed < 35 else int(rng.integers(2, 5001))
    hashes = random_pairs(rng, n)
    total_rows = n + int(rng.integers(0, 50))  # some rows of the file were bad and left out
    pair_rows = np.sort(rng.choice(total_rows, size=n, replace=False)).astype(index_dtype(total_rows))
    want = reference(hashes, pair_rows)
    bucket = int(rng.choice([1, 7, 64, 2**18]))  # from 256 buckets of a few positions to one bucket
    index = PairIndex(int(rng.integers(1, n + 1)), rows=total_rows, bucket_size=bucket)  # it grows past capacity
    for part in np.array_split(np.arange(n), int(rng.integers(1, 5))):
        index.add(hashes[part], pair_rows[part])
    got = index.classes()
    assert got[3] == want[3]
    for a, b in zip(got[:3], want[:3]):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_the_hard_cases_are_present_in_the_random_pairs():
    """The generator above does make what the equality test claims to cover."""
    hashes = random_pairs(np.random.default_rng(0), 5000)
    rows, _, labels, num_classes = reference(hashes, np.arange(5000))
    assert (hashes[:, 0] == hashes[:, 1]).sum() > 500  # self-pairs
    assert len(np.unique(hashes, axis=0)) < 4500  # repeated pairs
    assert len(rows) < 2 * 5000 - 1000 and num_classes < len(rows) // 2  # shared texts, groups of several
    assert np.bincount(labels).max() > 100  # a long chain
    assert (hashes >= 2**63).any() and (hashes < 1000).any()


def test_a_long_chain_in_any_order_is_one_group():
    """100 000 links: propagation without hooking needs thousands of rounds over the chain in a random order (the
    np.unique build above took 3 s for 20 000 links); with it, under twenty."""
    rng = np.random.default_rng(1)
    n = 100_000
    chain = np.stack([np.arange(n), np.arange(1, n + 1)], 1).astype(np.uint64) * np.uint64(2654435761)  # t_i - t_i+1
    for pairs in (chain, chain[::-1], chain[rng.permutation(n)], chain[:, ::-1]):
        index = PairIndex(len(pairs), bucket_size=4096)
        index.add(np.ascontiguousarray(pairs), np.arange(len(pairs)))
        _, _, labels, num_classes = index.classes()
        assert num_classes == 1 and len(labels) == n + 1 and not labels.any()


def test_the_steps_on_a_small_example():
    values = np.array([9, 4, 4, 7, 9, 9, 2, 5], dtype=np.uint64)  # pairs (9,4) (4,7) (9,9) (2,5)
    first = first_occurrences(values, bucket_size=1)
    assert first.tolist() == [0, 1, 1, 3, 0, 0, 6, 7]
    ids, keep = distinct_texts(first)
    assert ids.tolist() == [0, 1, 1, 2, 0, 0, 3, 4] and keep.tolist() == [0, 1, 3, 6, 7]
    labels, count = components(ids.reshape(-1, 2), len(keep))
    assert labels.tolist() == [0, 0, 0, 1, 1] and count == 2


def test_classes_consumes_the_hashes():
    index = PairIndex(2)
    index.add(np.array([[1, 2], [3, 4]], dtype=np.uint64), np.arange(2))
    index.classes()
    with pytest.raises(RuntimeError):
        index.classes()
