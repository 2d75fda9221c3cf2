"""Evaluation of scored pairs: how well the cosine similarity of the two embeddings follows the score.

As sentence-transformers' ``EmbeddingSimilarityEvaluator`` and the STS benchmarks compute it: Spearman's rank
correlation (``spearman_cosine``, the headline figure: only the order matters) and Pearson's linear correlation
(``pearson_cosine``) between ``cos(a, b)`` and the score over all pairs, with scipy.

Scored pairs get no retrieval metrics: a score grades a given pair, it does not say which of all the items are
relevant to a query, and a threshold that turned scores into relevance would be a guess (a pair scored 0.4 on a
0-5 scale and on a 0-1 scale mean different things).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from finetuner.data.shapes import ScoredPairData
from finetuner.evaluation.embedders import embed_as

#: the metrics of scored pairs
CORRELATION_NAMES = ("spearman_cosine", "pearson_cosine")


@dataclass
class ScoredSets:
    """The pairs of a scored evaluation and their scores."""

    left: list[Any]
    right: list[Any]
    scores: list[float]
    left_modality: str
    right_modality: str


def scored_sets(data: ScoredPairData) -> ScoredSets:
    """How scored pairs are evaluated: each pair's cosine against its score.

    Example:
        >>> scored_sets(ScoredPairData(['a'], ['b'], [0.5], 'text', 'text', ['0'])).scores
        [0.5]
    """
    return ScoredSets(list(data.left), list(data.right), list(data.scores), data.left_modality, data.right_modality)


def correlations(left: torch.Tensor, right: torch.Tensor, scores: list[float]) -> dict[str, float]:
    """Spearman and Pearson correlation of ``cos(left[i], right[i])`` with ``scores[i]``.

    Args:
        left, right: ``(n, dim)`` embeddings of the pairs' members.
        scores: one score per pair.

    Example:
        >>> left = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
        >>> right = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
        >>> {k: round(v, 4) for k, v in correlations(left, right, [0.9, 0.5, 0.1]).items()}
        {'spearman_cosine': 1.0, 'pearson_cosine': 0.9726}
    """
    from scipy.stats import pearsonr, spearmanr

    cosine = F.cosine_similarity(left.float(), right.float(), dim=-1).cpu().numpy()  # (n,)
    target = np.asarray(scores, dtype=np.float64)
    if len(target) < 2 or np.ptp(target) == 0 or np.ptp(cosine) == 0:
        return dict.fromkeys(CORRELATION_NAMES, float("nan"))  # undefined for constant inputs
    return {
        "spearman_cosine": float(spearmanr(cosine, target).statistic),
        "pearson_cosine": float(pearsonr(cosine, target).statistic),
    }


def evaluate_scored(
    sets: ScoredSets, embed: Any, num_examples: int = 3
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The correlations of ``embed``'s vectors on ``sets`` and a few pairs with their score and cosine. Both members
    of a pair are embedded as documents (with the document prompt of a model that has prompts), as training on
    scored pairs embeds them.

    Example:
        >>> vectors = {'a': [1.0, 0.0], 'b': [1.0, 0.1], 'c': [0.0, 1.0]}
        >>> embed = lambda items, modality: torch.tensor([vectors[x] for x in items])
        >>> sets = ScoredSets(['a', 'a'], ['b', 'c'], [0.9, 0.0], 'text', 'text')
        >>> round(evaluate_scored(sets, embed)[0]['spearman_cosine'], 4)
        1.0
    """
    left = embed_as(embed, sets.left, sets.left_modality, "document")  # (n, dim)
    right = embed_as(embed, sets.right, sets.right_modality, "document")  # (n, dim)
    metrics = correlations(left, right, sets.scores)
    cosine = F.cosine_similarity(left.float(), right.float(), dim=-1).cpu().tolist()  # (n,)
    picks = np.unique(np.linspace(0, len(sets.left) - 1, num=min(num_examples, len(sets.left))).astype(int))
    examples = [
        {
            "query": _show(sets.left[i]),
            "label": sets.scores[i],
            "results": [{"item": _show(sets.right[i]), "label": sets.scores[i], "score": round(cosine[i], 4)}],
        }
        for i in (picks if num_examples > 0 else [])
    ]
    return metrics, examples


def _show(item: Any) -> str:
    if isinstance(item, str):
        return item
    uri = getattr(item, "uri", None)
    return str(uri) if uri else f"<{type(item).__name__}>"
