"""Triplets and scored pairs end to end with a tiny random BERT: the two CSVs the issue found misread now train as
what they are (an anchor,positive,negative header trains triplets with their negatives; a headerless a,b,score file
trains on the scores), the loss goes down and the metric improves on separable data for both shapes and each loss;
scored pairs report Spearman and Pearson correlation before and after, in the metrics and per epoch."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from tests.conftest import make_texts

import finetuner
from finetuner.artifacts import read_run_metadata
from finetuner.callback import EvaluationCallback
from finetuner.cli import main as cli_main

pytestmark = pytest.mark.integration


def _by_class(seed: int) -> list[list[str]]:
    by_label: dict[str, list[str]] = {}
    for text, label in make_texts(6, seed=seed):
        by_label.setdefault(label, []).append(text)
    return list(by_label.values())


def _triplets(seed: int = 1) -> list[tuple[str, str, str]]:
    """(query, positive of its class, negative of the next class): 12 rows over 4 classes."""
    classes = _by_class(seed)
    return [
        (texts[i], texts[i + 1], classes[(k + 1) % len(classes)][i])
        for k, texts in enumerate(classes)
        for i in (0, 2, 4)
    ]


def _scored(seed: int = 1) -> list[tuple[str, str, float]]:
    """Pairs of one class scored high, of two classes scored 0 (or low)."""
    classes = _by_class(seed)
    rows: list[tuple[str, str, float]] = []
    for k, texts in enumerate(classes):
        other = classes[(k + 1) % len(classes)]
        rows += [(texts[0], texts[1], 1.0), (texts[2], texts[3], 0.8), (texts[4], other[5], 0.0)]
        rows += [(texts[5], other[2], 0.1)]
    return rows


def _write(path: Path, header: list[str] | None, rows: list[tuple]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def _history(run) -> list[dict]:
    return read_run_metadata(run.directory)["history"]


@pytest.mark.parametrize("loss", ["auto", "TripletMarginLoss"])
def test_an_anchor_positive_negative_csv_trains_triplets(tiny_bert: str, tmp_path: Path, loss: str) -> None:
    train = _write(tmp_path / "train.csv", ["anchor", "positive", "negative"], _triplets())
    run = finetuner.fit(tiny_bert, str(train), str(train), loss=loss, epochs=4, batch_size=4, learning_rate=1e-3,
                        seed=0, verbose=False)
    assert run.config["loss"] == ("InfoNCELoss" if loss == "auto" else "TripletMarginLoss")
    history = _history(run)
    metrics = run.metrics()
    assert metrics["after"]["reciprocal_rank"] > metrics["before"]["reciprocal_rank"]
    assert history[-1]["loss"] < history[0]["loss"]


def test_a_three_column_csv_trains_on_its_scores(tiny_bert: str, tmp_path: Path) -> None:
    train = _write(tmp_path / "scored.csv", None, _scored())
    callback = EvaluationCallback(str(tmp_path / "scored.csv"))
    run = finetuner.fit(tiny_bert, str(train), str(train), epochs=4, batch_size=8, learning_rate=1e-3, seed=0,
                        callbacks=[callback], verbose=False)
    assert run.config["loss"] == "CoSENTLoss"
    metrics = run.metrics()
    assert set(metrics["before"]) == {"spearman_cosine", "pearson_cosine"}
    assert metrics["after"]["spearman_cosine"] > metrics["before"]["spearman_cosine"] + 0.2
    assert metrics["after"]["pearson_cosine"] > metrics["before"]["pearson_cosine"]
    history = _history(run)
    assert history[-1]["loss"] < history[0]["loss"]
    assert all("spearman_cosine" in epoch and "pearson_cosine" in epoch for epoch in history)  # the callback's
    assert "spearman_cosine" in (run.directory / "report.html").read_text()


def test_cosine_similarity_loss_trains_scored_pairs(tiny_bert: str) -> None:
    run = finetuner.fit(tiny_bert, _scored(), _scored(), loss="CosineSimilarityLoss", epochs=4, batch_size=8,
                        learning_rate=1e-3, seed=0, verbose=False)
    metrics = run.metrics()
    assert metrics["after"]["spearman_cosine"] > metrics["before"]["spearman_cosine"] + 0.2
    assert _history(run)[-1]["loss"] < _history(run)[0]["loss"]


def test_cli_trains_headerless_triplets_named_by_csv_columns(tiny_bert: str, tmp_path: Path, capsys) -> None:
    train = _write(tmp_path / "rows.csv", None, _triplets())
    args = ["fit", "--model", tiny_bert, "--train-data", str(train), "--eval-data", str(train), "--epochs", "2",
            "--batch-size", "4", "--learning-rate", "1e-3", "--output", str(tmp_path / "out"), "--run-name", "rows"]
    assert cli_main([*args, "--csv-columns", "anchor,positive,negative"]) == 0
    assert "reciprocal_rank" in capsys.readouterr().out
    config = (tmp_path / "out" / "rows" / "config.yml").read_text()
    assert "InfoNCELoss" in config


def test_val_loss_is_the_row_loss_on_evaluation_rows(tiny_bert: str) -> None:
    from finetuner.callback import BestModelCheckpoint
    from finetuner.errors import ConfigError

    run = finetuner.fit(tiny_bert, _triplets(1), _triplets(2), epochs=2, batch_size=4, learning_rate=1e-3, seed=0,
                        callbacks=[BestModelCheckpoint()], verbose=False)  # BestModelCheckpoint() monitors val_loss
    assert all(epoch["val_loss"] > 0 for epoch in _history(run))
    pairs = [(q, p) for q, p, _ in _triplets(2)]
    with pytest.raises(ConfigError, match=r"trains on triplets with 1 negative.* but eval_data holds pairs"):
        finetuner.fit(tiny_bert, _triplets(1), pairs, epochs=1, batch_size=4, callbacks=[BestModelCheckpoint()],
                      csv_options=finetuner.CSVOptions(is_labeled=False), verbose=False)


def test_triplets_train_with_an_automatic_batch_size_and_the_gradient_cache(tiny_bert: str) -> None:
    run = finetuner.fit(tiny_bert, _triplets(), epochs=1, batch_size="auto", mini_batch_size=5, seed=0,
                        device="cpu", verbose=False)
    assert isinstance(run.config["batch_size"], int) and 2 <= run.config["batch_size"] <= len(_triplets())
    assert _history(run)[0]["loss"] > 0


def test_mined_triplets_train_as_triplets(tiny_bert: str, tmp_path: Path) -> None:
    pairs = [(q, p) for q, p, _ in _triplets()]
    options = finetuner.CSVOptions(is_labeled=False)
    mined = finetuner.mine_hard_negatives(tiny_bert, pairs, num_negatives=2, output=tmp_path / "mined.csv",
                                          csv_options=options, progress=False, relative_margin=0.0)
    assert len(mined) >= 2 and all(len(root.chunks) == 4 for root in mined)
    run = finetuner.fit(tiny_bert, str(tmp_path / "mined.csv"), pairs, epochs=2, batch_size=4, learning_rate=1e-3,
                        seed=0, csv_options=options, verbose=False)
    assert run.config["loss"] == "InfoNCELoss" and "negatives each" in run.logs()
    assert run.metrics()["after"]["reciprocal_rank"] > run.metrics()["before"]["reciprocal_rank"]
