"""A resumed run is the run that was never interrupted, also with stateful callbacks (best checkpoint, early
stopping, WiSE-FT), in-memory images, and gradient accumulation (whose windows never straddle an epoch's end and
are never cut by a checkpoint)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tests.conftest import make_texts

import finetuner
from finetuner.artifacts import read_run_metadata
from finetuner.callback import BestModelCheckpoint, Callback, EarlyStopping, WiSEFTCallback
from finetuner.config import TrainingConfig
from finetuner.data.documents import Document
from finetuner.training.check import FitOptions, check
from finetuner.training.loop import train
from finetuner.training.plan import plan
from finetuner.training.resume import run_fingerprint

SETTINGS = dict(batch_size=8, learning_rate=3e-3, seed=3, output_dim=8, epochs=5, device="cpu", verbose=False)


class Scores(Callback):
    """Reports a scripted 'score' per epoch."""

    def __init__(self, scores):
        self.scores = scores

    def metric_names(self):
        return ["score"]

    def on_epoch_end(self, state):
        state.metrics["score"] = self.scores[state.epoch]


class CrashAfter(Callback):
    """Fails the run at the end of epoch ``epoch`` (1-based), before that epoch's checkpoint is written."""

    _order = 5  # before the checkpoint, after the scores

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, state):
        if state.epoch + 1 == self.epoch:
            raise RuntimeError("simulated crash")


def _callbacks():
    # the score peaks at epoch 2, then falls: patience 2 stops the run after epoch 4 of 5
    best, stop = BestModelCheckpoint(monitor="score"), EarlyStopping(monitor="score", patience=2)
    return [Scores([0.5, 0.9, 0.6, 0.4, 0.3]), best, stop, WiSEFTCallback(alpha=0.5)], best, stop


def _weights(run):
    """Every saved tensor of the run's model (the backbone and the Dense head of a sentence-transformers folder)."""
    folder = run.directory / "models" / "model"
    out = {}
    for path in sorted(folder.rglob("*.safetensors")):
        prefix = "" if path.parent == folder else f"{path.parent.name}/"
        out.update({prefix + k: v for k, v in load_file(path).items()})
    return out


@pytest.mark.integration
def test_resume_keeps_best_epoch_patience_and_wiseft_start(tiny_bert):
    data = make_texts(4)
    callbacks, best, stop = _callbacks()
    whole = finetuner.fit(tiny_bert, data, callbacks=callbacks, run_name="exact-whole", **SETTINGS)
    assert (best.best_epoch, stop.stopped_epoch) == (2, 4)

    callbacks, _, _ = _callbacks()
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetuner.fit(tiny_bert, data, callbacks=[*callbacks, CrashAfter(3)], run_name="exact-cut", **SETTINGS)
    callbacks, best, stop = _callbacks()  # fresh objects, as a new process would have
    resumed = finetuner.fit(tiny_bert, data, callbacks=callbacks, resume_from="exact-cut", **SETTINGS)
    assert resumed.name == "exact-cut" and resumed.status()["status"] == "FINISHED"
    # resumed from epoch 2's checkpoint: without their saved state the callbacks would keep epoch 4's weights as
    # the best (0.4 after the resume) and not stop before epoch 5; WiSE-FT would mix with epoch 2's weights
    assert (best.best_epoch, best.best_value, stop.stopped_epoch) == (2, 0.9, 4)
    history = [h["epoch"] for h in read_run_metadata(resumed.directory)["history"]]
    assert history == [h["epoch"] for h in read_run_metadata(whole.directory)["history"]] == [1, 2, 3, 4]
    a, b = _weights(whole), _weights(resumed)
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, f"resumed weights differ from the uninterrupted run's by {worst}"
    initial = load_file(f"{tiny_bert}/model.safetensors")
    assert any(k.startswith("2_Dense/") for k in a)  # the seeded head is compared too
    moved = max(float((a[k] - w).abs().max()) for k, w in initial.items())
    assert moved > 1e-4, "training changed the weights (else the comparison proves nothing)"


def _images(seed):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(8):
        pixels = rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        label = "ab"[i % 2]
        out += [
            Document(blob=buffer.getvalue(), tags={"finetuner_label": label}),
            Document(tensor=pixels.copy(), tags={"finetuner_label": label}),
        ]
    return out, rng


def test_fingerprint_of_in_memory_images_is_their_content():
    def fingerprint(docs):
        checked = check("resnet50", docs, None, {"device": "cpu", "seed": 0}, FitOptions())
        return run_fingerprint(checked.config, 8, plan(checked).train)["data"]

    first, _ = _images(0)
    again, _ = _images(0)  # the same pictures, new Documents (new random ids), as a resumed process reads them
    assert fingerprint(first) == fingerprint(again)
    changed, _ = _images(0)
    changed[3].tensor[0, 0, 0] ^= 1  # one pixel of one image
    assert fingerprint(changed) != fingerprint(first)


