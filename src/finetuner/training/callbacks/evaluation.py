"""Per-epoch retrieval metrics (:class:`EvaluationCallback`); the loss on evaluation data is
:mod:`finetuner.training.callbacks.validation_loss`."""

from __future__ import annotations

import logging
from typing import Any

from finetuner.data.readers import CSVOptions
from finetuner.data.shapes import LabelledData
from finetuner.data.shaping import read_shape
from finetuner.errors import ConfigError
from finetuner.evaluation.correlation import CORRELATION_NAMES, ScoredSets
from finetuner.evaluation.embedders import Embedder, embedder_for
from finetuner.evaluation.model_eval import RetrievalSets, evaluate_sets, evaluation_sets
from finetuner.training.callbacks.monitoring import unwrapped
from finetuner.training.loop import Callback, TrainState

logger = logging.getLogger("finetuner")

DISTANCES = ("cosine", "euclidean", "sqeuclidean")
TOWERS = (None, "model", "clip-text", "clip-vision")
_TOWER_OF = {"text": "clip-text", "image": "clip-vision"}


class EvaluationCallback(Callback):
    """Retrieval metrics at the end of every epoch (Finetuner's ``EvaluationCallback``).

    The metrics (``precision_at_k``, ``recall_at_k``, ..., ``ndcg_at_k``; prefixed with ``caption_`` when a caption
    is given) go into ``state.metrics`` and the epoch's history (so ``metadata.yml``, the loggers and the report
    see them), and into the run's log. :class:`BestModelCheckpoint` and :class:`EarlyStopping` can monitor them.
    Scored pairs as ``query_data`` give ``spearman_cosine`` and ``pearson_cosine`` instead (the correlation of
    cosine similarity with the score).

    Args:
        query_data: labelled data (any form ``fit`` accepts) whose items search the index; or pairs, triplets,
            scored pairs.
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
    ) -> None:
        problems = []
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
        self._sets: RetrievalSets | ScoredSets | None = None

    def metric_names(self) -> list[str]:
        """The keys this callback writes into ``state.metrics``."""
        from finetuner.evaluation.metrics import METRIC_NAMES

        prefix = f"{self.caption}_" if self.caption else ""
        self.setup()
        names = CORRELATION_NAMES if isinstance(self._sets, ScoredSets) else METRIC_NAMES
        return [prefix + n for n in names]

    def setup(self) -> None:
        """Read and check the data (``fit`` calls this before training, so bad data fails early)."""
        if self._sets is not None:
            return
        queries = read_shape(self.query_data, self.csv_options, name="query_data")
        sets = evaluation_sets(queries)
        if self.index_data is not None:
            index = read_shape(self.index_data, self.csv_options, name="index_data")
            if not isinstance(queries, LabelledData) or not isinstance(index, LabelledData) or not isinstance(
                sets, RetrievalSets
            ):
                raise ConfigError("EvaluationCallback: a separate index_data needs labelled query and index data")
            sets.index = index.items
            sets.index_labels = [index.classes[c] for c in index.labels]
            sets.index_ids = index.ids
            sets.index_modality = index.modality
        self._sets = sets

    def on_train_begin(self, state: TrainState) -> None:
        self.setup()

    def evaluate(self, model: Any) -> dict[str, float]:
        """The metrics of ``model`` on this callback's data."""
        self.setup()
        assert self._sets is not None  # set by setup()
        metrics, _ = evaluate_sets(
            self._sets,
            self._embedder(model),
            limit=self.limit,
            distance=self.distance,
            exclude_self=self.exclude_self,
            num_examples=0,
        )
        prefix = f"{self.caption}_" if self.caption else ""
        return {prefix + k: round(float(v), 6) for k, v in metrics.items()}

    def _embedder(self, model: Any) -> Embedder:
        """Texts and images go to the tower of their modality (CLIP); the named towers must agree with that."""
        sets = self._sets
        assert sets is not None  # set by setup()
        if isinstance(sets, ScoredSets):
            modalities = (sets.left_modality, sets.right_modality)
        else:
            modalities = (sets.query_modality, sets.index_modality or sets.query_modality)
        sides = (("model", self.model, modalities[0]), ("index_model", self.index_model, modalities[1]))
        for arg, tower, modality in sides:
            if tower not in (None, "model") and tower != _TOWER_OF[modality]:
                raise ConfigError(
                    f"EvaluationCallback({arg}={tower!r}) cannot encode {modality} items; use {_TOWER_OF[modality]!r}"
                )
        return embedder_for(model, self.batch_size)

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
