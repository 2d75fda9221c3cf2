import warnings

import numpy as np
import pytest

from finetuner.data.samplers import ClassSampler, RandomBatchSampler
from finetuner.errors import DataError


def _labels(sizes):
    return [c for c, n in enumerate(sizes) for _ in range(n)]


@pytest.mark.parametrize("sizes", [[8] * 5, [3, 17, 4, 9, 30, 2], [2, 2]])
@pytest.mark.parametrize("batch_size,k", [(8, 4), (16, 4), (6, 2)])
def test_class_sampler_invariants(sizes, batch_size, k):
    labels = np.array(_labels(sizes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = ClassSampler(labels, batch_size, k, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        for b in batches:
            classes, counts = np.unique(labels[b], return_counts=True)
            assert len(classes) >= 2, "a single-class batch has no negatives"
            assert len(b) <= batch_size
            assert len(set(b)) == len(b), "no item twice in a batch"
            # every class contributes a full group unless the class itself is smaller
            for c, n in zip(classes, counts):
                assert n == min(sampler.num_items_per_class, sizes[c])


def test_class_sampler_covers_items_and_is_seeded():
    labels = np.array(_labels([10] * 8))
    a = ClassSampler(labels, 16, 4, seed=1)
    b = ClassSampler(labels, 16, 4, seed=1)
    first = list(a)
    assert first == list(b)
    a.set_epoch(1)
    assert list(a) != first
    seen = {i for batch in first for i in batch}
    assert len(seen) >= 0.9 * len(labels)


def test_class_sampler_adjusts_and_refuses():
    with pytest.warns(UserWarning, match="num_items_per_class=2"):
        s = ClassSampler(_labels([5, 5, 5]), batch_size=4, num_items_per_class=4)
    assert s.num_items_per_class == 2
    with pytest.raises(DataError, match="at least 2 classes"):
        ClassSampler(_labels([10]), batch_size=4, num_items_per_class=2)


def test_random_batch_sampler_equal_batches():
    s = RandomBatchSampler(103, 10, seed=0)
    batches = list(s)
    assert len(batches) == len(s) == 10
    assert all(len(b) == 10 for b in batches)
    assert len({i for b in batches for i in b}) == 100
