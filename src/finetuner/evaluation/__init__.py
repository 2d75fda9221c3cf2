"""Retrieval metrics, chunked top-k search and the evaluator that ties them to a model."""

from finetuner.evaluation.evaluator import encode_labels, evaluate_embeddings, evaluate_pairs, retrieve
from finetuner.evaluation.metrics import (
    METRIC_NAMES,
    average_precision,
    compute_metrics,
    dcg_at_k,
    f1_score_at_k,
    hit_at_k,
    ndcg_at_k,
    precision_at_k,
    r_precision,
    recall_at_k,
    reciprocal_rank,
)
from finetuner.evaluation.search import DISTANCES, top_k

__all__ = [
    "DISTANCES",
    "METRIC_NAMES",
    "average_precision",
    "compute_metrics",
    "dcg_at_k",
    "encode_labels",
    "evaluate_embeddings",
    "evaluate_pairs",
    "f1_score_at_k",
    "hit_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "r_precision",
    "recall_at_k",
    "reciprocal_rank",
    "retrieve",
    "top_k",
]
