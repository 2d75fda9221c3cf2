"""LoRA adapters (issue 15): only the adapter trains, the artifact holds it alone and round-trips, merged weights
embed as the adapter does (also through sentence-transformers and ONNX), options are checked before training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tests.conftest import build_tiny_bert, make_texts

import finetuner
from finetuner import artifacts
from finetuner.errors import ArtifactError, ConfigError
from finetuner.export import merge_artifact
from finetuner.losses import get_loss
from finetuner.losses.step_loss import MetricObjective
from finetuner.models import build_model
from finetuner.models.adapters import apply_adapter, base_reference, has_adapter, merge_adapters, parameter_counts
from finetuner.models.adapters.lora import ATTENTION_NAMES, default_targets
from finetuner.training.gradcache import cached_backward

pytest.importorskip("peft")

TEXTS = [t for t, _ in make_texts(3, seed=7)]
FIT = dict(epochs=2, batch_size=8, learning_rate=2e-2, seed=0, device="cpu", verbose=False)


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> str:
    return str(build_tiny_bert(tmp_path_factory.mktemp("bert"), dropout=0.0))


def _adapted(bert: str, **options) -> torch.nn.Module:
    model = build_model(bert)
    apply_adapter(model, "lora", {"r": 4, "dropout": 0.0, **options}, base=base_reference(bert))
    return model


def _perturb_adapter(model: torch.nn.Module, seed: int = 0) -> None:
    """Stand-in for training: LoRA's B matrices start at zero (the adapter is a no-op until trained)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def test_default_targets_are_bert_attention(bert):
    model = build_model(bert)
    assert default_targets(model.backbone) == ["query", "key", "value"]
    _ = apply_adapter(model, "lora", {"r": 4}, base=bert)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable if "lora_A" in n} == {"query", "key", "value"}
    n_train, n_total = parameter_counts(model)
    # per layer and projection: A (r x 32) + B (32 x r) = 256 with r=4; 2 layers x 3 projections
    assert n_train == 2 * 3 * 256 < n_total


def test_unknown_target_module_lists_the_valid_names(bert):
    with pytest.raises(ConfigError) as err:
        _adapted(bert, target_modules=["qurey", "value"])
    message = str(err.value)
    assert "'qurey' (did you mean 'query'?)" in message
    for name in ("query", "key", "value", "dense"):
        assert name in message


def test_options_are_checked_before_a_model_is_built(bert):
    data = make_texts(4, seed=1)
    with pytest.raises(ConfigError) as err:
        finetuner.fit(bert, data, adapter="lora", adapter_options={"rank": 8, "dropout": 1.5}, freeze=True, **FIT)
    problems = "\n".join(err.value.problems)
    assert "unknown key 'rank' (did you mean 'r'?)" in problems
    assert "adapter_options['dropout'] must be a number in [0, 1)" in problems
    assert "freeze=True" in problems
    with pytest.raises(ConfigError, match="unknown adapter 'lroa'"):
        finetuner.fit(bert, data, adapter="lroa", **FIT)
    with pytest.raises(ConfigError, match="give the model as a name"):
        finetuner.fit(build_model(bert), data, adapter="lora", **FIT)


