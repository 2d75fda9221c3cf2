"""The gradient cache with dropout on: its second pass must replay each mini-batch's random state, so the dropout
masks that made the cached embeddings are the ones the gradients flow through (test_gradcache.py runs dropout 0)."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from tests.conftest import build_tiny_bert, make_texts

from finetuner.losses import get_loss
from finetuner.losses.step_loss import MetricObjective
from finetuner.models import build_model
from finetuner.training import gradcache
from finetuner.training.gradcache import cached_backward, slice_inputs

MINI = 5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("bert-dropout"), dropout=0.3))


def _setup(model_dir):
    model = build_model(model_dir)
    model.train()  # dropout on
    rows = make_texts(6, seed=5)[:24]
    inputs = model.preprocess([t for t, _ in rows])
    labels = torch.tensor([hash(label) % 97 for _, label in rows])
    return model, inputs, labels, MetricObjective(get_loss("NTXentLoss"))


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _reference(model, inputs, labels, objective):
    """The same mini-batch forwards, in the same random order, kept in one graph: what the cache must equal."""
    n = labels.shape[0]
    bounds = [*range(0, n, MINI), n]
    torch.manual_seed(7)
    embeddings = torch.cat([model(**slice_inputs(inputs, a, b)) for a, b in pairwise(bounds)])
    loss = objective(embeddings, labels)
    loss.backward()
    return loss.detach(), _grads(model)


def _cached(model, inputs, labels, objective):
    model.zero_grad()
    torch.manual_seed(7)
    loss = cached_backward(model, inputs, labels, objective, lambda m, i: m(**i), mini_batch_size=MINI)
    return loss, _grads(model)


def test_cached_gradients_with_dropout_equal_the_same_masks_in_one_graph(model_dir):
    model, inputs, labels, objective = _setup(model_dir)
    expected_loss, expected = _reference(model, inputs, labels, objective)
    loss, got = _cached(model, inputs, labels, objective)
    torch.testing.assert_close(loss, expected_loss)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)


def test_without_the_replay_the_gradients_would_differ(model_dir, monkeypatch):
    """The test above can fail: with the random state not restored, dropout draws new masks in the second pass."""
    model, inputs, labels, objective = _setup(model_dir)
    _, expected = _reference(model, inputs, labels, objective)
    monkeypatch.setattr(gradcache._RandomState, "restore", lambda self: None)
    _, got = _cached(model, inputs, labels, objective)
    worst = max(float((got[n] - expected[n]).abs().max()) for n in expected)
    assert worst > 1e-3, f"dropout made no difference ({worst}): the test above would prove nothing"
