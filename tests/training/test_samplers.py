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


def _plain_class_batches(labels, batch_size, k, seed, epoch):
    """The class sampler's algorithm written plainly, the reference for the tree-based one: a list of groups per
    class, and every draw a cumulative sum over all classes (``searchsorted``). The same random stream must give
    the same batches."""
    labels = np.asarray(labels)
    classes = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    rng = np.random.default_rng([seed, epoch])
    rank = rng.permutation(len(labels))  # a random rank for every item, the items grouped by class (as _order)
    per_batch = min(batch_size // k, len(classes))
    pools, remaining = [[] for _ in classes], np.zeros(len(classes), dtype=np.int64)

    def deal(c, order):  # groups of k, a short last one topped up with the class's first items
        groups = [order[i : i + k] for i in range(0, len(order), k)]
        if len(groups) > 1 and len(groups[-1]) < k:
            groups[-1] = np.concatenate([groups[-1], order[: k - len(groups[-1])]])
        pools[c], remaining[c] = groups, len(groups)

    start = 0
    for c, members in enumerate(classes):
        deal(c, members[np.argsort(rank[start : start + len(members)])])
        start += len(members)
    n_batches = max(1, -(-sum(-(-len(c) // k) for c in classes) // per_batch))
    out = []
    for _ in range(n_batches):
        weights = remaining * 1000 + 1  # groups left + 0.001, as integers
        chosen = []
        while len(chosen) < per_batch:
            targets = rng.integers(0, weights.sum(), per_batch - len(chosen))
            drawn = np.searchsorted(np.cumsum(weights), targets, side="right")
            new = [int(c) for i, c in enumerate(drawn) if c not in drawn[:i]]
            chosen += new
            weights[new] = 0
        batch = []
        for c in chosen:
            if not pools[c]:
                deal(c, rng.permutation(classes[c]))
            batch.extend(int(i) for i in pools[c].pop())
            remaining[c] = len(pools[c])
        out.append(batch)
    return out


def test_the_class_sampler_draws_the_batches_of_the_plain_algorithm():
    import random

    rng = random.Random(0)
    for trial in range(30):
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
            assert list(sampler) == _plain_class_batches(labels, batch_size, k, trial, epoch), (trial, epoch)


def test_the_first_class_drawn_is_proportional_to_its_groups():
    from scipy.stats import chisquare

    sizes = [1, 4, 8, 20, 40, 3]  # k=4: 1, 1, 2, 5, 10, 1 groups
    labels = np.array(_labels(sizes))
    with pytest.warns(UserWarning, match="fewer than num_items_per_class"):
        sampler = ClassSampler(labels, 8, 4, seed=5)
    firsts = []
    for epoch in range(4000):
        sampler.set_epoch(epoch)
        firsts.append(labels[next(iter(sampler))[0]])
    observed = np.bincount(firsts, minlength=len(sizes))
    weights = np.ceil(np.array(sizes) / 4) + 1e-3
    assert chisquare(observed, weights / weights.sum() * len(firsts)).pvalue > 1e-3
    # the check has the power to see a wrong distribution: uniform draws (or by items) are rejected outright
    assert chisquare(observed, np.full(len(sizes), len(firsts) / len(sizes))).pvalue < 1e-9
    assert chisquare(observed, np.array(sizes) / sum(sizes) * len(firsts)).pvalue < 1e-9


def test_the_work_per_batch_grows_with_the_log_of_the_classes():
    """The draws visit O(classes_per_batch * log(classes)) tree entries per batch (64 children per node: 2 levels
    for 2**8 classes, 3 for 2**16): 256 times more classes cost 1.5 times the visits, where a cumulative sum over
    the classes per batch would cost 256 times more."""
    from itertools import islice

    from finetuner.data.weight_tree import FANOUT

    per_batch = {}
    for classes in (2**8, 2**16):
        sampler = ClassSampler(np.repeat(np.arange(classes), 30), batch_size=32, num_items_per_class=2, seed=0)
        batches = list(islice(iter(sampler), 200))
        assert len(batches) == 200 and all(len(b) == 32 for b in batches)
        per_batch[classes] = sampler._tree.visits / len(batches)
    assert per_batch[2**16] < 1.7 * per_batch[2**8]
    # 16 classes per batch, each searched through 3 levels of 64 entries (more when draws collide) and 3 updates
    assert per_batch[2**16] < 2 * 16 * 3 * (FANOUT + 1)


def test_the_shuffle_within_classes_is_a_permutation_of_each_class_in_chunks(monkeypatch):
    """Across chunk boundaries (a small chunk forces many), every class keeps exactly its items."""
    from finetuner.data import samplers

    monkeypatch.setattr(samplers, "_CHUNK", 7)
    labels = np.random.default_rng(0).integers(0, 12, size=150)
    sampler = ClassSampler(labels, 8, 2, seed=0)
    shuffled = sampler._shuffle_within_classes(np.random.default_rng(1))
    bounds = sampler._bounds
    for c in range(sampler.num_classes):
        part = shuffled[bounds[c] : bounds[c + 1]]
        assert sorted(part.tolist()) == np.flatnonzero(labels == c).tolist()
    assert not np.array_equal(shuffled, sampler._order)
