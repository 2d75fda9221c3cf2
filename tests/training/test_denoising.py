"""TSDAE (issue 15): `fit(model, [texts...], loss='TSDAE')` embeds damaged texts and a decoder of the model's family
rebuilds the originals from the embedding alone; the reconstruction loss falls, the artifact holds the encoder
only, and wrong data, options or models are refused before training."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tests.conftest import build_tiny_bert, make_texts

import finetuner
import finetuner.callback
from finetuner import artifacts
from finetuner.errors import ConfigError, DataError
from finetuner.losses import get_loss
from finetuner.losses.denoising import delete_words
from finetuner.models import build_model
from finetuner.training.check import FitOptions, check
from finetuner.training.denoising import build_decoder
from finetuner.training.plan import plan

TEXTS = sorted({t for t, _ in make_texts(6, seed=4)})


def test_delete_words_removes_the_share_asked_in_order():
    rng = random.Random(0)
    text = " ".join(f"w{i}" for i in range(20))
    damaged = delete_words(text, 0.6, rng).split()
    assert len(damaged) == 8  # 40 % of 20 words kept
    assert damaged == sorted(damaged, key=lambda w: int(w[1:]))  # kept words stay in their order
    assert delete_words("alone", 0.9, rng) == "alone"


def test_the_decoder_starts_from_the_encoders_weights(tmp_path):
    encoder = build_model(str(build_tiny_bert(tmp_path / "bert"))).backbone
    decoder = build_decoder(encoder)
    assert decoder.config.is_decoder and decoder.config.add_cross_attention
    own = encoder.state_dict()
    for name, value in decoder.bert.state_dict().items():
        if "crossattention" in name:
            continue
        torch.testing.assert_close(value, own[name], msg=name)
    assert decoder.get_output_embeddings().weight is decoder.get_input_embeddings().weight  # tied
    assert decoder.get_input_embeddings().weight is not encoder.get_input_embeddings().weight  # a copy
    assert any("crossattention" in name for name, _ in decoder.named_parameters())


def test_each_text_is_one_item_in_random_batches():
    fit_plan = plan(check("bert-base-en", TEXTS, None, {"device": "cpu", "loss": "TSDAE"}, FitOptions()))
    assert fit_plan.train.items == TEXTS and fit_plan.train.labels == list(range(len(TEXTS)))
    assert fit_plan.sampler == "random"


def test_the_loss_is_the_decoders_next_token_cross_entropy():
    from transformers import BertConfig, BertLMHeadModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=12, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, is_decoder=True, add_cross_attention=True)
    decoder = BertLMHeadModel(config).eval()
    loss = get_loss("TSDAE")
    ids = torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]])  # the second text is padded
    loss.set_decoder(decoder, ids, pad_id=0)
    emb = torch.randn(2, 8)
    value = loss(emb, torch.tensor([1, 0]))
    # by hand: text 1 then text 0, teacher forcing on all but the last token, the pad position ignored
    logits_1 = decoder(input_ids=ids[1:2, :3], encoder_hidden_states=emb[0:1, None],
                       attention_mask=torch.tensor([[1, 1, 1]])).logits[0]
    logits_0 = decoder(input_ids=ids[0:1, :3], encoder_hidden_states=emb[1:2, None]).logits[0]
    targets = [(logits_1[0], 7), (logits_1[1], 3), (logits_0[0], 5), (logits_0[1], 6), (logits_0[2], 3)]
    expected = torch.stack([torch.nn.functional.cross_entropy(lg[None], torch.tensor([t])) for lg, t in targets])
    torch.testing.assert_close(value, expected.mean())


def test_wrong_data_options_and_models_are_refused(tmp_path):
    bert = str(build_tiny_bert(tmp_path / "bert"))
    fit = dict(loss="TSDAE", epochs=1, device="cpu", verbose=False)
    with pytest.raises(DataError, match="holds labelled data"):
        finetuner.fit(bert, make_texts(3), **fit)
    with pytest.raises(ConfigError, match=r"deletion_ratio is a share of words in \[0, 1\) .*received 1.5"):
        finetuner.fit(bert, TEXTS, loss_options={"deletion_ratio": 1.5}, **fit)
    with pytest.raises(ConfigError, match="matryoshka_dims does not apply"):
        finetuner.fit(bert, TEXTS, loss_options={"matryoshka_dims": [32, 16]}, **fit)
    with pytest.raises(ConfigError, match="takes random batches; sampler='class'"):
        finetuner.fit(bert, TEXTS, sampler="class", **fit)
    with pytest.raises(ConfigError, match=r"model embeds into 8 .*without output_dim"):
        finetuner.fit(bert, TEXTS, output_dim=8, **fit)
    distil = _tiny_distilbert(tmp_path / "distil")
    with pytest.raises(ConfigError, match="the model's family is 'distilbert'"):
        finetuner.fit(distil, TEXTS, **fit)


def _tiny_distilbert(directory) -> str:
    from transformers import BertTokenizerFast, DistilBertConfig, DistilBertModel

    bert = build_tiny_bert(directory.parent / "vocab-source")
    tokenizer = BertTokenizerFast.from_pretrained(str(bert))
    DistilBertModel(DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=16, n_layers=1, n_heads=2,
                                     hidden_dim=32, max_position_embeddings=64)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.mark.integration
def test_reconstruction_loss_falls_and_the_artifact_holds_the_encoder_only(tmp_path):
    bert = build_tiny_bert(tmp_path / "bert", dropout=0.1)
    run = finetuner.fit(str(bert), TEXTS, loss="TSDAE", epochs=12, batch_size=8, learning_rate=5e-3, seed=0,
                        device="cpu", verbose=False)
    losses = [h["loss"] for h in artifacts.read_run_metadata(run.directory)["history"]]
    assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0], losses  # 3.70 -> 2.13 when written
    folder = Path(run.save_artifact(tmp_path / "art"))
    saved = [load_file(str(p)) for p in sorted(folder.rglob("model.safetensors"))]
    assert len(saved) == 1
    start = load_file(str(bert / "model.safetensors"))
    assert set(saved[0]) == set(start)  # the encoder's weights, no decoder, cross-attention or LM head
    assert any(not torch.equal(saved[0][k], start[k]) for k in start)  # and it trained
    model = finetuner.get_model(folder)
    assert finetuner.encode(model, TEXTS[:2]).shape == (2, 32)


class _CrashAfter(finetuner.callback.Callback):
    """Fails the run at the end of epoch ``epoch`` (1-based), before that epoch's checkpoint is written."""

    _order = 5

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, state):
        if state.epoch + 1 == self.epoch:
            raise RuntimeError("simulated crash")


@pytest.mark.integration
def test_a_resumed_run_restores_the_decoder(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNER_HOME", str(tmp_path / "home"))
    bert = str(build_tiny_bert(tmp_path / "bert", dropout=0.0))
    settings = dict(loss="TSDAE", epochs=3, batch_size=8, learning_rate=5e-3, seed=0, device="cpu", verbose=False)
    whole = finetuner.fit(bert, TEXTS, run_name="whole", **settings)
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetuner.fit(bert, TEXTS, run_name="cut", callbacks=[_CrashAfter(3)], **settings)
    resumed = finetuner.fit(bert, TEXTS, resume_from="cut", **settings)
    a, b = (load_file(str(r.directory / "models" / "model" / "model.safetensors")) for r in (whole, resumed))
    # the checkpoint holds the decoder (its tied weights saved once): a fresh decoder would train the encoder apart
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, worst
