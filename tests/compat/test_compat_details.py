"""The pieces behind Finetuner compatibility, one behaviour each: hints for unknown names, schedule options, the
offline W&B fallback, layer-wise learning rates, GeM and Dense(tanh) text models, T5 encoders, the mlp family, the
DocumentArray methods, the run views and the experiment functions."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import make_texts
from tests.fixtures.artifacts import tiny_models as tm

import finetuner
from finetuner import Document, DocumentArray
from finetuner.callback import Callback, EvaluationCallback, WandBLogger
from finetuner.errors import closest, suggest
from finetuner.training.layer_decay import layer_decay_groups

CPU = {"device": "cpu", "verbose": False}


def _runs() -> list[str]:
    return [r.name for r in finetuner.list_runs()]


# -- unknown names ------------------------------------------------------------------------------------------------


def test_unknown_options_get_alias_advice_or_a_real_match(tiny_bert):
    data = make_texts(2)
    with pytest.raises(finetuner.ConfigError) as info:
        finetuner.fit(tiny_bert, data, lr=1e-3, model_artefact="x", foo_bar=1, **CPU)
    message = str(info.value)
    assert "'lr' (use learning_rate=...)" in message
    assert "'model_artefact' (did you mean 'model_artifact'?)" in message
    assert "'foo_bar';" in message or "'foo_bar'," in message  # no made-up hint
    assert "model_options'?" not in message
    # the hint the issue reported: a different word sharing a prefix is not "close"
    assert closest("model_artifact", ["model_options", "output_dim"]) is None
    assert closest("description", ["precision", "device"]) is None
    assert suggest("MarginMSELoss", ["TripletMarginLoss"], finetuner.aliases.LOSSES).startswith("MarginMSELoss")


# -- schedules ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheduler", "options", "expected"),
    [
        ("linear", {"num_cycles": 2}, "scheduler 'linear' has no option 'num_cycles'; its options are: "
         "num_training_steps, num_warmup_steps, scheduler_step, warmup_ratio"),
        ("constant", {"num_warmup_steps": 10}, "use scheduler='constant_with_warmup'"),
        ("constant_with_warmup", {"num_training_steps": 100}, "it does not end"),
        ("linear", {"scheduler_step": "step"}, "must be 'batch'"),
        ("cosine", {"num_warmup_steps": 1, "warmup_ratio": 0.1}, "give one of them"),
    ],
)
def test_scheduler_options_are_refused_before_anything_loads(tiny_bert, scheduler, options, expected):
    before = _runs()
    with pytest.raises(finetuner.ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        finetuner.fit(tiny_bert, make_texts(2), scheduler=scheduler, scheduler_options=options, **CPU)
    assert _runs() == before  # no run folder was made


class _Rates(Callback):
    def __init__(self):
        self.rates = []

    def on_batch_end(self, state):
        self.rates.append((state.epoch, round(state.optimizer.param_groups[0]["lr"], 10)))


def test_scheduler_step_epoch_changes_the_rate_once_an_epoch(tiny_bert):
    rates = _Rates()
    finetuner.fit(
        tiny_bert, make_texts(4), epochs=3, batch_size=8, learning_rate=3e-4, scheduler="linear",
        scheduler_options={"scheduler_step": "epoch"}, callbacks=[rates], **CPU,
    )
    by_epoch = {}
    for epoch, rate in rates.rates:
        by_epoch.setdefault(epoch, set()).add(rate)
    # one rate per epoch (the rate read after a batch's step is the next batch's: the epoch's last batch already
    # shows the next epoch's rate), decaying linearly over three epochs
    firsts = [rates.rates[[e for e, _ in rates.rates].index(epoch)][1] for epoch in range(3)]
    assert firsts == pytest.approx([3e-4, 2e-4, 1e-4])
    assert all(len(values) <= 2 for values in by_epoch.values())


def test_num_training_steps_sets_the_schedule_length(tiny_bert):
    rates = _Rates()
    finetuner.fit(
        tiny_bert, make_texts(4), epochs=2, batch_size=8, learning_rate=1e-3, scheduler="linear",
        scheduler_options={"num_training_steps": 2}, callbacks=[rates], **CPU,
    )
    assert [r for _, r in rates.rates][:3] == pytest.approx([5e-4, 0.0, 0.0])  # ends after 2 optimizer steps


# -- W&B ----------------------------------------------------------------------------------------------------------


def test_wandb_logger_with_credentials_or_a_mode_stays_as_asked(monkeypatch, tmp_path):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert "mode" not in WandBLogger().wandb_args
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "p" * 40 + "\n")
    (tmp_path / "netrc").chmod(0o600)
    assert "mode" not in WandBLogger().wandb_args  # `wandb login` wrote ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    assert WandBLogger(wandb_args={"mode": "disabled"}).wandb_args["mode"] == "disabled"


# -- layer-wise learning rates ------------------------------------------------------------------------------------


def test_layer_decay_groups_of_a_text_model_and_each_clip_tower(tiny_bert, tmp_path):
    model = finetuner.build_model(tiny_bert, output_dim=4)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = layer_decay_groups(model, 1.0, 0.5)
    rates = {names[id(p)].split(".")[1] if "layer." not in names[id(p)] else names[id(p)].split(".")[3]: g["lr"]
             for g in groups for p in g["params"]}
    assert rates == {"embeddings": 0.25, "0": 0.5, "1": 1.0, "linear": 1.0}  # embeddings, layer 0, layer 1, head
    clip = finetuner.build_model(str(tm.tiny_clip(tmp_path / "clip")), model_options={"learning_rates": {"text": 2.0}})
    by_tower = {}
    for group in layer_decay_groups(clip, 1.0, 0.5):
        tower = "text" if any(p is q for p in group["params"] for q in clip.text.parameters()) else "vision"
        by_tower.setdefault(tower, []).append(group["lr"])
    assert sorted(by_tower["text"]) == [0.5, 1.0, 2.0] and sorted(by_tower["vision"]) == [0.25, 0.5, 1.0]
    with pytest.raises(finetuner.ConfigError, match="in \\(0, 1\\]"):
        finetuner.fit(tiny_bert, make_texts(2), optimizer_options={"layer_wise_lr_decay": 1.5}, **CPU)


# -- text models: GeM, Dense(tanh), T5 encoders ------------------------------------------------------------------


def _dim(module) -> int:
    """The embedding size of a sentence-transformers module (the method's name changed in sentence-transformers 6)."""
    return module.get_embedding_dimension() if hasattr(module, "get_embedding_dimension") else (
        module.get_word_embedding_dimension()
    )


def _st_encode(path: str, texts: list[str], **kwargs) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu", **kwargs).encode(texts)


def test_gem_text_model_round_trip_and_sentence_transformers(tiny_bert, tmp_path):
    model = finetuner.build_model(tiny_bert, model_options={"pooling": "gem", "pooling_options": {"p": 2.0}})
    texts = ["a red apple", "the old train"]
    hidden = model.backbone(**model.tokenizer(texts, padding=True, return_tensors="pt")).last_hidden_state
    mask = model.tokenizer(texts, padding=True, return_tensors="pt")["attention_mask"].unsqueeze(-1).float()
    by_hand = ((hidden.clamp(min=1e-6) ** 2 * mask).sum(1) / mask.sum(1)) ** 0.5
    np.testing.assert_allclose(finetuner.encode(model, texts), by_hand.detach().numpy(), rtol=1e-5, atol=1e-6)
    folder = finetuner.models.save_model(model, tmp_path / "gem")
    np.testing.assert_allclose(finetuner.encode(finetuner.get_model(folder), texts), finetuner.encode(model, texts))
    with pytest.raises(ValueError, match="trust_remote_code"):
        _st_encode(str(folder), texts)  # refused, never silently mean-pooled
    np.testing.assert_allclose(_st_encode(str(folder), texts, trust_remote_code=True), finetuner.encode(model, texts),
                               atol=1e-5)


def test_sentence_transformers_dense_tanh_heads_load_exactly(tiny_bert, tmp_path):
    from sentence_transformers import SentenceTransformer, models

    base = models.Transformer(tiny_bert)
    dense = models.Dense(_dim(base), 6, activation_function=torch.nn.Tanh())
    SentenceTransformer(modules=[base, models.Pooling(_dim(base)), dense]).save(
        str(tmp_path / "st-tanh")
    )
    texts = ["a red apple", "a bus"]
    model = finetuner.build_model(str(tmp_path / "st-tanh"))
    assert model.head.activation == "tanh"
    np.testing.assert_allclose(finetuner.encode(model, texts), _st_encode(str(tmp_path / "st-tanh"), texts), atol=1e-5)
    relu = models.Dense(_dim(base), 6, activation_function=torch.nn.ReLU())
    SentenceTransformer(modules=[base, models.Pooling(_dim(base)), relu]).save(
        str(tmp_path / "st-relu")
    )
    with pytest.raises(finetuner.ConfigError, match=r"activation .*ReLU is not supported"):
        finetuner.build_model(str(tmp_path / "st-relu"))


def test_a_hub_repo_s_sentence_transformers_modules_are_read(tiny_bert, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer, models

    base = models.Transformer(tiny_bert)
    dense = models.Dense(_dim(base), 6, activation_function=torch.nn.Tanh())
    repo = tmp_path / "repo"
    SentenceTransformer(modules=[base, models.Pooling(_dim(base), "cls"), dense]).save(
        str(repo)
    )

    def from_the_local_repo(repo_id, filename, **kwargs):  # the Hugging Face cache, as hf_hub_download fills it
        if repo_id != "org/st-model" or not (repo / filename).is_file():
            from huggingface_hub.errors import EntryNotFoundError

            raise EntryNotFoundError(filename)
        return str(repo / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", from_the_local_repo)
    from finetuner.models.text.st_folder import hub_sentence_transformers_folder, read_sentence_transformers_config

    st = read_sentence_transformers_config(hub_sentence_transformers_folder("org/st-model"))
    assert st["pooling"] == "cls" and st["dense_activation"] == "tanh" and st["dense"].name == "2_Dense"


def test_t5_family_repos_load_their_encoder(tiny_bert, tmp_path):
    from transformers import AutoTokenizer, T5Config, T5Model

    folder = tmp_path / "t5"
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=2,
                      decoder_start_token_id=0)
    T5Model(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model = finetuner.build_model(str(folder))
    assert type(model.backbone).__name__ == "T5EncoderModel"
    saved = finetuner.models.save_model(model, tmp_path / "saved")
    texts = ["a red apple"]
    np.testing.assert_allclose(_st_encode(str(saved), texts), finetuner.encode(model, texts), atol=1e-5)


# -- mlp and vector items ----------------------------------------------------------------------------------------


def test_mlp_refuses_vectors_of_another_size_and_bad_vectors_before_training(tmp_path):
    docs = [Document(tensor=np.ones(8, dtype=np.float32), tags={"finetuner_label": str(i % 2)}) for i in range(8)]
    before = _runs()
    with pytest.raises(finetuner.DataError, match=r"input_size=16 .* shape \(8,\)"):
        finetuner.fit("mlp", docs, model_options={"input_size": 16}, epochs=1, **CPU)
    docs[3] = Document(tensor=np.array([1.0] * 7 + [np.nan], dtype=np.float32), tags={"finetuner_label": "1"})
    with pytest.raises(finetuner.DataError, match=r"item 3 .*NaN"):
        finetuner.fit("mlp", docs, model_options={"input_size": 8}, epochs=1, **CPU)
    with pytest.raises(finetuner.ConfigError, match="input_size"):
        finetuner.build_model("mlp")
    assert _runs() == before
    model = finetuner.build_model("mlp", {"input_size": 8, "hidden_sizes": [4], "l2": True})
    vectors = finetuner.encode(model, np.ones((3, 8), dtype=np.float32))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


# -- the DocumentArray stand-in -----------------------------------------------------------------------------------


def test_match_ranks_as_a_hand_computation():
    rng = np.random.default_rng(0)
    index = DocumentArray([Document(id=str(i), embedding=rng.normal(size=4)) for i in range(12)])
    queries = DocumentArray([Document(embedding=rng.normal(size=4)) for _ in range(3)])
    queries.match(index, metric="euclidean", limit=4, batch_size=2)
    x = np.stack([d.embedding for d in index])
    for q in queries:
        expected = np.argsort(np.linalg.norm(x - q.embedding, axis=1))[:4]
        assert [m.id for m in q.matches] == [str(i) for i in expected]
        assert [m.scores["euclidean"].value for m in q.matches] == pytest.approx(
            np.sort(np.linalg.norm(x - q.embedding, axis=1))[:4], rel=1e-5
        )
    index.match(index, limit=2, exclude_self=True)
    assert all(doc.id not in [m.id for m in doc.matches] for doc in index)
    with pytest.raises(finetuner.DataError, match="no embedding"):
        DocumentArray([Document(text="a")]).match(index)


# -- evaluation callback options ----------------------------------------------------------------------------------


def test_evaluation_callback_options_are_checked():
    data = make_texts(3)
    with pytest.raises(finetuner.ConfigError, match="query_sample_size must be an int >= 1"):
        EvaluationCallback(data, query_sample_size=0)
    callback = EvaluationCallback(data, query_sample_size=5, multi_modal=False)
    callback.setup()
    assert len(callback._sets.queries) == 5 and len(callback._sets.index) == len(data)  # the index keeps every item
    with pytest.raises(finetuner.ConfigError, match="multi_modal=True"):
        EvaluationCallback(data, multi_modal=True).setup()


# -- runs and experiments ------------------------------------------------------------------------------------------


def test_stream_logs_follows_a_run_until_it_ends(tmp_path):
    run = finetuner.Run.create("streamed", "live", {"model": "x"})
    run.set_status("STARTED")
    log = run.directory / "logs.txt"

    def write():
        for i in range(3):
            with open(log, "a") as f:
                f.write(f"line {i}\n")
            time.sleep(0.05)
        run.set_status("FINISHED")

    writer = threading.Thread(target=write)
    writer.start()
    lines = list(run.stream_logs(interval=0.02))
    writer.join()
    assert lines == ["line 0", "line 1", "line 2"]
    stalled = finetuner.Run.create("stalled", "live", {"model": "x"})
    stalled.set_status("STARTED")  # a run killed hard: the timeout ends the stream
    assert list(stalled.stream_logs(interval=0.01, timeout=0.05)) == []
    with pytest.raises(finetuner.ArtifactError, match="only a finished run has an artifact"):
        _ = stalled.artifact_id


def test_deleting_needs_an_experiment_when_names_repeat():
    for experiment in ("exp-a", "exp-b"):
        finetuner.Run.create("same-name", experiment, {"model": "x"})
    with pytest.raises(finetuner.ConfigError, match="several experiments \\(exp-a, exp-b\\)"):
        finetuner.delete_run("same-name")
    finetuner.delete_run("same-name", experiment_name="exp-a")
    assert finetuner.get_run("same-name").directory.parent.name == "exp-b"
    with pytest.raises(finetuner.ConfigError, match="plain folder name"):
        finetuner.delete_experiment("../outside")


def test_model_artifact_and_public_are_checked(tiny_bert, tmp_path):
    with pytest.raises(finetuner.ArtifactError, match="model_artifact='no-such-run'"):
        finetuner.fit(tiny_bert, make_texts(2), model_artifact="no-such-run", **CPU)
    with pytest.raises(finetuner.ArtifactError, match="holds no tuned model"):
        finetuner.fit(tiny_bert, make_texts(2), model_artifact=str(tmp_path), **CPU)
    with pytest.raises(finetuner.InputTypeError, match="public must be True or False"):
        finetuner.fit(tiny_bert, make_texts(2), public="yes", **CPU)


def test_build_model_options_and_onnx(tiny_bert):
    model = finetuner.build_model(tiny_bert, batch_size=3)
    assert model.inference_batch_size == 3
    onnx = finetuner.build_model(tiny_bert, is_onnx=True)
    texts = ["a red apple", "the bus"]
    np.testing.assert_allclose(finetuner.encode(onnx, texts), finetuner.encode(model, texts), atol=1e-4)
    with pytest.raises(finetuner.ConfigError, match="has a single model"):
        finetuner.build_model(tiny_bert, select_model="clip-text")
    assert Path(finetuner.__file__).parent.name == "finetuner"
