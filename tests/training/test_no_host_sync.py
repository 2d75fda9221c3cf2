"""Steady-state training steps read nothing back from the device.

The GPU check is tests/gpu/test_gpu_training.py (``torch.cuda.set_sync_debug_mode('error')``). This is its CPU
stand-in: the real loop runs the code path it takes on a GPU (the finiteness check deferred to the fused optimizer)
under a dispatch mode that records every op that would make a GPU's host wait (tests/host_sync.py), from the 4th
batch to the 20th: past the warm-up, across progress-bar updates (every 5 batches here), not over an epoch's end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import make_texts, tiny_hf_clip
from tests.host_sync import HostSyncs

import finetuner
from finetuner import CSVOptions
from finetuner.models import build_model
from finetuner.training import Callback

pytestmark = pytest.mark.integration

FIRST, LAST = 4, 20  # the batches watched (1-based, of the run)


class Watch(Callback):
    """Records syncing ops from the start of batch FIRST to the end of batch LAST."""

    def __init__(self) -> None:
        self.mode = HostSyncs()
        self.watching = False

    def on_batch_end(self, state):
        if state.batches_trained == FIRST - 1:
            self.mode.__enter__()
            self.watching = True
        elif state.batches_trained == LAST and self.watching:
            self.mode.__exit__(None, None, None)
            self.watching = False
        self.mode.where = f"batch {state.batches_trained + 1}"

    def on_train_end(self, state):
        assert not self.watching, "the run ended before the watched batches"


def _pairs(n: int) -> list[tuple[str, str]]:
    texts = [t for t, _ in make_texts(n // 2 + 1, seed=4)]
    return [(f"{' '.join(t.split()[:2])} {i}", f"{t} {i}") for i, t in enumerate(texts[: 2 * n : 2])][:n]


@pytest.fixture
def gpu_path(monkeypatch):
    """The loop as on a GPU: a non-finite loss is skipped by the fused optimizer, not read back before the update."""
    monkeypatch.setattr("finetuner.training.loop.defers_finite_check", lambda *args: True)


SETTINGS = dict(epochs=1, batch_size=8, learning_rate=1e-3, seed=0, verbose=False, device="cpu", log_every=5,
                optimizer_options={"fused": True})


@pytest.mark.parametrize("mini_batch_size", [None, 4])
def test_text_pair_steps_read_nothing_back(tiny_bert, gpu_path, mini_batch_size):
    watch = Watch()
    model = build_model(tiny_bert)
    extra = {"mini_batch_size": mini_batch_size} if mini_batch_size else {}
    finetuner.fit(model, _pairs(96), csv_options=CSVOptions(is_labeled=False), loss="InfoNCELoss",
                  callbacks=[watch], **SETTINGS, **extra)
    assert not watch.mode.calls, watch.mode.report()


def test_the_stand_in_sees_a_read_back(tiny_bert, gpu_path):
    """The same run with a callback that reads the loss every step is caught."""

    class Reads(Callback):
        def on_batch_end(self, state):
            float(state.epoch_loss_sum)

    watch = Watch()
    finetuner.fit(build_model(tiny_bert), _pairs(96), csv_options=CSVOptions(is_labeled=False), loss="InfoNCELoss",
                  callbacks=[watch, Reads()], **SETTINGS)
    assert watch.mode.calls and all(name == "aten._local_scalar_dense.default" for name, _, _ in watch.mode.calls)


def test_clip_steps_read_nothing_back(tiny_bert, tmp_path: Path, gpu_path):
    torch.manual_seed(0)
    folder = tiny_hf_clip(tiny_bert, tmp_path / "clip")
    rng = np.random.default_rng(0)
    pairs = []
    for i, (caption, _) in enumerate(_pairs(184)):  # 23 batches of 8 pairs
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(path)
        pairs.append((caption, str(path)))
    watch = Watch()
    finetuner.fit(str(folder), pairs, loss="CLIPLoss", callbacks=[watch], **SETTINGS)
    assert not watch.mode.calls, watch.mode.report()
