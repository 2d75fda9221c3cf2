"""Regression tests for bugs seen in peer libraries (design notes §6), where they apply to this code.

- single-class batches give zero metric-learning gradients (sentence-transformers #3668): the class sampler
  never yields one, whatever the class sizes, batch size and ``num_items_per_class``;
- a sampler whose ``__len__`` differs from what it yields, or differs per rank, hangs DDP
  (sentence-transformers #3348): the samplers have a fixed length that every epoch yields exactly, and
  accelerate's sharding gives every rank the same number of batches;
- evaluation building a full N x N similarity matrix (open_clip #11, pytorch-metric-learning #353): the
  evaluation pipeline's largest allocation stays bounded by the search blocks, not by N^2.

Cross-device label offsets (sentence-transformers #3453) and cached-gradient losses (#3862) need code that
gathers embeddings across processes or caches gradients; this branch has neither (the loop computes each
process's loss on its own batch, and no loss caches gradients), so there is nothing of theirs to test here.
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.evaluation.test_eval_search import LargestAllocation

from finetuner.data.samplers import ClassSampler, RandomBatchSampler
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


@settings(max_examples=60, deadline=None, database=None)
@given(class_sizes, st.integers(2, 24), st.integers(1, 6), st.integers(2, 4))
def test_every_rank_gets_the_same_number_of_batches_in_every_epoch(sizes, batch_size, k, processes):
    labels, sampler = _sampler(sizes, batch_size, k, seed=1)
    shards = [
        BatchSamplerShard(sampler, processes, rank, split_batches=False, even_batches=True) for rank in range(processes)
    ]
    lengths = {len(s) for s in shards}
    assert len(lengths) == 1, f"ranks disagree on len: {lengths}"
    for epoch in range(3):
        sampler.set_epoch(epoch)
        genuine = [list(b) for b in sampler]
        per_rank = [list(shard) for shard in shards]
        counts = [len(batches) for batches in per_rank]
        assert counts == [len(shards[0])] * processes, f"epoch {epoch}: batches per rank {counts}"
        for batches in per_rank:  # whole sampler batches, never re-cut (which could make single-class ones)
            assert all(b in genuine and len(set(labels[b].tolist())) >= 2 for b in batches)


@pytest.mark.parametrize("num_items, batch_size", [(103, 10), (7, 3), (4, 8), (64, 8)])
def test_random_batch_sampler_has_a_fixed_length_and_equal_shards(num_items, batch_size):
    sampler = RandomBatchSampler(num_items, batch_size, seed=0)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        assert len(list(sampler)) == len(sampler)
    for processes in (2, 3):
        shards = [BatchSamplerShard(sampler, processes, r, even_batches=True) for r in range(processes)]
        assert len({len(list(s)) for s in shards}) == 1


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


def test_accelerate_prepared_loaders_give_every_rank_the_same_batches_count():
    from accelerate.data_loader import prepare_data_loader

    from finetuner.data.datasets import labelled_loader

    labels = [0] * 3 + [1] * 5 + [2] * 2 + [3] * 7  # small classes: batches shorter than batch_size

    def preprocess(items):
        return {"x": torch.tensor([len(x) for x in items])}

    def per_rank(sampler):
        loader = labelled_loader([str(i) for i in range(len(labels))], labels, preprocess, sampler)
        counts = []
        for rank in range(2):
            prepared = prepare_data_loader(
                loader, device=torch.device("cpu"), num_processes=2, process_index=rank, put_on_device=False
            )
            batches = [batch_labels.tolist() for _, batch_labels in prepared]
            assert all(len(set(b)) >= 2 for b in batches)
            counts.append((len(prepared), len(batches)))
        return counts

    _, sampler = _sampler([3, 5, 2, 7], 10, 4, seed=0)
    assert per_rank(sampler) == [(2, 2), (2, 2)]

    class FixedSizeClaim(ClassSampler):  # what the sampler did before: claim every batch has batch_size items
        @property
        def batch_size(self):
            return self.max_batch_size

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        claiming = FixedSizeClaim(np.array(labels), 10, 4, seed=0)
    with pytest.raises(AssertionError):  # accelerate re-cuts the short batches: wrong counts or mixed batches
        counts = per_rank(claiming)
        assert counts == [(2, 2), (2, 2)]
