"""Training without labels: ``fit(model, train_data=[texts...], loss='SimCSE')`` and ``fit(image_model,
train_data=[images...], loss='SimCLR')`` are the whole call (and ``loss='TSDAE'``:
:mod:`finetuner.training.denoising`; ``loss='DistillMSE'`` with a teacher: :mod:`finetuner.losses.distill`).

Before the usual checks, :func:`unsupervised_view` turns the plain items into the batches SimCSE and SimCLR need:
every item twice under a label of its own (:func:`~finetuner.data.unlabelled.two_views`), two per class in the class
sampler, so each batch holds both views of its items. For texts dropout makes the two differ; for images the
model's train-time augmentation does (:func:`check_views_differ` sets SimCLR's,
:data:`~finetuner.config.SIMCLR_AUGMENT`, unless ``model_options['augment']`` gives one): each row of a batch is
augmented on its own, from the seeded generator, so the two views of an image differ, and differ again every epoch.
From there the run is an ordinary labelled run (evaluation data, if given, is labelled as usual).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from finetuner.config import SIMCLR_AUGMENT
from finetuner.data.readers import CSVOptions
from finetuner.data.shapes import LabelledData
from finetuner.data.unlabelled import read_images, read_texts, two_views
from finetuner.errors import ConfigError
from finetuner.losses.unsupervised import is_unsupervised, takes_images, takes_one_view
from finetuner.models.vision.encoder import ImageEncoder
from finetuner.models.vision.transforms import RandomResizedCropFlip, make_augment


def unsupervised_view(
    train_data: Any,
    settings: dict[str, Any],
    csv_options: CSVOptions | None = None,
    model_options: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """``(train_data, settings)`` as ``fit`` checks them: for an unsupervised loss, the texts or images as two-view
    rows and the sampler settings that keep both views in a batch; anything else unchanged.

    Raises:
        ConfigError: a sampler or ``num_items_per_class`` that would split the views, a miner, or (SimCLR) an
            ``augment`` model option that makes the two views of an image the same.
        DataError: the data is not a plain list of texts (see :func:`~finetuner.data.unlabelled.read_texts`) or
            of images (:func:`~finetuner.data.unlabelled.read_images`).

    Example:
        >>> rows, settings = unsupervised_view(['a cat', 'a dog'], {'loss': 'SimCSE'})
        >>> rows[:2], settings['num_items_per_class'], settings['sampler']
        ([('a cat', 'text-0'), ('a cat', 'text-0')], 2, 'class')
    """
    loss = settings.get("loss")
    if not is_unsupervised(loss):
        return train_data, settings
    if takes_one_view(loss):  # checked as two views, then one view each (one_view)
        if settings.get("sampler", "auto") not in ("auto", "random"):
            raise ConfigError(f"loss={loss!r} takes random batches; sampler={settings['sampler']!r} does not apply")
        _check_deletion_ratio(loss, settings.get("loss_options"))
        rows = two_views(read_texts(train_data, csv_options, name="train_data", loss=loss))
        return rows, {**settings, "sampler": "random"}
    kind = "image" if takes_images(loss) else "text"
    if settings.get("sampler", "auto") not in ("auto", "class"):
        raise ConfigError(
            f"loss={loss!r} puts two views of every {kind} in one batch with the class sampler; "
            f"sampler={settings['sampler']!r} would split them: leave sampler unset"
        )
    if settings.get("num_items_per_class", 2) != 2:
        raise ConfigError(
            f"loss={loss!r} trains on two views of each {kind}; num_items_per_class="
            f"{settings['num_items_per_class']!r} does not apply: leave it unset"
        )
    if settings.get("miner") is not None:
        raise ConfigError(f"loss={loss!r} uses every in-batch negative; a miner does not apply: drop miner=")
    if kind == "image":
        if model_options and "augment" in model_options:
            given = model_options["augment"]
            _check_random(loss, make_augment(given), f"model_options['augment']={given!r}")
        rows = two_views(read_images(train_data, csv_options, name="train_data"), "image")
    else:
        rows = two_views(read_texts(train_data, csv_options, name="train_data", loss=loss))
    return rows, {**settings, "sampler": "class", "num_items_per_class": 2}


def one_view(train: Any, loss: Any) -> Any:
    """For distillation and TSDAE, the checked two-view data with each text once, its label its index (the row of
    its teacher vector, of its original tokens); any other data unchanged.

    Example:
        >>> data = LabelledData(['a', 'a', 'b', 'b'], [0, 0, 1, 1], ['text-0', 'text-1'], ['1', '2', '3', '4'], 'text')
        >>> one_view(data, 'DistillMSE').items, one_view(data, 'DistillMSE').labels
        (['a', 'b'], [0, 1])
    """
    if not takes_one_view(loss) or not isinstance(train, LabelledData):
        return train
    first: dict[int, int] = {}
    for i, label in enumerate(train.labels):
        first.setdefault(label, i)
    keep = sorted(first.values())
    items = [train.items[i] for i in keep]
    return LabelledData(items, list(range(len(items))), list(range(len(items))), [train.ids[i] for i in keep], "text")


def check_views_differ(model: Any, loss: Any, model_options: dict[str, Any] | None = None) -> None:
    """SimCSE's two views of a text differ only through dropout: refuse a model without any (both views would be
    the same vector and the loss would only push texts apart). SimCLR's differ through the image model's
    train-time augmentation: refuse a model that is not an image model, and give one without an augmentation (and
    no ``augment`` in ``model_options``) SimCLR's, :data:`~finetuner.config.SIMCLR_AUGMENT`.

    Example:
        >>> import torch
        >>> check_views_differ(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1)), 'SimCSE')
        >>> check_views_differ(torch.nn.Linear(2, 2), 'SimCSE')
        Traceback (most recent call last):
        ...
        finetuner.errors.ConfigError: loss='SimCSE' makes two views of each text by dropout, but the model has no \
