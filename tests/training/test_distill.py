"""Distillation (issue 15): the student moves towards the teacher's embeddings; the teacher embeds once (cached on
disk, in chunks); a teacher of another size without a projection is refused before training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import build_tiny_bert, make_texts

import finetuner
from finetuner.errors import ConfigError, FinetunerError
from finetuner.losses import get_loss
from finetuner.losses.distill import margins
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


# MarginMSE: (query, positive, negative) rows, the student's margins regressed onto the teacher's


def _triplets(seed: int, n: int = 4) -> list[tuple[str, str, str]]:
    """(query, positive of its class, negative of the next class) rows of the synthetic texts."""
    by_label: dict[str, list[str]] = {}
    for text, label in make_texts(2 * n, seed=seed):
        by_label.setdefault(label, []).append(text)
    classes = list(by_label.values())
    return [
        (texts[2 * i], texts[2 * i + 1], classes[(k + 1) % len(classes)][2 * i])
        for k, texts in enumerate(classes)
        for i in range(n)
    ]


def test_margin_loss_equals_a_hand_computation():
    loss = get_loss("MarginMSE", {"teacher": "t"})
    loss.set_teacher_margins(torch.tensor([[0.2, -0.1], [0.9, 0.4]]))  # 2 rows, 2 negatives each
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    n = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]], [[1.0, 0.0], [1.0, 1.0]]])
    # cosines: row 0: q.p = 0.6, q.n = 0, -1 -> margins 0.6, 1.6; row 1: q.p = 1, q.n = 0, 1/sqrt(2)
    student = torch.tensor([[0.6, 1.6], [1.0, 1.0 - 2**-0.5]])
    rows = torch.tensor([1, 0])  # the batch holds row 1 first, then row 0
    expected = ((student - torch.tensor([[0.9, 0.4], [0.2, -0.1]])) ** 2).mean()
    torch.testing.assert_close(loss(q, p, n, rows), expected)
    # through the triplet objective: a flat batch [queries, positives, negatives_1, negatives_2], every member's
    # target its row's index
    from finetuner.losses.step_loss import TripletObjective

    flat = torch.cat([q, p, n[:, 0], n[:, 1]])  # (4 * 2, dim)
    torch.testing.assert_close(TripletObjective(loss, 2)(flat, rows.repeat(4)), expected)
    dot = get_loss("MarginMSE", {"teacher": "t", "similarity": "dot"})
    dot.set_teacher_margins(torch.zeros(2, 2))
    # dot products: row 0: 3 - (0, -1) = 3, 4; row 1: 2 - (0, 2) = 2, 0
    torch.testing.assert_close(dot(q, p, n, torch.tensor([0, 1])), torch.tensor([9.0, 16.0, 4.0, 0.0]).mean())


def test_margin_rows_carry_their_index():
    settings = {"device": "cpu", "loss": "MarginMSE", "loss_options": {"teacher": "x"}}
    rows = _triplets(1)
    fit_plan = plan(check("bert-base-en", rows, None, settings, FitOptions()))
    assert fit_plan.task == "triplets"
    assert fit_plan.train.targets == [(i, i, i) for i in range(len(rows))]


@pytest.mark.parametrize(
    ("data", "options", "message"),
    [
        (_triplets(1), None, r"loss='MarginMSE' needs a teacher: .*received loss_options=\{\}"),
        (TRAIN, {"teacher": "x"}, r"train_data holds \d+ items without labels"),
        (make_texts(3), {"teacher": "x"}, "triplet rows; train_data holds labelled text items"),
        (_triplets(1), {"teacher": "x", "similarity": "l2"}, "similarity is one of 'cosine', 'dot'; received 'l2'"),
        (_triplets(1), {"teacher": "x", "margin": 1}, "margin"),
    ],
)
def test_margin_distillation_refuses_bad_input_before_training(data, options, message, monkeypatch):
    monkeypatch.setattr(distill, "teacher_embeddings", None)  # nothing may reach the teacher
    with pytest.raises(FinetunerError, match=message):
        finetuner.fit("bert-base-en", data, loss="MarginMSE", loss_options=options, epochs=1, device="cpu",
                      verbose=False)


@pytest.mark.integration
def test_margin_distillation_moves_the_students_margins_to_the_teachers(tmp_path):
    student = str(build_tiny_bert(tmp_path / "student", seed=0, dropout=0.0))
    teacher = str(build_tiny_bert(tmp_path / "teacher", hidden=48, seed=5, dropout=0.0))  # another size: allowed
    rows = _triplets(1, n=6)
    held_out = _triplets(9, n=3)

    def margins_of(model, data) -> torch.Tensor:
        vectors = torch.from_numpy(finetuner.encode(model, [t for row in data for t in row])).reshape(len(data), 3, -1)
        return margins(vectors[:, 0], vectors[:, 1], vectors[:, 2:])  # (rows, 1)

    target, target_held_out = margins_of(build_model(teacher), rows), margins_of(build_model(teacher), held_out)
    before = float(((margins_of(build_model(student), rows) - target) ** 2).mean())
    before_held_out = float(((margins_of(build_model(student), held_out) - target_held_out) ** 2).mean())
    run = finetuner.fit(student, rows, loss="MarginMSE", loss_options={"teacher": teacher}, epochs=10, batch_size=8,
                        learning_rate=1e-3, seed=0, device="cpu", verbose=False)
    model = finetuner.get_model(run.save_artifact(tmp_path / "art"))
    after = float(((margins_of(model, rows) - target) ** 2).mean())
    after_held_out = float(((margins_of(model, held_out) - target_held_out) ** 2).mean())
    assert after < 0.2 * before, (before, after)
    assert after_held_out < 0.6 * before_held_out, (before_held_out, after_held_out)


def _rank_main(rank: int, world: int, port: int, student: str, teacher: str, home: str) -> None:
    from tests.processes import become_rank

    become_rank(rank, world, port, home)
    runs = distill.embed_items

    def counted(*args, **kwargs):
        with open(Path(home).parent / f"teacher-ran-on-rank-{rank}", "a") as f:
            f.write("x")
        return runs(*args, **kwargs)

    distill.embed_items = counted
    finetuner.fit(student, _triplets(1), loss="MarginMSE", loss_options={"teacher": teacher}, epochs=1, batch_size=4,
                  run_name="ddp", seed=0, device="cpu", verbose=False)


@pytest.mark.integration
def test_under_two_processes_only_the_first_runs_the_teacher(tmp_path, monkeypatch):
    import torch.multiprocessing as mp
    from tests.processes import free_port

    student = str(build_tiny_bert(tmp_path / "student", dropout=0.0))
    teacher = str(build_tiny_bert(tmp_path / "teacher", seed=5, dropout=0.0))
    home = tmp_path / "home"
    mp.start_processes(_rank_main, args=(2, free_port(), student, teacher, str(home)), nprocs=2, start_method="spawn")
    assert (tmp_path / "teacher-ran-on-rank-0").is_file()
    assert not (tmp_path / "teacher-ran-on-rank-1").exists()  # it read the cache rank 0 wrote
    monkeypatch.setenv("FINETUNER_HOME", str(home))
    assert finetuner.get_run("ddp").status()["status"] == "FINISHED"
