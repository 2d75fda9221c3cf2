"""ONNX export with a parity check, and an onnxruntime model with the same ``encode`` API as the PyTorch one.

The export is generic over :class:`~finetuner.models.base.EmbeddingModel`: the model's own ``preprocess`` makes
example inputs, ``forward(**inputs)`` is traced, every input gets a dynamic batch axis and integer token inputs
(``input_ids``, ``attention_mask`` ...) a dynamic sequence axis too. Image models (``pixel_values``) export the
same way with a dynamic batch axis. ``model.onnx`` and ``onnx.yml`` (input names, opset, measured parity) are
written into the model folder next to the PyTorch weights.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from finetuner.artifacts import ONNX_FILE, ONNX_METADATA_FILE, model_dirs
from finetuner.errors import ArtifactError, ConfigError, DataError, FinetunerError
from finetuner.models.io import load_model, read_metadata
from finetuner.models.prompts import check_prompts

logger = logging.getLogger("finetuner")

OUTPUT_NAME = "embeddings"
DEFAULT_OPSET = 17
MIN_COSINE = 0.999

_TEXT_SAMPLES = (
    ["a short query", "a second and somewhat longer example text"],
    ["one", "three texts of different lengths", "the longest of the three example texts, with more tokens"],
)


class OnnxExportError(FinetunerError, RuntimeError):
    """The ONNX graph could not be written, or its output differs from PyTorch's (cosine below the threshold).

    Example:
        >>> issubclass(OnnxExportError, FinetunerError)
        True
    """


def check_onnx_available() -> None:
    """Raise a :class:`~finetuner.errors.ConfigError` naming the extra to install when onnx/onnxruntime are missing.

    ``fit(..., to_onnx=True)`` calls this before training, so a missing package never costs a training run.

    Example:
        >>> check_onnx_available()  # silent when ``pip install 'finetuner[onnx]'`` was run
    """
    missing = []
    for module in ("onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ConfigError(
            f"ONNX export needs {' and '.join(missing)}, which is not installed; "
            "run: pip install 'finetuner[onnx]' (or pip install onnx onnxruntime)"
        )


def _sample_items(modality: str) -> tuple[list[Any], list[Any]]:
    """Two batches of example items (different sizes, so the check exercises the dynamic axes)."""
    if modality == "text":
        return list(_TEXT_SAMPLES[0]), list(_TEXT_SAMPLES[1])
    if modality == "image":
        from PIL import Image

        rng = np.random.default_rng(0)

        def img(h: int, w: int) -> Image.Image:
            return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))

        return [img(64, 64), img(48, 80)], [img(96, 72), img(64, 64), img(40, 40)]
    raise ConfigError(f"no example inputs for modality {modality!r}; pass sample_items=(batch_a, batch_b)")


class _PositionalForward(nn.Module):
    """``forward(*tensors)`` -> ``model(**dict(zip(names, tensors)))``: the traced signature has fixed names."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors)))  # (batch, dim)


