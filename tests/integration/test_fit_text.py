"""End to end on a tiny random BERT: fit improves retrieval; the artifact reloads and encodes identically."""

import csv

import numpy as np
import pytest
import torch
import yaml
from tests.conftest import make_texts

import finetuner
from finetuner import Document, DocumentArray
from finetuner.cli import main as cli_main

pytestmark = pytest.mark.integration


def _fit(tiny_bert, **kw):
    train = make_texts(24, seed=1)
    evals = make_texts(12, seed=2)
    settings = dict(epochs=4, learning_rate=3e-3, batch_size=16, seed=0, verbose=False)
    settings.update(kw)
    return finetuner.fit(tiny_bert, train, evals, **settings)


def test_fit_improves_metrics_and_round_trips(tiny_bert, tmp_path):
    run = _fit(tiny_bert)
    assert run.status()["status"] == "FINISHED"
    m = run.metrics()
    assert set(m) == {"before", "after"}
    assert set(m["after"]) == {
        "precision_at_k",
        "recall_at_k",
        "f1_score_at_k",
        "hit_at_k",
        "r_precision",
        "average_precision",
        "reciprocal_rank",
        "dcg_at_k",
        "ndcg_at_k",
        # the standard ones as BEIR / MTEB compute them (k=20: the evaluation's limit)
        "ndcg_at_10",
        "mrr_at_10",
        "map_at_20",
        "recall_at_20",
    }
    assert m["after"]["average_precision"] > m["before"]["average_precision"] + 0.1
    assert m["after"]["precision_at_k"] > m["before"]["precision_at_k"]

    path = run.save_artifact(tmp_path / "artifacts")
    for f in (
        "config.yml",
        "metadata.yml",
        "metrics.yml",
        "example-results.yml",
        "models/input-map.yml",
        "models/model/metadata.yml",
        "models/model/model.safetensors",
    ):
        assert (tmp_path / "artifacts" / run.name / f).is_file(), f
    assert yaml.safe_load((tmp_path / "artifacts" / run.name / "metrics.yml").read_text()) == m

    model = finetuner.get_model(path)
    texts = ["apple banana the", "car bus of", "cat dog"]
    reloaded = finetuner.encode(model, texts)
    # the in-memory tuned model gives the same output: rebuild from the run folder itself
    again = finetuner.encode(finetuner.get_model(run.directory), texts)
    np.testing.assert_allclose(reloaded, again, atol=1e-6)
    assert reloaded.shape == (3, 32)

    da = DocumentArray([Document(text=t) for t in texts])
    out = finetuner.encode(model, da)
    assert out is da
    np.testing.assert_allclose(da.embeddings, reloaded, atol=1e-6)


def test_saved_model_equals_in_memory_model(tiny_bert, tmp_path):
    from finetuner.models import build_model, load_model, save_model

    model = build_model(tiny_bert, output_dim=8)
    torch.nn.init.normal_(model.head.linear.weight)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    texts = ["apple car", "hammer saw drill"]
    np.testing.assert_allclose(finetuner.encode(model, texts), finetuner.encode(loaded, texts), atol=1e-6)


def test_freeze_trains_only_the_head(tiny_bert):
    from finetuner.models import build_model

    model = build_model(tiny_bert, output_dim=16, freeze=True)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["head.linear.weight", "head.linear.bias"]
    run = finetuner.fit(model, make_texts(8), epochs=1, batch_size=8, learning_rate=1e-2, verbose=False)
    assert run.status()["status"] == "FINISHED"
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(finetuner.ConfigError, match="output_dim"):
        build_model(tiny_bert, freeze=True)


def test_cli_fit_on_csv_then_encode_and_evaluate(tiny_bert, tmp_path, capsys):
    for name, seed in (("train", 1), ("eval", 2)):
        with open(tmp_path / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(make_texts(12, seed=seed))
    rc = cli_main(
        [
            "fit",
            "--model",
            tiny_bert,
            "--train-data",
            str(tmp_path / "train.csv"),
            "--eval-data",
            str(tmp_path / "eval.csv"),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--learning-rate",
            "1e-3",
            "--output",
            str(tmp_path / "out"),
            "--run-name",
            "cli-run",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "reciprocal_rank" in out and "artifact:" in out
    artifact = tmp_path / "out" / "cli-run"
    (tmp_path / "q.txt").write_text("apple banana\ncar bus\n")
    assert (
        cli_main(
            [
                "encode",
                "--model",
                str(artifact),
                "--data",
                str(tmp_path / "q.txt"),
                "--output",
                str(tmp_path / "v.npy"),
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "v.npy").shape == (2, 32)
    assert cli_main(["evaluate", "--model", str(artifact), "--query-data", str(tmp_path / "eval.csv")]) == 0
    assert "precision_at_k" in capsys.readouterr().out


def test_pairs_train_with_in_batch_negatives(tiny_bert):
    # query/document pairs: each root Document holds two text chunks
    rows = make_texts(10, seed=3)
    pairs = DocumentArray(
        Document(chunks=[Document(text=a), Document(text=b)])
        for (a, la), (b, lb) in zip(rows[::2], rows[1::2])
        if la == lb
    )
    run = finetuner.fit(
        tiny_bert, pairs, pairs, loss="NTXentLoss", epochs=2, batch_size=8, learning_rate=1e-3, verbose=False
    )
    assert run.metrics()["after"]["reciprocal_rank"] >= run.metrics()["before"]["reciprocal_rank"]


def test_real_docarray_input_trains(tiny_bert):
    docarray = pytest.importorskip("docarray")
    train = docarray.DocumentArray(
        [docarray.Document(content=t, tags={"finetuner_label": label}) for t, label in make_texts(8)]
    )
    run = finetuner.fit(tiny_bert, train, train, epochs=1, batch_size=8, verbose=False)
    assert run.status()["status"] == "FINISHED" and "after" in run.metrics()
    model = finetuner.get_model(run.directory)
    encoded = finetuner.encode(model, train)  # the caller's docarray objects get their embeddings
    assert encoded is train
    assert train.embeddings.shape == (len(train), 32)
    np.testing.assert_allclose(train.embeddings, finetuner.encode(model, [d.text for d in train]), atol=1e-6)


def test_length_bucketed_pairs_train_and_the_option_is_checked(tiny_bert):
    rows = make_texts(10, seed=3)
    pairs = [(a, b) for (a, la), (b, lb) in zip(rows[::2], rows[1::2]) if la == lb]
    run = finetuner.fit(tiny_bert, pairs, epochs=1, batch_size=8, loss="NTXentLoss", sampler="length",
                        csv_options=finetuner.CSVOptions(is_labeled=False), verbose=False)
    assert run.status()["status"] == "FINISHED"
    with pytest.raises(finetuner.ConfigError, match="sampler='length'"):
        finetuner.fit(tiny_bert, make_texts(4), epochs=1, sampler="length", verbose=False)
