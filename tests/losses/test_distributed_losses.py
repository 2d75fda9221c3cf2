"""Two CPU processes (gloo) give the same loss, gradients and updated weights as one process on the same batch."""

from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tests.processes import free_port

from finetuner.losses import get_loss
from finetuner.losses.contrastive import CLIPLoss, InfoNCELoss
from finetuner.losses.rows import CoSENTLoss
from finetuner.losses.step_loss import MetricObjective, ScoredObjective, TripletObjective

WORLD = 2


def _data():
    g = torch.Generator().manual_seed(0)
    # uneven split on purpose: rank 0 holds 5 rows, rank 1 holds 4 (our samplers may give such shares)
    return torch.randn(9, 6, generator=g), torch.randn(9, 6, generator=g), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 0])


def _shares():
    return [slice(0, 5), slice(5, 9)]


def _rows():
    """9 triplet rows with 2 negatives (some negatives are positives of other rows) and 9 scored pairs."""
    g = torch.Generator().manual_seed(1)
    rows = torch.randn(9, 4, 6, generator=g)  # (row, [query, positive, negative, negative], dim)
    groups = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8])
    negative_groups = torch.tensor([[-1, 7], [-1, -1], [0, -1], [-1, -1], [-1, 2], [-1, -1], [8, -1], [-1, -1], [1, 1]])
    targets = torch.cat([groups[:, None], groups[:, None], negative_groups], dim=1)  # (row, 4)
    scores = torch.rand(9, generator=g)
    return rows, targets, scores


def _flat(rows, targets):
    """The loader's layout: column by column."""
    return rows.transpose(0, 1).reshape(-1, rows.shape[-1]), targets.T.reshape(-1)


def _row_objectives():
    return {
        "infonce": TripletObjective(InfoNCELoss(), 2),
        "triplet": TripletObjective(get_loss("TripletMarginLoss", {"margin": 0.4}), 2),
        "cosent": ScoredObjective(CoSENTLoss()),
    }


def _row_loss(name, rows, targets, scores):
    objective = _row_objectives()[name]
    if name == "cosent":
        return objective(_flat(rows[:, :2], targets[:, :2])[0], scores)
    return objective(*_flat(rows, targets))


def _compute(rank: int, out: str) -> None:
    text, image, labels = _data()
    part = _shares()[rank]
    t = text[part].clone().requires_grad_()
    i = image[part].clone().requires_grad_()
    clip = CLIPLoss(temperature=0.1)
    loss = clip(t, i)
    loss.backward()
    e = text[part].clone().requires_grad_()
    metric = MetricObjective(get_loss("TripletMarginLoss", {"margin": 0.3}))(e, labels[part])
    metric.backward()
    results = {"clip": loss.detach(), "t": t.grad, "i": i.grad, "scale": clip.logit_scale.grad,
               "metric": metric.detach(), "e": e.grad}
    rows, targets, scores = _rows()
    for name in _row_objectives():
        r = rows[part].clone().requires_grad_()
        value = _row_loss(name, r, targets[part], scores[part])
        value.backward()
        results[name], results[f"{name}_grad"] = value.detach(), r.grad
    torch.save(results, f"{out}/rank{rank}.pt")


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        _compute(rank, out)
    finally:
        # the losses' graphs (all_gather's backward node keeps the process group) must be freed before the group is
        # destroyed: a group still referenced at interpreter exit aborts the process now and then (SIGABRT,
        # "terminate called without an active exception"; 3-4 runs in 60 when the graphs lived until exit, 0 in 100)
        gc.collect()
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results():
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(_worker, args=(free_port(), out), nprocs=WORLD, start_method="spawn")
        yield [torch.load(Path(out) / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_clip_loss_two_processes_equal_one(two_process_results):
    text, image, _ = _data()
    t = text.clone().requires_grad_()
    i = image.clone().requires_grad_()
    clip = CLIPLoss(temperature=0.1)
    full = clip(t, i)
    full.backward()
    # each rank's loss covers its own rows against the global batch, weighted by its share: the mean over
    # ranks is the global loss, and DDP's mean of the ranks' gradients is the global gradient
    combined = sum(r["clip"] for r in two_process_results) / WORLD
    torch.testing.assert_close(combined, full.detach())
    for rank, part in enumerate(_shares()):
        torch.testing.assert_close(two_process_results[rank]["t"] / WORLD, t.grad[part], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(two_process_results[rank]["i"] / WORLD, i.grad[part], atol=1e-6, rtol=1e-5)
    logit_grad = sum(r["scale"] for r in two_process_results) / WORLD
    torch.testing.assert_close(logit_grad, clip.logit_scale.grad, atol=1e-6, rtol=1e-5)


def test_metric_loss_sees_all_ranks_with_label_offsets_right(two_process_results):
    text, _, labels = _data()
    e = text.clone().requires_grad_()
    full = MetricObjective(get_loss("TripletMarginLoss", {"margin": 0.3}))(e, labels)
    full.backward()
    for rank, part in enumerate(_shares()):
        # every rank computes the full-batch loss; gathering's backward sums the ranks' gradients (x WORLD),
        # and DDP's averaging divides by WORLD again
        torch.testing.assert_close(two_process_results[rank]["metric"], full.detach())
        torch.testing.assert_close(two_process_results[rank]["e"] / WORLD, e.grad[part], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["infonce", "triplet", "cosent"])
def test_row_losses_carry_the_negatives_and_scores_across_ranks(two_process_results, name):
    rows, targets, scores = _rows()
    r = rows.clone().requires_grad_()
    full = _row_loss(name, r, targets, scores)
    full.backward()
    for rank, part in enumerate(_shares()):
        # every rank computes the global loss over the gathered rows; DDP's averaging of the summed gradients gives
        # the single-process gradient (as for metric losses)
        torch.testing.assert_close(two_process_results[rank][name], full.detach())
        torch.testing.assert_close(two_process_results[rank][f"{name}_grad"] / WORLD, r.grad[part], atol=1e-6,
                                   rtol=1e-5)
