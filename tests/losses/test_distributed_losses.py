"""Two CPU processes (gloo) give the same loss, gradients and updated weights as one process on the same batch."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tests.processes import free_port

from finetuner.losses import get_loss
from finetuner.losses.contrastive import CLIPLoss
from finetuner.losses.step_loss import MetricObjective

WORLD = 2


def _data():
    g = torch.Generator().manual_seed(0)
    # uneven split on purpose: rank 0 holds 5 rows, rank 1 holds 4 (our samplers may give such shares)
    return torch.randn(9, 6, generator=g), torch.randn(9, 6, generator=g), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 0])


def _shares():
    return [slice(0, 5), slice(5, 9)]


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
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
        torch.save(
            {"clip": loss.detach(), "t": t.grad, "i": i.grad, "scale": clip.logit_scale.grad,
             "metric": metric.detach(), "e": e.grad},
            f"{out}/rank{rank}.pt",
        )
    finally:
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
