"""open_clip models as two towers: names, towers equal to open_clip's own encoders, freezing, save and load.

Tests that need open_clip are marked ``extras`` and skip without it (``.ci/extras`` runs them); the name parsing
and the missing-package error are checked everywhere. Architectures are tiny and random; nothing is downloaded.
"""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import TINY_OPEN_CLIP, register_open_clip_config

import finetuner
from finetuner.errors import ArtifactError, ConfigError, DataError
from finetuner.models import build_model, detect_family
from finetuner.models.clip import TwoTowerModel
from finetuner.models.clip.open_clip_names import is_open_clip_name, parse_open_clip_name
from finetuner.models.io import load_model, save_model

TEXTS = ["a red square", "a blue circle on white", "hello"]


def images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (30 + 7 * i, 40, 3), dtype=np.uint8)) for i in range(n)]


# -- names (no open_clip needed) -----------------------------------------------------------------------------


def test_open_clip_names_are_read_and_detected_as_clip() -> None:
    assert parse_open_clip_name("ViT-B-32::openai") == ("ViT-B-32", "openai")
    assert parse_open_clip_name("open_clip:RN50") == ("RN50", None)
    assert parse_open_clip_name("open_clip:ViT-B-32::laion2b_s34b_b79k") == ("ViT-B-32", "laion2b_s34b_b79k")
    assert parse_open_clip_name("open_clip:hf-hub:org/repo") == ("hf-hub:org/repo", None)
    for bad in ("ViT-B-32::", "open_clip:", "open_clip:hf-hub:org/repo::tag"):
        with pytest.raises(ConfigError, match=r"open_clip|hf-hub"):
            parse_open_clip_name(bad)
    assert detect_family("ViT-B-32::openai") == detect_family("open_clip:hf-hub:org/repo") == "clip"
    assert not is_open_clip_name("openai/clip-vit-base-patch32") and not is_open_clip_name("timm:resnet18")


def test_missing_open_clip_says_what_was_asked_and_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip -> ImportError
    with pytest.raises(ConfigError) as err:
        build_model("ViT-B-32::openai")
    message = str(err.value)
    assert "'ViT-B-32::openai'" in message and "pip install 'finetuner[open-clip]'" in message
    assert "torchvision" in message
    with pytest.raises(ConfigError, match="finetuner\\[open-clip\\]"):
        finetuner.fit("open_clip:ViT-B-32", [("a cat", np.zeros((8, 8, 3), np.uint8))] * 2, epochs=1, verbose=False)


# -- with open_clip --------------------------------------------------------------------------------------------


@pytest.fixture
def open_clip(tiny_open_clip: str):  # the module, once the tiny architecture is registered
    import open_clip

    return open_clip


def whole_model(open_clip, model: TwoTowerModel, arch: str):
    """open_clip's own model and eval transform for ``arch``, holding the towers' weights."""
    reference, _, transform = open_clip.create_model_and_transforms(arch)
    state = {**model.text.backbone.state_dict()}
    state.update({f"visual.{k}": v for k, v in model.vision.backbone.state_dict().items()})
    missing, unexpected = reference.load_state_dict(state, strict=False)
    assert set(missing) == {"logit_scale"} and not unexpected  # the towers hold every other weight
    return reference.eval(), transform


