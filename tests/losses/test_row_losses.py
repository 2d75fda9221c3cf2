"""Losses on triplet rows and scored pairs against hand computations: in-batch InfoNCE with the explicit negatives as
extra candidates (and duplicates of a row's positive left out), TripletMarginLoss on the given triplets, CoSENT and
CosineSimilarityLoss; a pair scored 0 is never pulled together."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning.losses import TripletMarginLoss

from finetuner.losses import get_loss, resolve_loss
from finetuner.losses.contrastive import InfoNCELoss
from finetuner.losses.rows import (
    CoSENTLoss,
    CosineSimilarityLoss,
    TripletBatch,
    explicit_triplets,
    infonce_with_negatives,
)
from finetuner.losses.step_loss import ScoredObjective, TripletObjective


def _unit(*xs: float) -> list[float]:
    norm = math.sqrt(sum(x * x for x in xs))
    return [x / norm for x in xs]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _ce(scores: list[float], target: int) -> float:
    """Cross-entropy of one row of logits, by hand."""
    return -scores[target] + math.log(sum(math.exp(s) for s in scores))


Q = [[1.0, 0.2], [0.1, 1.0]]
P = [[0.9, 0.4], [0.3, 0.8]]
N = [[[0.8, -0.3]], [[-0.2, 0.9]]]  # one hard negative per row


def _batch(groups=(0, 1), negative_groups=((-1,), (-1,))) -> TripletBatch:
    return TripletBatch(
        torch.tensor(Q), torch.tensor(P), torch.tensor(N), torch.tensor(groups), torch.tensor(negative_groups)
    )


def test_infonce_with_negatives_adds_exactly_the_negatives_to_the_candidates() -> None:
    t = 0.05
    q = [_unit(*x) for x in Q]
    cands = [_unit(*x) for x in P] + [_unit(*row[0]) for row in N]  # positives of the batch, then its negatives
    expected = sum(_ce([_dot(q[i], c) / t for c in cands], i) for i in range(2)) / 2
    got = infonce_with_negatives(_batch(), temperature=t)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # without the negatives it is in-batch InfoNCE over the positives alone: the negatives add exactly their terms
    pairs_only = sum(_ce([_dot(q[i], c) / t for c in cands[:2]], i) for i in range(2)) / 2
    assert float(got) > pairs_only
    no_negatives = TripletBatch(torch.tensor(Q), torch.tensor(P), torch.zeros(2, 0, 2), torch.tensor([0, 1]),
                                torch.zeros(2, 0, dtype=torch.long))
    assert float(infonce_with_negatives(no_negatives, temperature=t)) == pytest.approx(pairs_only, rel=1e-3, abs=1e-7)


def test_a_negative_that_is_a_positive_of_the_row_is_left_out_of_its_candidates() -> None:
    # row 1's negative is (the same text as) row 0's positive: group 0. For row 0 it is no negative; for row 1 it
    # stays, being row 1's own explicit negative
    t = 0.05
    q = [_unit(*x) for x in Q]
    cands = [_unit(*x) for x in P] + [_unit(*row[0]) for row in N]
    row0 = _ce([_dot(q[0], c) / t for k, c in enumerate(cands) if k != 3], 0)
    row1 = _ce([_dot(q[1], c) / t for c in cands], 1)
    got = infonce_with_negatives(_batch(negative_groups=((-1,), (0,))), temperature=t)
    assert float(got) == pytest.approx((row0 + row1) / 2, rel=1e-5)
    # two rows of one group (the same query twice): each other's positive is no negative
    same = infonce_with_negatives(_batch(groups=(0, 0)), temperature=t)
    row0 = _ce([_dot(q[0], c) / t for k, c in enumerate(cands) if k != 1], 0)
    row1 = _ce([_dot(q[1], c) / t for k, c in enumerate(cands) if k != 0], 0)
    assert float(same) == pytest.approx((row0 + row1) / 2, rel=1e-5)


def test_triplet_margin_loss_on_explicit_triplets_matches_a_hand_computation() -> None:
    margin = 0.3
    q, p = [_unit(*x) for x in Q], [_unit(*x) for x in P]
    n = [_unit(*row[0]) for row in N]

    def dist(a: list[float], b: list[float]) -> float:
        return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))

    violations = [max(0.0, dist(q[i], p[i]) - dist(q[i], n[i]) + margin) for i in range(2)]
    positive = [v for v in violations if v > 0]  # pytorch-metric-learning averages over the violating triplets
    assert positive, "the case must have a violating triplet"
    got = explicit_triplets(TripletMarginLoss(margin=margin), _batch())
    assert float(got) == pytest.approx(sum(positive) / len(positive), rel=1e-5)
    # only the given triplets: row 0's positive is never used against row 1's query
    swapped = _batch()._replace(positives=torch.tensor([P[0], [-1.0, 0.0]]))
    violations[1] = max(0.0, dist(q[1], _unit(-1.0, 0.0)) - dist(q[1], n[1]) + margin)
    positive = [v for v in violations if v > 0]
    assert float(explicit_triplets(TripletMarginLoss(margin=margin), swapped)) == pytest.approx(
        sum(positive) / len(positive), rel=1e-5
    )


def test_triplet_objective_folds_the_flat_batch_back_into_rows() -> None:
    # the loader's layout: all queries, all positives, then negative column 1, column 2
    g = torch.Generator().manual_seed(0)
    q, p, n = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g), torch.randn(3, 2, 4, generator=g)
    flat = torch.cat([q, p, n[:, 0], n[:, 1]])  # (3 * 4, 4)
    groups = torch.tensor([0, 1, 2])
    negative_groups = torch.tensor([[-1, 2], [-1, -1], [0, -1]])
    labels = torch.cat([groups, groups, negative_groups[:, 0], negative_groups[:, 1]])
    expected = infonce_with_negatives(TripletBatch(q, p, n, groups, negative_groups), 0.05)
    assert torch.allclose(TripletObjective(InfoNCELoss(), 2)(flat, labels), expected)
    margin = explicit_triplets(TripletMarginLoss(margin=0.5), TripletBatch(q, p, n, groups, negative_groups))
    assert torch.allclose(TripletObjective(TripletMarginLoss(margin=0.5), 2)(flat, labels), margin)


def test_cosent_matches_its_formula_by_hand() -> None:
    a = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]
    b = [[0.8, 0.6], [1.0, 0.0], [0.6, 0.8]]
    scores = [0.2, 0.9, 0.5]
    cos = [_dot(_unit(*x), _unit(*y)) for x, y in zip(a, b)]
    terms = [math.exp(20 * (cos[j] - cos[i])) for i in range(3) for j in range(3) if scores[i] > scores[j]]
    expected = math.log(1 + sum(terms))
    got = CoSENTLoss()(torch.tensor(a), torch.tensor(b), torch.tensor(scores))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # equal scores compare nothing; any rescaling of the scores that keeps their order gives the same loss
    assert float(CoSENTLoss()(torch.tensor(a), torch.tensor(b), torch.tensor([0.5, 0.5, 0.5]))) == 0.0
    rescaled = CoSENTLoss()(torch.tensor(a), torch.tensor(b), torch.tensor(scores) * 5)
    assert float(rescaled) == pytest.approx(expected, rel=1e-5)


def test_cosine_similarity_loss_is_the_squared_error_of_the_cosine() -> None:
    a, b, scores = [[1.0, 0.0], [0.6, 0.8]], [[0.8, 0.6], [1.0, 0.0]], [0.2, 0.9]
    cos = [_dot(_unit(*x), _unit(*y)) for x, y in zip(a, b)]
    expected = sum((c - s) ** 2 for c, s in zip(cos, scores)) / 2
    got = CosineSimilarityLoss()(torch.tensor(a), torch.tensor(b), torch.tensor(scores))
    assert float(got) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["CoSENTLoss", "CosineSimilarityLoss"])
def test_a_pair_scored_zero_is_never_pulled_together(name: str) -> None:
    # three pairs, the zero-scored one starts closest; a step of gradient descent must push it apart
    left = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], requires_grad=True)
    right = torch.tensor([[1.0, 0.05], [0.7, 0.7], [0.2, 1.0]], requires_grad=True)
    scores = torch.tensor([0.0, 0.8, 0.6])
    objective = ScoredObjective(get_loss(name))
    before = torch.cosine_similarity(left[0], right[0], dim=0).item()
    objective(torch.cat([left, right]), scores).backward()
    with torch.no_grad():
        left -= 0.05 * left.grad
        right -= 0.05 * right.grad
    after = torch.cosine_similarity(left[0], right[0], dim=0).item()
    assert after < before


def test_auto_losses_for_rows() -> None:
    assert resolve_loss("auto", "triplets") == "InfoNCELoss"
    assert resolve_loss("auto", "scored") == "CoSENTLoss"
    assert type(get_loss("CoSENTLoss", {"scale": 10})).__name__ == "CoSENTLoss"
