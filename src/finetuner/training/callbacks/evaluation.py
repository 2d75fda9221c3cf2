"""Per-epoch measurements: retrieval metrics (:class:`EvaluationCallback`) and the loss on evaluation data."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from finetuner.data.readers import CSVOptions
from finetuner.data.samplers import ClassSampler
from finetuner.data.shapes import LabelledData, PairData, data_kind
from finetuner.data.shaping import read_shape
from finetuner.errors import ConfigError
from finetuner.evaluation.embedders import Embedder, embedder_for
from finetuner.evaluation.model_eval import RetrievalSets, evaluate_sets, retrieval_sets
from finetuner.training.callbacks.monitoring import unwrapped
from finetuner.training.loop import Callback, TrainState

logger = logging.getLogger("finetuner")

DISTANCES = ("cosine", "euclidean", "sqeuclidean")
TOWERS = (None, "model", "clip-text", "clip-vision")
_TOWER_OF = {"text": "clip-text", "image": "clip-vision"}


class EvaluationCallback(Callback):
    """Retrieval metrics at the end of every epoch (Finetuner's ``EvaluationCallback``).

    The metrics (Finetuner's ``precision_at_k``, ``recall_at_k``, ..., ``ndcg_at_k``, then the standard ``ndcg_at_10``,
    ``mrr_at_10``, ``map_at_{limit}``, ``recall_at_{limit}``; prefixed with ``caption_`` when a caption is given) go
    into ``state.metrics`` and the epoch's history (so ``metadata.yml``, the loggers and the report see them), and
    into the run's log. A model with query / document prompts embeds the queries and the index with them.
    :class:`BestModelCheckpoint` and :class:`EarlyStopping` can monitor them.

    Args:
        query_data: labelled data (any form ``fit`` accepts) whose items search the index.
        index_data: the data searched (default: ``query_data`` searches itself, each query excluded).
        model: for CLIP artifacts, the tower that encodes the queries (``'clip-text'``, ``'clip-vision'``); by
            default each item is encoded by the tower of its modality, which is what CLIP runs need.
        index_model: likewise for the index.
        limit: metrics are computed at ``k = limit``.
        distance: ``'cosine'``, ``'euclidean'`` or ``'sqeuclidean'``.
        exclude_self: leave a query out of its own results.
        batch_size: items per forward pass while embedding.
        caption: a prefix for the metric names (tells two evaluation callbacks apart).
        csv_options: how to read CSV ``query_data`` / ``index_data``.
        num_workers: DataLoader processes that preprocess the items while embedding (Finetuner's option).
        gather_examples: keep the top results of a few queries before and after training
            (``run.example_results()``, ``run.display_examples()``) when this callback measures the run.
        num_example_queries: how many queries ``gather_examples`` keeps.
        query_sample_size: evaluate with this many queries drawn at random (seeded, the same every epoch) instead
            of all of them; the index keeps every item (None: all queries).
        multi_modal: Finetuner's flag for queries and index of different modalities (CLIP). Each item goes to
            the tower of its modality anyway; when given, it is checked against the data.
        steps_per_interval: Finetuner's evaluation every N batches; refused (the evaluation runs at each epoch's end).

    Without ``eval_data`` in ``fit``, the first EvaluationCallback measures the run: its metrics before and after
    training are what ``run.metrics()`` returns (as in Finetuner).

    Example:
        >>> from finetuner.callback import EvaluationCallback
        >>> cb = EvaluationCallback([('red skirt', 'skirt'), ('blue skirt', 'skirt'), ('a shirt', 'shirt')], limit=5)
        >>> cb.metric_names()[:2]
        ['precision_at_k', 'recall_at_k']
    """

    _order = 0  # before the callbacks that monitor its metrics

    def __init__(
        self,
        query_data: Any,
        index_data: Any = None,
        model: str | None = None,
        index_model: str | None = None,
        limit: int = 20,
        distance: str = "cosine",
        exclude_self: bool = True,
        batch_size: int = 32,
        caption: str | None = None,
        csv_options: CSVOptions | None = None,
        num_workers: int = 0,
        gather_examples: bool = False,
        num_example_queries: int = 5,
        query_sample_size: int | None = None,
        multi_modal: bool | None = None,
        steps_per_interval: int | None = None,
    ) -> None:
        problems = _option_problems(num_workers, gather_examples, num_example_queries, query_sample_size, multi_modal)
        if steps_per_interval is not None:
            problems.append(
                "steps_per_interval (Finetuner 0.7.2: evaluate every N batches) is not available: the evaluation runs "
                "at each epoch's end; drop it"
            )
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            problems.append(f"limit must be an int >= 1; received {limit!r}")
        if distance not in DISTANCES:
            problems.append(f"distance must be one of {', '.join(DISTANCES)}; received {distance!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            problems.append(f"batch_size must be an int >= 1; received {batch_size!r}")
        for name, value in (("model", model), ("index_model", index_model)):
            if value not in TOWERS:
                problems.append(f"{name} must be None, 'clip-text' or 'clip-vision'; received {value!r}")
        if problems:
            raise ConfigError("EvaluationCallback: " + "; ".join(problems))
        self.query_data = query_data
        self.index_data = index_data
        self.model = model
        self.index_model = index_model
        self.limit = limit
        self.distance = distance
        self.exclude_self = exclude_self
        self.batch_size = batch_size
        self.caption = caption
        self.csv_options = csv_options
        self.num_workers = num_workers
        self.gather_examples = gather_examples
        self.num_example_queries = num_example_queries
        self.query_sample_size = query_sample_size
        self.multi_modal = multi_modal
        self._sets: RetrievalSets | None = None

    def metric_names(self) -> list[str]:
        """The keys this callback writes into ``state.metrics``."""
        from finetuner.evaluation.standard_metrics import metric_names

        prefix = f"{self.caption}_" if self.caption else ""
        return [prefix + n for n in metric_names(self.limit)]

    def setup(self) -> None:
        """Read and check the data (``fit`` calls this before training, so bad data fails early)."""
        if self._sets is not None:
            return
        queries = read_shape(self.query_data, self.csv_options, name="query_data")
        sets = retrieval_sets(queries)
        if self.index_data is not None:
            index = read_shape(self.index_data, self.csv_options, name="index_data")
            if not isinstance(queries, LabelledData) or not isinstance(index, LabelledData):
                raise ConfigError("EvaluationCallback: a separate index_data needs labelled query and index data")
            sets.index = index.items
            sets.index_labels = [index.classes[c] for c in index.labels]
            sets.index_ids = index.ids
            sets.index_modality = index.modality
        self._check_multi_modal(sets)
        self._sets = sample_queries(sets, self.query_sample_size)

    def _check_multi_modal(self, sets: RetrievalSets) -> None:
        two = (sets.index_modality or sets.query_modality) != sets.query_modality
        if self.multi_modal is not None and self.multi_modal != two:
            held = f"{sets.query_modality} queries and {sets.index_modality or sets.query_modality} index items"
            raise ConfigError(f"EvaluationCallback(multi_modal={self.multi_modal}) but the data holds {held}")

    def on_train_begin(self, state: TrainState) -> None:
        self.setup()

    def evaluate(self, model: Any) -> dict[str, float]:
        """The metrics of ``model`` on this callback's data."""
        metrics, _ = self.measure(model, examples=False)
        prefix = f"{self.caption}_" if self.caption else ""
        return {prefix + k: round(float(v), 6) for k, v in metrics.items()}

    def measure(self, model: Any, examples: bool = True) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """The metrics of ``model`` (unprefixed) and, with ``gather_examples``, the top results of
        ``num_example_queries`` queries: what ``fit`` records as the run's metrics when it has no ``eval_data``."""
        self.setup()
        assert self._sets is not None  # set by setup()
        return evaluate_sets(
            self._sets,
            self._embedder(model),
            limit=self.limit,
            distance=self.distance,
            exclude_self=self.exclude_self,
            num_examples=self.num_example_queries if examples and self.gather_examples else 0,
        )

    def _embedder(self, model: Any) -> Embedder:
        """Texts and images go to the tower of their modality (CLIP); the named towers must agree with that."""
        assert self._sets is not None  # set by setup()
        sides = (
            ("model", self.model, self._sets.query_modality),
            ("index_model", self.index_model, self._sets.index_modality or self._sets.query_modality),
        )
        for arg, tower, modality in sides:
            if tower not in (None, "model") and tower != _TOWER_OF[modality]:
                raise ConfigError(
                    f"EvaluationCallback({arg}={tower!r}) cannot encode {modality} items; use {_TOWER_OF[modality]!r}"
                )
        return embedder_for(model, self.batch_size, self.num_workers)

    def on_epoch_end(self, state: TrainState) -> None:
        # every process runs this: under a process group the embedder splits the items across the ranks and
        # gathers them, so all ranks compute the same figures (and take the same early-stopping decision)
        metrics = self.evaluate(unwrapped(state))
        state.metrics.update(metrics)
        if state.history:
            state.history[-1].update(metrics)
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        logger.info("epoch %d evaluation: %s", state.epoch + 1, shown)

    def __repr__(self) -> str:
        return (
            f"EvaluationCallback(limit={self.limit}, distance={self.distance!r}, exclude_self={self.exclude_self}"
            + (f", caption={self.caption!r}" if self.caption else "")
            + ")"
        )


def _option_problems(
    num_workers: Any, gather_examples: Any, num_example_queries: Any, query_sample_size: Any, multi_modal: Any
) -> list[str]:
    def count(value: Any, least: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= least

    problems = []
    if not count(num_workers, 0):
        problems.append(f"num_workers must be an int >= 0; received {num_workers!r}")
    if not isinstance(gather_examples, bool):
        problems.append(f"gather_examples must be True or False; received {gather_examples!r}")
    if not count(num_example_queries, 1):
        problems.append(f"num_example_queries must be an int >= 1; received {num_example_queries!r}")
    if query_sample_size is not None and not count(query_sample_size, 1):
        problems.append(f"query_sample_size must be an int >= 1 or None (all queries); received {query_sample_size!r}")
    if multi_modal is not None and not isinstance(multi_modal, bool):
        problems.append(f"multi_modal must be True, False or None; received {multi_modal!r}")
    return problems


def sample_queries(sets: RetrievalSets, size: int | None, seed: int = 0) -> RetrievalSets:
    """``sets`` with ``size`` of its queries drawn at random (seeded); a set that searched itself keeps every item
    as its index, so the drawn queries still search all of them.

    Example:
        >>> sets = RetrievalSets(['a', 'b', 'c', 'd'], [0, 0, 1, 1], ['1', '2', '3', '4'], 'text')
        >>> sampled = sample_queries(sets, 2)
        >>> len(sampled.queries), sampled.index
        (2, ['a', 'b', 'c', 'd'])
    """
    if size is None or size >= len(sets.queries):
        return sets
    keep = sorted(np.random.default_rng(seed).choice(len(sets.queries), size=size, replace=False).tolist())
    index = sets if sets.index is None else None
    return RetrievalSets(
        [sets.queries[i] for i in keep],
        [sets.query_labels[i] for i in keep],
        [sets.query_ids[i] for i in keep],
        sets.query_modality,
        sets.index if index is None else list(sets.queries),
        sets.index_labels if index is None else list(sets.query_labels),
        sets.index_ids if index is None else list(sets.query_ids),
        sets.index_modality if index is None else sets.query_modality,
        [sets.relevant[i] for i in keep] if sets.relevant is not None else None,  # index positions: unchanged
    )


class ValidationLoss(Callback):
    """The training loss measured on the evaluation data at each epoch's end, as ``val_loss``.

    ``fit`` adds it when a callback monitors ``val_loss``. Labelled data is batched like training data
    (class-balanced, seeded); text-image pairs in fixed chunks. The batches are the same every epoch, so the figures
    compare across epochs.

    Args:
        data: the evaluation data (labelled items, same-modality pairs, or text-image pairs for CLIP).

    :meth:`bind` then gives it the run's loss (a metric loss called as ``loss_fn(embeddings, labels, None)``, or
    for pairs of two modalities a pair objective called as ``loss_fn((text_embeddings, image_embeddings), None)``),
    the embedder ``embed(items, modality) -> (n, dim)`` of the model being trained, and the batch settings.

    Example:
        >>> from finetuner.losses import get_loss
        >>> data = LabelledData(['a', 'b', 'c', 'd'], [0, 0, 1, 1], ['x', 'y'], ['1', '2', '3', '4'], 'text')
        >>> ValidationLoss(data).bind(get_loss('TripletMarginLoss'), embed=None, batch_size=4).batches
        [[0, 1, 2, 3]]
    """

    _order = 0

    def __init__(self, data: LabelledData | PairData) -> None:
        if not isinstance(data, (LabelledData, PairData)):
            raise ConfigError(
                f"val_loss is measured on labelled items or pairs; eval_data holds {data_kind(data)}: monitor a "
                "metric of an EvaluationCallback instead"
            )
        self.data = data
        self.pairs = isinstance(data, PairData) and data.left_modality != data.right_modality
        self.loss_fn: Any = None
        self.embed: Embedder | None = None
        self.batches: list[list[int]] = []

    def bind(
        self, loss_fn: Any, embed: Embedder | None, batch_size: int = 32, num_items_per_class: int = 4, seed: int = 0
    ) -> ValidationLoss:
        """Set the run's loss and embedder and draw the fixed evaluation batches; returns self."""
        self.loss_fn, self.embed = loss_fn, embed
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
        with torch.no_grad():
            for batch in self.batches:
                if self.pairs:
                    text = self.embed([self.left[i] for i in batch], self.modalities[0]).to(device)
                    image = self.embed([self.right[i] for i in batch], self.modalities[1]).to(device)
                    loss = self.loss_fn((text, image), None)
                else:
                    emb = self.embed([self.items[i] for i in batch], self.modality).to(device)  # (batch, dim)
                    labels = torch.tensor([self.labels[i] for i in batch], dtype=torch.long, device=device)
                    loss = self.loss_fn(emb, labels, None)
                total += float(loss)
        return total / max(1, len(self.batches))

    def on_epoch_end(self, state: TrainState) -> None:
        value = round(self.compute(), 6)  # on every process, like EvaluationCallback
        state.metrics["val_loss"] = value
        if state.history:
            state.history[-1]["val_loss"] = value
        logger.info("epoch %d val_loss=%.4f", state.epoch + 1, value)
