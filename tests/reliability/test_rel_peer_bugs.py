"""Regression tests for bugs seen in peer libraries (design notes §6), where they apply to this code.

- single-class batches give zero metric-learning gradients (sentence-transformers #3668): the class sampler
  never yields one, whatever the class sizes, batch size and ``num_items_per_class``;
- a sampler whose ``__len__`` differs from what it yields, or differs per rank, hangs DDP
  (sentence-transformers #3348): our samplers (``finetuner.data.samplers``, which the training loop shards itself,
  without accelerate) have a fixed length that every epoch yields exactly, on every rank, and the ranks' shares of
  each batch are the global batch;
- evaluation building a full N x N similarity matrix (open_clip #11, pytorch-metric-learning #353): the
  evaluation pipeline's largest allocation stays bounded by the search blocks, not by N^2.

Cross-device label offsets (sentence-transformers #3453) are tested where the losses gather across processes
(tests/losses/test_distributed_losses.py, two gloo processes); cached-gradient losses that are silently wrong (#3862)
where the gradient cache is (tests/training/test_gradcache.py against full-batch gradients, and
tests/training/test_gradcache_dropout.py with dropout on, so the random-state replay is checked too).
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.evaluation.test_eval_search import LargestAllocation

from finetuner.data.samplers import ClassSampler, RandomBatchSampler
from finetuner.errors import ConfigError
from finetuner.evaluation.model_eval import RetrievalSets, evaluate_sets

class_sizes = st.lists(st.integers(1, 12), min_size=2, max_size=12)


def _sampler(sizes, batch_size, k, seed):
    labels = np.array([c for c, n in enumerate(sizes) for _ in range(n)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return labels, ClassSampler(labels, batch_size, k, seed=seed)


@settings(max_examples=200, deadline=None, database=None)
@given(class_sizes, st.integers(2, 40), st.integers(1, 8), st.integers(0, 2**31))
def test_class_sampler_never_yields_a_single_class_batch(sizes, batch_size, k, seed):
    labels, sampler = _sampler(sizes, batch_size, k, seed)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler), "an epoch yields exactly len(sampler) batches"
        for batch in batches:
            assert len(set(labels[batch].tolist())) >= 2, f"single-class batch {batch} in epoch {epoch}"
            assert len(batch) == len(set(batch)) <= batch_size
            assert all(0 <= i < len(labels) for i in batch)


def test_single_class_batches_would_give_zero_gradients():
    # why the property matters: with one class only, a triplet loss has no negatives and no gradient
    from pytorch_metric_learning.losses import TripletMarginLoss

    embeddings = torch.randn(4, 8, requires_grad=True)
    TripletMarginLoss()(embeddings, torch.zeros(4, dtype=torch.long)).backward()
    assert embeddings.grad is None or float(embeddings.grad.abs().sum()) == 0.0


def _shards(sizes, batch_size, k, processes, seed=1):
    """The class sampler of every rank (each yields its share of every global batch), and the one-process sampler."""
    labels = np.array([c for c, n in enumerate(sizes) for _ in range(n)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranks = [ClassSampler(labels, batch_size, k, seed=seed, rank=r, world_size=processes) for r in range(processes)]
        whole = ClassSampler(labels, batch_size, k, seed=seed)
    return labels, ranks, whole


@settings(max_examples=60, deadline=None, database=None)
@given(class_sizes, st.integers(8, 24), st.integers(1, 6), st.integers(2, 4))
def test_every_rank_gets_the_same_number_of_batches_in_every_epoch(sizes, batch_size, k, processes):
    k_used = min(k, max(1, batch_size // 2))
    smallest = sum(sorted(min(n, k_used) for n in sizes)[: min(batch_size // k_used, len(sizes))])
    if smallest < processes:  # some batch could leave a rank with nothing: refused up front, not a hang
        with pytest.raises(ConfigError, match="each need a share of every batch"):
            _shards(sizes, batch_size, k, processes)
        return
    labels, ranks, whole = _shards(sizes, batch_size, k, processes)
    assert len({len(s) for s in ranks} | {len(whole)}) == 1, "ranks disagree on len"
    for epoch in range(3):
        for sampler in (*ranks, whole):
            sampler.set_epoch(epoch)
        genuine = [list(b) for b in whole]
        per_rank = [[list(b) for b in s] for s in ranks]
        counts = [len(batches) for batches in per_rank]
        assert counts == [len(whole)] * processes, f"epoch {epoch}: batches per rank {counts}"
        for i, batch in enumerate(genuine):  # the shares of batch i, side by side, are the global batch i
            shares = [batches[i] for batches in per_rank]
            joined = [j for share in shares for j in share]
            assert joined == batch and all(shares), f"epoch {epoch}, batch {i}: {shares} vs {batch}"
            assert len(set(labels[batch].tolist())) >= 2  # the loss gathers the global batch: two classes at least


@pytest.mark.parametrize("num_items, batch_size", [(103, 10), (7, 4), (4, 8), (64, 8)])
def test_random_batch_sampler_has_a_fixed_length_and_equal_shards(num_items, batch_size):
    sampler = RandomBatchSampler(num_items, batch_size, seed=0)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        assert len(list(sampler)) == len(sampler)
    shards = [RandomBatchSampler(num_items, batch_size, seed=0, rank=r, world_size=2) for r in range(2)]
    for epoch in range(3):
        for s in (*shards, sampler):
            s.set_epoch(epoch)
        per_rank = [[list(b) for b in s] for s in shards]
        assert {len(b) for b in per_rank} == {len(sampler)}
        assert [a + b for a, b in zip(*per_rank)] == [list(b) for b in sampler]


def test_evaluation_never_builds_an_n_by_n_matrix():
    n, dim = 12_000, 8
    rng = np.random.default_rng(0)
    vectors = torch.from_numpy(rng.normal(size=(n, dim)).astype(np.float32))
    labels = rng.integers(0, 50, size=n).tolist()
    sets = RetrievalSets(list(range(n)), labels, [str(i) for i in range(n)], "text")

    def embed(items, modality):
        return vectors[: len(items)]

    with LargestAllocation() as probe:  # every torch allocation
        metrics, _ = evaluate_sets(sets, embed, limit=20, num_examples=2)
    tracemalloc.start()  # every numpy (and Python) allocation, measured apart from the torch probe
    try:
        evaluate_sets(sets, embed, limit=20, num_examples=2)
        _, numpy_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 0.0 <= metrics["precision_at_k"] <= 1.0
    full = n * n
    assert probe.max_numel <= 1024 * 8192, f"largest torch tensor has {probe.max_numel} elements"
    assert probe.max_numel < full / 10
    assert numpy_peak < full * 4 / 10, f"numpy peaked at {numpy_peak / 2**20:.0f} MiB"
    # the probes do see a full matrix when one is built
    tracemalloc.start()
    try:
        square = np.ones((n // 4, n // 4), dtype=np.float32)
        _, control = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert control >= square.nbytes


def test_the_training_loaders_of_every_rank_yield_the_same_batch_count():
    from finetuner.data.datasets import labelled_loader

    labels = [0] * 3 + [1] * 5 + [2] * 2 + [3] * 7  # small classes: batches shorter than batch_size

    def preprocess(items):
        return {"x": torch.tensor([int(x) for x in items])}

    _, ranks, whole = _shards([3, 5, 2, 7], 10, 4, processes=2, seed=0)
    loaders = [labelled_loader([str(i) for i in range(len(labels))], labels, preprocess, s) for s in ranks]
    per_rank = [[batch_labels.tolist() for _, batch_labels in loader] for loader in loaders]
    assert [len(loader) for loader in loaders] == [len(batches) for batches in per_rank] == [len(whole)] * 2
    whole.set_epoch(0)
    for i, batch in enumerate(whole):  # what the loss sees once gathered: the global batch, with two classes or more
        gathered = per_rank[0][i] + per_rank[1][i]
        assert gathered == [labels[j] for j in batch] and len(set(gathered)) >= 2
