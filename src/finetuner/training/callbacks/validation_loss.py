"""The training loss on evaluation data at each epoch's end (:class:`ValidationLoss`, ``val_loss``)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from finetuner.data.samplers import ClassSampler
from finetuner.data.shapes import LabelledData, PairData, RowData, ScoredPairData, TripletData, data_kind
from finetuner.distributed import local_only
from finetuner.errors import ConfigError
from finetuner.evaluation.embedders import Embedder
from finetuner.losses.distill import MarginMSELoss
from finetuner.losses.step_loss import ScoredObjective, TripletObjective
from finetuner.training.loop import Callback, TrainState

logger = logging.getLogger("finetuner")


class ValidationLoss(Callback):
    """The training loss measured on the evaluation data at each epoch's end, as ``val_loss``.

    ``fit`` adds it when a callback monitors ``val_loss``. Labelled data is batched like training data
    (class-balanced, seeded); text-image pairs, triplets and scored pairs in fixed chunks of rows (with the run's
    row objective, so evaluation triplets need as many negatives per row as the training ones). The batches are the
    same every epoch, so the figures compare across epochs.

    Args:
        data: the evaluation data (labelled items, same-modality pairs, text-image pairs for CLIP, triplets, scored
            pairs).

    :meth:`bind` then gives it the run's loss (a metric loss called as ``loss_fn(embeddings, labels, None)``, or
    for pairs of two modalities a pair objective called as ``loss_fn((text_embeddings, image_embeddings), None)``),
    the embedder ``embed(items, modality) -> (n, dim)`` of the model being trained, and the batch settings.

    Example:
        >>> from finetuner.losses import get_loss
        >>> data = LabelledData(['a', 'b', 'c', 'd'], [0, 0, 1, 1], ['x', 'y'], ['1', '2', '3', '4'], 'text')
        >>> ValidationLoss(data).bind(get_loss('TripletMarginLoss'), embed=None, batch_size=4).batches
        [[1, 0, 2, 3]]
    """

    _order = 0

    def __init__(self, data: LabelledData | PairData | TripletData | ScoredPairData) -> None:
        if not isinstance(data, (LabelledData, PairData, *RowShapes)):
            raise ConfigError(
                f"val_loss is measured on labelled items, pairs, triplets or scored pairs; eval_data holds "
                f"{data_kind(data)}: monitor a metric of an EvaluationCallback instead"
            )
        self.data = data
        self.rows: RowData | None = None
        self.pairs = isinstance(data, PairData) and data.left_modality != data.right_modality
        self.loss_fn: Any = None
        self.embed: Embedder | None = None
        self.batches: list[list[int]] = []

    def bind(
        self, loss_fn: Any, embed: Embedder | None, batch_size: int = 32, num_items_per_class: int = 4, seed: int = 0
    ) -> ValidationLoss:
        """Set the run's loss and embedder and draw the fixed evaluation batches; returns self."""
        self.loss_fn, self.embed = loss_fn, embed
        if isinstance(loss_fn, (TripletObjective, ScoredObjective)) or isinstance(self.data, RowShapes):
            self.rows = _matching_rows(loss_fn, self.data)
            size = max(2, batch_size)
            self.batches = [list(range(i, min(i + size, len(self.rows)))) for i in range(0, len(self.rows), size)]
            return self
        data = self.data
        if isinstance(data, PairData) and self.pairs:
            self.left, self.right = data.left, data.right
            self.modalities = (data.left_modality, data.right_modality)
            size = max(2, batch_size)
            self.batches = [list(range(i, min(i + size, len(data)))) for i in range(0, len(data), size)]
            return self
        labelled = data.as_labelled() if isinstance(data, PairData) else data
        self.items, self.labels, self.modality = labelled.items, labelled.labels, labelled.modality
        size = max(2, min(batch_size, len(self.items)))
        k = 2 if isinstance(data, PairData) else num_items_per_class  # a pair group: two items per batch
        sampler = ClassSampler(self.labels, size, min(k, max(1, size // 2)), seed=seed)
        sampler.set_epoch(0)
        self.batches = [list(map(int, b)) for b in sampler]
        return self

    def compute(self) -> float:
        """The mean loss over the fixed evaluation batches."""
        if self.embed is None or self.loss_fn is None:
            raise ConfigError("ValidationLoss measures nothing before bind(loss_fn, embed, ...) (fit calls it)")
        device = next((p.device for p in self.loss_fn.parameters()), torch.device("cpu"))
        total = 0.0
        with torch.no_grad(), local_only():  # every process measures the same batches: nothing to gather
            for batch in self.batches:
                if self.rows is not None:
                    loss = self._row_loss(batch, device)
                elif self.pairs:
                    text = self.embed([self.left[i] for i in batch], self.modalities[0]).to(device)
                    image = self.embed([self.right[i] for i in batch], self.modalities[1]).to(device)
                    loss = self.loss_fn((text, image), None)
                else:
                    emb = self.embed([self.items[i] for i in batch], self.modality).to(device)  # (batch, dim)
                    labels = torch.tensor([self.labels[i] for i in batch], dtype=torch.long, device=device)
                    loss = self.loss_fn(emb, labels, None)
                total += float(loss)
        return total / max(1, len(self.batches))

    def _row_loss(self, batch: list[int], device: torch.device) -> torch.Tensor:
        """The row objective on a batch of rows, embedded as the training loader lays them out (column by column)."""
        assert self.rows is not None and self.embed is not None
        rows = [self.rows.rows[i] for i in batch]
        flat = [self.rows.items[row[c]] for c in range(len(rows[0])) for row in rows]
        emb = self.embed(flat, self.rows.modality).to(device)  # (width * batch, dim)
        targets = [self.rows.targets[i] for i in batch]
        if isinstance(self.loss_fn, ScoredObjective):
            labels = torch.tensor([t[0] for t in targets], dtype=torch.float32, device=device)  # (batch,)
        else:
            labels = torch.tensor([t[c] for c in range(len(targets[0])) for t in targets], device=device)
        return self.loss_fn(emb, labels)

    def on_epoch_end(self, state: TrainState) -> None:
        value = round(self.compute(), 6)  # on every process, like EvaluationCallback
        state.metrics["val_loss"] = value
        if state.history:
            state.history[-1]["val_loss"] = value
        logger.info("epoch %d val_loss=%.4f", state.epoch + 1, value)


#: the shapes that train as rows
RowShapes = (TripletData, ScoredPairData)


def _matching_rows(loss_fn: Any, data: Any) -> RowData:
    """The evaluation rows a row objective measures: data of the training data's shape (the same negatives per row)."""
    if isinstance(loss_fn, TripletObjective) and isinstance(getattr(loss_fn.loss, "loss", loss_fn.loss), MarginMSELoss):
        raise ConfigError(
            "val_loss is not measured for MarginMSE (the teacher's margins are computed for the training rows only); "
            "monitor a metric of an EvaluationCallback instead"
        )
    if isinstance(loss_fn, TripletObjective):
        fits = isinstance(data, TripletData) and data.num_negatives == loss_fn.num_negatives
        trains = f"triplets with {loss_fn.num_negatives} negative(s) per row"
    elif isinstance(loss_fn, ScoredObjective):
        fits, trains = isinstance(data, ScoredPairData), "scored pairs"
    else:
        fits, trains = False, "labelled items or pairs"
    if not fits:
        held = data_kind(data) + (f" with {data.num_negatives} negative(s)" if isinstance(data, TripletData) else "")
        raise ConfigError(
            f"val_loss is the training loss on eval_data, so eval_data must have the training data's shape: the run "
            f"trains on {trains} but eval_data holds {held}; monitor a metric of an EvaluationCallback instead"
        )
    return data.as_rows()
