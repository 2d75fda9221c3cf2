"""batch_size='auto': the largest batch that trains in memory, found by real out-of-memory errors, without
changing the model; every rank agrees on one size."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.multiprocessing as mp
from tests.conftest import build_tiny_bert, make_texts
from tests.processes import become_rank, free_port

import finetuner
from finetuner.errors import ConfigError
from finetuner.training.autobatch import find_batch_size, worst_case_batch

CPU_OOM = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"


def test_search_halves_until_it_fits_and_passes_other_errors_through():
    tried = []

    def fits_64(size):
        tried.append(size)
        if size > 64:
            raise RuntimeError(CPU_OOM)

    assert find_batch_size(fits_64, 512) == 64
    assert tried == [512, 256, 128, 64]
    assert find_batch_size(fits_64, 96, multiple=3) == 48  # 96 -> 48 stays a multiple of 3
    with pytest.raises(ValueError, match="not memory"):
        find_batch_size(lambda size: (_ for _ in ()).throw(ValueError("not memory")), 64)

    def never_fits(size):
        raise RuntimeError(CPU_OOM)

    with pytest.raises(ConfigError, match="even a batch of 2 runs out of memory"):
        find_batch_size(never_fits, 64)


def _oom_above(model, limit):
    """Make the model fail like torch does when a batch of more than ``limit`` rows goes through it."""

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[0] > limit:
            raise RuntimeError(CPU_OOM)

    return model.register_forward_pre_hook(hook, with_kwargs=True)


def test_fit_trains_with_the_largest_batch_that_fits(tiny_bert, monkeypatch):
    from finetuner.models import factory

    build = factory.build_model

    def build_with_limit(*args, **kwargs):
        model = build(*args, **kwargs)
        _oom_above(model, 24)
        return model

    monkeypatch.setattr("finetuner.training.build.build_model", build_with_limit)
    run = finetuner.fit(
        tiny_bert, make_texts(40), make_texts(5, seed=3), batch_size="auto", epochs=1, device="cpu", verbose=False
    )
    assert run.status()["status"] == "FINISHED"
    assert run.config["batch_size"] == 16  # 128 -> 64 -> 32 fail, 16 fits
    assert run.metrics()["after"]


def test_probe_leaves_weights_buffers_and_gradients_as_they_were():
    from accelerate import Accelerator

    from finetuner.config import TrainingConfig
    from finetuner.data.datasets import labelled_loader
    from finetuner.data.samplers import ClassSampler
    from finetuner.losses import get_loss
    from finetuner.training.autobatch import probe_batch_size
    from finetuner.training.loop import make_objective

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 4))

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            if x.shape[0] > 8:
                raise RuntimeError(CPU_OOM)
            return self.net(x)

    model = Model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    items = [torch.randn(6) for _ in range(40)]
    labels = [i % 4 for i in range(40)]
    loader = labelled_loader(items, labels, lambda xs: {"x": torch.stack(xs)}, ClassSampler(labels, 32, 4, seed=0))
    objective = make_objective(get_loss("TripletMarginLoss"))
    found = probe_batch_size(model, objective, loader, 32, TrainingConfig(device="cpu"), Accelerator(cpu=True))
    assert found == 8
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # BatchNorm running statistics included
    assert all(p.grad is None for p in model.parameters())


def test_worst_case_batch_pads_every_row_to_the_longest_text(tiny_bert):
    from finetuner.data.datasets import labelled_loader
    from finetuner.data.samplers import RandomBatchSampler
    from finetuner.models import build_model

    model = build_model(tiny_bert)
    texts = ["apple", "cat dog", "the very big red old new nice car with a truck", "saw"]
    rows = model.pretokenize(texts)
    loader = labelled_loader(rows, [0, 1, 2, 3], model.collate_tokens, RandomBatchSampler(4, 2, seed=0))
    inputs, labels = worst_case_batch(loader, 6)
    longest = max(len(r["input_ids"]) for r in rows)
    from finetuner.models.text.tokens import padded_length

    # every row is the longest text, padded as training pads it (to its bucketed length)
    assert inputs["input_ids"].shape == (6, padded_length(longest, model.max_length))
    assert inputs["attention_mask"].sum(1).tolist() == [longest] * 6
    assert labels.shape == (6,)


REAL_OOM = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False  # oneDNN reports a failed allocation as 'could not create a primitive'
    from accelerate import Accelerator
    from finetuner.models import build_model
    from finetuner.losses import get_loss
    from finetuner.training.autobatch import probe_batch_size, worst_case_batch
    from finetuner.config import TrainingConfig
    from finetuner.training.loop import make_objective, forward_backward, default_forward
    from finetuner.data.datasets import labelled_loader
    from finetuner.data.samplers import ClassSampler

    model = build_model(sys.argv[1])
    texts = [" ".join(["apple banana cherry grape"] * 14)] * 64 + ["car bus"] * 64
    labels = [i % 8 for i in range(128)]
    rows = model.pretokenize(texts)
    loader = labelled_loader(rows, labels, model.collate_tokens, ClassSampler(labels, 128, 4, seed=0))
    objective = make_objective(get_loss("TripletMarginLoss"))
    config, accelerator = TrainingConfig(device="cpu"), Accelerator(cpu=True)
    forward_backward(model, *worst_case_batch(loader, 2), objective, default_forward, config, accelerator)
    vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[2]) * 2**20, resource.RLIM_INFINITY))
    found = probe_batch_size(model, objective, loader, 128, config, accelerator)
    model.zero_grad(set_to_none=True)
    forward_backward(model, *worst_case_batch(loader, found), objective, default_forward, config, accelerator)
    print(json.dumps({"found": found}))
    """
)


