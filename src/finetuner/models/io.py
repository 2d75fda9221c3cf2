"""Saving and loading single models: ``<dir>/metadata.yml`` + the model's own files (safetensors weights).

Loading never unpickles: weights are read with safetensors (or transformers' safetensors loader), and the model
class is picked by the ``kind`` recorded in ``metadata.yml`` from the fixed table
:data:`finetuner.models.registry.LOADERS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from finetuner.errors import ArtifactError
from finetuner.fileio import atomic_directory
from finetuner.models.base import EmbeddingModel
from finetuner.models.registry import LOADERS, loader

METADATA_FILE = "metadata.yml"


def save_model(model: EmbeddingModel, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Save ``model`` into ``directory`` with a ``metadata.yml`` describing how to rebuild it.

    The folder is written under a temporary name and renamed into place (``metadata.yml`` last), so a crash
    never leaves a half-written model under ``directory``; an existing ``directory`` is replaced whole.

    Example:
        >>> save_model(model, 'out/model')  # doctest: +SKIP
        PosixPath('out/model')
    """
    d = Path(directory)
    with atomic_directory(d) as staging:
        model.save(staging)
        meta = dict(model.metadata()) if hasattr(model, "metadata") else {"kind": model.kind}
        meta.update(extra or {})
        (staging / METADATA_FILE).write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    return d


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """The ``metadata.yml`` of a saved model folder; an :class:`ArtifactError` when it is missing or unreadable.

    Example:
        >>> read_metadata('/nonexistent')
        Traceback (most recent call last):
        ...
        finetuner.errors.ArtifactError: /nonexistent is not a saved finetuner model: no metadata.yml there
    """
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        raise ArtifactError(f"{directory} is not a saved finetuner model: no {METADATA_FILE} there")
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ArtifactError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(meta, dict) or "kind" not in meta:
        raise ArtifactError(f"{path} has no 'kind' entry; the artifact is damaged")
    return meta


def load_model(directory: str | Path) -> Any:
    """Rebuild a model saved with :func:`save_model`, offline.

    Example:
        >>> model = load_model('out/model')  # doctest: +SKIP
    """
    d = Path(directory)
    meta = read_metadata(d)
    load = loader(meta["kind"])
    if load is None:
        raise ArtifactError(
            f"{d} holds a model of kind {meta['kind']!r}, which this finetuner cannot load; "
            f"known kinds: {', '.join(sorted(LOADERS))}"
        )
    return load(d, meta)
