"""Losses for training without labels: ``fit(model, train_data=[texts...], loss='SimCSE')`` (or ``'TSDAE'``:
:mod:`finetuner.losses.denoising`).

SimCSE (Gao et al. 2021, unsupervised) puts every text in a batch twice: dropout, active in training, makes the two
forward passes of one text differ, so they are a positive pair ("two views"), and every other text of the batch is a
negative. ``fit`` builds those batches itself from a plain list of texts (:mod:`finetuner.training.unsupervised`);
the loss is InfoNCE over the batch's classes of two at temperature 0.05.
"""

from __future__ import annotations

from finetuner.losses.contrastive import InfoNCELoss
from finetuner.losses.denoising import TSDAELoss
from finetuner.losses.distill import DISTILL_LOSSES


class SimCSELoss(InfoNCELoss):
    """Unsupervised SimCSE: InfoNCE between the two dropout views of each text, the batch's other texts as
    negatives. Each label occurs exactly twice in a batch (the two views of one text).

    Args:
        temperature: the softmax temperature (SimCSE's 0.05).

    Example:
        >>> import torch
        >>> views = torch.tensor([[1.0, 0.0], [0.95, 0.05], [0.0, 1.0], [0.05, 0.95]])  # two views of two texts
        >>> float(SimCSELoss()(views, torch.tensor([0, 0, 1, 1]))) < 0.01
        True
    """


#: the losses that train on each unlabelled item once, in random batches (the rest, SimCSE, on two views), by name
ONE_VIEW_LOSSES: dict[str, type] = {"TSDAE": TSDAELoss, **DISTILL_LOSSES}

#: the losses that train on unlabelled items (``fit`` lays the items out for them), by name
UNSUPERVISED_LOSSES: dict[str, type] = {"SimCSE": SimCSELoss, **ONE_VIEW_LOSSES}


def is_unsupervised(loss: object) -> bool:
    """Whether ``loss`` names a loss that trains on unlabelled items.

    Example:
        >>> is_unsupervised('simcse'), is_unsupervised('TripletMarginLoss'), is_unsupervised(None)
        (True, False, False)
    """
    return isinstance(loss, str) and loss.lower() in {name.lower() for name in UNSUPERVISED_LOSSES}


def takes_one_view(loss: object) -> bool:
    """Whether ``loss`` names an unsupervised loss that sees each text once (distillation, TSDAE), its label the
    text's index.

    Example:
        >>> takes_one_view('TSDAE'), takes_one_view('DistillMSE'), takes_one_view('SimCSE')
        (True, True, False)
    """
    return isinstance(loss, str) and loss.lower() in {name.lower() for name in ONE_VIEW_LOSSES}