def test_real_out_of_memory_under_an_address_space_limit(tmp_path):
    """A real allocator failure: the process may grow by 120 MiB, which holds a batch of some rows of 58
    tokens through a 256-wide BERT, not 128 of them; the size found then trains within the limit."""
    pytest.importorskip("resource")
    model_dir = build_tiny_bert(tmp_path / "bert", hidden=256)
    done = subprocess.run(
        [sys.executable, "-c", REAL_OOM, str(model_dir), "120"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])["found"]
    assert 2 <= found < 128


def _rank_main(rank: int, world: int, port: int, model_dir: str, home: str) -> None:
    become_rank(rank, world, port, home)
    import finetuner
    from finetuner.models import factory

    build = factory.build_model

    def build_with_limit(*args, **kwargs):
        model = build(*args, **kwargs)
        _oom_above(model, 16 if rank == 0 else 4)  # rank 1 has less memory
        return model

    import finetuner.training.build as build_module

    build_module.build_model = build_with_limit
    finetuner.fit(
        model_dir, make_texts(20), batch_size="auto", epochs=1, device="cpu", verbose=False, run_name="auto-ddp"
    )


@pytest.mark.integration
def test_ranks_agree_on_the_smallest_size_that_fits_everywhere(tmp_path):
    model_dir = str(build_tiny_bert(tmp_path / "bert"))
    home = tmp_path / "home"
    mp.start_processes(_rank_main, args=(2, free_port(), model_dir, str(home)), nprocs=2, start_method="spawn")
    config = json.loads(json.dumps(finetuner.runs.read_yaml(home / "runs" / "default" / "auto-ddp" / "config.yml")))
    assert config["batch_size"] == 8  # rank 1 fits 4 rows of its share: a global batch of 8
    status = finetuner.runs.read_yaml(home / "runs" / "default" / "auto-ddp" / "status.yml")
    assert status["status"] == "FINISHED"


def test_auto_is_a_valid_batch_size_and_a_bad_one_names_it():
    with pytest.raises(ConfigError, match="batch_size must be an int >= 2, 'auto'"):
        finetuner.fit("bert-base-en", make_texts(3), batch_size="max")


def test_cli_accepts_auto():
    from finetuner.cli import _parser

    args = _parser().parse_args(["fit", "--model", "m", "--train-data", "t.csv", "--batch-size", "auto"])
    assert args.batch_size == "auto"
