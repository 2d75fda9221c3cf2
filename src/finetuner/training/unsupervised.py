"""Training without labels: ``fit(model, train_data=[texts...], loss='SimCSE')`` is the whole call (and
``loss='TSDAE'``: :mod:`finetuner.training.denoising`; ``loss='DistillMSE'`` with a teacher:
:mod:`finetuner.losses.distill`).

Before the usual checks, :func:`unsupervised_view` turns the plain texts into the batches SimCSE needs: every text
twice under a label of its own (:func:`~finetuner.data.unlabelled.two_views`), two per class in the class sampler,
so each batch holds both views of its texts and dropout makes them differ. From there the run is an ordinary
labelled run (evaluation data, if given, is labelled as usual).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from finetuner.data.readers import CSVOptions
from finetuner.data.shapes import LabelledData
from finetuner.data.unlabelled import read_texts, two_views
from finetuner.errors import ConfigError
from finetuner.losses.unsupervised import is_unsupervised, takes_one_view


def unsupervised_view(
    train_data: Any, settings: dict[str, Any], csv_options: CSVOptions | None = None
) -> tuple[Any, dict[str, Any]]:
    """``(train_data, settings)`` as ``fit`` checks them: for an unsupervised loss, the texts as two-view rows and
    the sampler settings that keep both views in a batch; anything else unchanged.

    Raises:
        ConfigError: a sampler or ``num_items_per_class`` that would split the views.
        DataError: the data is not a plain list of texts (see :func:`~finetuner.data.unlabelled.read_texts`).

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
        rows = two_views(read_texts(train_data, csv_options, name="train_data"))
        return rows, {**settings, "sampler": "random"}
    if settings.get("sampler", "auto") not in ("auto", "class"):
        raise ConfigError(
            f"loss={loss!r} puts two views of every text in one batch with the class sampler; "
            f"sampler={settings['sampler']!r} would split them: leave sampler unset"
        )
    if settings.get("num_items_per_class", 2) != 2:
        raise ConfigError(
            f"loss={loss!r} trains on two views of each text; num_items_per_class="
            f"{settings['num_items_per_class']!r} does not apply: leave it unset"
        )
    if settings.get("miner") is not None:
        raise ConfigError(f"loss={loss!r} uses every in-batch negative; a miner does not apply: drop miner=")
    rows = two_views(read_texts(train_data, csv_options, name="train_data"))
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


def check_views_differ(model: Any, loss: Any) -> None:
    """SimCSE's two views of a text differ only through dropout: refuse a model without any (both views would be
    the same vector and the loss would only push texts apart).

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
