"""Gradient cache: same gradients as full-batch backpropagation, activation memory of one mini-batch."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import build_tiny_bert, make_texts

from finetuner.losses import get_loss
from finetuner.losses.contrastive import CLIPLoss
from finetuner.losses.step_loss import MetricObjective, PairObjective
from finetuner.models import build_model
from finetuner.training.gradcache import cached_backward


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("bert"), dropout=0.0))


def _batch(model, n):
    rows = make_texts(n // 4 + 1, seed=5)[:n]
    inputs = model.preprocess([t for t, _ in rows])
    labels = torch.tensor([hash(label) % 97 for _, label in rows])
    return inputs, labels


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _forward(m, inputs):
    return m(**inputs)


@pytest.mark.parametrize("loss_name", ["NTXentLoss", "TripletMarginLoss"])
def test_cached_gradients_equal_full_batch(model_dir, loss_name):
    model = build_model(model_dir)
    objective = MetricObjective(get_loss(loss_name))
    inputs, labels = _batch(model, 24)
    full = objective(model(**inputs), labels)
    full.backward()
    expected = _grads(model)
    model.zero_grad()
    loss = cached_backward(model, inputs, labels, objective, _forward, mini_batch_size=5)
    torch.testing.assert_close(loss, full.detach())
    got = _grads(model)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)


def test_cached_two_tower_clip_gradients(model_dir):
    text, image = build_model(model_dir), build_model(model_dir, output_dim=32)

    class Towers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.text, self.image = text, image

        def forward(self, a, b):
            return self.text(**a), self.image(**b)

    towers = Towers()
    loss_fn = CLIPLoss()
    objective = PairObjective(loss_fn)
    inputs_a, _ = _batch(text, 12)
    inputs_b, _ = _batch(text, 12)
    inputs_b = {k: v.flip(0) for k, v in inputs_b.items()}
    batch = {"a": inputs_a, "b": inputs_b}
    full = objective(towers(**batch), None)
    full.backward()
    expected, scale_grad = _grads(towers), loss_fn.logit_scale.grad.clone()
    towers.zero_grad()
    loss_fn.logit_scale.grad = None
    cached_backward(towers, batch, torch.arange(12), objective, lambda m, i: m(**i), mini_batch_size=4)
    for name, grad in expected.items():
        torch.testing.assert_close(_grads(towers)[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    torch.testing.assert_close(loss_fn.logit_scale.grad, scale_grad, atol=1e-5, rtol=1e-4)


class _SavedBytes:
    """Peak bytes of tensors autograd keeps for backward (the activation memory)."""

    def __init__(self):
        self.current = self.peak = 0

    def pack(self, t):
        size = t.numel() * t.element_size()
        self.current += size
        self.peak = max(self.peak, self.current)
        return t, size

    def unpack(self, packed):
        t, size = packed
        self.current -= size
        return t


def _peak(model, n, mini):
    # pairs as classes of two keep the loss's own graph small, so activations dominate what is measured
    objective = MetricObjective(get_loss("TripletMarginLoss"))
    inputs, _ = _batch(model, n)
    labels = torch.arange(n) // 2
    tracker = _SavedBytes()
    with torch.autograd.graph.saved_tensors_hooks(tracker.pack, tracker.unpack):
        if mini:
            cached_backward(model, inputs, labels, objective, _forward, mini_batch_size=mini)
        else:
            objective(model(**inputs), labels).backward()
    return tracker.peak


def test_activation_memory_stays_flat_as_the_batch_grows(model_dir):
    model = build_model(model_dir)
    plain_small, plain_big = _peak(model, 16, None), _peak(model, 64, None)
    cached_small, cached_big = _peak(model, 16, 8), _peak(model, 64, 8)
    assert plain_big > 3 * plain_small  # without the cache, activations grow with the batch
    # with it they stay at one mini-batch; what grows is only the loss's own (batch x batch) graph
    assert cached_big < 1.3 * cached_small
    assert cached_big < plain_big / 4


def test_fit_with_mini_batches_reaches_the_same_weights(model_dir):
    import finetuner

    def tuned(**extra):
        model = build_model(model_dir)
        finetuner.fit(model, make_texts(8), epochs=1, batch_size=16, learning_rate=0.5, optimizer="SGD", seed=0,
                      loss="NTXentLoss", verbose=False, **extra)
        return model.state_dict()

    plain, cached = tuned(), tuned(mini_batch_size=4)
    for key in plain:
        torch.testing.assert_close(cached[key], plain[key], atol=1e-5, rtol=1e-4, msg=key)


def test_gradient_checkpointing_and_compile_options_train_the_same(model_dir):
    import finetuner

    def tuned(**extra):
        model = build_model(model_dir)
        finetuner.fit(model, make_texts(4), epochs=1, batch_size=16, learning_rate=0.5, optimizer="SGD", seed=0,
                      verbose=False, **extra)
        return model.state_dict()

    plain, checkpointed = tuned(), tuned(gradient_checkpointing=True)
    for key in plain:
        torch.testing.assert_close(checkpointed[key], plain[key], atol=1e-5, rtol=1e-4, msg=key)


def _pair_batch(model):
    """12 pairs of a short query and a long document, collated in two length groups as on a GPU."""
    texts = [t for t, _ in make_texts(6, seed=7)]
    rows = []
    for i, text in enumerate(texts[:12]):
        rows += [model.pretokenize([text.split()[0]])[0], model.pretokenize([f"{text} {texts[i + 12]}"])[0]]
    return model.token_collate(2)(rows), torch.arange(24) // 2


def _piecewise_reference(model, inputs, labels, objective, mini):
    """Backpropagation through the same pieces, embedded in the same order with their graphs kept: the dropout
    masks drawn are the ones the gradient cache draws and must replay."""
    from finetuner.training.gradcache import pieces

    parts, restore = pieces(inputs, mini)
    embeddings = torch.cat([model(**part) for part in parts])[restore]  # (batch, dim)
    loss = objective(embeddings, labels)
    loss.backward()
    return loss.detach()


def test_grouped_gradients_with_dropout_equal_backpropagation_through_the_same_pieces(tmp_path):
    from finetuner.models.text.tokens import GROUPS

    model = build_model(str(build_tiny_bert(tmp_path / "bert", dropout=0.2))).train()
    inputs, labels = _batch_and_check(model)
    assert len(inputs[GROUPS]) == 2  # queries and documents apart
    objective = MetricObjective(get_loss("InfoNCELoss"))
    torch.manual_seed(11)
    expected_loss = _piecewise_reference(model, inputs, labels, objective, mini=5)
    expected = _grads(model)
    model.zero_grad()
    torch.manual_seed(11)
    loss = cached_backward(model, inputs, labels, objective, _forward, mini_batch_size=5)
    torch.testing.assert_close(loss, expected_loss)
    got = _grads(model)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)
    # the replay matters: other dropout masks give other gradients
    model.zero_grad()
    torch.manual_seed(12)
    cached_backward(model, inputs, labels, objective, _forward, mini_batch_size=5)
    assert any(not torch.allclose(_grads(model)[n], expected[n], atol=1e-4) for n in expected)


def test_without_the_rng_replay_gradients_would_differ(tmp_path, monkeypatch):
    """A negative control: with the random state not restored, the re-embedding draws new dropout masks."""
    model = build_model(str(build_tiny_bert(tmp_path / "bert", dropout=0.2))).train()
    inputs, labels = _batch_and_check(model)
    objective = MetricObjective(get_loss("InfoNCELoss"))
    torch.manual_seed(11)
    _piecewise_reference(model, inputs, labels, objective, mini=5)
    expected = _grads(model)
    model.zero_grad()
    monkeypatch.setattr("finetuner.training.gradcache._RandomState.restore", lambda self: None)
    torch.manual_seed(11)
    cached_backward(model, inputs, labels, objective, _forward, mini_batch_size=5)
    assert any(not torch.allclose(_grads(model)[n], expected[n], atol=1e-4) for n in expected)


def _batch_and_check(model):
    inputs, labels = _pair_batch(model)
    from finetuner.training.gradcache import pieces

    parts, _ = pieces(inputs, 5)
    lengths = {p["input_ids"].shape[1] for p in parts}
    assert len(lengths) == 2 and max(p["input_ids"].shape[0] for p in parts) <= 5  # cut within each group
    return inputs, labels
