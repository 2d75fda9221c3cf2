"""Gradient cache with triplet rows and scored pairs: the same loss and gradients as full-batch backpropagation,
the negatives cut into mini-batches with the rest of the flat batch."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import build_tiny_bert, make_texts

from finetuner.losses import get_loss
from finetuner.losses.contrastive import InfoNCELoss
from finetuner.losses.rows import CoSENTLoss
from finetuner.losses.step_loss import ScoredObjective, TripletObjective
from finetuner.models import build_model
from finetuner.training.gradcache import cached_backward


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("bert"), dropout=0.0))


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _check(model, objective, texts, labels, mini_batch_size):
    inputs = model.preprocess(texts)
    full = objective(model(**inputs), labels)
    full.backward()
    expected = _grads(model)
    model.zero_grad()
    loss = cached_backward(model, inputs, labels, objective, lambda m, i: m(**i), mini_batch_size=mini_batch_size)
    torch.testing.assert_close(loss, full.detach())
    got = _grads(model)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("loss", [InfoNCELoss(), get_loss("TripletMarginLoss", {"margin": 0.5})])
def test_cached_triplet_rows_equal_full_batch(model_dir, loss):
    model = build_model(model_dir)
    texts = [t for t, _ in make_texts(5, seed=3)][:20]  # 5 rows x (query, positive, 2 negatives), column by column
    groups = torch.arange(5)
    negative_groups = torch.tensor([[-1, 2], [-1, -1], [0, -1], [-1, -1], [3, -1]])  # some negatives are positives
    labels = torch.cat([groups, groups, negative_groups[:, 0], negative_groups[:, 1]])
    _check(model, TripletObjective(loss, 2), texts, labels, mini_batch_size=3)


def test_cached_scored_pairs_equal_full_batch(model_dir):
    model = build_model(model_dir)
    texts = [t for t, _ in make_texts(4, seed=4)][:12]  # 6 pairs: lefts, then rights
    scores = torch.tensor([0.0, 0.9, 0.3, 0.5, 1.0, 0.1])
    _check(model, ScoredObjective(CoSENTLoss()), texts, scores, mini_batch_size=5)
