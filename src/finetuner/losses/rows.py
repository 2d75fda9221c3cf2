"""Losses on rows: triplets with explicit negatives, and scored pairs.

Triplets ``(query, positive, negative_1..k)``:

- :func:`infonce_with_negatives` (``loss='InfoNCELoss'``, the default for triplets): every query is scored against
  all positives *and* all negatives of the batch, its own positive the target: sentence-transformers'
  MultipleNegativesRankingLoss with negative columns. A candidate of the query's duplicate group (the positive of
  another row of the same group, or a negative that is the same text as one of the group's queries or positives) is
  left out of that query's candidates: it is a positive of the query, not a negative. The row's own explicit
  negatives always stay in (the data says they are negatives).
- :func:`explicit_triplets` (``loss='TripletMarginLoss'``): pytorch-metric-learning's loss on exactly the given
  ``(query, positive, negative_m)`` triplets (an explicit ``indices_tuple``), no in-batch mining.

Scored pairs ``(a, b, score)``: :class:`CoSENTLoss` (the default) and :class:`CosineSimilarityLoss`. Neither ever
treats a pair as a positive because it is a pair: a pair scored 0 is pushed below the pairs scored higher (CoSENT) or
towards a cosine of 0 (CosineSimilarityLoss).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F


class TripletBatch(NamedTuple):
    """One batch of triplet rows as embeddings, with the duplicate group of every item.

    Attributes:
        queries: ``(batch, dim)``; positives: ``(batch, dim)``; negatives: ``(batch, k, dim)``.
        groups: ``(batch,)`` the duplicate group of every row (rows sharing a query or positive share it).
        negative_groups: ``(batch, k)`` the group a negative is a query or positive of, -1 when it is only ever a
            negative.
    """

    queries: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor
    groups: torch.Tensor
    negative_groups: torch.Tensor


def infonce_with_negatives(batch: TripletBatch, temperature: float = 0.05) -> torch.Tensor:
    """Cross-entropy of every query over ``[all positives, all negatives]`` of the batch, its positive the target.

    Args:
        batch: the rows' embeddings and groups.
        temperature: the softmax temperature (0.05: sentence-transformers' scale of 20).

    Example:
        >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> b = TripletBatch(q, q.clone(), -q[:, None], torch.tensor([0, 1]), torch.tensor([[-1], [-1]]))
        >>> round(float(infonce_with_negatives(b)), 4)  # each query's positive far closer than the rest
        0.0
    """
    n, k = batch.negatives.shape[:2]
    q = F.normalize(batch.queries.float(), dim=-1)  # (n, d)
    dim = batch.queries.shape[-1]
    candidates = torch.cat([batch.positives, batch.negatives.reshape(n * k, dim)]).float()  # (n + n*k, d)
    candidates = F.normalize(candidates, dim=-1)
    logits = q @ candidates.T / temperature  # (n, n + n*k)
    candidate_groups = torch.cat([batch.groups, batch.negative_groups.reshape(-1)])  # (n + n*k,)
    same_group = batch.groups[:, None] == candidate_groups[None, :]  # (n, n + n*k)
    rows = torch.arange(n, device=q.device)
    own = torch.zeros_like(same_group)
    own[rows, rows] = True  # the row's positive: the target
    own_negatives = n + rows[:, None] * k + torch.arange(k, device=q.device)[None, :]  # (n, k)
    own[rows[:, None], own_negatives] = True  # the row's explicit negatives stay negatives
    logits = logits.masked_fill(same_group & ~own, float("-inf"))
    return F.cross_entropy(logits, rows)


def explicit_triplets(loss: nn.Module, batch: TripletBatch) -> torch.Tensor:
    """A pytorch-metric-learning loss on the batch's own triplets ``(query_i, positive_i, negative_i_m)`` only.

    Args:
        loss: e.g. ``TripletMarginLoss``; it gets the explicit ``indices_tuple`` (anchors, positives, negatives).
        batch: the rows' embeddings.

    Example:
        >>> from pytorch_metric_learning.losses import TripletMarginLoss
        >>> q = torch.tensor([[1.0, 0.0]]); p = torch.tensor([[1.0, 0.1]]); neg = torch.tensor([[[0.0, 1.0]]])
        >>> b = TripletBatch(q, p, neg, torch.tensor([0]), torch.tensor([[-1]]))
        >>> float(explicit_triplets(TripletMarginLoss(margin=0.2), b))  # the negative is far: no violation
        0.0
    """
    n, k = batch.negatives.shape[:2]
    embeddings = torch.cat([batch.queries, batch.positives, batch.negatives.reshape(n * k, batch.queries.shape[-1])])
    embeddings = embeddings.float()  # (2n + n*k, d)
    rows = torch.arange(n, device=embeddings.device).repeat_interleave(k)  # (n*k,) the row of every negative
    indices = (rows, n + rows, 2 * n + torch.arange(n * k, device=embeddings.device))
    labels = torch.arange(embeddings.shape[0], device=embeddings.device)  # unused with explicit indices
    return loss(embeddings, labels, indices)


class CoSENTLoss(nn.Module):
    """CoSENT (Su, 2022): every pair of pairs ranked by cosine as their scores rank them.

    ``log(1 + sum over (i, j) with score_i > score_j of exp(scale * (cos_j - cos_i)))``: only the order of the scores
    matters, so scores on any scale (0-1, 0-5, grades) train alike. sentence-transformers' ``CoSENTLoss``.

    Args:
        scale: the inverse temperature (20, as sentence-transformers).

    Example:
        >>> a = torch.tensor([[1.0, 0.0], [1.0, 0.0]]); b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> round(float(CoSENTLoss()(a, b, torch.tensor([1.0, 0.0]))), 6)  # already in the right order
        0.0
    """

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be positive; received {scale}")
        self.scale = float(scale)

    def forward(self, left: torch.Tensor, right: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The loss of pairs ``(left[i], right[i])`` (``(batch, dim)`` each) scored ``scores`` (``(batch,)``)."""
        cos = F.cosine_similarity(left.float(), right.float(), dim=-1) * self.scale  # (batch,)
        diff = cos[None, :] - cos[:, None]  # (batch, batch): cos_j - cos_i
        ordered = scores[:, None] > scores[None, :]  # (batch, batch): score_i > score_j
        diff = diff.masked_fill(~ordered, float("-inf"))
        zero = torch.zeros(1, device=diff.device, dtype=diff.dtype)
        return torch.logsumexp(torch.cat([zero, diff.flatten()]), dim=0)


class CosineSimilarityLoss(nn.Module):
    """Mean squared error between the pair's cosine similarity and its score (Finetuner's and sentence-transformers'
    ``CosineSimilarityLoss``). Scores are targets on the cosine scale: ``[-1, 1]``, usually ``[0, 1]``.

    Example:
        >>> a = torch.tensor([[1.0, 0.0], [1.0, 0.0]]); b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> float(CosineSimilarityLoss()(a, b, torch.tensor([1.0, 0.0])))
        0.0
    """

    def forward(self, left: torch.Tensor, right: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The loss of pairs ``(left[i], right[i])`` (``(batch, dim)`` each) scored ``scores`` (``(batch,)``)."""
        cos = F.cosine_similarity(left.float(), right.float(), dim=-1)  # (batch,)
        return F.mse_loss(cos, scores.float())


#: losses for scored pairs, by name (merged into ``list_losses``)
SCORED_LOSSES: dict[str, type] = {"CoSENTLoss": CoSENTLoss, "CosineSimilarityLoss": CosineSimilarityLoss}
