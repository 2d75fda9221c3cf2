"""A saved model's default embedding size (Matryoshka runs): ``truncate_dim``, read by ``get_model`` (``encode``
then returns the first ``truncate_dim`` dimensions) and by sentence-transformers, which reads it from
``config_sentence_transformers.json``."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from finetuner import artifacts
from finetuner.errors import ConfigError

#: sentence-transformers' file of model-wide settings (``truncate_dim``, prompts, similarity function)
ST_CONFIG_FILE = "config_sentence_transformers.json"


def set_truncate_dim(path: str | Path, dim: int | None, select_model: str | None = None) -> list[Path]:
    """Record ``truncate_dim`` (None removes it) in every model folder of an artifact (or the one selected, or a
    single model folder); returns the folders changed.

    Raises:
        ConfigError: ``dim`` is not an int >= 1 or exceeds a model's embedding size.

    Example:
        >>> set_truncate_dim('artifacts/run-matryoshka', 128)  # doctest: +SKIP
        [PosixPath('artifacts/run-matryoshka/models/model')]
    """
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 1):
        raise ConfigError(f"truncate_dim must be an int >= 1 (or None); received {dim!r}")
    folders = artifacts.model_dirs(path, select_model)
    metas = [artifacts.read_model_metadata(d) for d in folders]
    for d, meta in zip(folders, metas):
        width = meta.get("output_dim")
        if dim is not None and isinstance(width, int) and dim > width:
            raise ConfigError(f"truncate_dim={dim} exceeds the embedding size {width} of the model in {d}")
    for d, meta in zip(folders, metas):
        meta.pop("truncate_dim", None)
        if dim is not None:
            meta["truncate_dim"] = dim
        (d / artifacts.MODEL_METADATA_FILE).write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
        if (d / "modules.json").is_file():  # a sentence-transformers folder
            st_file = d / ST_CONFIG_FILE
            config = json.loads(st_file.read_text(encoding="utf-8")) if st_file.is_file() else {}
            config.pop("truncate_dim", None)
            if dim is not None:
                config["truncate_dim"] = dim
            st_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folders
