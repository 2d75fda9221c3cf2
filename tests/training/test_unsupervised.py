"""Training without labels (issue 15): `fit(model, [texts...], loss='SimCSE')` trains on two dropout views of each
text in one batch; wrong data or settings are refused before training."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from tests.conftest import build_tiny_bert, make_texts

import finetuner
from finetuner.data.samplers import ClassSampler
from finetuner.data.unlabelled import read_texts
from finetuner.errors import ConfigError, DataError
from finetuner.losses import get_loss
from finetuner.losses.contrastive import InfoNCELoss
from finetuner.training.check import FitOptions, check
from finetuner.training.plan import plan

TEXTS = [t for t, _ in make_texts(5, seed=3)]


def test_texts_become_two_views_in_every_batch():
    checked = check("bert-base-en", TEXTS, None, {"device": "cpu", "loss": "SimCSE", "batch_size": 8}, FitOptions())
    fit_plan = plan(checked)
    assert checked.config.loss == "SimCSE" and fit_plan.sampler == "class" and fit_plan.items_per_class == 2
    train = fit_plan.train
    assert len(train.items) == 2 * len(set(TEXTS))
    sampler = ClassSampler(train.labels, 8, fit_plan.items_per_class, seed=0)
    for batch in sampler:
        counts = Counter(train.labels[i] for i in batch)
        assert set(counts.values()) == {2}, counts  # both views of each text, no text from two classes
        for label in counts:
            assert len({train.items[i] for i in batch if train.labels[i] == label}) == 1


def test_the_loss_is_infonce_over_the_views():
    torch.manual_seed(0)
    emb, labels = torch.randn(8, 6), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    simcse = get_loss("SimCSE")
    torch.testing.assert_close(simcse(emb, labels), InfoNCELoss(temperature=0.05)(emb, labels))


def test_wrong_data_and_settings_are_refused(tmp_path):
    with pytest.raises(DataError, match="holds labelled data"):
        finetuner.fit("bert-base-en", make_texts(3), loss="SimCSE", device="cpu")
    with pytest.raises(ConfigError, match="sampler='random' would split them"):
        finetuner.fit("bert-base-en", TEXTS, loss="SimCSE", sampler="random", device="cpu")
    with pytest.raises(DataError, match="at least two"):
        read_texts(["the same", "the same"])
    path = tmp_path / "texts.txt"
    path.write_text("first text\n\nsecond text\n", encoding="utf-8")
    assert read_texts(str(path)) == ["first text", "second text"]
    for header in ("text\n", ""):  # a one-column CSV file, with or without a header
        column = tmp_path / f"texts{len(header)}.csv"
        column.write_text(header + "first text\n\"second, with a comma\"\n")
        assert read_texts(str(column)) == ["first text", "second, with a comma"]
    no_dropout = str(build_tiny_bert(tmp_path / "bert", dropout=0.0))
    with pytest.raises(ConfigError, match="no dropout"):
        finetuner.fit(no_dropout, TEXTS, loss="SimCSE", device="cpu", epochs=1, verbose=False)


@pytest.mark.integration
def test_simcse_trains_the_views_together(tmp_path):
    bert = str(build_tiny_bert(tmp_path / "bert", dropout=0.1))
    run = finetuner.fit(bert, TEXTS, loss="SimCSE", epochs=3, batch_size=8, learning_rate=1e-3, seed=0, device="cpu",
                        verbose=False)
    losses = [h["loss"] for h in _history(run)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


def _history(run) -> list[dict]:
    from finetuner import artifacts

    return artifacts.read_run_metadata(run.directory)["history"]
