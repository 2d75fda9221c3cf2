import pytest
import torch
from tests.conftest import make_texts

import finetuner
from finetuner.errors import ConfigError
from finetuner.models import build_model
from finetuner.training.wiseft import WiSEFTCallback


def _tuned_weights(tiny_bert, alpha):
    model = build_model(tiny_bert)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    callbacks = [WiSEFTCallback(alpha)] if alpha is not None else []
    finetuner.fit(model, make_texts(6), epochs=1, batch_size=8, learning_rate=1e-2, seed=0, verbose=False,
                  callbacks=callbacks)
    return start, model.state_dict()


def test_alpha_zero_restores_pretrained_and_one_keeps_tuned(tiny_bert):
    start, restored = _tuned_weights(tiny_bert, 0.0)
    assert all(torch.equal(start[k], restored[k]) for k in start)
    _, tuned_plain = _tuned_weights(tiny_bert, None)
    _, tuned_alpha1 = _tuned_weights(tiny_bert, 1.0)
    changed = [k for k in start if not torch.equal(start[k], tuned_plain[k])]
    assert changed
    for k in start:
        torch.testing.assert_close(tuned_alpha1[k], tuned_plain[k])
    _, half = _tuned_weights(tiny_bert, 0.5)
    k = changed[0]
    torch.testing.assert_close(half[k], (start[k] + tuned_plain[k]) / 2)


def test_alpha_is_checked():
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        WiSEFTCallback(1.5)
