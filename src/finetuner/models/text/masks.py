"""Attention masks built on the device, so a text transformer's forward reads nothing back from it.

Given a 2-d padding mask, Hugging Face transformers (5.x, ``masking_utils``) first asks whether any token is padded
(``padding_mask.all()``) so that it can drop the mask and let SDPA pick flash attention. On a GPU that question is a
host synchronisation: every BERT-style forward waits for the device once, a CLIP text forward twice (the profile in
``../shared/perf`` shows the ``aten::item`` / ``cudaStreamSynchronize`` per step). finetuner's batches are padded to
bucketed lengths, so the answer is nearly always "yes, padded" and the question buys nothing.

A 4-d mask is passed through by ``masking_utils`` as it is. :func:`device_mask` builds it from the 2-d mask with
device ops only: ``(batch, 1, 1, length)`` for bidirectional encoders, ``(batch, 1, length, length)`` with the
causal triangle for causal ones (CLIP's text tower). :func:`takes_device_mask` checks once, on a tiny padded batch,
that a backbone gives the same hidden states with it as with the 2-d mask; a backbone that does not (an
architecture with its own mask handling, an old transformers) keeps the 2-d mask.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger("finetuner")


def device_mask(mask: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """The boolean 4-d attention mask (True: attend) of a ``(batch, length)`` padding mask, made on its device.

    Example:
        >>> device_mask(torch.tensor([[1, 1, 0]])).shape
        torch.Size([1, 1, 1, 3])
        >>> device_mask(torch.tensor([[1, 1, 0]]), causal=True)[0, 0].int().tolist()
        [[1, 0, 0], [1, 1, 0], [1, 1, 0]]
    """
    keys = mask.bool()[:, None, None, :]  # (batch, 1, 1, length)
    if not causal:
        return keys
    n = mask.shape[-1]
    triangle = torch.ones(n, n, dtype=torch.bool, device=mask.device).tril()  # (length, length)
    return keys & triangle  # (batch, 1, length, length)


def takes_device_mask(backbone: nn.Module, causal: bool = False, output: str = "last_hidden_state") -> bool:
    """Whether ``backbone`` gives the same ``output`` with :func:`device_mask` as with the 2-d padding mask
    (checked in eval mode on two rows of six tokens, one padded; the backbone's mode is restored).

    Example:
        >>> from transformers import BertConfig, BertModel
        >>> takes_device_mask(BertModel(BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1,
        ...                                        num_attention_heads=2, intermediate_size=16)))
        True
    """
    config = getattr(backbone, "config", None)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    if vocab < 4:
        return False
    device = next((p.device for p in backbone.parameters()), torch.device("cpu"))
    ids = torch.tensor([[1, 2, 3, 2, 0, 0], [1, 3, 2, 3, 2, 3]], device=device) % vocab  # (2, 6)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6], device=device)  # (2, 6)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            plain = getattr(backbone(input_ids=ids, attention_mask=mask), output)
            built = getattr(backbone(input_ids=ids, attention_mask=device_mask(mask, causal)), output)
        if plain.dim() == 3:  # token states: compare the real tokens (what pooling reads)
            keep = mask.bool()
            plain, built = plain[keep], built[keep]
        same = plain.shape == built.shape and torch.allclose(plain.float(), built.float(), atol=1e-4, rtol=1e-4)
    except Exception as exc:
        logger.debug("%s does not take a 4-d attention mask (%s); keeping the 2-d mask", type(backbone), exc)
        same = False
    finally:
        backbone.train(was_training)
    return bool(same)
