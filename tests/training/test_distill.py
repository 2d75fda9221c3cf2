"""Distillation (issue 15): the student moves towards the teacher's embeddings; the teacher embeds once (cached on
disk, in chunks); a teacher of another size without a projection is refused before training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import build_tiny_bert, make_texts

import finetuner
from finetuner.errors import ConfigError
from finetuner.losses import get_loss
from finetuner.models import build_model
from finetuner.training import distill
from finetuner.training.check import FitOptions, check
from finetuner.training.plan import plan

TRAIN = sorted({t for t, _ in make_texts(12, seed=1)})
HELD_OUT = [t for t, _ in make_texts(4, seed=8) if t not in TRAIN]


def test_loss_looks_up_each_items_teacher_vector():
    loss = get_loss("DistillMSE", {"teacher": "t"})
    teacher = torch.randn(5, 3)
    loss.set_teacher_vectors(teacher)
    student = torch.randn(2, 3, requires_grad=True)
    value = loss(student, torch.tensor([4, 1]))
    torch.testing.assert_close(value, ((student - teacher[[4, 1]]) ** 2).mean())


def test_each_text_is_one_item_in_random_batches():
    settings = {"device": "cpu", "loss": "DistillMSE", "loss_options": {"teacher": "x"}}
    fit_plan = plan(check("bert-base-en", TRAIN, None, settings, FitOptions()))
    assert fit_plan.train.items == TRAIN and fit_plan.train.labels == list(range(len(TRAIN)))
    assert fit_plan.sampler == "random"


def test_teacher_embeddings_are_cached_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNER_HOME", str(tmp_path / "home"))  # a cache of this test's own (others add parts)
    teacher = str(build_tiny_bert(tmp_path / "teacher", seed=5))
    first = distill.teacher_embeddings(teacher, TRAIN, chunk=7)
    expected = finetuner.encode(build_model(teacher), TRAIN)
    np.testing.assert_allclose(first.numpy(), expected, atol=1e-5)
    parts = sorted(distill.cache_root().rglob("part-*.npy"))
    assert len(parts) == -(-len(TRAIN) // 7)

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher ran again")

    monkeypatch.setattr(distill, "embed_items", no_teacher)
    torch.testing.assert_close(distill.teacher_embeddings(teacher, TRAIN, chunk=7), first)


def test_teacher_of_another_size_is_refused(tmp_path):
    student = str(build_tiny_bert(tmp_path / "student", hidden=32))
    teacher = str(build_tiny_bert(tmp_path / "teacher", hidden=16, seed=5))
    with pytest.raises(ConfigError, match="output_dim=16"):
        finetuner.fit(student, TRAIN, loss="DistillMSE", loss_options={"teacher": teacher}, epochs=1, device="cpu",
                      verbose=False)
    with pytest.raises(ConfigError, match="needs a teacher"):
        finetuner.fit(student, TRAIN, loss="DistillMSE", epochs=1, device="cpu", verbose=False)


@pytest.mark.integration
def test_distillation_lowers_the_student_teacher_distance(tmp_path):
    student = str(build_tiny_bert(tmp_path / "student", seed=0, dropout=0.0))
    teacher = str(build_tiny_bert(tmp_path / "teacher", seed=5, dropout=0.0))
    target = finetuner.encode(build_model(teacher), HELD_OUT)

    def distance(model) -> float:
        return float(((finetuner.encode(model, HELD_OUT) - target) ** 2).mean())

    before = distance(build_model(student))
    run = finetuner.fit(student, TRAIN, loss="DistillMSE", loss_options={"teacher": teacher}, epochs=8,
                        batch_size=8, learning_rate=3e-3, seed=0, device="cpu", verbose=False)
    after = distance(finetuner.get_model(run.save_artifact(tmp_path / "art")))
    assert after < 0.5 * before, (before, after)  # on texts it did not train on
