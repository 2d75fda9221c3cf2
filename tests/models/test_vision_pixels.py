"""Images decoded once (uint8 rows normalised on the device) and conv nets in channels-last: the same embeddings as
decoding every batch in the default layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from finetuner.models import build_model, load_model, save_model
from finetuner.models.vision.encoder import ImageEncoder, is_conv_net
from finetuner.models.vision.pixels import CachedPixels, decode_once
from finetuner.models.vision.transforms import ResizeNormalize

FASHION = Path(__file__).resolve().parents[1] / "fixtures" / "fashion_mnist" / "train"


def _images(tmp_path: Path) -> list[str]:
    """The four Fashion-MNIST fixture PNGs (28x28 grey) and two colour PNGs of other sizes."""
    rng = np.random.default_rng(0)
    paths = sorted(str(p) for p in FASHION.glob("*.png"))
    for i, shape in enumerate([(40, 30, 3), (17, 52, 3)]):
        path = tmp_path / f"colour{i}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _tiny_resnet(directory: Path) -> str:
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel

    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    ResNetModel(config).save_pretrained(directory)
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0).save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def resnet_dir(tmp_path_factory):
    return _tiny_resnet(tmp_path_factory.mktemp("resnet"))


@pytest.fixture(scope="module")
def resnet(resnet_dir):
    return build_model(resnet_dir, output_dim=8).eval()


def test_decoded_once_batches_embed_like_decoding_each_batch(resnet, tmp_path):
    images = _images(tmp_path)
    rows, collate = resnet.training_inputs(images, "cpu")
    assert isinstance(rows, CachedPixels) and rows.pixels.dtype == torch.uint8 and len(rows) == len(images)
    batch = collate([rows[i] for i in range(len(rows))])
    assert batch["pixel_values"].dtype == torch.uint8
    with torch.no_grad():
        expected = resnet(**resnet.preprocess(images))
        torch.testing.assert_close(resnet(**batch), expected, atol=1e-5, rtol=0)


def test_resize_normalize_splits_exactly(tmp_path):
    images = _images(tmp_path)
    transform = ResizeNormalize(24, mean=[0.2, 0.4, 0.6], std=[0.3, 0.2, 0.1], crop_pct=0.875)
    cache = decode_once(images, transform)
    from finetuner.data.images import load_image
    from finetuner.models.vision.pixels import split_transform

    _, normalize = split_transform(transform)
    expected = transform([load_image(p) for p in images])
    torch.testing.assert_close(normalize(cache.pixels), expected, atol=1e-5, rtol=0)


def test_no_cache_with_augmentation_or_over_budget(tmp_path, resnet, resnet_dir):
    images = _images(tmp_path)
    assert decode_once(images, resnet.transform, budget=len(images) * 3 * 32 * 32 - 1) is None
    assert decode_once(images, resnet.transform, budget=len(images) * 3 * 32 * 32) is not None
    augmented = build_model(resnet_dir, model_options={"augment": True})
    rows, collate = augmented.training_inputs(images, "cpu")
    assert rows == images and collate == augmented.training_preprocess  # the original is needed every epoch


def test_conv_nets_run_channels_last_with_the_same_embeddings(resnet, tmp_path):
    assert is_conv_net(resnet.backbone) and resnet.channels_last
    conv = next(m for m in resnet.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    images = _images(tmp_path)
    plain = ImageEncoder(_clone_backbone(resnet), resnet.transform, output_dim=8, channels_last=False).eval()
    plain.head.load_state_dict(resnet.head.state_dict())
    inputs = resnet.preprocess(images)
    with torch.no_grad():
        torch.testing.assert_close(resnet(**inputs), plain(**inputs), atol=1e-5, rtol=1e-5)
    save_model(resnet, tmp_path / "saved")  # weights are written contiguous
    loaded = load_model(tmp_path / "saved").eval()
    assert loaded.channels_last
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs), resnet(**inputs), atol=1e-6, rtol=0)


def _clone_backbone(model):
    import copy

    backbone = copy.deepcopy(model.backbone)
    return backbone.to(memory_format=torch.contiguous_format)


def test_vision_transformers_and_user_modules_keep_their_layout():
    from transformers import ViTConfig, ViTModel

    vit = ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             image_size=32, patch_size=8))
    assert not is_conv_net(vit)
    net = torch.nn.Sequential(*[torch.nn.Conv2d(3, 3, 3, padding=1) for _ in range(9)])
    from finetuner.models.vision.backbones import ModuleBackbone

    assert not ImageEncoder(ModuleBackbone(net), ResizeNormalize(16)).channels_last  # may .view() its activations
    assert ImageEncoder(ModuleBackbone(net), ResizeNormalize(16), channels_last=True).channels_last
