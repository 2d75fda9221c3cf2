"""Small things that were wrong: ``num_items_per_class=1`` accepted for losses that need positives, the CLIP text
tower cut at 77 tokens whatever its positions, and ``compile=True`` never run."""

from __future__ import annotations

import random

import pytest
import torch
from tests.conftest import make_texts

import finetuner
from finetuner.errors import ConfigError
from finetuner.training.check import FitOptions, check


@pytest.mark.parametrize("loss", ["TripletMarginLoss", "NTXentLoss", "auto"])
def test_one_item_per_class_is_refused_for_losses_that_need_positives(loss):
    with pytest.raises(ConfigError) as info:
        check("bert-base-en", make_texts(3), None, {"num_items_per_class": 1, "loss": loss, "device": "cpu"},
              FitOptions())
    message = str(info.value)
    assert "num_items_per_class=1" in message and "no positive pair" in message and ">= 2" in message


@pytest.mark.parametrize("settings", [{"sampler": "random"}, {"loss": "ArcFaceLoss"}, {"num_items_per_class": 2}])
def test_one_item_per_class_is_fine_where_positives_are_not_needed(settings):
    base = {"num_items_per_class": 1, "device": "cpu"}
    checked = check("bert-base-en", make_texts(3), None, {**base, **settings}, FitOptions())
    assert checked.config.num_items_per_class == settings.get("num_items_per_class", 1)


def _tiny_clip(directory, positions: int):
    """A random CLIP whose text tower has ``positions`` position embeddings, with a word-level tokenizer that has no
    length limit of its own (as many saved tokenizers: ``model_max_length`` is huge)."""
    from transformers import BertTokenizerFast, CLIPConfig, CLIPImageProcessor, CLIPModel

    directory.mkdir(parents=True)
    words = [f"w{i}" for i in range(40)]
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(str(directory), model_max_length=10**30)
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"vocab_size": 45, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": positions, "eos_token_id": 3,
                     "bos_token_id": 2, "pad_token_id": 0},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 16, "patch_size": 8},
        projection_dim=8,
    )
    CLIPModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}).save_pretrained(directory)
    return str(directory), words


def _pairs(tmp_path, words, n_words):
    from PIL import Image

    rng = random.Random(0)
    pairs = []
    for i in range(8):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (16, 16), (i * 30, 255 - i * 30, 100)).save(path)
        pairs.append((" ".join(rng.choice(words) for _ in range(n_words)), str(path)))
    return pairs


@pytest.mark.parametrize("positions", [32, 248])
def test_clip_text_tower_takes_its_token_limit_from_the_model(tmp_path, positions):
    model_dir, words = _tiny_clip(tmp_path / "clip", positions)
    model = finetuner.build_model(model_dir)
    assert model.text.max_length == positions  # not CLIP's usual 77
    pairs = _pairs(tmp_path, words, n_words=120)  # longer than 77 tokens, and than 32
    tokens = model.text.preprocess([pairs[0][0]])
    # [CLS] + 120 words + [SEP], cut at the tower's positions; padded up to a bounded length, never past them
    assert int(tokens["attention_mask"].sum()) == min(positions, 122)
    assert min(positions, 122) <= tokens["input_ids"].shape[1] <= positions
    run = finetuner.fit(model_dir, pairs, epochs=1, batch_size=4, device="cpu", verbose=False, learning_rate=1e-3)
    assert run.status()["status"] == "FINISHED"  # a 32-position tower crashed mid-training at 77 tokens
    tuned = finetuner.get_model(run.directory, select_model="clip-text")
    assert tuned.max_length == positions  # saved and loaded back


def test_a_tokenizer_limit_below_the_positions_wins(tmp_path):
    from finetuner.models.clip.hf import CLIPTextTower

    model_dir, _ = _tiny_clip(tmp_path / "clip", 64)
    model = finetuner.build_model(model_dir)
    model.text.tokenizer.model_max_length = 20
    assert CLIPTextTower(model.text.backbone, model.text.tokenizer).max_length == 20


def test_compile_true_trains_once_on_the_cpu():
    """``compile=True`` really compiles (inductor on the CPU) and trains to the weights of the eager run."""
    import numpy as np

    rng = np.random.default_rng(0)
    images = [(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), f"class-{i % 4}") for i in range(16)]

    def tuned(**extra):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3))
        model = finetuner.build_model(net, model_options={"input_size": 16, "mean": [0.5] * 3, "std": [0.5] * 3})
        finetuner.fit(model, images, epochs=1, batch_size=8, learning_rate=0.1, optimizer="SGD", seed=0,
                      device="cpu", num_items_per_class=2, verbose=False, **extra)
        return model

    eager = tuned()
    try:
        compiled = tuned(compile=True)
    except Exception as exc:  # inductor needs a working C++ compiler; without one there is nothing to test here
        if "compiler" in f"{type(exc).__name__} {exc}".lower():
            pytest.skip(f"torch.compile cannot compile on this machine: {type(exc).__name__}")
        raise
    assert compiled._compiled_call_impl is not None  # nn.Module.compile() ran: forward goes through torch.compile
    torch.manual_seed(0)
    start = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3))
    assert not torch.allclose(eager.backbone.module[0].weight, start[0].weight), "training moved the weights"
    for key, value in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[key], value, atol=1e-5, rtol=1e-4, msg=key)
