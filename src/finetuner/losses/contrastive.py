"""In-batch contrastive losses: CLIP's symmetric InfoNCE for two towers, InfoNCE for same-modality pairs.

Use ``CLIPLoss`` with pairs (CLIP text/image roots, or ``(text, image)`` tuples); each pair's partner is its only
positive and every other item of the global batch (all processes) is a negative. Pair it with the duplicate-free
pair sampler so no caption or image appears twice in a batch (no false negatives).

``InfoNCELoss`` is the in-batch-negatives loss for same-modality pairs (query-document text pairs), which train as
classes of two: every item's partner is its positive, the other ``2B - 2`` items of the batch are its negatives.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from finetuner.distributed import gather_with_grad, rank_offset, world


class CLIPLoss(nn.Module):
    """Symmetric InfoNCE with a learned temperature, as in CLIP.

    ``logit_scale`` starts at ``log(1 / temperature)`` (CLIP: 0.07) and is clamped to ``log(max_scale)`` (100).
    Logits are computed in float32 even under mixed precision. Under DDP the embeddings of all processes are
    gathered with gradients; each rank scores its own rows against the global batch with correctly offset
    labels, and DDP's averaging makes the result equal to one process on the concatenated batch.

    Args:
        temperature: the initial temperature.
        learn_temperature: train ``logit_scale`` with the model.
        max_scale: the largest allowed ``exp(logit_scale)``.

    Example:
        >>> import torch
        >>> loss = CLIPLoss()
        >>> text = torch.eye(4); image = torch.eye(4)
        >>> round(float(loss(text, image)), 4)  # matched pairs score 1/0.07 against 0: nearly zero loss
        0.0
    """

    def __init__(self, temperature: float = 0.07, learn_temperature: bool = True, max_scale: float = 100.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive; received {temperature}")
        scale = torch.tensor(math.log(1.0 / temperature))
        self.logit_scale = nn.Parameter(scale, requires_grad=learn_temperature)
        self.max_log_scale = math.log(max_scale)

    def forward(
        self, text: torch.Tensor, image: torch.Tensor, labels: torch.Tensor | None = None, _unused: object = None
    ) -> torch.Tensor:
        """Loss of ``text[i]`` matching ``image[i]``, both ``(batch, dim)``."""
        text = F.normalize(text.float(), dim=-1)  # (b, d)
        image = F.normalize(image.float(), dim=-1)  # (b, d)
        all_text = gather_with_grad(text)  # (world * b, d)
        all_image = gather_with_grad(image)  # (world * b, d)
        offset = rank_offset(text.shape[0], text.device)
        scale = self.logit_scale.clamp(max=self.max_log_scale).exp().float()
        targets = torch.arange(text.shape[0], device=text.device) + offset  # global row of each pair
        logits_t2i = scale * text @ all_image.T  # (b, world * b)
        logits_i2t = scale * image @ all_text.T  # (b, world * b)
        loss = (F.cross_entropy(logits_t2i, targets) + F.cross_entropy(logits_i2t, targets)) / 2
        if all_text.shape[0] != text.shape[0]:
            # weight this rank by its share of the global batch, so that DDP's plain average of the ranks'
            # gradients equals the gradient of the mean over all rows (also when ranks hold unequal shares)
            loss = loss * (text.shape[0] * world()[1] / all_text.shape[0])
        return loss


class InfoNCELoss(nn.Module):
    """In-batch negatives for pairs trained as classes of two (the NT-Xent / SimCLR form of InfoNCE).

    Every item of the batch is an anchor; its pair partner (the one other item with its label) is the positive and
    the other ``2B - 2`` items are negatives: the loss is the cross-entropy of ``cos / temperature`` over each row of
    the batch's similarity matrix with the diagonal left out. This is pytorch-metric-learning's ``NTXentLoss`` on
    classes of two (tests compare the two), computed from one ``2B x 2B`` matrix instead of index tensors of every
    positive and negative pair, so batches of thousands of pairs fit in memory. It needs every label exactly twice
    in a batch: ``fit`` allows it only for pairs, whose samplers keep both members in one batch.

    Args:
        temperature: the softmax temperature (0.05, as sentence-transformers' MultipleNegativesRankingLoss's
            scale of 20).

    Example:
        >>> import torch
        >>> emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> round(float(InfoNCELoss()(emb, torch.tensor([0, 0, 1, 1]))), 4)  # partners far closer than the rest
        0.0
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive; received {temperature}")
        self.temperature = float(temperature)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, indices_tuple: object = None) -> torch.Tensor:
        """Loss of ``embeddings`` (``(2B, dim)``) whose ``labels`` pair them up (each label exactly twice)."""
        emb = F.normalize(embeddings.float(), dim=-1)  # (2B, d)
        n = emb.shape[0]
        order = torch.argsort(labels, stable=True)  # partners side by side
        partner = torch.empty_like(order)  # (2B,): the row of each row's partner
        partner[order[0::2]] = order[1::2]
        partner[order[1::2]] = order[0::2]
        logits = emb @ emb.T / self.temperature  # (2B, 2B)
        logits = logits.masked_fill(torch.eye(n, dtype=torch.bool, device=emb.device), float("-inf"))
        return F.cross_entropy(logits, partner)


#: losses implemented here, by name (merged into ``list_losses``)
LOSSES: dict[str, type] = {"CLIPLoss": CLIPLoss, "InfoNCELoss": InfoNCELoss}
