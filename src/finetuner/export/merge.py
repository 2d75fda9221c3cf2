"""``finetuner merge``: an artifact whose models hold adapters alone becomes one with full, merged weights.

The merged model folders have the layout of a full fine-tune (a text model loads with
``sentence_transformers.SentenceTransformer(path)`` and ``AutoModel``), no longer need the base model to load, and
export to ONNX like any other.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from finetuner import artifacts
from finetuner.errors import ArtifactError
from finetuner.fileio import atomic_directory
from finetuner.models.adapters import ADAPTER_KIND, merge_adapters
from finetuner.models.io import load_model, save_model


def merge_artifact(source: str | Path, output: str | Path) -> Path:
    """Write a copy of ``source`` (an artifact, run folder or single model folder) to ``output`` with every
    adapter merged into its base's weights; models without an adapter are copied as they are. Returns ``output``.

    Raises:
        ArtifactError: ``source`` is not an artifact or model folder, ``output`` exists, or a base cannot be loaded.

    Example:
        >>> merge_artifact('artifacts/run-lora', 'artifacts/run-lora-merged')  # doctest: +SKIP
        PosixPath('artifacts/run-lora-merged')
    """
    src, out = Path(source).expanduser(), Path(output).expanduser()
    dirs = artifacts.model_dirs(src)  # an ArtifactError for anything else
    if out.exists():
        raise ArtifactError(f"{out} exists; merge writes a new folder (choose another --output, or remove it)")
    if not any(artifacts.read_model_metadata(d).get("kind") == ADAPTER_KIND for d in dirs):
        raise ArtifactError(f"{src} holds no adapter to merge (its models are full models already)")
    if not artifacts.is_artifact(src):  # a single model folder
        return save_model(merge_adapters(load_model(src)), out)
    with atomic_directory(out) as staging:
        shutil.copytree(src, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*artifacts.RUN_ONLY))
        for d in dirs:
            if artifacts.read_model_metadata(d).get("kind") == ADAPTER_KIND:
                save_model(merge_adapters(load_model(d)), staging / d.relative_to(src))
    return out