def test_fingerprint_of_clip_pairs_with_pil_images_is_their_content():
    def pairs():
        rng = np.random.default_rng(1)
        return [
            (f"a photo of thing {i}", Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)))
            for i in range(6)
        ]

    def fingerprint(data):
        checked = check("clip-base-en", data, None, {"device": "cpu", "seed": 0}, FitOptions())
        return run_fingerprint(checked.config, 4, plan(checked).train)["data"]

    assert fingerprint(pairs()) == fingerprint(pairs())
    other = pairs()
    other[2] = (other[2][0], Image.new("RGB", (8, 8)))
    assert fingerprint(other) != fingerprint(pairs())


class PointLoss(torch.nn.Module):
    """A loss that is a mean over items: a large batch's gradient is the mean of its parts' gradients."""

    def forward(self, embeddings, labels, indices_tuple=None):
        target = torch.nn.functional.one_hot(labels, embeddings.shape[1]).float()
        return ((embeddings - target) ** 2).sum(dim=1).mean()


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.layer(x)


def _loader(batches):
    """A loader yielding fixed ``(inputs, labels)`` batches in order, every epoch."""
    return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)


def _batches(sizes):
    torch.manual_seed(1)
    x, y = torch.randn(sum(sizes), 6), torch.randint(0, 3, (sum(sizes),))
    out, start = [], 0
    for size in sizes:
        out.append(({"x": x[start : start + size]}, y[start : start + size]))
        start += size
    return out


def _train(batches, accumulate, epochs=2, callbacks=()):
    model = Linear()
    config = TrainingConfig(optimizer="SGD", learning_rate=0.1, epochs=epochs, gradient_accumulation_steps=accumulate,
                            device="cpu", seed=0, scheduler="linear")
    state = train(model, PointLoss(), _loader(batches), config, callbacks=callbacks, progress=False)
    return model.state_dict(), state


def test_accumulated_steps_equal_large_batch_steps_and_restart_each_epoch():
    small = _batches([4, 4, 4])  # 3 batches an epoch: windows of 2 are [0, 1] and [2], every epoch
    large = [
        ({"x": torch.cat([small[0][0]["x"], small[1][0]["x"]])}, torch.cat([small[0][1], small[1][1]])),
        small[2],
    ]
    accumulated, state = _train(small, accumulate=2)
    reference, reference_state = _train(large, accumulate=1)
    for key in reference:
        torch.testing.assert_close(accumulated[key], reference[key], atol=1e-6, rtol=1e-6, msg=key)
    # the schedule counts optimizer steps: 2 an epoch, so both decay over the same 4 steps to the same rate
    assert state.scheduler.get_last_lr() == reference_state.scheduler.get_last_lr()
    moved, _ = _train(small, accumulate=1)
    assert any(not torch.allclose(moved[k], reference[k]) for k in reference), "accumulation made a difference"


def test_checkpoints_are_never_taken_mid_accumulation(tmp_path, monkeypatch):
    from finetuner.training.checkpoint import TrainingCheckpoint

    saved = []
    saver = TrainingCheckpoint(last_k_epochs=0, save_every_n_steps=1, directory=tmp_path)

    def record(state, name, *, epoch, batches_done):
        saved.append((name, batches_done, getattr(state, "synced", state.accelerator.sync_gradients)))

    monkeypatch.setattr(saver, "_save", record)
    _train(_batches([4] * 5), accumulate=2, epochs=2, callbacks=[saver])
    # 5 batches an epoch, windows [0, 1], [2, 3], [4]: saved after batches 2 and 4 of each epoch, never after 1 or 3
    assert [(n, d) for n, d, _ in saved] == [("step-00000002", 2), ("step-00000004", 4), ("step-00000007", 2),
                                             ("step-00000009", 4)]
    assert all(synced for _, _, synced in saved)


def test_step_checkpoints_fall_on_window_ends_when_n_is_not_a_multiple(tmp_path, monkeypatch):
    from finetuner.training.checkpoint import TrainingCheckpoint

    saved = []
    saver = TrainingCheckpoint(last_k_epochs=0, save_every_n_steps=3, directory=tmp_path)
    monkeypatch.setattr(saver, "_save", lambda state, name, **kw: saved.append(name))
    _train(_batches([4] * 8), accumulate=2, epochs=1, callbacks=[saver])
    # windows close after batches 2, 4, 6, 8; the multiples of 3 (3, 6) fall in the windows closing at 4 and 6
    assert saved == ["step-00000004", "step-00000006"]