@contextlib.contextmanager
def _mha_fastpath_off() -> Iterator[None]:
    """Trace ``nn.MultiheadAttention`` (open_clip's attention) through its plain ops: in eval mode without
    gradients it takes a fused fast path (``aten::_native_multi_head_attention``) that the exporter cannot write."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


def _dynamic_axes(inputs: dict[str, torch.Tensor]) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for name, tensor in inputs.items():
        axes[name] = {0: "batch"}
        if tensor.dim() >= 2 and not tensor.is_floating_point():
            axes[name][1] = "sequence"  # token ids, masks, type ids
    axes[OUTPUT_NAME] = {0: "batch"}
    return axes


def _cpu_inputs(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in inputs.items()}


def export_onnx(
    model: nn.Module,
    directory: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    sample_items: tuple[list[Any], list[Any]] | None = None,
    min_cosine: float = MIN_COSINE,
) -> Path:
    """Write ``model.onnx`` for ``model`` into ``directory`` and check it against PyTorch.

    The model is traced on CPU in eval mode (its device and mode are restored afterwards). The check embeds a
    second batch of a different size (and sequence length) with both runtimes; every row's cosine similarity
    must reach ``min_cosine``, else the file is removed and :class:`OnnxExportError` raised.

    Args:
        model: an embedding model with ``preprocess`` and ``forward(**inputs)``.
        directory: the model folder (usually ``<artifact>/models/<name>``).
        opset: the ONNX opset version.
        sample_items: two batches of raw items to trace and to check with (default: made for the modality).
        min_cosine: the smallest per-row cosine similarity accepted between ONNX and PyTorch embeddings.

    Returns:
        The path of the written ``model.onnx``.

    Example:
        >>> import finetuner
        >>> model = finetuner.build_model('sentence-transformers/all-MiniLM-L6-v2')  # doctest: +SKIP
        >>> export_onnx(model, 'exported/minilm')  # doctest: +SKIP
        PosixPath('exported/minilm/model.onnx')
    """
    check_onnx_available()
    if not hasattr(model, "preprocess"):
        raise ConfigError(f"{type(model).__name__} has no preprocess(items); only finetuner models export to ONNX")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / ONNX_FILE
    own = getattr(model, "example_items", None)  # a model whose inputs no modality describes (mlp's vectors)
    if sample_items is None:
        sample_items = own() if callable(own) else _sample_items(getattr(model, "modality", "text"))
    trace_items, check_items = sample_items
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval().cpu()
    try:
        inputs = _cpu_inputs(model.preprocess(trace_items))
        names = list(inputs)
        wrapper = _PositionalForward(model, names).eval()  # eval: export restores the wrapper's mode recursively
        kwargs: dict[str, Any] = {}
        if "dynamo" in inspect.signature(torch.onnx.export).parameters:
            kwargs["dynamo"] = False  # the TorchScript exporter: no onnxscript needed, works offline
        with warnings.catch_warnings(), torch.no_grad(), _mha_fastpath_off():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
            torch.onnx.export(
                wrapper,
                tuple(inputs[n] for n in names),
                str(path),
                input_names=names,
                output_names=[OUTPUT_NAME],
                dynamic_axes=_dynamic_axes(inputs),
                opset_version=opset,
                do_constant_folding=True,
                **kwargs,
            )
        cosine = _parity(model, path, check_items, min_cosine)
    except OnnxExportError:
        path.unlink(missing_ok=True)
        raise
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise OnnxExportError(f"exporting {type(model).__name__} to ONNX failed: {type(exc).__name__}: {exc}") from exc
    finally:
        model.to(device)
        model.train(was_training)
    info = {
        "file": ONNX_FILE,
        "inputs": names,
        "output": OUTPUT_NAME,
        "opset": opset,
        "modality": getattr(model, "modality", "text"),
        "output_dim": int(getattr(model, "output_dim", 0) or 0),
        "parity_min_cosine": round(cosine, 6),
    }
    (d / ONNX_METADATA_FILE).write_text(yaml.safe_dump(info, sort_keys=False), encoding="utf-8")
    logger.info("wrote %s (min cosine to PyTorch %.6f)", path, cosine)
    return path


def _parity(model: nn.Module, path: Path, items: list[Any], min_cosine: float = MIN_COSINE) -> float:
    """The smallest per-row cosine between ONNX and PyTorch embeddings of ``items``; raise below ``min_cosine``."""
    import onnxruntime as ort

    inputs = _cpu_inputs(model.preprocess(items))
    with torch.no_grad():
        expected = model(**inputs).float().numpy()  # (batch, dim)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    got = session.run([OUTPUT_NAME], {k: v.numpy() for k, v in inputs.items() if k in wanted})[0]
    if got.shape != expected.shape:
        raise OnnxExportError(f"ONNX output shape {got.shape} differs from PyTorch's {expected.shape}")
    cos = (got * expected).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1) + 1e-12)
    worst = float(cos.min())
    if not worst >= min_cosine:
        raise OnnxExportError(
            f"the ONNX model's embeddings differ from PyTorch's (min cosine {worst:.6f} < {min_cosine}); "
            "the model may use operations the exporter cannot trace faithfully"
        )
    return worst


# -- loading -------------------------------------------------------------------------------------------------


def _text_preprocessor(directory: Path, meta: dict[str, Any]) -> Callable[[list[Any]], dict[str, torch.Tensor]]:
    """Tokenise like :class:`~finetuner.models.text.TextEncoder` without loading the PyTorch weights."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    max_length = int(meta.get("max_length") or 512)

    def preprocess(items: list[Any]) -> dict[str, torch.Tensor]:
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise DataError(f"text model received a {type(text).__name__} at position {i}; it encodes str only")
        batch = tokenizer(list(items), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return dict(batch)

    return preprocess


#: model kind -> builder of a weights-free preprocess; other kinds load the PyTorch model for its preprocess
PREPROCESSORS: dict[str, Callable[[Path, dict[str, Any]], Callable[[list[Any]], dict[str, torch.Tensor]]]] = {
    "text": _text_preprocessor,
}


class OnnxEmbeddingModel:
    """An exported model run with onnxruntime; ``finetuner.encode`` and ``finetuner.evaluate`` accept it.

    Args:
        path: the ``model.onnx`` file.
        preprocess: raw items -> the named input tensors (the PyTorch model's own preprocessing).
        modality: ``'text'`` or ``'image'``.
        output_dim: the embedding size.
        providers: onnxruntime execution providers (default CPU).

    Example:
        >>> model = finetuner.get_model('artifacts/run-20261127-120000-ab12', is_onnx=True)  # doctest: +SKIP
        >>> finetuner.encode(model, ['a pencil skirt']).shape  # doctest: +SKIP
        (1, 384)
    """

    training = False

    def __init__(
        self,
        path: str | Path,
        preprocess: Callable[[list[Any]], dict[str, torch.Tensor]],
        *,
        modality: str = "text",
        output_dim: int = 0,
        providers: Sequence[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.preprocess = preprocess
        self.modality = modality
        self.output_dim = output_dim
        self.session = ort.InferenceSession(str(self.path), providers=list(providers or ["CPUExecutionProvider"]))
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Embed already-preprocessed inputs (what PyTorch models' ``forward`` does)."""
        feeds = {n: inputs[n].detach().cpu().numpy() for n in self.input_names if n in inputs}
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise DataError(f"the ONNX model needs inputs {missing}; preprocess gave {sorted(inputs)}")
        return torch.from_numpy(self.session.run([OUTPUT_NAME], feeds)[0])  # (batch, dim)

    def encode_items(self, items: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """Embed raw items in batches; a float32 array of shape ``(len(items), dim)``.

        Example:
            >>> onnx_model.encode_items(['a pencil skirt', 'a shirt']).shape  # doctest: +SKIP
            (2, 384)
        """
        chunks = [
            self(**self.preprocess(list(items[i : i + batch_size]))).numpy() for i in range(0, len(items), batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.output_dim), dtype=np.float32)

    # what embed_items (evaluation) expects of a PyTorch model
    def parameters(self) -> Any:
        """No PyTorch parameters (an empty iterator)."""
        return iter(())

    def eval(self) -> OnnxEmbeddingModel:
        """No-op (there is no training mode)."""
        return self

    def train(self, mode: bool = True) -> OnnxEmbeddingModel:
        """No-op (there is no training mode)."""
        return self

    def __repr__(self) -> str:
        return f"OnnxEmbeddingModel(path={str(self.path)!r}, modality={self.modality!r}, dim={self.output_dim})"


def load_onnx_model(directory: str | Path, providers: Sequence[str] | None = None) -> OnnxEmbeddingModel:
    """Load ``model.onnx`` from a saved model folder with its preprocessing (tokenizer or image transform).

    Example:
        >>> load_onnx_model('/nonexistent')
        Traceback (most recent call last):
        ...
        finetuner.errors.ArtifactError: /nonexistent has no model.onnx; ...
    """
    d = Path(directory)
    if not (d / ONNX_FILE).is_file():
        raise ArtifactError(
            f"{d} has no {ONNX_FILE}; export it with `finetuner export <artifact>` or fit(..., to_onnx=True)"
        )
    check_onnx_available()
    meta = read_metadata(d)
    info = (
        yaml.safe_load((d / ONNX_METADATA_FILE).read_text(encoding="utf-8"))
        if (d / ONNX_METADATA_FILE).is_file()
        else {}
    )
    builder = PREPROCESSORS.get(meta["kind"])
    preprocess = builder(d, meta) if builder is not None else load_model(d).preprocess
    model = OnnxEmbeddingModel(
        d / ONNX_FILE,
        preprocess,
        modality=str(meta.get("modality", info.get("modality", "text"))),
        output_dim=int(info.get("output_dim") or meta.get("output_dim") or 0),
        providers=providers,
    )
    model.prompts = check_prompts(meta.get("prompts") or {})  # encode(..., role=) prefixes as the torch model does
    return model


def export_artifact(artifact: str | Path, select_model: str | None = None, *, opset: int = DEFAULT_OPSET) -> list[Path]:
    """Export every model of a saved artifact (or run folder) to ONNX; the paths of the written files.

    Example:
        >>> export_artifact('artifacts/run-20261127-120000-ab12')  # doctest: +SKIP
        [PosixPath('artifacts/run-20261127-120000-ab12/models/model/model.onnx')]
    """
    check_onnx_available()
    return [export_onnx(load_model(d), d, opset=opset) for d in model_dirs(artifact, select_model)]
