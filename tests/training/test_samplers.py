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


def test_length_bucket_pair_sampler_keeps_pairs_and_cuts_padding():
    from finetuner.data.length_sampler import LengthBucketPairSampler

    rng = np.random.default_rng(0)
    pair_len = rng.integers(2, 60, size=200)
    lengths = np.repeat(pair_len, 2)  # both members of a pair as long as each other
    sampler = LengthBucketPairSampler(lengths.tolist(), batch_size=16, seed=1, bucket_batches=5)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 25
        for b in batches:
            assert len(b) == 16 and all(b[i] + 1 == b[i + 1] and b[i] % 2 == 0 for i in range(0, 16, 2))
        padded = sum(len(b) * lengths[b].max() for b in batches)
        shuffled = np.random.default_rng(epoch).permutation(200)
        random_padded = sum(16 * lengths[2 * shuffled[i : i + 8]].max() for i in range(0, 200, 8))
        assert padded < 0.8 * random_padded  # sorted inside blocks of 5 batches: fewer padded tokens
    shares = [list(LengthBucketPairSampler(lengths.tolist(), 16, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1])
    assert [a + b for a, b in zip(*shares)] == list(LengthBucketPairSampler(lengths.tolist(), 16, seed=1))


def _list_based_class_batches(labels, batch_size, k, seed, epoch):
    """The class sampler's algorithm as first written (a list of groups per class), the reference for the compact
    one: the same seeded draws must give the same batches."""
    import numpy as np

    labels = np.asarray(labels)
    classes = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    rng = np.random.default_rng([seed, epoch])
    per_batch = min(batch_size // k, len(classes))
    pools, remaining = [[] for _ in classes], np.zeros(len(classes))

    def refill(c):
        order = rng.permutation(classes[c])
        groups = [order[i : i + k] for i in range(0, len(order), k)]
        if len(groups) > 1 and len(groups[-1]) < k:
            extra = rng.choice(order[: len(order) - len(groups[-1])], k - len(groups[-1]), replace=False)
            groups[-1] = np.concatenate([groups[-1], extra])
        pools[c], remaining[c] = groups, len(groups)

    for c in range(len(classes)):
        refill(c)
    n_batches = max(1, -(-sum(-(-len(c) // k) for c in classes) // per_batch))
    out = []
    for _ in range(n_batches):
        weights = remaining + 1e-3
        batch = []
        for c in rng.choice(len(classes), per_batch, replace=False, p=weights / weights.sum()):
            if not pools[c]:
                refill(c)
            batch.extend(int(i) for i in pools[c].pop())
            remaining[c] = len(pools[c])
        out.append(batch)
    return out


def test_the_compact_class_sampler_draws_the_batches_of_the_list_based_one():
    import random
    import warnings

    from finetuner.data.samplers import ClassSampler

    rng = random.Random(0)
    for trial in range(12):
        n_classes = rng.randint(2, 30)
        labels = [rng.randrange(n_classes) for _ in range(rng.randint(10, 200))]
        if len(set(labels)) < 2:
            continue
        k, batch_size = rng.randint(1, 5), rng.randint(4, 40)
        k = k if batch_size >= 2 * k else max(1, batch_size // 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampler = ClassSampler(labels, batch_size, k, seed=trial)
        for epoch in (0, 3):
            sampler.set_epoch(epoch)
            assert list(sampler) == _list_based_class_batches(labels, batch_size, k, trial, epoch), (trial, epoch)
