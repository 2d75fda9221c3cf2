"""Distillation: a student learns from a teacher's embeddings (to shrink a model, or to carry it to new data or
languages).

- ``fit(student, [texts...], loss='DistillMSE', loss_options={'teacher': TEACHER})``: the student's embedding of
  every text regressed onto the teacher's.
- ``fit(student, [(query, positive, negative), ...], loss='MarginMSE', loss_options={'teacher': TEACHER})``
  (Hofstaetter et al. 2020): the student's margin ``sim(q, p) - sim(q, n)`` of every row regressed onto the
  teacher's margin of the same row, so the student learns how much better the positive is, not the teacher's space
  (the two may differ in size).

The teacher's embeddings of the training texts are computed once, before training, in chunks cached on disk
(:mod:`finetuner.training.distill`); the losses see the student's embeddings and each item's (or row's) index and
look up what the teacher gave for it, so they never see a model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from finetuner.errors import ConfigError


class DistillMSELoss(nn.Module):
    """Mean squared error between the student's embeddings and the teacher's embeddings of the same items.

    Args:
        teacher: the teacher model (an alias, hub id or folder); ``fit`` embeds the training texts with it.
        teacher_batch_size: items per forward pass of the teacher.

    Example:
        >>> loss = DistillMSELoss('teacher-name')
        >>> loss.set_teacher_vectors(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        >>> float(loss(torch.tensor([[1.0, 1.0], [1.0, 0.0]]), torch.tensor([2, 0])))
        0.0
    """

    def __init__(self, teacher: Any = None, teacher_batch_size: int = 64) -> None:
        super().__init__()
        self.teacher = teacher
        self.teacher_batch_size = int(teacher_batch_size)
        self.register_buffer("teacher_vectors", torch.empty(0, 0), persistent=False)  # (n_items, dim)

    def set_teacher_vectors(self, vectors: torch.Tensor) -> None:
        """The teacher's embedding of every training item, in the order of the items' labels."""
        self.teacher_vectors = vectors.detach().float()

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, indices_tuple: object = None) -> torch.Tensor:
        """``embeddings`` ``(batch, dim)`` of the items whose indices are ``labels``."""
        target = self.teacher_vectors.index_select(0, labels.long())  # (batch, dim)
        return F.mse_loss(embeddings.float(), target)


#: how a margin scores a (query, document) pair
SIMILARITIES = ("cosine", "dot")


def margins(
    queries: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, similarity: str = "cosine"
) -> torch.Tensor:
    """``sim(query, positive) - sim(query, negative_m)`` of every row ``(batch, k)``.

    Args:
        queries: ``(batch, dim)``; positives: ``(batch, dim)``; negatives: ``(batch, k, dim)``.
        similarity: ``'cosine'`` or ``'dot'`` (the raw dot product).

    Example:
        >>> q, p, n = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([[[0.0, 3.0]]])
        >>> margins(q, p, n).tolist(), margins(q, p, n, 'dot').tolist()
        ([[1.0]], [[2.0]])
    """
    if similarity == "cosine":
        queries, positives = F.normalize(queries, dim=-1), F.normalize(positives, dim=-1)
        negatives = F.normalize(negatives, dim=-1)
    positive = (queries * positives).sum(-1)  # (batch,)
    negative = (queries[:, None, :] * negatives).sum(-1)  # (batch, k)
    return positive[:, None] - negative  # (batch, k)


class MarginMSELoss(nn.Module):
    """Mean squared error between the student's margins ``sim(q, p) - sim(q, n)`` on triplet rows and the teacher's
    margins of the same rows.

    Args:
        teacher: the teacher model (an alias, hub id or folder); ``fit`` embeds the rows' texts with it.
        teacher_batch_size: items per forward pass of the teacher.
        similarity: ``'cosine'`` (default) or ``'dot'``, for the student's and the teacher's scores alike.

    Example:
        >>> loss = MarginMSELoss('teacher-name')
        >>> loss.set_teacher_margins(torch.tensor([[0.5], [1.0]]))  # one negative per row, two rows
        >>> q, p, n = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[[0.0, 1.0]]])
        >>> float(loss(q, p, n, torch.tensor([1])))  # the student's margin 1.0 is row 1's teacher margin
        0.0
    """

    def __init__(self, teacher: Any = None, teacher_batch_size: int = 64, similarity: str = "cosine") -> None:
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ConfigError(f"MarginMSE's similarity is one of {', '.join(SIMILARITIES)}; received {similarity!r}")
        self.teacher = teacher
        self.teacher_batch_size = int(teacher_batch_size)
        self.similarity = similarity
        self.register_buffer("teacher_margins", torch.empty(0, 0), persistent=False)  # (n_rows, k)

    def set_teacher_margins(self, values: torch.Tensor) -> None:
        """The teacher's margins ``(n_rows, k)`` of every training row, in row order."""
        self.teacher_margins = values.detach().float()

    def forward(
        self, queries: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """The student's embeddings of a batch of rows (``(batch, dim)``, ``(batch, dim)``, ``(batch, k, dim)``) and
        the rows' indices ``(batch,)``."""
        student = margins(queries.float(), positives.float(), negatives.float(), self.similarity)  # (batch, k)
        target = self.teacher_margins.index_select(0, rows.long())  # (batch, k)
        return F.mse_loss(student, target)


#: the distillation losses on plain texts, by name
DISTILL_LOSSES: dict[str, type] = {"DistillMSE": DistillMSELoss}

#: the distillation losses on triplet rows, by name
ROW_DISTILL_LOSSES: dict[str, type] = {"MarginMSE": MarginMSELoss}


def is_distillation(loss: object) -> bool:
    """Whether ``loss`` names a distillation loss.

    Example:
        >>> is_distillation('distillmse'), is_distillation('SimCSE')
        (True, False)
    """
    return isinstance(loss, str) and loss.lower() in {name.lower() for name in DISTILL_LOSSES}


def is_margin_distillation(loss: object) -> bool:
    """Whether ``loss`` names a distillation loss on triplet rows (its rows carry their index as the target).

    Example:
        >>> is_margin_distillation('marginmse'), is_margin_distillation('DistillMSE')
        (True, False)
    """
    return isinstance(loss, str) and loss.lower() in {name.lower() for name in ROW_DISTILL_LOSSES}
