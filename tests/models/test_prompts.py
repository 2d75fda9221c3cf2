"""Query / document prompts: validated up front, saved and loaded (finetuner and sentence-transformers), applied by
encode(role=), by evaluation (queries vs index) and by training (query side vs documents)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import finetuner
from finetuner import CSVOptions
from finetuner.data.shapes import LabelledData, PairData, TripletData
from finetuner.errors import ConfigError, ValidationError
from finetuner.evaluation.embedders import PromptedEmbedder, model_embedder
from finetuner.evaluation.model_eval import evaluate_sets, retrieval_sets
from finetuner.models import build_model, load_model, save_model
from finetuner.models.prompts import prompt_data, read_st_prompts, resolve_prompts
from finetuner.models.registry import BGE_V15_PROMPTS, E5_PROMPTS
from finetuner.training.check import FitOptions, check

# words of the tiny BERT's vocabulary, so the prompts are real tokens
PROMPTS = {"query": "red ", "document": "blue old "}
TEXTS = ["apple banana", "car bus train truck", "hammer"]


@pytest.fixture()
def prompted(tiny_bert):
    return build_model(tiny_bert, output_dim=8, model_options={"prompts": PROMPTS})


def test_prompts_round_trip_through_save_and_load(prompted, tmp_path):
    save_model(prompted, tmp_path / "m")
    assert (tmp_path / "m" / "metadata.yml").read_text().count("blue old ") == 1
    config = json.loads((tmp_path / "m" / "config_sentence_transformers.json").read_text())
    assert config["prompts"] == PROMPTS and config["default_prompt_name"] is None
    loaded = load_model(tmp_path / "m")
    assert loaded.prompts == PROMPTS
    np.testing.assert_allclose(
        finetuner.encode(loaded, TEXTS, role="query"), finetuner.encode(prompted, TEXTS, role="query"), atol=1e-6
    )
    assert resolve_prompts(str(tmp_path / "m"), None) == PROMPTS  # read before loading, for fit's check phase
    plain = build_model(tmp_path / "m", model_options={"prompts": {}})  # an explicit empty dict drops them
    assert plain.prompts == {}
    save_model(plain, tmp_path / "plain")
    assert not (tmp_path / "plain" / "config_sentence_transformers.json").exists()


def test_encode_role_equals_encoding_the_prefixed_text(prompted):
    as_query = finetuner.encode(prompted, TEXTS, role="query")
    np.testing.assert_allclose(as_query, finetuner.encode(prompted, [PROMPTS["query"] + t for t in TEXTS]), atol=1e-6)
    as_document = finetuner.encode(prompted, TEXTS, role="document")
    np.testing.assert_allclose(as_document, finetuner.encode(prompted, ["blue old " + t for t in TEXTS]), atol=1e-6)
    raw = finetuner.encode(prompted, TEXTS)
    assert not np.allclose(raw, as_query, atol=1e-3) and not np.allclose(as_query, as_document, atol=1e-3)
    with pytest.raises(ConfigError, match="role must be 'query', 'document' or None; received 'passage'"):
        finetuner.encode(prompted, TEXTS, role="passage")


def test_sentence_transformers_load_agrees_with_prompt_name(prompted, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    save_model(prompted, tmp_path / "m")
    st = sentence_transformers.SentenceTransformer(str(tmp_path / "m"), device="cpu")
    for role in ("query", "document"):
        np.testing.assert_allclose(
            st.encode(TEXTS, prompt_name=role), finetuner.encode(prompted, TEXTS, role=role), atol=1e-5
        )


def test_a_sentence_transformers_folder_gives_its_prompts(tiny_bert, tmp_path):
    model = build_model(tiny_bert)
    save_model(model, tmp_path / "st")
    st_config = {"prompts": {"query": "query: ", "passage": "passage: ", "classification": "c: "}}
    (tmp_path / "st" / "config_sentence_transformers.json").write_text(json.dumps(st_config))
    (tmp_path / "st" / "metadata.yml").unlink()  # a sentence-transformers folder, not a finetuner one
    assert read_st_prompts(tmp_path / "st") == {"query": "query: ", "document": "passage: "}
    assert build_model(str(tmp_path / "st")).prompts == {"query": "query: ", "document": "passage: "}
    assert resolve_prompts(str(tmp_path / "st"), None) == {"query": "query: ", "document": "passage: "}


def test_aliases_carry_their_models_prompts():
    assert resolve_prompts("e5-small-v2", None) == E5_PROMPTS == {"query": "query: ", "document": "passage: "}
    assert resolve_prompts("bge-small-en-v1.5", None) == BGE_V15_PROMPTS
    assert BGE_V15_PROMPTS == {"query": "Represent this sentence for searching relevant passages: "}
    assert resolve_prompts("all-MiniLM-L6-v2", None) == {}
    assert resolve_prompts("e5-small-v2", {"prompts": {"query": "q: "}}) == {"query": "q: "}


def test_bad_prompts_are_refused_before_anything_loads():
    pairs = [("apple", "banana"), ("car", "bus")]
    cases = [
        ("all-MiniLM-L6-v2", {"query": "q: ", "passage": "p: "}, "unknown role 'passage'"),
        ("all-MiniLM-L6-v2", "query: ", "prompts must be a dict"),
        ("all-MiniLM-L6-v2", {"query": 3}, r"prompts\['query'\] must be a string"),
        ("resnet50", {"query": "q: "}, "'resnet50' is not a text model"),
        ({"text": "a", "vision": "b"}, {"query": "q: "}, "a two-tower model takes none"),
    ]
    for model, prompts, message in cases:
        with pytest.raises((ValidationError, ConfigError), match=message):
            check(model, pairs, None, {"device": "cpu"}, FitOptions(model_options={"prompts": prompts}))


def test_prompt_data_puts_the_query_prompt_on_queries_and_the_document_prompt_on_the_rest():
    prompts = {"query": "q: ", "document": "d: "}
    pairs = PairData(["a", "b", "c"], ["b", "x", "y"], "text", "text", ["0", "1", "2"])
    out = prompt_data(pairs, prompts)
    assert (out.left, out.right) == (["q: a", "q: b", "q: c"], ["d: b", "d: x", "d: y"])
    assert out.groups == pairs.groups == [0, 0, 1]  # 'b' still ties the first two pairs together
    triplets = prompt_data(TripletData(["a"], ["p"], [("n1", "n2")], "text", "text", ["0"]), prompts)
    assert (triplets.queries, triplets.positives, triplets.negatives) == (["q: a"], ["d: p"], [("d: n1", "d: n2")])
    labelled = prompt_data(LabelledData(["x", "y"], [0, 1], ["u", "v"], ["0", "1"], "text"), prompts)
    assert labelled.items == ["d: x", "d: y"]
    assert prompt_data(pairs, {}) is pairs


def test_evaluation_embeds_queries_and_index_with_their_prompts():
    seen: list[list[str]] = []

    def embed(items, modality):
        seen.append(list(items))
        return torch.eye(4)[: len(items)]

    prompted = PromptedEmbedder(embed, {"query": "q: ", "document": "d: "})
    pairs = PairData(["a", "b"], ["x", "y"], "text", "text", ["0", "1"])
    evaluate_sets(retrieval_sets(pairs), prompted, limit=2, num_examples=0)
    assert seen == [["q: a", "q: b"], ["d: x", "d: y"]]
    seen.clear()
    labelled = LabelledData(["x", "y", "z", "w"], [0, 0, 1, 1], ["u", "v"], list("0123"), "text")
    evaluate_sets(retrieval_sets(labelled), prompted, limit=2, num_examples=0)
    assert seen == [["d: x", "d: y", "d: z", "d: w"]]  # labelled items are documents on both sides


def test_model_embedder_applies_the_models_prompts(prompted):
    embed = model_embedder(prompted)
    assert isinstance(embed, PromptedEmbedder) and embed.prompts == PROMPTS
    torch.testing.assert_close(
        embed(TEXTS, "text", role="query"), torch.as_tensor(finetuner.encode(prompted, TEXTS, role="query"))
    )


def test_fit_trains_with_prompts_and_the_artifact_keeps_them(tiny_bert, tmp_path):
    pairs = [("apple banana", "cherry grape"), ("car bus", "train truck"), ("hammer saw", "drill wrench")] * 2
    pairs = [(f"{a} {i}", b) for i, (a, b) in enumerate(pairs)]  # distinct queries
    options = FitOptions(csv_options=CSVOptions(is_labeled=False), model_options={"prompts": PROMPTS})
    checked = check(tiny_bert, pairs, None, {"device": "cpu"}, options)
    assert checked.train.left[0] == "red apple banana 0" and checked.train.right[0] == "blue old cherry grape"
    run = finetuner.fit(
        tiny_bert,
        pairs,
        pairs,
        epochs=1,
        batch_size=4,
        device="cpu",
        csv_options=CSVOptions(is_labeled=False),
        model_options={"prompts": PROMPTS},
        verbose=False,
    )
    model = finetuner.get_model(run.save_artifact(tmp_path / "artifact"))
    assert model.prompts == PROMPTS
    assert "ndcg_at_10" in run.metrics()["after"]
