"""On a GPU (``-m gpu``; skipped without CUDA; run by benchmarks/gpu_check.sh): steady-state training steps never
wait for the device (``torch.cuda.set_sync_debug_mode('error')``), attention runs on the kernels chosen on purpose,
and the compiled model does not recompile per batch."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import make_texts, tiny_hf_clip

import finetuner
from finetuner import CSVOptions
from finetuner.models import build_model
from finetuner.training import Callback

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

FIRST, LAST = 4, 20  # batches (1-based, of the run) that must not synchronise: between progress-bar updates too


class NoSync(Callback):
    """``set_sync_debug_mode('error')`` from the start of batch FIRST to the end of batch LAST: any synchronising
    CUDA call in those steps raises."""

    def __init__(self) -> None:
        self.covered = 0

    def on_batch_end(self, state):
        if state.batches_trained == FIRST - 1:
            torch.cuda.set_sync_debug_mode("error")
        elif state.batches_trained == LAST:
            torch.cuda.set_sync_debug_mode(0)
        elif FIRST <= state.batches_trained < LAST:
            self.covered += 1

    def on_train_end(self, state):
        torch.cuda.set_sync_debug_mode(0)


def _pairs(n: int) -> list[tuple[str, str]]:
    texts = [t for t, _ in make_texts(n // 2 + 1, seed=4)]
    return [(f"{' '.join(t.split()[:2])} {i}", f"{t} {i}") for i, t in enumerate(texts[: 2 * n : 2])][:n]


SETTINGS = dict(epochs=1, batch_size=8, learning_rate=1e-3, seed=0, verbose=False, device="cuda", log_every=5,
                precision="bf16", num_workers=2)


@pytest.mark.parametrize("mini_batch_size", [None, 4])
def test_text_pair_steps_never_wait_for_the_gpu(tiny_bert, mini_batch_size):
    watch = NoSync()
    extra = {"mini_batch_size": mini_batch_size} if mini_batch_size else {}
    finetuner.fit(build_model(tiny_bert), _pairs(96), csv_options=CSVOptions(is_labeled=False), loss="InfoNCELoss",
                  callbacks=[watch], **SETTINGS, **extra)
    assert watch.covered == LAST - FIRST


def test_clip_steps_never_wait_for_the_gpu(tiny_bert, tmp_path):
    import numpy as np
    from PIL import Image
    folder = tiny_hf_clip(tiny_bert, tmp_path / "clip")
    rng = np.random.default_rng(0)
    pairs = []
    for i, (caption, _) in enumerate(_pairs(184)):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(path)
        pairs.append((caption, str(path)))
    watch = NoSync()
    finetuner.fit(str(folder), pairs, loss="CLIPLoss", callbacks=[watch], **SETTINGS)
    assert watch.covered == LAST - FIRST


def test_attention_runs_on_the_chosen_kernels(tiny_bert):
    from torch.profiler import ProfilerActivity, profile

    from finetuner.models.attention import attention_backends

    model = build_model(tiny_bert).cuda().train()
    inputs = {k: v.cuda() for k, v in model.preprocess(["apple car", "the very big red old new car"]).items()}
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    bf16 = torch.autocast("cuda", dtype=torch.bfloat16)
    with profile(activities=activities) as prof, attention_backends("cuda"), bf16:
        model(**inputs).float().sum().backward()
    names = " ".join(e.key for e in prof.key_averages())
    assert "cudnn_attention" not in names
    assert "efficient_attention" in names or "flash_attention" in names


def test_compiled_text_model_does_not_recompile_per_batch(tiny_bert):
    import random

    from torch._dynamo.utils import counters

    from finetuner.models.base import compile_for_training

    torch._dynamo.reset()
    counters.clear()
    model = build_model(tiny_bert).cuda().train()
    compile_for_training(model)  # inductor, as fit(compile=True)
    collate = model.token_collate(2)
    rng = random.Random(0)
    words = " ".join(t for t, _ in make_texts(4)).split()
    for _ in range(12):
        rows = model.pretokenize([" ".join(rng.choices(words, k=rng.randint(1, 50))) for _ in range(16)])
        inputs = collate(rows)
        inputs = {k: ([{n: t.cuda() for n, t in g.items()} for g in v] if isinstance(v, list) else v.cuda())
                  for k, v in inputs.items()}
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(**inputs).float().sum().backward()
    assert int(counters["stats"]["unique_graphs"]) <= 3
