"""Distillation: a student learns to reproduce a teacher's embeddings (to shrink a model, or to carry it to new
data or languages): ``fit(student, [texts...], loss='DistillMSE', loss_options={'teacher': TEACHER})``.

The teacher's embeddings of the training texts are computed once, before training, in chunks cached on disk
(:mod:`finetuner.training.distill`); the loss sees the student's embeddings and each item's index (its label) and
looks up the teacher's vector of that item, so it never sees a model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


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


#: the distillation losses, by name
DISTILL_LOSSES: dict[str, type] = {"DistillMSE": DistillMSELoss}


def is_distillation(loss: object) -> bool:
    """Whether ``loss`` names a distillation loss.

    Example:
        >>> is_distillation('distillmse'), is_distillation('SimCSE')
        (True, False)
    """
    return isinstance(loss, str) and loss.lower() in {name.lower() for name in DISTILL_LOSSES}
