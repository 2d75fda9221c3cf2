"""A tuned text model's artifact is a sentence-transformers folder and a Hugging Face folder."""

import numpy as np
import pytest
import torch
from tests.conftest import make_texts

import finetuner
from finetuner.models.heads import pool_tokens

pytestmark = pytest.mark.integration


def test_fit_artifact_with_output_dim_loads_in_sentence_transformers_and_automodel(tiny_bert, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from transformers import AutoModel, AutoTokenizer

    run = finetuner.fit(
        tiny_bert, make_texts(8), epochs=1, batch_size=16, learning_rate=3e-3, output_dim=12, verbose=False
    )
    artifact = run.save_artifact(tmp_path / "artifacts")
    folder = f"{artifact}/models/model"
    texts = ["apple banana the", "car bus train truck bike of", "hammer", "cat dog with a very old goat"]
    ours = finetuner.encode(finetuner.get_model(artifact), texts)
    assert ours.shape == (4, 12)

    st = sentence_transformers.SentenceTransformer(folder, device="cpu")
    assert st.encode(texts[:1]).shape == (1, 12)
    np.testing.assert_allclose(st.encode(texts), ours, atol=1e-5)

    # plain transformers: the backbone, then mean pooling and the 2_Dense head by hand
    backbone = AutoModel.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    from safetensors.torch import load_file

    dense = load_file(f"{folder}/2_Dense/model.safetensors")
    inputs = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        pooled = pool_tokens(backbone(**inputs).last_hidden_state, inputs["attention_mask"], "mean")
        manual = pooled @ dense["linear.weight"].T + dense["linear.bias"]
    np.testing.assert_allclose(manual.numpy(), ours, atol=1e-5)
