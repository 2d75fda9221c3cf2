"""The sentence-transformers folder layout of a saved text model, written and read here.

Next to the Hugging Face backbone (``config.json``, ``model.safetensors``, tokenizer files) a text model folder
holds ``modules.json``, ``sentence_bert_config.json``, ``1_Pooling/config.json``, ``2_Dense/`` (the projection
head, when there is one) and ``N_Normalize/``, so ``SentenceTransformer(path)`` loads it too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

ST_POOLING_KEYS = {
    "mean": "pooling_mode_mean_tokens",
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
}


def write_sentence_transformers_files(
    d: Path, *, hidden_dim: int, pooling: str, max_length: int, head: nn.Module | None, normalize: bool
) -> None:
    """Write the sentence-transformers modules of a text model into folder ``d`` (the backbone is already there).

    Args:
        d: the model folder.
        hidden_dim: the backbone's hidden size.
        pooling: ``'mean'``, ``'cls'`` or ``'max'``.
        max_length: the longest tokenised input.
        head: the projection head (its ``linear`` layer is saved as a ``Dense`` module), or None.
        normalize: whether the embeddings are L2-normalised.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> write_sentence_transformers_files(folder, hidden_dim=8, pooling='cls', max_length=64, head=None,
        ...                                   normalize=True)
        >>> read_sentence_transformers_config(folder)
        {'pooling': 'cls', 'normalize': True, 'max_length': 64}
    """
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    pool_cfg = {"word_embedding_dimension": hidden_dim, "pooling_mode_mean_sqrt_len_tokens": False}
    pool_cfg.update({key: pooling == name for name, key in ST_POOLING_KEYS.items()})
    _write_json(d / "1_Pooling" / "config.json", pool_cfg)
    if head is not None:
        lin = head.linear
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
        _write_json(
            d / "2_Dense" / "config.json",
            {
                "in_features": lin.in_features,
                "out_features": lin.out_features,
                "bias": lin.bias is not None,
                "activation_function": "torch.nn.modules.linear.Identity",
            },
        )
        state = {f"linear.{k}": v.detach().cpu().contiguous() for k, v in lin.state_dict().items()}
        save_file(state, str(d / "2_Dense" / "model.safetensors"))
    if normalize:
        modules.append(
            {
                "idx": len(modules),
                "name": str(len(modules)),
                "path": f"{len(modules)}_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
        (d / f"{len(modules) - 1}_Normalize").mkdir(exist_ok=True)
    _write_json(d / "modules.json", modules)
    _write_json(d / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def read_sentence_transformers_config(directory: Path) -> dict[str, Any]:
    """Pooling, max length, normalisation and a Dense head read from a sentence-transformers folder.

    Returns an empty dict for a plain Hugging Face folder.

    Example:
        >>> read_sentence_transformers_config(Path('/nonexistent'))
        {}
    """
    out: dict[str, Any] = {}
    modules_file = directory / "modules.json"
    if not modules_file.is_file():
        return out
    for module in json.loads(modules_file.read_text(encoding="utf-8")):
        kind = module.get("type", "").rsplit(".", 1)[-1]
        sub = directory / module.get("path", "")
        if kind == "Pooling" and (sub / "config.json").is_file():
            cfg = json.loads((sub / "config.json").read_text(encoding="utf-8"))
            for name, key in ST_POOLING_KEYS.items():
                if cfg.get(key):
                    out["pooling"] = name
                    break
        elif kind == "Normalize":
            out["normalize"] = True
        elif kind == "Dense" and (sub / "model.safetensors").is_file():
            out["dense"] = sub
    st_cfg = directory / "sentence_bert_config.json"
    if st_cfg.is_file():
        max_len = json.loads(st_cfg.read_text(encoding="utf-8")).get("max_seq_length")
        if max_len:
            out["max_length"] = int(max_len)
    return out
