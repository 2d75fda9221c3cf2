"""Duplicates in pair data: pairs sharing an item form one group (one class); batches never hold an item twice nor
two pairs of one group; evaluation de-duplicates queries and index and counts every paired item as relevant."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from finetuner.data.groups import dedup_relevance, item_key, pair_groups
from finetuner.data.samplers import ClassSampler, LengthBucketPairSampler, PairBatchSampler
from finetuner.data.shapes import PairData, TripletData
from finetuner.evaluation.metrics import compute_metrics
from finetuner.evaluation.model_eval import evaluate_sets, retrieval_sets

# five captions per image, 8 images: the repeated-captions case of CLIP data
CAPTIONS = [(f"caption {c} of image {i}", f"img{i}.png") for i in range(8) for c in range(5)]


def _faq_pairs() -> PairData:
    """Text pairs where queries and documents repeat: 'reset' has two answers, one answer serves three queries."""
    rows = [
        ("reset password", "open settings"),
        ("reset password", "use the reset link"),
        ("forgot password", "use the reset link"),
        ("lost password", "use the reset link"),
        ("cancel order", "go to orders"),
        ("refund", "contact support"),
        ("shipping time", "three days"),
        ("track parcel", "follow the tracking link"),
    ]
    return PairData([a for a, _ in rows], [b for _, b in rows], "text", "text", [str(i) for i in range(len(rows))])


def test_pairs_sharing_an_item_form_one_group() -> None:
    data = _faq_pairs()
    assert data.groups == [0, 0, 0, 0, 1, 2, 3, 4]
    assert pair_groups(["a", "b", "c"], ["x", "x", "y"]) == [0, 0, 1]
    # one modality: a text used as a query in one pair and as a document in another ties them
    assert pair_groups(["a", "b"], ["b", "c"]) == [0, 0]


def test_as_labelled_lists_every_item_once_in_the_class_of_its_pairs() -> None:
    labelled = _faq_pairs().as_labelled()
    assert len(labelled.items) == len(set(labelled.items)) == 13
    by_label: dict[int, set[str]] = {}
    for item, label in zip(labelled.items, labelled.labels):
        by_label.setdefault(label, set()).add(item)
    assert by_label[0] == {"reset password", "open settings", "use the reset link", "forgot password", "lost password"}
    assert all(len(members) == 2 for label, members in by_label.items() if label != 0)


def test_pairs_without_duplicates_stay_classes_of_two_in_order() -> None:
    data = PairData(["q1", "q2"], ["d1", "d2"], "text", "text", ["a", "b"])
    labelled = data.as_labelled()
    assert (labelled.items, labelled.labels) == (["q1", "d1", "q2", "d2"], [0, 0, 1, 1])
    assert labelled.ids == ["a:0", "a:1", "b:0", "b:1"]


def test_class_batches_of_grouped_pairs_hold_each_label_twice_and_no_text_twice() -> None:
    labelled = _faq_pairs().as_labelled()
    sampler = ClassSampler(labelled.labels, batch_size=6, num_items_per_class=2, seed=0)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for batch in sampler:
            texts = [labelled.items[i] for i in batch]
            assert len(set(texts)) == len(texts)
            assert set(Counter(labelled.labels[i] for i in batch).values()) == {2}  # what InfoNCELoss needs


def test_length_batches_of_grouped_pairs_hold_each_label_twice_and_no_text_twice() -> None:
    labelled = _faq_pairs().as_labelled()
    lengths = [len(t.split()) for t in labelled.items]
    sampler = LengthBucketPairSampler(lengths, batch_size=6, seed=0, bucket_batches=2, labels=labelled.labels)
    assert len(sampler) == 2  # 7 pairs an epoch (the class of 5 gives 3), 3 per batch
    for epoch in range(5):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert 1 <= len(batches) <= len(sampler)
        for batch in batches:
            texts = [labelled.items[i] for i in batch]
            assert len(set(texts)) == len(texts) == 6
            assert set(Counter(labelled.labels[i] for i in batch).values()) == {2}
    shares = [list(LengthBucketPairSampler(lengths, 6, seed=0, rank=r, world_size=2, labels=labelled.labels))
              for r in (0, 1)]
    assert [a + b for a, b in zip(*shares)] == list(LengthBucketPairSampler(lengths, 6, seed=0, labels=labelled.labels))


def test_clip_batches_never_hold_a_caption_or_image_twice_nor_two_pairs_of_a_group() -> None:
    left, right = [c for c, _ in CAPTIONS], [i for _, i in CAPTIONS]
    sampler = PairBatchSampler(left, right, batch_size=8, seed=0)
    seen = 0
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in sampler:
            assert len({right[i] for i in batch}) == len(batch)  # five captions of an image: one per batch
            seen += len(batch)
    assert seen == 3 * 40  # every epoch full: 5 batches of 8 distinct images
    # caption a with images 1 and 2, caption b with image 2: a's image 2 is no negative for it, so never together
    chained = PairBatchSampler(["a", "a", "b", "c", "d"], ["1", "2", "2", "3", "4"], batch_size=3, seed=0)
    for epoch in range(10):
        chained.set_epoch(epoch)
        for batch in chained:
            assert len({chained.groups[i] for i in batch}) == len(batch)


def _embedder(vectors: dict[str, np.ndarray]):
    def embed(items: list, modality: str) -> torch.Tensor:
        return torch.tensor(np.stack([vectors[item_key(x)] for x in items]), dtype=torch.float32)

    return embed


def test_repeated_captions_evaluate_against_each_image_once() -> None:
    data = PairData([c for c, _ in CAPTIONS], [i for _, i in CAPTIONS], "text", "text", [str(k) for k in range(40)])
    sets = retrieval_sets(data)
    assert len(sets.queries) == 40 and sets.index == [f"img{i}.png" for i in range(8)]
    assert sets.relevant == [[k // 5] for k in range(40)]
    back = retrieval_sets(data, "right-to-left")
    assert back.queries == sets.index and back.relevant == [list(range(5 * i, 5 * i + 5)) for i in range(8)]
    # a perfect model: every caption next to its image, the five captions of an image around it
    rng = np.random.default_rng(0)
    centres = np.eye(8) * 10
    vectors = {f"img{i}.png": centres[i] for i in range(8)}
    vectors.update({c: centres[int(i[3])] + rng.normal(0, 0.1, 8) for c, i in CAPTIONS})
    metrics, _ = evaluate_sets(sets, _embedder(vectors), limit=5, num_examples=0)
    assert metrics["reciprocal_rank"] == pytest.approx(1.0) and metrics["recall_at_k"] == pytest.approx(1.0)
    image_to_text, _ = evaluate_sets(back, _embedder(vectors), limit=5, num_examples=0)
    assert image_to_text["precision_at_k"] == pytest.approx(1.0)  # all five captions relevant, all five found
    assert image_to_text["recall_at_k"] == pytest.approx(1.0)


def test_pair_evaluation_counts_every_document_of_the_query_as_relevant() -> None:
    data = _faq_pairs()
    sets = retrieval_sets(data)
    reset = sets.queries.index("reset password")
    assert [sets.index[j] for j in sets.relevant[reset]] == ["open settings", "use the reset link"]
    assert len(sets.index) == len(set(sets.index)) == 6
    # hand computation: 'reset password' retrieves 'use the reset link' first, then 'three days', then 'open settings'
    vectors = {k: np.eye(13)[n] for n, k in enumerate(dict.fromkeys(sets.queries + sets.index))}
    first, second, third = (vectors[k] for k in ("use the reset link", "three days", "open settings"))
    vectors["reset password"] = first + 0.6 * second + 0.5 * third
    metrics, _ = evaluate_sets(
        type(sets)([sets.queries[reset]], [0], ["reset password"], "text", sets.index, sets.index_labels,
                   sets.index_ids, "text", [sets.relevant[reset]]),
        _embedder(vectors),
        limit=3,
        num_examples=0,
    )
    expected = compute_metrics([[1, 0, 1]], [2], k=3)
    assert {k: metrics[k] for k in expected} == pytest.approx(expected)  # beside them: the standard metrics
    assert metrics["average_precision"] == pytest.approx((1 + 2 / 3) / 2)


def test_triplets_evaluate_query_to_positive_with_the_negatives_in_the_index() -> None:
    data = TripletData(["q1", "q2"], ["p1", "p2"], [("n1", "p2"), ("n2", "n1")], "text", "text", ["a", "b"])
    sets = retrieval_sets(data)
    assert sets.index == ["p1", "n1", "p2", "n2"] and sets.relevant == [[0], [2]]
    vectors = {k: np.eye(6)[n] for n, k in enumerate(["q1", "q2", "p1", "p2", "n1", "n2"])}
    vectors["q1"] = vectors["n1"] + 0.5 * vectors["p1"]  # the hard negative first, the positive second
    vectors["q2"] = vectors["p2"]
    metrics, _ = evaluate_sets(sets, _embedder(vectors), limit=2, num_examples=0)
    assert metrics["reciprocal_rank"] == pytest.approx((1 / 2 + 1) / 2)


def test_dedup_relevance_by_hand() -> None:
    rows, refs, relevant = dedup_relevance(["a", "b", "a"], [["x", "n"], ["y", "x"], ["z", "y"]], relevant=1)
    assert rows == [0, 1] and refs == [(0, 0), (0, 1), (1, 0), (2, 0)]
    assert relevant == [[0, 3], [2]]  # a: x and z; b: y (x is only a negative of b)
