"""CLIP with the ecosystem pieces: per-epoch evaluation and val_loss on pairs, both towers in ONNX, thumbnails."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from tests.integration.test_fit_clip import build_tiny_clip, make_pairs

import finetuner
from finetuner.callback import BestModelCheckpoint, EvaluationCallback
from finetuner.errors import ConfigError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clip_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip-eco")
    return str(build_tiny_clip(root / "model")), make_pairs(root / "train", 1, seed=1), make_pairs(root / "eval", 1, 2)


def test_clip_run_with_callbacks_onnx_and_report(clip_data, tmp_path):
    pytest.importorskip("onnxruntime")
    model_dir, train, evals = clip_data
    evaluation = EvaluationCallback(evals, model="clip-text", index_model="clip-vision", limit=5)
    best = BestModelCheckpoint()  # val_loss: the CLIP loss on the evaluation pairs
    run = finetuner.fit(
        model_dir,
        train,
        evals,
        epochs=2,
        batch_size=9,
        learning_rate=3e-3,
        seed=0,
        verbose=False,
        to_onnx=True,
        callbacks=[best, evaluation],
    )
    history = yaml.safe_load((run.directory / "metadata.yml").read_text())["history"]
    assert [sorted(set(h) & {"val_loss", "reciprocal_rank"}) for h in history] == [["reciprocal_rank", "val_loss"]] * 2
    assert best.best_epoch in (1, 2)

    path = run.save_artifact(tmp_path / "artifacts")
    images = [image for _, image in evals[:4]]
    texts = [text for text, _ in evals[:4]]
    for tower, items in (("clip-vision", images), ("clip-text", texts)):
        onnx_model = finetuner.get_model(path, select_model=tower, is_onnx=True)
        torch_model = finetuner.get_model(path, select_model=tower)
        a, b = finetuner.encode(onnx_model, items), finetuner.encode(torch_model, items)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert a.shape == (4, 16) and cos.min() > 0.999, tower

    page = (run.directory / "report.html").read_text()
    assert page.count("data:image/jpeg") >= 5  # the image results of the example queries are thumbnails


def test_evaluation_callback_rejects_a_tower_of_the_wrong_modality(clip_data):
    model_dir, train, evals = clip_data
    with pytest.raises(ConfigError, match="cannot encode text items"):
        finetuner.fit(
            model_dir,
            train,
            epochs=1,
            batch_size=9,
            verbose=False,
            callbacks=[EvaluationCallback(evals, model="clip-vision")],
        )
