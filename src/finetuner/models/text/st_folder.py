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

from finetuner.errors import ConfigError

#: the module type a GeM-pooled text model's ``modules.json`` names: sentence-transformers has no GeM pooling, so
#: ``SentenceTransformer(path)`` refuses the folder (it names a class outside sentence_transformers) instead of
#: loading it with another pooling; ``finetuner.get_model(path)`` loads it
GEM_MODULE = "finetuner.models.heads.GeMPooling"
#: a projection head's activation -> sentence-transformers' Dense ``activation_function``
ST_ACTIVATIONS = {None: "torch.nn.modules.linear.Identity", "tanh": "torch.nn.modules.activation.Tanh"}
ST_POOLING_KEYS = {
    "mean": "pooling_mode_mean_tokens",
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
}


def write_sentence_transformers_files(
    d: Path,
    *,
    hidden_dim: int,
    pooling: str,
    max_length: int,
    head: nn.Module | None,
    normalize: bool,
    pooling_options: dict[str, float] | None = None,
) -> None:
    """Write the sentence-transformers modules of a text model into folder ``d`` (the backbone is already there).

    Args:
        d: the model folder.
        hidden_dim: the backbone's hidden size.
        pooling: ``'mean'``, ``'cls'``, ``'max'`` or ``'gem'`` (see :data:`GEM_MODULE`).
        max_length: the longest tokenised input.
        head: the projection head (its ``linear`` layer is saved as a ``Dense`` module), or None.
        normalize: whether the embeddings are L2-normalised.
        pooling_options: GeM's ``p`` and ``eps``.

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
    pool_cfg: dict[str, Any] = {"word_embedding_dimension": hidden_dim, "pooling_mode_mean_sqrt_len_tokens": False}
    pool_cfg.update({key: pooling == name for name, key in ST_POOLING_KEYS.items()})
    if pooling == "gem":
        modules[1]["type"] = GEM_MODULE
        pool_cfg.update({"pooling_mode": "gem", **(pooling_options or {})})
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
                "activation_function": ST_ACTIVATIONS[getattr(head, "activation", None)],
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
        if kind in ("Pooling", "GeMPooling") and (sub / "config.json").is_file():
            cfg = json.loads((sub / "config.json").read_text(encoding="utf-8"))
            out["pooling"] = _pooling_mode(cfg, sub)
            if out["pooling"] == "gem":
                out["pooling_options"] = {k: float(cfg[k]) for k in ("p", "eps") if k in cfg}
        elif kind == "Normalize":
            out["normalize"] = True
        elif kind == "Dense" and (sub / "model.safetensors").is_file():
            out["dense"] = sub
            out["dense_activation"] = _activation(sub)
    st_cfg = directory / "sentence_bert_config.json"
    if st_cfg.is_file():
        max_len = json.loads(st_cfg.read_text(encoding="utf-8")).get("max_seq_length")
        if max_len:
            out["max_length"] = int(max_len)
    return out


def _activation(dense: Path) -> str | None:
    """The activation of a sentence-transformers Dense module (None, 'tanh'); any other is refused, since loading it
    without would give other embeddings than the model's."""
    cfg_file = dense / "config.json"
    cfg = json.loads(cfg_file.read_text(encoding="utf-8")) if cfg_file.is_file() else {}
    name = str(cfg.get("activation_function", ST_ACTIVATIONS[None]))
    for activation, full in ST_ACTIVATIONS.items():
        if name == full or name.rsplit(".", 1)[-1] == full.rsplit(".", 1)[-1]:
            return activation
    raise ConfigError(
        f"{dense}: the Dense module's activation {name} is not supported (finetuner's projection head has none or "
        "tanh); this model cannot be loaded without changing its embeddings"
    )


#: the files of a sentence-transformers repository that say how it pools and projects
_ST_FILES = ("sentence_bert_config.json", "config.json", "model.safetensors")


def hub_sentence_transformers_folder(repo_id: str) -> Path | None:
    """The local snapshot of a hub repository's sentence-transformers modules (``modules.json``, the pooling
    config, a Dense head's config and safetensors weights), fetched into the Hugging Face cache; None for a repository
    without ``modules.json`` (a plain transformers model) or when the hub cannot be reached and nothing is cached.

    A Dense head with pickle weights only is refused: loading the model without it would change its embeddings.

    Example:
        >>> hub_sentence_transformers_folder('./no/such/repo') is None
        True
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        modules_file = Path(hf_hub_download(repo_id, "modules.json"))
    except Exception:  # no such file, no such repo, offline with nothing cached, an invalid id
        return None
    folder = modules_file.parent
    for module in json.loads(modules_file.read_text(encoding="utf-8")):
        sub = module.get("path", "")
        wanted = ("sentence_bert_config.json",) if not sub else _ST_FILES[1:]
        for name in wanted:
            try:
                hf_hub_download(repo_id, f"{sub}/{name}" if sub else name)
            except EntryNotFoundError:
                if name == "model.safetensors" and module.get("type", "").endswith("Dense"):
                    raise ConfigError(
                        f"{repo_id}: its Dense module ({sub}) has no safetensors weights; finetuner does not unpickle "
                        "weights, and the model without its Dense head would give other embeddings"
                    ) from None
    return folder


def _pooling_mode(cfg: dict[str, Any], folder: Path) -> str:
    """The pooling a sentence-transformers Pooling config asks for: ``pooling_mode`` (sentence-transformers 5+) or
    the ``pooling_mode_*_tokens`` flags (older). Modes finetuner does not have (weighted mean, last token, several at
    once) are refused: pooling otherwise would change the model's embeddings."""
    mode = cfg.get("pooling_mode")
    if mode is None:
        flags = [
            key[len("pooling_mode_") :].removesuffix("_tokens").removesuffix("_token")
            for key, on in cfg.items()
            if key.startswith("pooling_mode_") and on is True
        ]
        mode = flags[0] if len(flags) == 1 else "+".join(flags) or "mean"
    if mode not in ("mean", "cls", "max", "gem"):
        raise ConfigError(
            f"{folder}: sentence-transformers pooling {mode!r} is not supported (finetuner pools by mean, cls, max or "
            "gem); loading the model with another pooling would change its embeddings"
        )
    return str(mode)
