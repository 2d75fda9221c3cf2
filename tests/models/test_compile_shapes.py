"""``fit(compile=True)`` does not recompile per batch: over many batches of varied lengths the compiled text model
runs one graph per batch structure (one padded block, or length groups), not one per length."""

from __future__ import annotations

import random

import pytest
import torch
from tests.conftest import make_texts

from finetuner.models import build_model
from finetuner.models.base import compile_for_training


def _graphs_after(model, collate, batches: int) -> int:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    compile_for_training(model, backend="eager")  # dynamo's guards and recompiles; no C++ compiler needed
    rng = random.Random(0)
    words = " ".join(t for t, _ in make_texts(4)).split()
    lengths = set()
    for _ in range(batches):
        texts = [" ".join(rng.choices(words, k=rng.randint(1, 50))) for _ in range(16)]
        inputs = collate(model.pretokenize(texts))
        lengths.add(max(len(r["input_ids"]) for r in model.pretokenize(texts)))
        model(**inputs).sum().backward()
    assert len(lengths) >= 8  # the batches really differ in length
    return int(counters["stats"]["unique_graphs"])


@pytest.mark.parametrize("groups, most", [(1, 1), (4, 3)])
def test_compiled_model_does_not_recompile_per_batch(tiny_bert, groups, most):
    model = build_model(tiny_bert).train()
    graphs = _graphs_after(model, model.token_collate(groups), batches=16)
    assert 1 <= graphs <= most
