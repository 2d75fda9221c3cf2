"""The bundled Fashion-MNIST slice of the image demo: complete, balanced, small, licensed, readable."""

from __future__ import annotations

import csv
from collections import Counter

from PIL import Image

from finetuner.data.shaping import read_shape
from finetuner.demos.image import data_dir


def test_bundle_is_balanced_small_and_readable() -> None:
    d = data_dir()
    total = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
    assert total < 1_000_000
    readme = (d / "README.md").read_text(encoding="utf-8")
    assert "Zalando SE" in readme and "MIT" in readme
    for name, per_class in (("train", 40), ("eval", 30)):
        with open(d / f"{name}.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        counts = Counter(r["label"] for r in rows)
        assert len(counts) == 10 and set(counts.values()) == {per_class}
        for r in rows:
            assert r["image"].startswith(f"{name}/")
            with Image.open(d / r["image"]) as img:
                assert (img.mode, img.size) == ("L", (28, 28))
    data = read_shape(str(d / "train.csv"), name="train_data")
    assert data.modality == "image" and len(data) == 400 and len(data.classes) == 10
