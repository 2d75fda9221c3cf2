import numpy as np
import pytest

from finetuner.data.weight_tree import WeightTree


@pytest.mark.parametrize("n", [1, 2, 3, 63, 64, 65, 1000, 4097, 100_000])
def test_find_equals_cumsum_searchsorted_after_changes(n):
    rng = np.random.default_rng(n)
    weights = rng.integers(0, 50, size=n) * (rng.random(n) < 0.7)  # (n,) some zeros
    weights[rng.integers(n)] += 1  # at least one positive weight
    tree = WeightTree(weights)
    for _ in range(20):
        assert tree.total == weights.sum()
        targets = rng.integers(0, weights.sum(), size=64)
        found = tree.find(targets)
        np.testing.assert_array_equal(found, np.searchsorted(np.cumsum(weights), targets, side="right"))
        assert (weights[found] > 0).all()
        positive = np.flatnonzero(weights > 0)[:500]
        edges = np.cumsum(weights)[positive] - 1  # the last target of a positive weight: found there, not after
        np.testing.assert_array_equal(tree.find(edges), positive)
        idx = rng.choice(n, size=min(n, 5), replace=False)
        deltas = rng.integers(-weights[idx], 30)  # keep every weight non-negative
        tree.add(idx, deltas)
        weights[idx] += deltas
        if weights.sum() == 0:
            tree.add([0], [1])
            weights[0] += 1


def test_repeated_indices_add_up_and_bad_targets_are_refused():
    tree = WeightTree([1, 2, 3])
    tree.add([1, 1, 2], [5, 5, -3])
    assert tree.total == 13
    np.testing.assert_array_equal(tree.find([0, 1, 12]), [0, 1, 1])
    with pytest.raises(ValueError, match=r"\[0, 13\)"):
        tree.find([13])
    with pytest.raises(ValueError, match="non-negative"):
        WeightTree([1, -1])


def test_scaled_int32_counts_build_the_tree_of_the_scaled_int64_weights():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 9, size=5000).astype(np.int32)  # (n,)
    scaled, direct = WeightTree(counts, scale=1000, offset=1), WeightTree(counts.astype(np.int64) * 1000 + 1)
    assert scaled.total == direct.total == int(counts.sum()) * 1000 + 5000
    for a, b in zip(scaled._levels, direct._levels):
        assert a.dtype == np.int64
        np.testing.assert_array_equal(a, b)
    targets = rng.integers(0, direct.total, size=200)
    np.testing.assert_array_equal(scaled.find(targets), direct.find(targets))
    with pytest.raises(ValueError, match="non-negative"):
        WeightTree(counts, offset=-1)
