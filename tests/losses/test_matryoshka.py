"""Matryoshka embeddings (issue 15): the wrapped loss is the sum over prefixes, every prefix improves on separable
data, evaluation reports each size, encode(dim=N) and a saved truncate_dim give the prefixes, bad dims are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import make_texts

import finetuner
from finetuner.errors import ConfigError
from finetuner.export.truncate import set_truncate_dim
from finetuner.losses import get_loss
from finetuner.losses.contrastive import CLIPLoss
from finetuner.losses.matryoshka import MatryoshkaLoss, matryoshka_dims
from finetuner.models import build_model

TEXTS = [t for t, _ in make_texts(2, seed=9)]


def test_loss_is_the_weighted_sum_over_prefixes():
    torch.manual_seed(0)
    emb, labels = torch.randn(12, 16), torch.arange(12) // 3
    loss = get_loss("MultiSimilarityLoss", {"matryoshka_dims": [8, 16, 4], "matryoshka_weights": [2.0, 1.0, 0.5]})
    assert matryoshka_dims(loss) == [16, 8, 4]
    inner = get_loss("MultiSimilarityLoss")
    expected = inner(emb, labels) + 2.0 * inner(emb[:, :8], labels) + 0.5 * inner(emb[:, :4], labels)
    torch.testing.assert_close(loss(emb, labels), expected)
    # a pair loss: both towers' embeddings are cut
    text, image = torch.randn(5, 16), torch.randn(5, 16)
    pair = MatryoshkaLoss(CLIPLoss(), [16, 4])
    torch.testing.assert_close(pair(text, image), CLIPLoss()(text, image) + CLIPLoss()(text[:, :4], image[:, :4]))


def test_bad_dims_are_refused():
    with pytest.raises(ConfigError, match=r"\[64\] exceed the model's embedding size 32"):
        get_loss("TripletMarginLoss", {"matryoshka_dims": [32, 64]}, embedding_size=32)
    with pytest.raises(ConfigError, match="ArcFaceLoss learns weights"):
        get_loss("ArcFaceLoss", {"matryoshka_dims": [8]}, embedding_size=16, num_classes=3)
    with pytest.raises(ConfigError, match="distinct ints"):
        finetuner.fit("bert-base-en", make_texts(4), loss_options={"matryoshka_dims": [8, 8]}, device="cpu")


def test_encode_dim_is_the_prefix(tiny_bert):
    model = build_model(tiny_bert)
    full = finetuner.encode(model, TEXTS)
    np.testing.assert_allclose(finetuner.encode(model, TEXTS, dim=8), full[:, :8], rtol=1e-6)
    normalised = build_model(tiny_bert, model_options={"normalize": True})
    short = finetuner.encode(normalised, TEXTS, dim=8)
    expected = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(short, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="exceeds the model's embedding size 32"):
        finetuner.encode(model, TEXTS, dim=33)


@pytest.mark.integration
def test_every_prefix_improves_and_is_reported(tiny_bert, tmp_path):
    dims = [32, 16, 8, 4]
    run = finetuner.fit(tiny_bert, make_texts(24, seed=1), make_texts(12, seed=2), epochs=4, learning_rate=3e-3,
                        batch_size=16, seed=0, verbose=False, loss_options={"matryoshka_dims": dims})
    metrics = run.metrics()
    by_dim = metrics["by_dimension"]
    assert sorted(by_dim) == sorted(dims)
    assert by_dim[32]["after"] == pytest.approx(metrics["after"])  # the whole vector is the full evaluation
    for d in dims:
        before, after = by_dim[d]["before"], by_dim[d]["after"]
        assert after["average_precision"] > before["average_precision"] + 0.05, (d, before, after)
    page = (Path(run.directory) / "report.html").read_text(encoding="utf-8")
    assert "Quality by embedding size" in page
    # the saved model's truncate option: get_model and sentence-transformers both give the 8-d prefix
    art = Path(run.save_artifact(tmp_path / "art"))
    full = finetuner.encode(finetuner.get_model(art), TEXTS)
    from finetuner.cli import main

    assert main(["truncate", str(art), "--dim", "8"]) == 0  # set_truncate_dim
    model = finetuner.get_model(art)
    np.testing.assert_allclose(finetuner.encode(model, TEXTS), full[:, :8], rtol=1e-5, atol=1e-6)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(art / "models" / "model"), device="cpu")
    assert st.truncate_dim == 8
    np.testing.assert_allclose(st.encode(TEXTS), full[:, :8], rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="exceeds the embedding size 32"):
        set_truncate_dim(art, 64)


@pytest.mark.parametrize("name", ["InfoNCELoss", "TripletMarginLoss"])
def test_triplet_rows_train_every_prefix_of_every_column(name):
    from finetuner.losses.step_loss import TripletObjective

    torch.manual_seed(0)
    rows, negatives = 4, 2
    emb = torch.randn(rows * (2 + negatives), 16)  # queries, positives, then each negative column
    labels = torch.cat([torch.arange(rows), torch.arange(rows), torch.full((rows * negatives,), -1)])
    wrapped = TripletObjective(get_loss(name, {"matryoshka_dims": [16, 4], "matryoshka_weights": [1.0, 0.5]}), 2)
    plain = TripletObjective(get_loss(name), negatives)
    expected = plain(emb, labels) + 0.5 * plain(emb[:, :4], labels)  # the rows' own loss on each prefix
    torch.testing.assert_close(wrapped(emb, labels), expected)


def test_scored_pairs_train_every_prefix_of_both_sides():
    from finetuner.losses.step_loss import ScoredObjective

    torch.manual_seed(0)
    emb, scores = torch.randn(10, 16), torch.rand(5)  # 5 lefts, then 5 rights
    wrapped = ScoredObjective(get_loss("CoSENTLoss", {"matryoshka_dims": [16, 8]}))
    plain = ScoredObjective(get_loss("CoSENTLoss"))
    torch.testing.assert_close(wrapped(emb, scores), plain(emb, scores) + plain(emb[:, :8], scores))
