"""The loss of one training step, called as ``objective(embeddings, labels)``: a metric loss with its miner over the
global batch of every process (:class:`MetricObjective`), a two-tower loss on ``(text, image)`` embeddings
(:class:`PairObjective`), a loss on triplet rows (:class:`TripletObjective`) or on scored pairs
(:class:`ScoredObjective`).

Rows travel as one flat batch, column by column: for triplets ``[queries, positives, negatives_1, ...,
negatives_k]`` (``(2 + k) * batch`` items) with the duplicate group of every item as the labels; for scored pairs
``[lefts, rights]`` with the ``(batch,)`` scores as the labels. The model embeds the flat batch (a gradient cache cuts
it anywhere); the objective folds it back into rows and gathers the rows of every process.
"""

from __future__ import annotations

import torch
from torch import nn

from finetuner.distributed import gather_no_grad, gather_with_grad, world
from finetuner.losses.contrastive import InfoNCELoss
from finetuner.losses.distill import MarginMSELoss
from finetuner.losses.matryoshka import MatryoshkaLoss
from finetuner.losses.rows import TripletBatch, explicit_triplets, infonce_with_negatives


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


def _columns(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """A flat column-by-column batch ``(width * batch, ...)`` as rows ``(batch, width, ...)``."""
    return tensor.reshape(width, tensor.shape[0] // width, *tensor.shape[1:]).transpose(0, 1)


class TripletObjective(nn.Module):
    """A loss on ``(query, positive, negative_1..k)`` rows over the global batch: ``InfoNCELoss`` scores every query
    against all positives and negatives of the batch (:func:`~finetuner.losses.rows.infonce_with_negatives`), any
    other loss (``TripletMarginLoss``) gets the explicit triplets (:func:`~finetuner.losses.rows.explicit_triplets`);
    ``MarginMSE`` the rows' margins and their indices (the targets of its rows, see
    :func:`~finetuner.training.plan.plan`).

    Under DDP the rows of all processes are gathered (embeddings with gradients, groups without) and every rank
    computes the global loss, as :class:`MetricObjective` does.

    Args:
        loss: ``InfoNCELoss`` or a pytorch-metric-learning loss that takes an ``indices_tuple`` of triplets.
        num_negatives: the negatives per row.

    Example:
        >>> emb = torch.tensor([[1.0, 0], [0, 1], [1, 0.1], [0.1, 1], [-1, 0], [0, -1]])  # q, q, p, p, n, n
        >>> round(float(TripletObjective(InfoNCELoss(), 1)(emb, torch.tensor([0, 1, 0, 1, -1, -1]))), 3)
        0.0
    """

    def __init__(self, loss: nn.Module, num_negatives: int) -> None:
        super().__init__()
        self.loss = loss
        self.num_negatives = int(num_negatives)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        width = 2 + self.num_negatives
        rows = _columns(embeddings.float(), width)  # (batch, 2 + k, dim)
        groups = _columns(labels, width)  # (batch, 2 + k)
        if world()[1] > 1:
            rows = gather_with_grad(rows.contiguous())  # (world * batch, 2 + k, dim)
            groups = gather_no_grad(groups.contiguous())  # (world * batch, 2 + k)
        if isinstance(self.loss, MatryoshkaLoss):  # every prefix of every row's embeddings, weighted
            total = rows.new_zeros(())
            for dim, weight in zip(self.loss.dims, self.loss.weights):
                total = total + weight * _triplet_loss(self.loss.loss, rows[..., :dim], groups)  # (batch, 2 + k, dim')
            return total
        return _triplet_loss(self.loss, rows, groups)


def _triplet_loss(loss: nn.Module, rows: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """``loss`` on rows ``(batch, 2 + k, dim)`` of (query, positive, negatives) and their groups ``(batch, 2 + k)``."""
    batch = TripletBatch(rows[:, 0], rows[:, 1], rows[:, 2:], groups[:, 0], groups[:, 2:])
    if isinstance(loss, MarginMSELoss):  # its rows carry their own index as every member's target
        return loss(batch.queries, batch.positives, batch.negatives, batch.groups)
    if isinstance(loss, InfoNCELoss):
        return infonce_with_negatives(batch, loss.temperature)
    return explicit_triplets(loss, batch)


class ScoredObjective(nn.Module):
    """A scored-pair loss (``CoSENTLoss``, ``CosineSimilarityLoss``) on ``[lefts, rights]`` embeddings with the
    scores as labels, over the global batch (gathered like :class:`TripletObjective`).

    Example:
        >>> from finetuner.losses.rows import CosineSimilarityLoss
        >>> emb = torch.tensor([[1.0, 0], [1, 0], [1, 0], [0, 1]])  # lefts, then rights
        >>> float(ScoredObjective(CosineSimilarityLoss())(emb, torch.tensor([1.0, 0.0])))
        0.0
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        rows = _columns(embeddings.float(), 2)  # (batch, 2, dim)
        scores = labels.float()  # (batch,)
        if world()[1] > 1:
            rows = gather_with_grad(rows.contiguous())  # (world * batch, 2, dim)
            scores = gather_no_grad(scores)  # (world * batch,)
        return self.loss(rows[:, 0], rows[:, 1], scores)
