"""The loss of one training step, called as ``objective(embeddings, labels)``: a metric loss with its miner over the
global batch of every process (:class:`MetricObjective`), or a two-tower loss on ``(text, image)`` embeddings
(:class:`PairObjective`)."""

from __future__ import annotations

import torch
from torch import nn

from finetuner.distributed import gather_no_grad, gather_with_grad, world


class MetricObjective(nn.Module):
    """A pytorch-metric-learning loss and miner applied to the global batch.

    Under DDP the embeddings of all processes are gathered with gradients and the labels without; labels are
    class codes shared by all ranks, so no offsets are needed. Every rank computes the same loss on the global
    batch; gathering's backward sums the ranks' gradients and DDP averages them, which gives exactly the
    single-process gradient of the concatenated batch.

    Example:
        >>> import torch
        >>> from finetuner.losses import get_loss
        >>> objective = MetricObjective(get_loss('TripletMarginLoss'))
        >>> float(objective(torch.eye(4), torch.tensor([0, 0, 1, 1]))) >= 0
        True
    """

    def __init__(self, loss: nn.Module, miner: nn.Module | None = None) -> None:
        super().__init__()
        self.loss = loss
        self.miner = miner

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings = embeddings.float()  # the loss runs in float32 under mixed precision
        if world()[1] > 1:
            embeddings = gather_with_grad(embeddings)  # (world * batch, dim)
            labels = gather_no_grad(labels)  # (world * batch,)
        tuples = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, tuples)


class PairObjective(nn.Module):
    """A two-tower loss (``CLIPLoss``) on ``(text_embeddings, image_embeddings)``; the labels are unused.

    Example:
        >>> import torch
        >>> from finetuner.losses.contrastive import CLIPLoss
        >>> float(PairObjective(CLIPLoss())((torch.eye(3), torch.eye(3)), None)) < 1e-3
        True
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, embeddings: tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor | None) -> torch.Tensor:
        text, image = embeddings
        return self.loss(text, image)
