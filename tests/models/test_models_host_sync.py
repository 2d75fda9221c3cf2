"""The models' training forward and backward read nothing back from the device (CPU stand-in: tests/host_sync.py)."""

from __future__ import annotations

import torch
from tests.host_sync import HostSyncs

from finetuner.models import build_model
from finetuner.models.text.masks import device_mask

TEXTS = ["apple", "car bus train truck bike boat the a of and", "cat", "saw drill", "dog " * 20, "mango",
         "red blue old new nice big small", "goat sheep"]


def _step(model, inputs):
    with HostSyncs() as syncs:
        out = model(**inputs)
        out = out if isinstance(out, torch.Tensor) else torch.cat(out, dim=1)
        out.float().pow(2).sum().backward()
    return syncs


def test_text_encoder_step_has_no_host_sync(tiny_bert):
    model = build_model(tiny_bert, output_dim=8).train()
    assert model._device_mask  # BERT takes the mask built on the device
    for inputs in (model.preprocess(TEXTS), model.token_collate(2)(model.pretokenize(TEXTS))):
        syncs = _step(model, inputs)
        assert not syncs.calls, syncs.report()


def test_the_plain_hugging_face_mask_would_sync(tiny_bert):
    """What the device mask avoids: transformers asks the 2-d mask whether anything is padded."""
    model = build_model(tiny_bert).train()
    inputs = model.preprocess(TEXTS)
    with HostSyncs() as syncs:
        model.backbone(**inputs)
    assert syncs.calls
    with HostSyncs() as syncs:
        model.backbone(**{**inputs, "attention_mask": device_mask(inputs["attention_mask"])})
    assert not syncs.calls, syncs.report()


def test_clip_towers_steps_have_no_host_sync(tiny_bert, tmp_path):
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    from finetuner.models.clip.hf import CLIPTextTower, CLIPVisionTower

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    text = CLIPTextTower(
        CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, projection_dim=8, max_position_embeddings=40, eos_token_id=tokenizer.sep_token_id,
        )),
        tokenizer,
        max_length=40,
    ).train()
    assert text._device_mask
    syncs = _step(text, text.preprocess(TEXTS))
    assert not syncs.calls, syncs.report()
    vision = CLIPVisionTower(
        CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                       num_attention_heads=2, image_size=32, patch_size=16,
                                                       projection_dim=8)),
        CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
    ).train()
    import numpy as np
    from PIL import Image

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(paths[-1])
    rows, collate = vision.training_inputs([str(p) for p in paths], "cpu")
    batch = collate([rows[i] for i in range(len(rows))])
    assert batch["pixel_values"].dtype == torch.uint8
    syncs = _step(vision, batch)
    assert not syncs.calls, syncs.report()
    with torch.no_grad():
        torch.testing.assert_close(vision.eval()(**batch), vision(**vision.preprocess([str(p) for p in paths])),
                                   atol=1e-5, rtol=0)
