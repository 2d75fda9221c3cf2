"""TSDAE's side of the build phase: the decoder from the model's own family, the original texts' token ids, and the
damaged texts the model trains on (:class:`~finetuner.losses.denoising.TSDAELoss`).

The decoder is the ``transformers`` causal LM of the encoder's family (``BertLMHeadModel`` for BERT and MiniLM,
``RobertaForCausalLM`` for RoBERTa, ...) built from the encoder's config with ``is_decoder=True`` and
``add_cross_attention=True``, its layers and embeddings initialised from the encoder's weights (the cross-attention
starts fresh) and its output layer tied to its word embeddings. It lives in the loss, so the artifact holds the
encoder alone.
"""

from __future__ import annotations

import copy
import logging
import random
from typing import Any

from torch import nn

from finetuner.errors import ConfigError
from finetuner.losses.denoising import TSDAELoss, delete_words

logger = logging.getLogger("finetuner")


def build_decoder(backbone: nn.Module) -> nn.Module:
    """A causal-LM decoder of ``backbone``'s family with cross-attention, initialised from ``backbone``'s weights.

    Raises:
        ConfigError: ``backbone`` is not a ``transformers`` model of a family with such a decoder.

    Example:
        >>> import torch
        >>> from transformers import BertConfig, BertModel
        >>> encoder = BertModel(BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        ...                                intermediate_size=16))
        >>> decoder = build_decoder(encoder)
        >>> type(decoder).__name__, decoder.config.add_cross_attention
        ('BertLMHeadModel', True)
        >>> torch.equal(decoder.bert.encoder.layer[0].output.dense.weight, encoder.encoder.layer[0].output.dense.weight)
        True
    """
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = getattr(backbone, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or not hasattr(config, "add_cross_attention"):
        raise ConfigError(
            f"loss='TSDAE' needs a decoder of the model's family with cross-attention, which transformers has for "
            f"BERT-like encoders (bert, roberta, xlm-roberta, electra, ...); the model's family is {model_type!r}"
        )
    decoder_config = copy.deepcopy(config)
    decoder_config.is_decoder = True
    decoder_config.add_cross_attention = True
    decoder_config.tie_word_embeddings = True
    decoder = AutoModelForCausalLM.from_config(decoder_config)
    if not hasattr(decoder, "get_output_embeddings") or decoder.get_output_embeddings() is None:
        raise ConfigError(f"loss='TSDAE': transformers' {type(decoder).__name__} has no output layer to predict tokens")
    missing, unexpected = decoder.base_model.load_state_dict(backbone.state_dict(), strict=False)
    fresh = [name for name in missing if "crossattention" not in name]
    if fresh or unexpected:  # pragma: no cover - a family whose decoder's layout differs from its encoder's
        logger.info("TSDAE decoder: %d weights start fresh besides the cross-attention", len(fresh))
    decoder.get_output_embeddings().weight = decoder.get_input_embeddings().weight  # tied
    return decoder


def prepare_denoising(loss: Any, model: nn.Module, texts: list[str] | None, seed: int) -> list[str] | None:
    """For a :class:`~finetuner.losses.denoising.TSDAELoss`: attach its decoder and the original texts' token ids,
    and return the damaged texts (in the same order) that the model trains on; for any other loss None.

    Raises:
        ConfigError: the model is not a text model with a family decoder, its embeddings are not of its hidden size
            (a projection head), or the texts are streamed.

    Example:
        >>> prepare_denoising(nn.MSELoss(), nn.Linear(2, 2), ['a text'], seed=0) is None
        True
    """
    if not isinstance(loss, TSDAELoss):
        return None
    if texts is None:
        raise ConfigError("loss='TSDAE' needs the training texts in memory; train it without streaming=True")
    backbone, tokenizer = getattr(model, "backbone", None), getattr(model, "tokenizer", None)
    if backbone is None or tokenizer is None:
        raise ConfigError(
            f"loss='TSDAE' trains a Hugging Face text model (BERT-like); received a {type(model).__name__}"
        )
    hidden = int(backbone.config.hidden_size)
    if int(model.output_dim) != hidden:
        raise ConfigError(
            f"loss='TSDAE' feeds the sentence embedding to a decoder of the model's hidden size {hidden}, but the "
            f"model embeds into {model.output_dim} (a projection head): train TSDAE without output_dim"
        )
    decoder = build_decoder(backbone)
    max_length = int(getattr(model, "max_length", 128))
    tokens = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    loss.set_decoder(decoder, tokens["input_ids"], pad_id)  # (n_texts, longest)
    rng = random.Random(seed)
    return [delete_words(text, loss.deletion_ratio, rng) for text in texts]
