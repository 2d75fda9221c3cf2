"""Losses for training without labels: ``fit(model, train_data=[texts...], loss='SimCSE')``, ``fit(image_model,
train_data=[images...], loss='SimCLR')`` (or ``'TSDAE'``: :mod:`finetuner.losses.denoising`).

SimCSE (Gao et al. 2021, unsupervised) puts every text in a batch twice: dropout, active in training, makes the two
forward passes of one text differ, so they are a positive pair ("two views"), and every other text of the batch is a
negative. ``fit`` builds those batches itself from a plain list of texts (:mod:`finetuner.training.unsupervised`);
the loss is InfoNCE over the batch's classes of two at temperature 0.05.

SimCLR (Chen et al. 2020) does the same for images, with views made by random augmentation (a crop, a flip, colour
distortion) instead of dropout: its NT-Xent loss is the same InfoNCE over the ``2N`` views of ``N`` images, each
view's partner its positive and the other ``2N - 2`` views its negatives.
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


class SimCLRLoss(InfoNCELoss):
    """SimCLR's NT-Xent: InfoNCE between two random augmentations of each image, the batch's other ``2N - 2`` views
    as negatives. Each label occurs exactly twice in a batch (the two views of one image).

    Args:
        temperature: the softmax temperature. 0.1 is SimCLR's: of the temperatures its table 5 compares for
            l2-normalised embeddings (0.05 to 1), 0.1 gave the best linear evaluation.

    Example:
        >>> import torch
        >>> views = torch.tensor([[1.0, 0.0], [0.99, 0.01], [0.0, 1.0], [0.01, 0.99]])  # two views of two images
        >>> float(SimCLRLoss()(views, torch.tensor([0, 0, 1, 1]))) < 0.01
        True
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__(temperature)


#: the losses that train on two augmentations of each unlabelled image (the views come from the data loader)
AUGMENTED_VIEW_LOSSES: dict[str, type] = {"SimCLR": SimCLRLoss}

#: the losses that train on each unlabelled item once, in random batches (the rest, SimCSE, on two views), by name
ONE_VIEW_LOSSES: dict[str, type] = {"TSDAE": TSDAELoss, **DISTILL_LOSSES}

#: the losses that train on unlabelled items (``fit`` lays the items out for them), by name
UNSUPERVISED_LOSSES: dict[str, type] = {"SimCSE": SimCSELoss, **AUGMENTED_VIEW_LOSSES, **ONE_VIEW_LOSSES}


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


def takes_images(loss: object) -> bool:
    """Whether ``loss`` names an unsupervised loss for images, whose two views are two random augmentations.

    Example:
        >>> takes_images('simclr'), takes_images('SimCSE')
        (True, False)
    """
    return isinstance(loss, str) and loss.lower() in {name.lower() for name in AUGMENTED_VIEW_LOSSES}
