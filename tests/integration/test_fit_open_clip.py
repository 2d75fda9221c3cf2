"""CLIP fine-tuning of a tiny random open_clip model end to end: pairs in, two saved towers out.

Needs open_clip (marked ``extras``; skipped without it, run by ``.ci/extras``). Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tests.integration.test_fit_clip import make_pairs

import finetuner
from finetuner.errors import ArtifactError

pytestmark = [pytest.mark.integration, pytest.mark.extras]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("open-clip-pairs")
    return make_pairs(root / "train", 3, seed=1), make_pairs(root / "eval", 1, seed=2)


def test_open_clip_fit_improves_retrieval_and_saves_loadable_towers(tiny_open_clip, pairs, tmp_path):
    train, evals = pairs
    torch.manual_seed(0)
    run = finetuner.fit(f"open_clip:{tiny_open_clip}", train, evals, epochs=6, batch_size=18, learning_rate=3e-3,
                        seed=0, verbose=False)
    m = run.metrics()
    assert m["after"]["reciprocal_rank"] > m["before"]["reciprocal_rank"] + 0.1
    assert m["after"]["image_to_text/reciprocal_rank"] > m["before"]["image_to_text/reciprocal_rank"]
    history = yaml.safe_load((run.directory / "metadata.yml").read_text(encoding="utf-8"))["history"]
    assert history[-1]["loss"] < history[0]["loss"] - 0.5  # CLIPLoss falls over the run

    path = Path(run.save_artifact(tmp_path))
    for tower in ("clip-text", "clip-vision"):
        folder = path / "models" / tower
        assert (folder / "model.safetensors").is_file() and (folder / "open_clip_config.json").is_file()
    with pytest.raises(ArtifactError, match="select_model"):
        finetuner.get_model(path)
    with pytest.raises(ArtifactError, match="no model 'clip-image'"):
        finetuner.get_model(path, select_model="clip-image")
    text_model = finetuner.get_model(path, select_model="clip-text")
    vision_model = finetuner.get_model(path, select_model="clip-vision")
    texts, images = [t for t, _ in evals], [i for _, i in evals]
    t, v = finetuner.encode(text_model, texts), finetuner.encode(vision_model, images)
    assert t.shape == v.shape == (len(evals), 16)
    # the loaded towers rank like the run's own evaluation did: same weights, same preprocessing
    sims = (t / np.linalg.norm(t, axis=1, keepdims=True)) @ (v / np.linalg.norm(v, axis=1, keepdims=True)).T
    ranks = (sims > sims.diagonal()[:, None]).sum(1)
    assert np.mean(1.0 / (1 + ranks)) == pytest.approx(m["after"]["reciprocal_rank"], abs=1e-4)


def test_open_clip_fit_with_frozen_text_tower_wiseft_and_per_tower_rates(tiny_open_clip, pairs, tmp_path):
    from safetensors.torch import load_file

    from finetuner.callback import WiSEFTCallback
    from finetuner.models import build_model

    train, evals = pairs
    torch.manual_seed(0)
    start = build_model(f"open_clip:{tiny_open_clip}")  # the same random init as the run below (same seed)
    torch.manual_seed(0)
    run = finetuner.fit(
        f"open_clip:{tiny_open_clip}", train, evals, epochs=2, batch_size=18, learning_rate=3e-3, seed=0,
        freeze={"text": True, "vision": 1}, model_options={"learning_rates": {"vision": 1e-3}},
        callbacks=[WiSEFTCallback(alpha=0.5)], verbose=False,
    )
    path = Path(run.save_artifact(tmp_path))
    text_state = load_file(str(path / "models" / "clip-text" / "model.safetensors"))
    vision_state = load_file(str(path / "models" / "clip-vision" / "model.safetensors"))
    for key, value in start.text.backbone.state_dict().items():
        assert torch.equal(text_state[key], value), key  # the locked text tower is unchanged
    first = start.vision.backbone.state_dict()
    changed = {k for k, v in first.items() if not torch.equal(vision_state[f"visual.{k}"], v)}
    assert changed and all(k.startswith("transformer.resblocks.1.") for k in changed)
