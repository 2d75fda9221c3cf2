"""InfoNCELoss: pytorch-metric-learning's NTXentLoss on classes of two, from one similarity matrix; the default
loss for same-modality pairs; refused up front where it does not apply."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning.losses import NTXentLoss
from tests.conftest import make_texts

import finetuner
from finetuner.errors import ConfigError
from finetuner.losses import get_loss
from finetuner.losses.contrastive import InfoNCELoss


@pytest.mark.parametrize("pairs", [2, 7, 64])
@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_equals_ntxent_on_classes_of_two_in_value_and_gradient(pairs, temperature):
    torch.manual_seed(pairs)
    emb = torch.randn(2 * pairs, 16, requires_grad=True)
    labels = torch.randperm(10 * pairs)[:pairs].repeat_interleave(2)[torch.randperm(2 * pairs)]  # any order, any ids
    ours = InfoNCELoss(temperature)(emb, labels)
    reference = NTXentLoss(temperature)(emb, labels)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    g_ours, = torch.autograd.grad(ours, emb)
    g_ref, = torch.autograd.grad(reference, emb)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-7)


def test_hand_computed_two_pairs():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # pairs (0, 2) and (1, 3)
    labels = torch.tensor([5, 9, 5, 9])
    t = 0.5
    # row 0: partner 2 (cos 1), others 1 and 3 (cos 0): -log(e^2 / (e^2 + 2))
    expected = -torch.log(torch.exp(torch.tensor(2.0)) / (torch.exp(torch.tensor(2.0)) + 2))
    assert float(InfoNCELoss(t)(emb, labels)) == pytest.approx(float(expected), rel=1e-6)


def test_by_name_and_options():
    loss = get_loss("InfoNCELoss", {"temperature": 0.1})
    assert isinstance(loss, InfoNCELoss) and loss.temperature == 0.1
    with pytest.raises(ValueError, match="temperature must be positive"):
        InfoNCELoss(0)


def test_pairs_default_to_infonce_and_train(tiny_bert):
    texts = make_texts(6, seed=4)
    pairs = [(a, b) for (a, la), (b, lb) in zip(texts[0::2], texts[1::2]) if la == lb]
    run = finetuner.fit(tiny_bert, pairs, pairs, epochs=3, batch_size=8, learning_rate=1e-3, seed=0, device="cpu",
                        verbose=False, csv_options=finetuner.CSVOptions(is_labeled=False))
    assert run.config["loss"] == "InfoNCELoss"  # loss='auto' resolved by the data, recorded as such
    history = finetuner.runs.read_yaml(run.directory / "metadata.yml")["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    labelled = finetuner.fit(tiny_bert, make_texts(3), epochs=1, device="cpu", verbose=False)
    assert labelled.config["loss"] == "TripletMarginLoss"


def test_refused_before_training_where_it_does_not_apply(monkeypatch):
    monkeypatch.setattr("finetuner.training.build.build_model", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(ConfigError, match=r"InfoNCELoss takes pairs of one modality.*labelled text items"):
        finetuner.fit("bert-base-en", make_texts(3), loss="InfoNCELoss")
    pairs = [("a b", "c d"), ("e f", "g h"), ("i j", "k l")]
    with pytest.raises(ConfigError, match="sampler='random' can split them"):
        finetuner.fit("bert-base-en", pairs, loss="InfoNCELoss", sampler="random",
                      csv_options=finetuner.CSVOptions(is_labeled=False))
    with pytest.raises(ConfigError, match="loss InfoNCELoss has no option 'margin'; its options are: temperature"):
        finetuner.fit("bert-base-en", pairs, loss_options={"margin": 0.1}, csv_options=finetuner.CSVOptions(
            is_labeled=False))
