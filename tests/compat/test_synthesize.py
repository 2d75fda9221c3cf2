"""finetuner.synthesize: (query, document) pairs from a corpus with a local generation model (tiny random T5 and
GPT-2 built here), written batch by batch, resumable to the same file, read by fit as pairs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import finetuner
from finetuner import SynthesisModels
from finetuner.synthesis import generation

CORPUS = [
    "the red apple and the green banana",
    "a big bus and a small train",
    "a cat with a dog",
    "the old hammer and a new saw",
    "some cherry with a mango",
    "the truck and the bike",
    "a horse and a cow",
    "the drill and the wrench",
    "a nice peach",
]


def _tokenizer_folder(tiny_bert: str, folder: Path) -> Path:
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_t5(tiny_bert: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    folder = _tokenizer_folder(tiny_bert, tmp_path_factory.mktemp("t5"))
    vocab = AutoTokenizer.from_pretrained(str(folder)).vocab_size
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=vocab, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        pad_token_id=0, eos_token_id=3, decoder_start_token_id=0,
    )
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_gpt2(tiny_bert: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    folder = _tokenizer_folder(tiny_bert, tmp_path_factory.mktemp("gpt2"))
    vocab = AutoTokenizer.from_pretrained(str(folder)).vocab_size
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab, n_embd=16, n_layer=1, n_head=2, n_positions=256, pad_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return str(folder)


def _rows(path: str) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_seq2seq_writes_query_document_pairs_that_fit_trains_on(tiny_t5, tiny_bert):
    run = finetuner.synthesize(
        corpus_data=CORPUS, models=SynthesisModels(generator=tiny_t5), num_queries=2, batch_size=4,
        max_new_tokens=6, run_name="t5-pairs", progress=False,
    )
    assert run.status()["status"] == "FINISHED" and run.task == "synthesis"
    rows = _rows(run.train_data)
    assert rows and set(rows[0]) == {"query", "document"}
    assert {r["document"] for r in rows} <= set(CORPUS)
    assert all(r["query"].strip() for r in rows)
    assert len(rows) <= 2 * len(CORPUS)
    # fit reads the file as (query, document) pairs: pair data, trained with in-batch negatives
    tuned = finetuner.fit(tiny_bert, train_data=run.train_data, epochs=1, batch_size=4, device="cpu", verbose=False)
    assert tuned.status()["status"] == "FINISHED"
    assert finetuner.get_run(tuned.name).config["loss"] == "InfoNCELoss"


def test_causal_lm_with_example_queries_in_the_prompt(tiny_gpt2):
    models = SynthesisModels(generator=tiny_gpt2)
    run = finetuner.synthesize(["apple", "train"], CORPUS[:3], models, run_name="gpt2", batch_size=2,
                               max_new_tokens=4, progress=False)
    rows = _rows(run.train_data)
    assert {r["document"] for r in rows} <= set(CORPUS[:3]) and len(rows) >= 1
    generator = generation.QueryGenerator(tiny_gpt2, examples=["apple"])
    prompt = generator.inputs(["a red bus"])[0]
    assert "Example query: apple" in prompt and prompt.endswith("Document: a red bus\nQuery:")


def test_an_interrupted_run_continues_to_the_same_file(tiny_t5, monkeypatch):
    options = {"corpus_data": CORPUS, "models": tiny_t5, "num_queries": 2, "batch_size": 2, "max_new_tokens": 5,
               "progress": False}
    whole = finetuner.synthesize(run_name="whole", **options)
    real = generation.QueryGenerator.generate
    calls = {"n": 0}

    def stop_at_the_third_batch(self, documents, num_queries, seed):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, documents, num_queries, seed)

    monkeypatch.setattr(generation.QueryGenerator, "generate", stop_at_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        finetuner.synthesize(run_name="resumed", **options)
    stopped = finetuner.get_run("resumed")
    assert stopped.status()["status"] == "FAILED" and "run_name='resumed'" in stopped.status()["details"]
    written = _rows(stopped.directory / "synthesized.csv")
    assert {r["document"] for r in written} <= set(CORPUS[:4])  # two batches of two documents
    monkeypatch.setattr(generation.QueryGenerator, "generate", real)
    resumed = finetuner.synthesize(run_name="resumed", **options)
    assert resumed.status()["status"] == "FINISHED"
    assert Path(resumed.train_data).read_bytes() == Path(whole.train_data).read_bytes()
    with pytest.raises(finetuner.ConfigError, match="num_queries: 2 then, 3 now"):
        finetuner.synthesize(run_name="resumed", **{**options, "num_queries": 3})


def test_refusals_name_the_fix(tiny_t5, tiny_bert):
    with pytest.raises(finetuner.ConfigError, match="needs a generation model"):
        from finetuner.model import synthesis_model_en

        finetuner.synthesize(corpus_data=CORPUS, models=synthesis_model_en)
    with pytest.raises(finetuner.ConfigError, match="give one embedding model"):
        finetuner.synthesize(corpus_data=CORPUS, models=SynthesisModels(["a", "b"], generator=tiny_t5))
    with pytest.raises(finetuner.ConfigError, match="num_relations must be an int >= 1"):
        finetuner.synthesize(corpus_data=CORPUS, models=SynthesisModels(tiny_bert, generator=tiny_t5), num_relations=0)
    with pytest.raises(finetuner.DataError, match="item 1 is empty"):
        finetuner.synthesize(corpus_data=["a", " "], models=tiny_t5)
    with pytest.raises(finetuner.ConfigError, match="not a text generation model"):
        finetuner.synthesize(corpus_data=CORPUS, models=tiny_bert, progress=False, run_name="not-a-generator")
    with pytest.raises(finetuner.ArtifactError, match="no run named 'not-a-generator'"):
        finetuner.get_run("not-a-generator")  # refused before a run folder was made
    with pytest.raises(finetuner.ConfigError, match="makes no training data"):
        _ = finetuner.fit(tiny_bert, [("a apple", "x"), ("a cherry", "x"), ("a bus", "y"), ("a car", "y")],
                          epochs=1, device="cpu", verbose=False).train_data


def test_a_relation_miner_adds_hard_negatives_from_the_corpus(tiny_t5, tiny_bert):
    models = SynthesisModels(relation_miner=tiny_bert, generator=tiny_t5)
    run = finetuner.synthesize(corpus_data=CORPUS, models=models, num_relations=2, num_queries=1, batch_size=4,
                               max_new_tokens=6, run_name="mined", progress=False)
    assert run.status()["status"] == "FINISHED" and run.train_data.endswith("synthesized-triplets.csv")
    pairs = _rows(run.directory / "synthesized.csv")
    triplets = _rows(run.train_data)
    assert triplets and set(triplets[0]) == {"anchor", "positive", "negative_1", "negative_2"}
    pair_set = {(p["query"], p["document"]) for p in pairs}
    for row in triplets:
        assert (row["anchor"], row["positive"]) in pair_set  # every triplet is one of the synthesized pairs
        negatives = {row["negative_1"], row["negative_2"]}
        assert len(negatives) == 2 and negatives <= set(CORPUS) and row["positive"] not in negatives
    assert not list(run.directory.glob("*.partial.csv"))
