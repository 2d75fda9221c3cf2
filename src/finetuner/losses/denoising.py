"""TSDAE (Wang et al. 2021, a transformer-based sequential denoising auto-encoder) for training without labels:
``fit(model, [texts...], loss='TSDAE')``.

Every training text is damaged (about 60 % of its words deleted, :func:`delete_words`), the model embeds the damaged
text, and a decoder must rebuild the original text from that one sentence embedding, which it sees as its only
cross-attention memory. To rebuild the text the embedding has to keep what the text says, so the encoder learns
sentence embeddings of the domain. The decoder is a ``transformers`` causal LM of the encoder's family, built and
attached by :mod:`finetuner.training.denoising`; it belongs to the loss and is never saved with the model.

The loss sees the embeddings of the damaged texts and each text's index (its label), and looks up the original
text's token ids, so the training step is the ordinary one.
"""

from __future__ import annotations

import random

import torch
from torch import nn
from torch.nn import functional as F

from finetuner.errors import ConfigError


def delete_words(text: str, ratio: float, rng: random.Random) -> str:
    """``text`` with ``ratio`` of its words (split at white space) deleted at random; at least one word is kept.

    Example:
        >>> delete_words('the cat sat on the warm mat today', 0.6, random.Random(0))
        'on mat today'
        >>> delete_words('one', 0.6, random.Random(0))
        'one'
    """
    words = text.split()
    keep = max(1, round(len(words) * (1.0 - ratio)))
    chosen = sorted(rng.sample(range(len(words)), keep))
    return " ".join(words[i] for i in chosen)


class TSDAELoss(nn.Module):
    """Cross-entropy of a decoder rebuilding each original text from the embedding of its damaged copy.

    Args:
        deletion_ratio: the share of each text's words deleted before the model embeds it (TSDAE's 0.6).

    Example:
        >>> from transformers import BertConfig, BertLMHeadModel
        >>> config = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        ...                     intermediate_size=16, is_decoder=True, add_cross_attention=True)
        >>> loss = TSDAELoss()
        >>> loss.set_decoder(BertLMHeadModel(config), torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]]), pad_id=0)
        >>> value = loss(torch.randn(2, 8), torch.tensor([1, 0]))  # the embeddings of texts 1 and 0
        >>> bool(value > 0)
        True
    """

    def __init__(self, deletion_ratio: float = 0.6) -> None:
        super().__init__()
        if not 0.0 <= float(deletion_ratio) < 1.0:
            raise ConfigError(f"TSDAE's deletion_ratio is a share of words in [0, 1); received {deletion_ratio!r}")
        self.deletion_ratio = float(deletion_ratio)
        self.decoder: nn.Module | None = None
        self.register_buffer("target_ids", torch.empty(0, 0, dtype=torch.long), persistent=False)  # (n_texts, len)
        self.pad_id = 0

    def set_decoder(self, decoder: nn.Module, target_ids: torch.Tensor, pad_id: int) -> None:
        """The decoder (a causal LM taking ``encoder_hidden_states``) and every original text's token ids
        ``(n_texts, length)``, padded with ``pad_id``, in the order of the texts' labels."""
        self.decoder = decoder
        self.target_ids = target_ids.long()
        self.pad_id = int(pad_id)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, indices_tuple: object = None) -> torch.Tensor:
        """``embeddings`` ``(batch, dim)`` of the damaged texts whose indices are ``labels``."""
        if self.decoder is None:
            raise ConfigError("TSDAELoss has no decoder yet: fit(..., loss='TSDAE') builds it from the model")
        ids = self.target_ids.index_select(0, labels.long())  # (batch, length)
        mask = (ids != self.pad_id).long()  # (batch, length)
        memory = embeddings[:, None, :]  # (batch, 1, dim): the sentence embedding is the decoder's only memory
        out = self.decoder(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], encoder_hidden_states=memory)
        target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)  # (batch, length - 1): the next token, pads ignored
        logits = out.logits.float()  # (batch, length - 1, vocab)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
