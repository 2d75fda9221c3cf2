"""``fit(..., streaming=True)``: files and datasets read memory-mapped train to the weights of the in-memory path,
resume exactly from the middle of a file, and report bad rows by position."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests.conftest import build_tiny_bert, make_texts

import finetuner
from finetuner import CSVOptions
from finetuner.data.streamed import StreamedData
from finetuner.errors import ConfigError, DataError
from finetuner.training import TrainingCheckpoint
from finetuner.training.check import FitOptions, check
from finetuner.training.loop import Callback

SETTINGS = dict(
    epochs=2, batch_size=8, learning_rate=0.5, optimizer="SGD", seed=0, verbose=False, num_items_per_class=2,
    device="cpu",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("bert"), dropout=0.0))


def _csv(path: Path, header, rows) -> str:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([*([header] if header else []), *rows])
    return str(path)


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run.directory / "models" / "model" / "model.safetensors"))


def _index(data, **settings) -> StreamedData:
    options = FitOptions(csv_options=settings.pop("csv_options", None))
    checked = check("bert-base-en", data, None, {"device": "cpu", "streaming": True, **settings}, options)
    assert isinstance(checked.train, StreamedData)
    return checked.train


@pytest.mark.integration
def test_a_streamed_csv_trains_to_the_weights_and_metrics_of_the_in_memory_path(bert, tmp_path):
    path = _csv(tmp_path / "train.csv", ("text", "label"), make_texts(6, seed=1))
    memory = finetuner.fit(bert, make_texts(6, seed=1), make_texts(5, seed=2), run_name="memory", **SETTINGS)
    streamed = finetuner.fit(bert, path, make_texts(5, seed=2), run_name="streamed", streaming=True, **SETTINGS)
    assert streamed.config["streaming"] is True
    assert streamed.metrics() == memory.metrics()
    assert memory.metrics()["after"]["reciprocal_rank"] > memory.metrics()["before"]["reciprocal_rank"]
    a, b = _weights(memory), _weights(streamed)
    start = load_file(str(Path(bert) / "model.safetensors"))
    assert any(not torch.equal(a[k], w) for k, w in start.items() if k in a), "training changed no weight"
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-6, rtol=1e-6, msg=key)


@pytest.mark.integration
def test_streamed_jsonl_pairs_with_shared_queries_train_like_the_same_pairs_in_memory(bert, tmp_path):
    texts = [t for t, _ in make_texts(6, seed=3)]
    pairs = [{"query": texts[i % 9], "document": texts[(i * 7 + 5) % len(texts)]} for i in range(16)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    settings = {**SETTINGS, "epochs": 1}
    memory = finetuner.fit(bert, pairs, run_name="memory-pairs", **settings)
    streamed = finetuner.fit(bert, str(path), run_name="streamed-pairs", streaming=True, **settings)
    a, b = _weights(memory), _weights(streamed)
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-6, rtol=1e-6, msg=key)


class _Crash(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_batch_end(self, state):
        if state.batches_trained == self.at:
            raise RuntimeError("crash in the middle of the file")


@pytest.mark.integration
def test_resume_from_the_middle_of_a_streamed_file_is_exact(bert, tmp_path):
    path = _csv(tmp_path / "train.csv", ("text", "label"), make_texts(8, seed=4))  # 32 rows: 4 batches per epoch
    settings = {**SETTINGS, "streaming": True, "validate_rows": 4}
    full = finetuner.fit(bert, path, run_name="full", **settings)
    with pytest.raises(RuntimeError, match="crash"):  # after batch 6: epoch 2, batch 2; checkpoint at batch 5
        finetuner.fit(bert, path, run_name="cut", callbacks=[TrainingCheckpoint(save_every_n_steps=5), _Crash(6)],
                      **settings)  # fmt: skip
    resumed = finetuner.fit(bert, path, resume_from="cut", callbacks=[TrainingCheckpoint(save_every_n_steps=5)],
                            **settings)  # fmt: skip
    assert resumed.status()["status"] == "FINISHED"
    a, b = _weights(full), _weights(resumed)
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, f"the resumed run differs from the uninterrupted one by {worst}"
    with pytest.raises(ConfigError, match="data"):  # another file is not the run's data
        other = _csv(tmp_path / "other.csv", ("text", "label"), make_texts(8, seed=5))
        finetuner.fit(bert, other, resume_from="cut", **settings)


def test_parquet_jsonl_a_dataset_and_an_iterable_dataset_index_like_the_csv(tmp_path):
    from datasets import Dataset

    rows = make_texts(5, seed=6)
    reference = _index(_csv(tmp_path / "t.csv", ("text", "label"), rows))
    table = Dataset.from_dict({"text": [t for t, _ in rows], "label": [label for _, label in rows]})
    table.to_parquet(str(tmp_path / "t.parquet"))
    table.to_json(str(tmp_path / "t.jsonl"))
    for form in (str(tmp_path / "t.parquet"), tmp_path / "t.jsonl", table, table.to_iterable_dataset(num_shards=2)):
        data = _index(form)
        assert data.kind == "labelled" and data.columns == ("text",)
        assert data.rows.tolist() == reference.rows.tolist() and data.labels.tolist() == reference.labels.tolist()
        assert data.digest == reference.digest, form


def test_bad_rows_beyond_the_checked_sample_are_named_by_line_or_left_out_on_request(tmp_path):
    rows = make_texts(5, seed=7)
    rows[12] = ("", rows[12][1])
    rows[17] = (rows[17][0], "  ")
    path = _csv(tmp_path / "bad.csv", ("text", "label"), rows)
    with pytest.raises(DataError) as error:  # the first row alone was checked up front; the pass finds the rest
        _index(path, validate_rows=1, seed=1)
    assert "row 12 (line 14): column 'text' is empty" in str(error.value)
    assert "row 17 (line 19): column 'label' is empty" in str(error.value)
    with pytest.warns(UserWarning, match="left out 2 bad row"):  # row 17 is in this sample: skipped there too
        data = _index(path, validate_rows=1, on_bad_row="skip", seed=0)
    assert len(data) == len(rows) - 2 and 12 not in data.rows and 17 not in data.rows
    assert any("line 14" in s for s in data.skipped)


def test_rows_checked_up_front_get_the_in_memory_validation(tmp_path):
    path = _csv(tmp_path / "image.csv", ("text", "label"), [("photo.png", "a"), ("b", "b"), ("c", "a"), ("d", "b")])
    with pytest.raises(DataError, match=r"photo\.png. looks like an image path"):  # as for in-memory data
        _index(path)


def test_the_whole_label_set_is_checked_from_the_index_not_from_the_sample(tmp_path):
    rows = [(f"text {i}", "only") for i in range(10)]
    with pytest.raises(DataError, match="1 class"):
        _index(_csv(tmp_path / "one-class.csv", ("text", "label"), rows))
    rows += [("t", "single"), ("u", "second"), ("v", "second")]
    with pytest.raises(DataError, match=r"'single' \(row 10 \(line 12\)\)"):
        _index(_csv(tmp_path / "single.csv", ("text", "label"), rows), validate_rows=1)


def test_a_csv_without_a_header_needs_its_columns_named(tmp_path):
    rows = make_texts(3, seed=8)
    path = _csv(tmp_path / "plain.csv", None, rows)
    with pytest.raises(DataError, match="not a header"):
        _index(path)
    data = _index(path, csv_options=CSVOptions(header=False, columns=["text", "label"]))
    assert len(data) == len(rows) and data.num_classes == 4


def test_streaming_refuses_what_needs_the_whole_data_in_memory(tmp_path):
    path = _csv(tmp_path / "t.csv", ("text", "label"), make_texts(3, seed=9))
    with pytest.raises(ConfigError, match="CSV, JSON Lines or Parquet"):
        _index(make_texts(3))
    with pytest.raises(ConfigError, match="val_split"):
        _index(path, val_split=0.2)
    with pytest.raises(ConfigError, match="validate_rows"):
        _index(path, validate_rows=0)
    with pytest.raises(ConfigError, match="on_bad_row"):
        _index(path, on_bad_row="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(_index(path, validate_rows="all")) == 12
