"""Artifacts written by finetuner at commit 50c4e0a (tests/fixtures/artifacts) load with today's code, and today's
code writes the same files with the same metadata keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests.fixtures.artifacts import tiny_models as tm

import finetuner
from finetuner.errors import ArtifactError

FIXTURES = Path(__file__).parent / "fixtures" / "artifacts"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
#: written by a run but not kept in the fixture: weights (regenerated) and the HTML report (rebuilt on demand)
NOT_KEPT = (".safetensors", ".bin", ".onnx", "report.html")
#: settings added to config.yml since the fixtures were written, with the values a run records by default
#: (issue 13: remote images fetched before training); nothing else may change
ADDED_SINCE = {
    "config.yml": {
        "prefetch_images": False,
        "on_image_error": "fail",
        "head_learning_rate": None,
        "adapter": None,
        "adapter_options": {},
        "streaming": False,
        "validate_rows": 1000,
        "on_bad_row": "fail",
    }
}
#: settings the fixtures recorded as None (the default, unresolved) that a run now records as the value it used
RESOLVED_SINCE = {"learning_rate": (None, 1e-05), "scheduler": (None, "constant")}


def _with_weights(name: str, tmp_path: Path) -> Path:
    root = Path(shutil.copytree(FIXTURES / name, tmp_path / name))
    for folder in (root / "models").iterdir():
        if folder.is_dir():
            tm.write_weights(folder)
    return root


def _probes(modality: str, tmp_path: Path) -> list:
    return tm.PROBE_TEXTS if modality == "text" else tm.images(tmp_path / "probe", tm.PROBE_IMAGES)


@pytest.mark.parametrize("name", ["fixture-text", "fixture-clip"])
def test_old_artifact_loads_with_todays_code_and_embeds_alike(name, tmp_path):
    root = _with_weights(name, tmp_path)
    input_map = yaml.safe_load((root / "models" / "input-map.yml").read_text(encoding="utf-8"))
    for model_name, modality in input_map.items():
        model = finetuner.get_model(root, select_model=model_name)
        vectors = finetuner.encode(model, _probes(modality, tmp_path))
        np.testing.assert_allclose(vectors, np.asarray(EXPECTED[f"{name}/{model_name}"]), atol=2e-5)


def test_a_single_model_artifact_needs_no_choice(tmp_path):
    root = _with_weights("fixture-text", tmp_path)
    got = finetuner.encode(finetuner.get_model(root), tm.PROBE_TEXTS)
    np.testing.assert_allclose(got, np.asarray(EXPECTED["fixture-text/model"]), atol=2e-5)


def test_a_clip_artifact_asks_which_tower(tmp_path):
    root = _with_weights("fixture-clip", tmp_path)
    for load in (finetuner.get_model, finetuner.build_model):
        with pytest.raises(ArtifactError, match=r"clip-text, clip-vision.*select_model='clip-text'"):
            load(root)
    tower = finetuner.build_model(root, select_model="clip-vision")
    got = finetuner.encode(tower, _probes("image", tmp_path))
    np.testing.assert_allclose(got, np.asarray(EXPECTED["fixture-clip/clip-vision"]), atol=2e-5)


def test_build_model_and_fit_take_an_artifact_folder(tmp_path):
    root = _with_weights("fixture-text", tmp_path)
    got = finetuner.encode(finetuner.build_model(root), tm.PROBE_TEXTS)  # was: "has no 'kind' entry; damaged"
    np.testing.assert_allclose(got, np.asarray(EXPECTED["fixture-text/model"]), atol=2e-5)
    texts = [(f"a {w}", w) for w in ("apple", "bus")] * 4
    options = {"epochs": 1, "batch_size": 4, "num_items_per_class": 2, "device": "cpu", "verbose": False}
    run = finetuner.fit(root, texts, run_name="from-artifact", **options)
    assert run.status()["status"] == "FINISHED"
    clip = _with_weights("fixture-clip", tmp_path)
    with pytest.raises(finetuner.ConfigError, match=r"artifact of 2 models .*models/clip-text"):
        finetuner.fit(clip, texts, epochs=1)


def _layout(root: Path) -> dict[str, object]:
    """Relative file names (weights and report left out) and, for every YAML file, its keys."""
    out: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or path.name.endswith(NOT_KEPT):
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.suffix == ".yml" else None
        out[rel] = sorted(data) if isinstance(data, dict) else None
    return out


def test_todays_code_writes_the_same_files_and_metadata_keys(tmp_path):
    texts = [(f"{c} {w}", w) for w in ("apple", "bus", "train") for c in ("a red", "the green", "a square", "a")]
    run = finetuner.fit(
        str(tm.tiny_bert(tmp_path / "bert")), texts, texts, epochs=1, batch_size=6, seed=0, device="cpu",
        run_name="fixture-text-now", verbose=False,
    )
    images = tm.images(tmp_path / "img", 6)
    pairs = [(f"a {w}", img) for w, img in zip(tm.WORDS, images)]
    clip_run = finetuner.fit(
        str(tm.tiny_clip(tmp_path / "clip")), pairs, pairs, epochs=1, batch_size=3, seed=0, device="cpu",
        run_name="fixture-clip-now", verbose=False,
    )
    for new_run, old in ((run, "fixture-text"), (clip_run, "fixture-clip")):
        root = Path(new_run.save_artifact(tmp_path / "artifacts"))
        now, before = _layout(root), _layout(FIXTURES / old)
        for name, added in ADDED_SINCE.items():
            assert set(now[name]) - set(before[name]) == set(added), name
            now[name] = sorted(set(now[name]) - set(added))
        assert now == before
        models = yaml.safe_load((root / "models" / "input-map.yml").read_text(encoding="utf-8"))
        assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.safetensors")) == sorted(
            f"models/{m}/model.safetensors" for m in models
        )
        # the settings recorded are the same (loss and batch size resolved), apart from paths and names
        new, fixed = (yaml.safe_load((r / "config.yml").read_text(encoding="utf-8")) for r in (root, FIXTURES / old))
        assert {k: new.pop(k) for k in ADDED_SINCE["config.yml"]} == ADDED_SINCE["config.yml"]
        assert {k: (fixed.pop(k), new.pop(k)) for k in RESOLVED_SINCE} == RESOLVED_SINCE
        assert {k: v for k, v in new.items() if k not in ("model", "run_name")} == {
            k: v for k, v in fixed.items() if k not in ("model", "run_name")
        }