@pytest.mark.integration
def test_fit_trains_only_the_adapter_and_round_trips(bert, tmp_path):
    run = finetuner.fit(bert, make_texts(6, seed=1), make_texts(4, seed=2), adapter="lora", adapter_options={"r": 4},
                        **FIT)
    history = finetuner.get_run(run.name)
    assert history.status()["status"] == "FINISHED"
    art = Path(run.save_artifact(tmp_path / "art"))
    folder = art / artifacts.MODELS_DIR / "model"
    assert artifacts.read_model_metadata(folder)["kind"] == "lora"
    assert not (folder / "model.safetensors").exists()  # the base is not copied
    adapter = load_file(str(folder / "adapter" / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k), "the adapter did not train"
    model = finetuner.get_model(art)
    assert has_adapter(model)
    base = load_file(str(Path(bert) / "model.safetensors"))
    loaded = model.backbone.get_base_model().state_dict()
    for key, value in base.items():  # the base weights are the pretrained ones, untouched by training
        name = key.replace("query.", "query.base_layer.").replace("key.", "key.base_layer.")
        name = name.replace("value.", "value.base_layer.")
        torch.testing.assert_close(loaded[name], value, rtol=0, atol=0, msg=key)
    tuned, pretrained = finetuner.encode(model, TEXTS), finetuner.encode(build_model(bert), TEXTS)
    assert not np.allclose(tuned, pretrained, atol=1e-4), "the adapter changes the embeddings"


@pytest.mark.integration
def test_bf16_training_keeps_the_base_exact_and_the_adapter_in_float32(bert, tmp_path):
    """precision='bf16' (autocast; on a GPU the same path runs on CUDA): the adapter trains, its saved weights stay
    float32, and the frozen base is bit-identical to the pretrained file."""
    run = finetuner.fit(bert, make_texts(6, seed=1), adapter="lora", adapter_options={"r": 4}, precision="bf16",
                        **FIT)
    assert run.config["precision"] == "bf16"  # as config.yml records it
    folder = Path(run.save_artifact(tmp_path / "art")) / artifacts.MODELS_DIR / "model"
    adapter = load_file(str(folder / "adapter" / "adapter_model.safetensors"))
    assert adapter and {v.dtype for v in adapter.values()} == {torch.float32}
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k), "the adapter did not train"
    base = load_file(str(Path(bert) / "model.safetensors"))
    loaded = finetuner.get_model(folder.parent.parent).backbone.get_base_model().state_dict()
    for key, value in base.items():
        name = key.replace("query.", "query.base_layer.").replace("key.", "key.base_layer.")
        name = name.replace("value.", "value.base_layer.")
        torch.testing.assert_close(loaded[name], value, rtol=0, atol=0, msg=key)


def test_adapter_artifact_round_trip_and_merge(bert, tmp_path):
    model = _adapted(bert)
    _perturb_adapter(model)
    model.eval()
    expected = finetuner.encode(model, TEXTS)
    artifacts.save_models(tmp_path / "art", model)
    (tmp_path / "art" / "metadata.yml").write_text("run_name: x\n", encoding="utf-8")
    loaded = finetuner.get_model(tmp_path / "art")
    np.testing.assert_allclose(finetuner.encode(loaded, TEXTS), expected, atol=1e-6)
    from finetuner.cli import main

    assert main(["merge", str(tmp_path / "art"), "--output", str(tmp_path / "merged")]) == 0  # merge_artifact
    merged_dir = tmp_path / "merged"
    assert (merged_dir / "metadata.yml").is_file()  # the run's files are copied
    merged = finetuner.get_model(merged_dir)
    assert not has_adapter(merged)
    np.testing.assert_allclose(finetuner.encode(merged, TEXTS), expected, atol=1e-5)
    # the merged folder is a full sentence-transformers model
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(merged_dir / "models" / "model"), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS), expected, atol=1e-5)
    with pytest.raises(ArtifactError, match="exists"):
        merge_artifact(tmp_path / "art", tmp_path / "merged")
    with pytest.raises(ArtifactError, match="holds no adapter"):
        merge_artifact(merged_dir, tmp_path / "again")


def test_adapter_with_head_round_trips(bert, tmp_path):
    model = build_model(bert, output_dim=8)
    apply_adapter(model, "lora", {"r": 2}, base=base_reference(bert), build={"output_dim": 8})
    assert model.head.linear.weight.requires_grad  # the head trains in full beside the adapter
    _perturb_adapter(model, seed=1)
    torch.nn.init.normal_(model.head.linear.weight)
    model.eval()
    expected = finetuner.encode(model, TEXTS)
    artifacts.save_models(tmp_path / "art", model)
    np.testing.assert_allclose(finetuner.encode(finetuner.get_model(tmp_path / "art"), TEXTS), expected, atol=1e-6)


def test_changed_base_is_refused(tmp_path):
    base = build_tiny_bert(tmp_path / "bert", dropout=0.0)
    model = _adapted(str(base))
    artifacts.save_models(tmp_path / "art", model)
    build_tiny_bert(tmp_path / "bert", dropout=0.0, seed=3)  # other weights in the same folder
    with pytest.raises(ArtifactError, match="other weights than the one the adapter was trained on"):
        finetuner.get_model(tmp_path / "art")


