"""Image models from real timm architectures (timm's tiny ``test_*`` models, random weights).

Marked ``extras``: skipped without timm (``.ci/extras`` runs them). timm would download pretrained weights, so
``timm.create_model`` is wrapped to build with ``pretrained=False``; everything else is timm's own code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import finetuner
from finetuner.models import build_model
from finetuner.models.io import load_model, save_model

pytestmark = pytest.mark.extras


@pytest.fixture
def timm(monkeypatch: pytest.MonkeyPatch):
    timm = pytest.importorskip("timm")
    create = timm.create_model
    calls: list[tuple[str, bool]] = []

    def offline(name: str, pretrained: bool = False, **kwargs):
        calls.append((name, pretrained))
        return create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    timm.calls = calls
    return timm


def picture(height: int, width: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    draw.ellipse([width * 0.2, height * 0.2, width * 0.7, height * 0.8], fill=colour)
    draw.rectangle([width * 0.5, height * 0.1, width * 0.9, height * 0.5], fill=(30, 30, 200))
    return img


@pytest.mark.parametrize("arch", ["test_vit", "test_convnext", "test_efficientnet"])
def test_timm_model_embeds_like_timm_and_round_trips(timm, arch: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(f"timm:{arch}").eval()
    net = model.backbone.model
    assert timm.calls[0] == (arch, True)  # finetuner asks for pretrained weights (the wrapper builds without)
    data = timm.data.resolve_model_data_config(net)
    assert model.transform.describe()["input_size"] == list(data["input_size"][1:])
    images = [picture(160, 160, 0), picture(224, 224, 1)]  # square: finetuner's resize equals timm's exactly
    pixels = model.preprocess(images)["pixel_values"]
    theirs = torch.stack([timm.data.create_transform(**data)(img) for img in images])
    torch.testing.assert_close(pixels, theirs, rtol=0, atol=1e-5)
    with torch.no_grad():
        expected = net.forward_head(net.forward_features(theirs), pre_logits=True)  # timm's own pooled features
        torch.testing.assert_close(model(**model.preprocess(images)), expected, rtol=0, atol=1e-5)
    save_model(model, tmp_path / arch)
    loaded = load_model(tmp_path / arch)
    assert timm.calls[-1] == (arch, False)  # rebuilt offline from the recorded architecture
    np.testing.assert_allclose(finetuner.encode(loaded, images), finetuner.encode(model, images), atol=1e-6)


def test_timm_transform_of_non_square_images_equals_timms(timm) -> None:
    model = build_model("timm:test_vit")
    data = timm.data.resolve_model_data_config(model.backbone.model)
    img = picture(200, 300)
    torch.testing.assert_close(
        model.preprocess([img])["pixel_values"][0], timm.data.create_transform(**data)(img), rtol=0, atol=1e-5
    )


@pytest.mark.parametrize(("arch", "blocks"), [("test_vit", "blocks"), ("test_convnext", "stages")])
def test_freeze_n_counts_timms_blocks(timm, arch: str, blocks: str) -> None:
    model = build_model(f"timm:{arch}", output_dim=8, freeze=1)
    last = len(getattr(model.backbone.model, blocks)) - 1
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    backbone_trainable = {n for n in trainable if n.startswith("backbone.")}
    assert backbone_trainable and all(n.startswith(f"backbone.model.{blocks}.{last}.") for n in backbone_trainable)
    assert {"head.linear.weight", "head.linear.bias"} <= trainable


def test_timm_image_model_fits(timm, tmp_path: Path) -> None:
    train = [(picture(40, 40, seed), f"class-{seed % 3}") for seed in range(12)]
    run = finetuner.fit("timm:test_efficientnet", train, epochs=1, batch_size=8, output_dim=8, freeze=2,
                        model_options={"input_size": 48}, verbose=False)
    assert run.status()["status"] == "FINISHED"
    model = finetuner.get_model(run.save_artifact(tmp_path))
    assert finetuner.encode(model, [picture(40, 40)]).shape == (1, 8)
