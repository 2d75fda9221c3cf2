"""Several fits in one Python process with different precisions: accelerate keeps one process-wide state, which
refused a second fit with precision='bf16' after one without (ValueError: AcceleratorState has already been
initialized); one process now starts it afresh."""

from __future__ import annotations

import torch
from tests.conftest import build_tiny_bert, make_texts

import finetuner

FIT = dict(epochs=1, batch_size=8, learning_rate=1e-3, seed=0, device="cpu", verbose=False)


def test_fits_with_other_precisions_follow_each_other_in_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNER_HOME", str(tmp_path / "home"))
    bert = build_tiny_bert(tmp_path / "bert")
    data = make_texts(4, seed=1)
    for precision in ("no", "bf16", "no"):
        run = finetuner.fit(bert, data, precision=precision, **FIT)
        assert run.config["precision"] == precision
    from accelerate.state import AcceleratorState

    assert AcceleratorState().mixed_precision == "no"  # the last fit's, not the first one's
    assert torch.is_autocast_enabled("cpu") is False  # nothing of the bf16 run left switched on
