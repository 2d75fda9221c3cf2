"""What a saved model folder holds is fixed: the files finetuner writes, their ``metadata.yml`` and JSON contents
and the names and shapes of the tensors it stores are compared with ``tests/fixtures/saved_model_layout.json``,
recorded from finetuner before ``models/`` became sub-packages (commit 50c4e0a); since then one intended change: the
CLIP text tower records its real token limit (its 16 positions here), no longer 77 whatever the model. Files that
transformers writes (a backbone's ``config.json`` and weights, tokenizer and image processor files) are left out: they
follow the installed transformers. Regenerate (only for an intended format change) with
``python -m tests.models.test_saved_layout tests/fixtures/saved_model_layout.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from safetensors import safe_open
from torch import nn

FIXTURE = Path(__file__).parents[1] / "fixtures" / "saved_model_layout.json"
#: written by transformers' save_pretrained, not by finetuner
HF_FILES = {
    "config.json",
    "generation_config.json",
    "merges.txt",
    "model.safetensors",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "vocab.txt",
}


def describe(folder: Path) -> dict[str, Any]:
    """Every finetuner-written file of a saved model folder: parsed YAML/JSON, tensor name -> shape, or None."""
    meta = yaml.safe_load((folder / "metadata.yml").read_text(encoding="utf-8"))
    hf_backbone = meta["kind"] != "vision" or meta["backbone"]["type"] == "hf"
    out: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_dir():
            out[rel + "/"] = None
        elif "/" not in rel and rel in HF_FILES and (rel != "model.safetensors" or hf_backbone):
            continue
        elif path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                out[rel] = {k: list(f.get_slice(k).get_shape()) for k in sorted(f.keys())}
        elif path.suffix == ".yml":
            out[rel] = yaml.safe_load(path.read_text(encoding="utf-8"))
        elif path.suffix == ".json":
            out[rel] = json.loads(path.read_text(encoding="utf-8"))
        else:
            out[rel] = None
    return out


def saved_models(root: Path) -> dict[str, dict[str, Any]]:
    """Build one model of each saved kind finetuner core writes (tiny, random), save each, describe each."""
    from tests.conftest import build_tiny_bert
    from tests.integration.test_fit_clip import build_tiny_clip

    from finetuner.models import build_model, save_model

    bert = str(build_tiny_bert(root / "src-bert", hidden=16))
    clip = build_tiny_clip(root / "src-clip")
    two_tower = build_model(
        {"text": bert, "vision": "efficientnet-lite0"},
        output_dim=8,
        model_options={
            "text_options": {"pooling": "cls", "normalize": True},
            "vision_options": {"input_size": 64, "pooling": "gem", "augment": True},
        },
    )
    conv = nn.Conv2d(3, 4, 3)
    module_kwargs = {"in_channels": 3, "out_channels": 4, "kernel_size": 3}
    hf_clip = build_model(str(clip))
    models = {
        "text": build_model(bert),
        "text-head-normalize": two_tower.text,
        "efficientnet-lite-gem-head": two_tower.vision,
        "module": build_model(conv, model_options={"input_size": 16, "module_kwargs": module_kwargs}),
        "clip-text-hf": hf_clip.text,
        "clip-vision-hf": hf_clip.vision,
    }
    out = {}
    for name, model in models.items():
        save_model(model, root / name)
        out[name] = describe(root / name)
    return out


def test_saved_models_have_the_recorded_layout(tmp_path: Path) -> None:
    recorded = json.loads(FIXTURE.read_text(encoding="utf-8"))
    now = saved_models(tmp_path)
    assert sorted(now) == sorted(recorded)
    for name in recorded:
        assert now[name] == recorded[name], name
    assert "2_Dense/model.safetensors" in recorded["text-head-normalize"]  # the fixture describes real folders


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        layout = saved_models(Path(tmp))
    Path(sys.argv[1]).write_text(json.dumps(layout, indent=1, sort_keys=True) + "\n", encoding="utf-8")