def test_onnx_export_of_an_adapter_model_holds_the_merged_weights(bert, tmp_path):
    pytest.importorskip("onnxruntime")
    from finetuner.export import export_onnx, load_onnx_model

    model = _adapted(bert)
    _perturb_adapter(model)
    model.eval()
    folder = artifacts.save_models(tmp_path / "art", model)["model"]
    export_onnx(model, folder)  # checks parity with the PyTorch model itself
    assert has_adapter(model), "export merges a copy, not the model"
    onnx_vectors = finetuner.encode(load_onnx_model(folder), TEXTS)
    np.testing.assert_allclose(onnx_vectors, finetuner.encode(model, TEXTS), atol=1e-4)


def test_gradient_cache_gives_the_full_batch_adapter_gradients(bert):
    model = _adapted(bert)
    _perturb_adapter(model)  # non-zero B, so the A matrices get gradients too
    objective = MetricObjective(get_loss("NTXentLoss"))
    rows = make_texts(6, seed=5)[:20]
    inputs = model.preprocess([t for t, _ in rows])
    labels = torch.tensor([hash(label) % 97 for _, label in rows])
    full = objective(model(**inputs), labels)
    full.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert expected and all("lora_" in n for n in expected)
    model.zero_grad()
    cached_backward(model, inputs, labels, objective, lambda m, i: m(**i), mini_batch_size=6)
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.integration
def test_fit_with_gradient_cache_checkpointing_and_merge(bert, tmp_path):
    run = finetuner.fit(bert, make_texts(6, seed=1), adapter="lora", adapter_options={"r": 4, "merge": True},
                        mini_batch_size=3, gradient_checkpointing=True, **FIT)
    folder = Path(run.save_artifact(tmp_path / "art")) / "models" / "model"
    assert artifacts.read_model_metadata(folder)["kind"] == "text"  # merged: a full model
    tuned = load_file(str(folder / "model.safetensors"))
    base = load_file(str(Path(bert) / "model.safetensors"))
    moved = {k for k in base if not torch.equal(tuned[k], base[k])}
    assert moved and all(k.rsplit(".", 2)[-2] in ("query", "key", "value") for k in moved), sorted(moved)[:5]


def test_merge_adapters_is_a_no_op_without_adapter(bert):
    model = build_model(bert)
    assert merge_adapters(model) is model and not has_adapter(model)


def test_clip_towers_each_get_an_adapter_and_round_trip(tmp_path):
    from tests.fixtures.artifacts import tiny_models as tm

    clip_dir = str(tm.tiny_clip(tmp_path / "clip"))
    model = build_model(clip_dir)
    for tower in (model.text, model.vision):
        assert default_targets(tower.backbone) == ["q_proj", "k_proj", "v_proj"]
    apply_adapter(model, "lora", {"r": 2, "dropout": 0.0}, base=base_reference(clip_dir))
    for tower in (model.text, model.vision):
        assert {n for n, p in tower.named_parameters() if p.requires_grad} == {
            n for n, _ in tower.named_parameters() if "lora_" in n
        }
    _perturb_adapter(model)
    model.eval()
    images = tm.images(tmp_path / "img", 3)
    expected_text = finetuner.encode(model.text, tm.PROBE_TEXTS)
    expected_image = finetuner.encode(model.vision, images)
    artifacts.save_models(tmp_path / "art", model)
    text = finetuner.get_model(tmp_path / "art", select_model="clip-text")
    vision = finetuner.get_model(tmp_path / "art", select_model="clip-vision")
    np.testing.assert_allclose(finetuner.encode(text, tm.PROBE_TEXTS), expected_text, atol=1e-5)
    np.testing.assert_allclose(finetuner.encode(vision, images), expected_image, atol=1e-5)


def test_vision_defaults_fall_back_to_convolutions():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
    assert default_targets(net) == ["0", "2"]
    vit = pytest.importorskip("transformers").ViTModel(
        pytest.importorskip("transformers").ViTConfig(
            hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, image_size=8, patch_size=4
        )
    )
    assert tuple(default_targets(vit)) in ATTENTION_NAMES[:2]  # the attention projections (names vary by version)