@pytest.mark.extras
def test_towers_embed_like_open_clip_itself(open_clip, tiny_open_clip: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(f"open_clip:{tiny_open_clip}").eval()
    assert isinstance(model, TwoTowerModel) and model.text.output_dim == model.vision.output_dim == 16
    reference, transform = whole_model(open_clip, model, tiny_open_clip)
    tokenizer = open_clip.get_tokenizer(tiny_open_clip)
    with torch.no_grad():
        ours_text = model.text(**model.text.preprocess(TEXTS))
        theirs_text = reference.encode_text(tokenizer(TEXTS))
        paths = []
        for i, img in enumerate(images()):
            paths.append(str(tmp_path / f"{i}.png"))
            img.save(paths[-1])
        ours_image = model.vision(**model.vision.preprocess(paths))  # finetuner decodes the files
        theirs_image = reference.encode_image(torch.stack([transform(Image.open(p)) for p in paths]))
    assert ours_text.shape == (3, 16) and ours_image.shape == (3, 16)
    torch.testing.assert_close(ours_text, theirs_text, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours_image, theirs_image, rtol=0, atol=1e-6)
    # pre-tokenised training rows pad back to exactly what preprocess gives
    rows = model.text.pretokenize(TEXTS)
    assert len(rows[2]["input_ids"]) < len(rows[1]["input_ids"]) < 16
    assert torch.equal(model.text.collate_tokens(rows)["input_ids"], model.text.preprocess(TEXTS)["input_ids"])
    with pytest.raises(DataError, match="item 1 is int"):
        model.text.preprocess(["ok", 3])


@pytest.mark.extras
def test_towers_save_and_load_offline_with_equal_embeddings(
    open_clip, tiny_open_clip: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(1)
    model = build_model(f"open_clip:{tiny_open_clip}").eval()
    save_model(model.text, tmp_path / "clip-text")
    save_model(model.vision, tmp_path / "clip-vision")
    from safetensors.torch import load_file

    text_keys = set(load_file(str(tmp_path / "clip-text" / "model.safetensors")))
    vision_keys = set(load_file(str(tmp_path / "clip-vision" / "model.safetensors")))
    whole = set(open_clip.create_model(tiny_open_clip).state_dict())
    assert all(k.startswith("visual.") for k in vision_keys) and not any(k.startswith("visual.") for k in text_keys)
    assert text_keys | vision_keys | {"logit_scale"} == whole  # the halves, named as in the whole model

    def no_network(*args, **kwargs):
        raise AssertionError("loading a saved tower tried to download")

    monkeypatch.setattr("open_clip.factory.download_pretrained", no_network)
    monkeypatch.setattr("open_clip.factory.download_pretrained_from_hf", no_network)
    monkeypatch.delitem(open_clip.factory._MODEL_CONFIGS, tiny_open_clip)  # the folder describes the architecture
    text, vision = load_model(tmp_path / "clip-text"), load_model(tmp_path / "clip-vision")
    assert type(text).__name__ == "OpenCLIPTextTower" and type(vision).__name__ == "OpenCLIPVisionTower"
    assert not hasattr(text.backbone, "visual")  # each tower keeps only its own half
    assert sum(p.numel() for p in text.parameters()) == sum(p.numel() for p in model.text.parameters())
    np.testing.assert_allclose(finetuner.encode(text, TEXTS), finetuner.encode(model.text, TEXTS), atol=1e-6)
    np.testing.assert_allclose(
        finetuner.encode(vision, images()), finetuner.encode(model.vision, images()), atol=1e-6
    )


@pytest.mark.extras
def test_per_tower_freeze_and_learning_rates(open_clip, tiny_open_clip: str) -> None:
    from finetuner.config import TrainingConfig
    from finetuner.losses.contrastive import CLIPLoss
    from finetuner.training.loop import build_optimizer

    model = build_model(
        f"open_clip:{tiny_open_clip}",
        freeze={"text": True, "vision": 1},
        model_options={"learning_rates": {"text": 1e-4, "vision": 1e-6}},
    )
    assert not any(p.requires_grad for p in model.text.parameters())
    trainable = {n for n, p in model.vision.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("backbone.transformer.resblocks.1.") for n in trainable)
    optimizer = build_optimizer(TrainingConfig(learning_rate=1e-3), model, CLIPLoss())
    assert [g["lr"] for g in optimizer.param_groups] == [1e-6, 1e-3]  # vision tower, then the temperature
    text_layers = build_model(f"open_clip:{tiny_open_clip}", freeze={"text": 1})
    trainable = {n for n, p in text_layers.text.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("backbone.transformer.resblocks.1.") for n in trainable)
    assert all(p.requires_grad for p in text_layers.vision.parameters())


@pytest.mark.extras
def test_clip_loss_starts_from_the_models_trained_temperature(
    open_clip, tiny_open_clip: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetuner.losses import get_loss
    from finetuner.training.build import clip_loss_options

    create = open_clip.create_model

    def trained(*args, **kwargs):
        model = create(*args, **kwargs)
        model.logit_scale.data.fill_(math.log(50.0))  # as a trained checkpoint holds it
        return model

    monkeypatch.setattr(open_clip, "create_model", trained)
    model = build_model(f"open_clip:{tiny_open_clip}")
    assert model.temperature == pytest.approx(1 / 50)
    assert "logit_scale" not in dict(model.named_parameters())  # not a tower weight: CLIPLoss learns it
    loss = get_loss("CLIPLoss", clip_loss_options(model, None))
    assert float(loss.logit_scale.detach()) == pytest.approx(math.log(50.0), abs=1e-5)
    loss = get_loss("CLIPLoss", clip_loss_options(model, {"temperature": 0.2}))
    assert float(loss.logit_scale.detach()) == pytest.approx(math.log(5.0), abs=1e-5)


@pytest.mark.extras
def test_pretrained_names_reach_open_clip_as_it_expects(
    open_clip, tiny_open_clip: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finetuner's names map to open_clip's (arch, tag); OpenAI weights get QuickGELU. No weights are fetched:
    create_model is replaced by one that records its arguments and builds the tiny model."""
    calls: list[tuple[str, dict]] = []
    create = open_clip.create_model

    def record(name, **kwargs):
        calls.append((name, kwargs))
        return create(tiny_open_clip)

    monkeypatch.setattr(open_clip, "create_model", record)
    build_model("ViT-B-32::openai")
    build_model("vit-b-32::LAION2B-S34B-B79K")  # Finetuner's hyphenated tags, any case
    build_model("open_clip:RN50")
    assert [(n, k["pretrained"], k["force_quick_gelu"]) for n, k in calls] == [
        ("ViT-B-32", "openai", True),
        ("ViT-B-32", "laion2b_s34b_b79k", False),
        ("RN50", None, False),
    ]
    assert all(k["pretrained_text"] is False and k["pretrained_image"] is False for _, k in calls)


@pytest.mark.extras
def test_bad_open_clip_names_and_options_are_explained(open_clip, tiny_open_clip: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown open_clip architecture 'ViT-B-33'.*did you mean 'ViT-B-32'"):
        build_model("ViT-B-33::openai")
    with pytest.raises(ConfigError, match=r"unknown pretrained tag 'openia'.*'ViT-B-32::openai'.*Its tags: openai"):
        build_model("ViT-B-32::openia")
    with pytest.raises(ConfigError, match=r"no pretrained weights for 'finetuner-tiny'.*open_clip:finetuner-tiny"):
        build_model(f"{tiny_open_clip}::openai")
    with pytest.raises(ConfigError, match="output_dim is not supported"):
        build_model(f"open_clip:{tiny_open_clip}", output_dim=8)
    with pytest.raises(ConfigError, match=r"unknown model_options \['pooling'\].*learning_rates, augment"):
        build_model(f"open_clip:{tiny_open_clip}", model_options={"pooling": "cls"})
    with pytest.raises(ConfigError, match="not a valid open_clip augmentation"):
        build_model(f"open_clip:{tiny_open_clip}", model_options={"augment": {"flip": 0.5}})
    with pytest.raises(ConfigError) as err:  # fit reports a bad name with every other problem, up front
        finetuner.fit("ViT-B-32::openia", [("a cat", np.zeros((8, 8, 3), np.uint8))] * 2, epochs=0, verbose=False)
    assert any("'openia'" in p for p in err.value.problems) and any("epochs" in p for p in err.value.problems)


@pytest.mark.extras
def test_registered_open_clip_aliases_name_real_weights(open_clip) -> None:
    from finetuner.models.clip.open_clip_names import resolve_open_clip_name
    from finetuner.models.registry import MODELS

    aliases = [name for name in MODELS if is_open_clip_name(name)]
    assert "ViT-B-32::openai" in aliases and len(aliases) >= 5
    for name in aliases:
        arch, tag = resolve_open_clip_name(name, open_clip)
        assert MODELS[name].family == "clip" and open_clip.is_pretrained_cfg(arch, tag), name


@pytest.mark.extras
def test_augment_uses_open_clips_train_transform_for_training_only(open_clip, tiny_open_clip: str) -> None:
    model = build_model(f"open_clip:{tiny_open_clip}", model_options={"augment": {"scale": (0.3, 0.5)}})
    img = images(1)
    torch.manual_seed(0)
    train = model.vision.training_preprocess(img * 4)["pixel_values"]
    plain = model.vision.preprocess(img)["pixel_values"]
    assert train.shape == (4, 3, 32, 32) and not torch.allclose(train[0], plain[0])
    assert not torch.allclose(train[0], train[1])  # random crops
    assert torch.equal(model.vision.preprocess(img)["pixel_values"], plain)  # encoding stays deterministic
    assert build_model(f"open_clip:{tiny_open_clip}").vision.train_transform is None  # off by default


@pytest.mark.extras
def test_timm_trunk_and_hugging_face_text_encoder_variants(
    open_clip, tiny_bert: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open_clip models whose vision tower is a timm model and whose text tower is a Hugging Face encoder:
    freeze=N finds timm's blocks, and the saved text tower keeps the tokenizer and encoder config."""
    pytest.importorskip("timm")
    bert = tmp_path / "bert"
    shutil.copytree(tiny_bert, bert)
    config = {
        "embed_dim": 16,
        "vision_cfg": {"timm_model_name": "test_convnext", "timm_pool": "avg", "timm_proj": "linear",
                       "image_size": 32},
        "text_cfg": {"hf_model_name": str(bert), "hf_tokenizer_name": str(bert), "hf_proj_type": "linear",
                     "hf_pooler_type": "mean_pooler", "context_length": 16},
    }
    name = register_open_clip_config(tmp_path / "configs", "finetuner-tiny-hf-timm", config)
    torch.manual_seed(0)
    model = build_model(f"open_clip:{name}", freeze={"vision": 1, "text": 1}).eval()
    vision_trainable = {n for n, p in model.vision.named_parameters() if p.requires_grad}
    assert vision_trainable and all(n.startswith("backbone.trunk.stages.3.") for n in vision_trainable)
    text_trainable = {n for n, p in model.text.named_parameters() if p.requires_grad}
    assert text_trainable and all(".encoder.layer.1." in n for n in text_trainable)
    save_model(model.text, tmp_path / "text")
    save_model(model.vision, tmp_path / "vision")
    expected_text = finetuner.encode(model.text, ["apple banana", "car"])
    expected_image = finetuner.encode(model.vision, images(2))
    shutil.rmtree(bert)  # the saved towers must not need the original folders
    monkeypatch.delitem(open_clip.factory._MODEL_CONFIGS, name)
    np.testing.assert_allclose(
        finetuner.encode(load_model(tmp_path / "text"), ["apple banana", "car"]), expected_text, atol=1e-6
    )
    np.testing.assert_allclose(finetuner.encode(load_model(tmp_path / "vision"), images(2)), expected_image, atol=1e-6)


@pytest.mark.extras
def test_open_clip_towers_export_to_onnx(open_clip, tiny_open_clip: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from finetuner.export.onnx import export_onnx, load_onnx_model

    torch.manual_seed(0)
    model = build_model(f"open_clip:{tiny_open_clip}")
    for name, tower, items in (("text", model.text, TEXTS), ("vision", model.vision, images())):
        save_model(tower, tmp_path / name)
        export_onnx(tower, tmp_path / name)
        onnx_model = load_onnx_model(tmp_path / name)
        np.testing.assert_allclose(
            finetuner.encode(onnx_model, items), finetuner.encode(tower, items), atol=1e-4
        )


@pytest.mark.extras
def test_saved_tower_with_damaged_config_is_refused(open_clip, tiny_open_clip: str, tmp_path: Path) -> None:
    model = build_model(f"open_clip:{tiny_open_clip}")
    save_model(model.text, tmp_path / "text")
    (tmp_path / "text" / "open_clip_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"open_clip_config\.json is not valid JSON"):
        load_model(tmp_path / "text")
    assert TINY_OPEN_CLIP["embed_dim"] == model.output_dim


@pytest.mark.extras
def test_gradient_checkpointing_switches_open_clips_blocks_with_equal_gradients(open_clip, tiny_open_clip: str) -> None:
    from finetuner.training.loop import enable_gradient_checkpointing

    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = build_model(f"open_clip:{tiny_open_clip}").train()
        if checkpointing:
            assert enable_gradient_checkpointing(model) == 2  # one per tower
            assert model.text.backbone.transformer.grad_checkpointing
            assert model.vision.backbone.transformer.grad_checkpointing
        text, image = model(text=model.text.preprocess(TEXTS), image=model.vision.preprocess(images()))
        (text @ image.T).trace().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, recomputed = gradients(False), gradients(True)
    assert plain.keys() == recomputed.keys() and len(plain) > 10
    for name, grad in plain.items():
        torch.testing.assert_close(recomputed[name], grad, rtol=1e-5, atol=1e-6)
