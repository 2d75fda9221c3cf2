"""In-batch contrastive losses: CLIP's symmetric InfoNCE for two towers.

Use ``CLIPLoss`` with pairs (CLIP text/image roots, or ``(text, image)`` tuples); each pair's partner is its only
positive and every other item of the global batch (all processes) is a negative. Pair it with the duplicate-free
pair sampler so no caption or image appears twice in a batch (no false negatives).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from finetuner.losses.distributed import gather_with_grad, rank_offset, world


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


#: losses implemented here, by name (merged into ``list_losses``)
LOSSES: dict[str, type] = {"CLIPLoss": CLIPLoss}