dropout (no Dropout layer with p > 0); use a model trained with dropout (BERT-like models have it)
    """
    if not is_unsupervised(loss) or takes_one_view(loss):
        return
    modality = getattr(model, "modality", None)
    if takes_images(loss):
        _prepare_augment(model, loss, modality, model_options)
        return
    if modality == "image":
        raise ConfigError(
            f"loss={loss!r} trains a text model on two dropout views of each text; the model encodes images: for "
            "images use loss='SimCLR' (two random augmentations of each image)"
        )
    for module in model.modules():
        if isinstance(module, nn.Dropout) and module.p > 0:
            return
        config = getattr(module, "config", None)
        if any(getattr(config, key, 0) or 0 for key in ("hidden_dropout_prob", "attention_probs_dropout_prob")):
            return
    raise ConfigError(
        f"loss={loss!r} makes two views of each text by dropout, but the model has no dropout (no Dropout layer "
        "with p > 0); use a model trained with dropout (BERT-like models have it)"
    )


def _prepare_augment(model: Any, loss: str, modality: Any, model_options: dict[str, Any] | None) -> None:
    """SimCLR: an image model whose train-time augmentation draws two different views of an image."""
    if modality != "image":
        what = f"encodes {modality}" if modality else f"is a {type(model).__name__} (not a single image model)"
        hint = ": for texts use loss='SimCSE' (two dropout views of each text)" if modality == "text" else ""
        raise ConfigError(
            f"loss={loss!r} trains an image model on two augmentations of each image; the model {what}{hint}"
        )
    if getattr(model, "augment", None) is None and not isinstance(model, ImageEncoder):
        raise ConfigError(f"loss={loss!r} needs a model with train-time augmentation; {type(model).__name__} has none")
    if model.augment is None and "augment" not in (model_options or {}):
        model.augment = make_augment(dict(SIMCLR_AUGMENT))  # read by ImageEncoder.training_preprocess
    elif isinstance(model.augment, RandomResizedCropFlip):
        _check_random(loss, model.augment, "the model's augment")
    if model.augment is None:
        _check_random(loss, None, "model_options['augment']")


def _check_random(loss: str, augment: RandomResizedCropFlip | None, what: str) -> None:
    """Refuse an augmentation that gives the same image every time: SimCLR's two views would be identical."""
    if augment is None or not augment.is_random():
        described = "off" if augment is None else augment.describe()
        raise ConfigError(
            f"loss={loss!r} learns from two different random augmentations of each image, but {what} is "
            f"{described}, so both views would be the same image: leave it unset (SimCLR's crop, flip and colour "
            "distortion) or give random settings, e.g. {'scale': (0.08, 1.0), 'flip': 0.5, 'color_jitter': 0.5}"
        )


def _check_deletion_ratio(loss: str, options: Any) -> None:
    """TSDAE's ``deletion_ratio`` is a share of words in [0, 1); no Matryoshka prefixes (the decoder takes the whole
    embedding)."""
    if loss.lower() != "tsdae" or not isinstance(options, dict):
        return
    if "matryoshka_dims" in options:
        raise ConfigError("loss='TSDAE' decodes the whole embedding; matryoshka_dims does not apply: drop it")
    if "deletion_ratio" not in options:
        return
    ratio = options["deletion_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise ConfigError(f"TSDAE's deletion_ratio is a share of words in [0, 1) (default 0.6); received {ratio!r}")
