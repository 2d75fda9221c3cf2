"""The on-disk layout of a run's artifact: the one module that knows where each file lives and what it holds.

An artifact (``Run.save_artifact`` copies a run folder into one) looks like this::

    <run name>/
      config.yml             CONFIG_FILE        the run's settings, loss and batch size resolved (TrainingConfig)
      metadata.yml           RUN_METADATA_FILE  the run's metadata (RUN_METADATA_KEYS):
                                                  run_name, history (a record per epoch: epoch, loss, metrics),
                                                  finetuner_version; description when the run has one
      metrics.yml            METRICS_FILE       {'before': {metric: value}, 'after': {...}} (empty without eval data)
      example-results.yml    EXAMPLES_FILE      {'before': [query, label, results], 'after': [...]}
      logs.txt               LOG_FILE           the run's log
      report.html            REPORT_FILE        the run's page (finetuner.report)
      models/
        input-map.yml        INPUT_MAP_FILE     {model name: modality}, e.g. {'model': 'text'} or
                                                  {'clip-text': 'text', 'clip-vision': 'image'}
        <model name>/        a model folder (finetuner.models.io):
          metadata.yml       MODEL_METADATA_FILE  the model's metadata: 'kind' (which loader rebuilds it), modality,
                                                  output_dim and the model's own settings
          model.safetensors, tokenizer / processor files ...
          model.onnx         ONNX_FILE          with fit(to_onnx=True) or `finetuner export`
          onnx.yml           ONNX_METADATA_FILE input names, opset, measured parity

A run folder under the runs directory has the same layout plus ``status.yml`` (STATUS_FILE), ``checkpoints/``
(CHECKPOINTS_DIR) and ``.lock`` (LOCK_FILE: held by the process that trains the run, :mod:`finetuner.run_lock`),
which an artifact leaves out. The run's metadata and a model's metadata share a file name but
not a schema: :func:`read_run_metadata` reads the first, :func:`read_model_metadata` the second.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finetuner.errors import ArtifactError
from finetuner.fileio import read_yaml, write_yaml
from finetuner.models.io import METADATA_FILE as MODEL_METADATA_FILE
from finetuner.models.io import read_metadata as read_model_metadata
from finetuner.models.io import save_model
from finetuner.safety import is_plain_name

CONFIG_FILE = "config.yml"
RUN_METADATA_FILE = "metadata.yml"
METRICS_FILE = "metrics.yml"
EXAMPLES_FILE = "example-results.yml"
LOG_FILE = "logs.txt"
REPORT_FILE = "report.html"
STATUS_FILE = "status.yml"
LOCK_FILE = ".lock"
CHECKPOINTS_DIR = "checkpoints"
MODELS_DIR = "models"
INPUT_MAP_FILE = "input-map.yml"
ONNX_FILE = "model.onnx"
ONNX_METADATA_FILE = "onnx.yml"
#: the keys of the run's ``metadata.yml``
RUN_METADATA_KEYS = ("run_name", "history", "finetuner_version")
#: the name of the one model of a single-model artifact
SINGLE_MODEL = "model"
#: what only a run folder holds (``save_artifact`` leaves it out)
RUN_ONLY = (STATUS_FILE, CHECKPOINTS_DIR, LOCK_FILE)

__all__ = [
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "EXAMPLES_FILE",
    "INPUT_MAP_FILE",
    "LOCK_FILE",
    "LOG_FILE",
    "METRICS_FILE",
    "MODELS_DIR",
    "MODEL_METADATA_FILE",
    "ONNX_FILE",
    "ONNX_METADATA_FILE",
    "REPORT_FILE",
    "RUN_METADATA_FILE",
    "RUN_METADATA_KEYS",
    "RUN_ONLY",
    "STATUS_FILE",
    "find_artifact_root",
    "is_artifact",
    "model_dirs",
    "model_source",
    "model_towers",
    "read_input_map",
    "read_model_metadata",
    "read_run_metadata",
    "save_models",
    "select_model_dir",
    "write_results",
    "write_run_metadata",
]


# -- the run's files -------------------------------------------------------------------------------------------


def write_results(root: Path, metrics: dict[str, Any], examples: dict[str, Any]) -> None:
    """Write ``metrics.yml`` and ``example-results.yml`` (atomically, each).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> write_results(root, {'before': {'hit_at_k': 0.5}}, {'before': []})
        >>> sorted(p.name for p in root.iterdir())
        ['example-results.yml', 'metrics.yml']
    """
    write_yaml(root / METRICS_FILE, metrics)
    write_yaml(root / EXAMPLES_FILE, examples)


def write_run_metadata(
    root: Path, run_name: str, history: Sequence[dict[str, Any]], description: str | None = None
) -> None:
    """Write the run's ``metadata.yml``: its name, the history of its epochs, the finetuner version and the
    ``description`` given to ``fit`` (the key is left out when there is none).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> write_run_metadata(root, 'run-1', [{'epoch': 1, 'loss': 0.5}])
        >>> tuple(read_run_metadata(root)) == RUN_METADATA_KEYS
        True
    """
    values = (run_name, [dict(h) for h in history], _version())
    meta = dict(zip(RUN_METADATA_KEYS, values))
    if description is not None:
        meta["description"] = description
    write_yaml(root / RUN_METADATA_FILE, meta)


def read_run_metadata(root: Path) -> dict[str, Any]:
    """The run's ``metadata.yml`` (empty when there is none yet).

    Example:
        >>> read_run_metadata(Path('/nonexistent'))
        {}
    """
    meta = read_yaml(Path(root) / RUN_METADATA_FILE, {})
    return meta if isinstance(meta, dict) else {}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("finetuner")
    except PackageNotFoundError:
        return "unknown"


# -- models ----------------------------------------------------------------------------------------------------


def model_towers(model: Any) -> dict[str, Any]:
    """The models an artifact of ``model`` holds, by folder name: a two-tower model's towers (``clip-text``,
    ``clip-vision``), else ``{'model': model}``.

    Example:
        >>> model_towers('a text model')
        {'model': 'a text model'}
    """
    return dict(model.towers()) if callable(getattr(model, "towers", None)) else {SINGLE_MODEL: model}


def save_models(root: Path, model: Any) -> dict[str, Path]:
    """Save ``model`` under ``root/models``: each tower of a two-tower model in its own folder (``clip-text``,
    ``clip-vision``), any other model as ``model``; then ``input-map.yml``. Returns ``{name: folder}``.

    Example:
        >>> save_models(Path('runs/default/run-1'), model)  # doctest: +SKIP
        {'model': PosixPath('runs/default/run-1/models/model')}
    """
    towers = model_towers(model)
    folders = {name: save_model(tower, Path(root) / MODELS_DIR / name) for name, tower in towers.items()}
    write_yaml(Path(root) / MODELS_DIR / INPUT_MAP_FILE, {name: tower.modality for name, tower in towers.items()})
    return folders


def is_artifact(path: str | Path) -> bool:
    """Whether ``path`` is an artifact (or run) folder: it has ``models/input-map.yml``.

    Example:
        >>> is_artifact('/nonexistent')
        False
    """
    return (Path(path) / MODELS_DIR / INPUT_MAP_FILE).is_file()


def read_input_map(root: str | Path) -> dict[str, str]:
    """``{model name: modality}`` of an artifact; every name checked to be a plain folder name.

    Raises:
        ArtifactError: there is no ``models/input-map.yml``, or it is not a mapping of plain names.

    Example:
        >>> read_input_map('/nonexistent')
        Traceback (most recent call last):
        ...
        finetuner.errors.ArtifactError: /nonexistent is not a finetuner artifact: no models/input-map.yml there
    """
    path = Path(root) / MODELS_DIR / INPUT_MAP_FILE
    if not path.is_file():
        raise ArtifactError(f"{root} is not a finetuner artifact: no {MODELS_DIR}/{INPUT_MAP_FILE} there")
    found = read_yaml(path)
    if not isinstance(found, dict) or not found:
        raise ArtifactError(f"{path} does not map model names to modalities; the artifact is damaged")
    for name in found:
        if not is_plain_name(name):
            raise ArtifactError(f"{root}: model name {name!r} in {path.relative_to(root)} is not a plain folder name")
    return {str(k): str(v) for k, v in found.items()}


def select_model_dir(path: str | Path, select_model: str | None = None) -> Path:
    """The model folder to load from ``path``: an artifact's only model, or the one ``select_model`` names; any
    other folder is taken for a model folder (its loader says what is wrong with it).

    Raises:
        ArtifactError: the artifact holds several models and none was selected (the message names them), or it
            has no model of that name.

    Example:
        >>> select_model_dir('runs/default/run-1')  # doctest: +SKIP
        PosixPath('runs/default/run-1/models/model')
        >>> select_model_dir('saved/model')
        PosixPath('saved/model')
    """
    root = Path(path)
    if not is_artifact(root):
        return root
    names = list(read_input_map(root))
    if select_model is None and len(names) > 1:
        choices = " or ".join(f"select_model={n!r}" for n in names)
        raise ArtifactError(f"{root} holds {len(names)} models ({', '.join(names)}); choose one with {choices}")
    name = names[0] if select_model is None else select_model
    if name not in names:
        raise ArtifactError(f"{root} has no model {name!r}; it holds: {', '.join(names)}")
    return root / MODELS_DIR / name


def model_dirs(path: str | Path, select_model: str | None = None) -> list[Path]:
    """Every model folder of an artifact (or only the selected one); a model folder is its own list.

    Example:
        >>> model_dirs('/nonexistent')
        Traceback (most recent call last):
        ...
        finetuner.errors.ArtifactError: /nonexistent is not a finetuner artifact or model folder
    """
    root = Path(path).expanduser()
    if is_artifact(root):
        if select_model is not None:
            return [select_model_dir(root, select_model)]
        return [root / MODELS_DIR / name for name in read_input_map(root)]
    if (root / MODEL_METADATA_FILE).is_file():
        return [root]
    raise ArtifactError(f"{root} is not a finetuner artifact or model folder")


def model_source(model: Any, select_model: str | None = None) -> Any:
    """What to build a model from: an artifact folder becomes its (selected) model folder; anything else (a name,
    a hub id, a model folder, a module) stays as it is.

    Example:
        >>> model_source('bert-base-en')
        'bert-base-en'
    """
    if isinstance(model, (str, os.PathLike)) and is_artifact(Path(model).expanduser()):
        return str(select_model_dir(Path(model).expanduser(), select_model))
    return model


def find_artifact_root(folder: str | Path) -> Path:
    """The artifact (or single model) folder inside an extracted archive: the folder itself or its only child.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); (d / 'run-1' / 'models').mkdir(parents=True)
        >>> _ = (d / 'run-1' / 'models' / 'input-map.yml').write_text('model: text')
        >>> find_artifact_root(d).name
        'run-1'
    """
    folder = Path(folder)
    for candidate in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
        if is_artifact(candidate) or (candidate / MODEL_METADATA_FILE).is_file():
            return candidate
    found = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "nothing"
    raise ArtifactError(
        f"the archive holds no finetuner artifact (no {MODELS_DIR}/{INPUT_MAP_FILE} or {MODEL_METADATA_FILE} at its "
        f"top level or in a top-level folder); found: {found}"
    )
