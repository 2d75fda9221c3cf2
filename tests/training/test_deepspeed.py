"""DeepSpeed ZeRO on 2 CPU processes (gloo): accelerate builds DeepSpeed's engine only for GPU runs, so these tests
give ``fit``'s accelerator the DeepSpeed state an ``accelerate launch --use_deepspeed --zero_stage N`` on GPUs would
have; accelerate's own prepare then builds the real engine (DeepSpeed's CPU accelerator, gloo), and everything
finetuner does around it runs unchanged: the windows of gradient accumulation, frozen layers, the fp32 weights
gathered for the artifact, evaluation on partitioned weights (ZeRO-3), DeepSpeed checkpoints and their resume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from tests.conftest import build_tiny_bert, make_texts
from tests.processes import become_rank, free_port, saved_weights

pytest.importorskip("deepspeed")
pytestmark = pytest.mark.integration

# gradient accumulation (windows of 2 batches, the engine told where each ends) and frozen layers (embeddings and
# the first layer) included; Adam: its moments live in the engine's partitions and must come back on resume
FIT = dict(
    epochs=2, batch_size=8, learning_rate=3e-3, optimizer="Adam", seed=0, verbose=False, num_items_per_class=2,
    gradient_accumulation_steps=2, freeze=1, max_grad_norm=1.0,
)  # fmt: skip
DATA = (make_texts(6, seed=1), make_texts(5, seed=2))


def _force_deepspeed(stage: int) -> None:
    """accelerate uses DeepSpeed only for GPU runs: give fit's accelerator the state a GPU launch with
    ``--use_deepspeed --zero_stage <stage>`` would have, so that accelerate's own prepare builds DeepSpeed's engine."""
    from accelerate.utils import DeepSpeedPlugin, DistributedType

    import finetuner.training.build as build
    import finetuner.training.loop as loop

    original = loop.make_accelerator

    def make_accelerator(config):
        accelerator = original(config)
        plugin = DeepSpeedPlugin(zero_stage=stage)  # accelerate's defaults: 'auto' batch sizes and clipping
        plugin.set_mixed_precision(accelerator.mixed_precision)
        plugin.select(_from_accelerator_state=True)
        accelerator.state.distributed_type = DistributedType.DEEPSPEED
        accelerator.state.deepspeed_plugins = {"default": plugin}
        accelerator.deepspeed_engine_wrapped = None
        return accelerator

    # fit's first accelerator (its checks) sets the state up before the model loads, as a launch does: under ZeRO-3
    # Hugging Face then builds the model already partitioned (accelerate's zero3_init_flag)
    build.make_accelerator = loop.make_accelerator = make_accelerator


def _rank(rank: int, world: int, port: int, model_dir: str, home: str, stage: int) -> None:
    become_rank(rank, world, port, home)
    _force_deepspeed(stage)
    from tests.gpu.fsdp_script import Crash

    import finetuner
    from finetuner.distributed import is_sharded
    from finetuner.training import TrainingCheckpoint
    from finetuner.training.loop import Callback
    from finetuner.training.zero import is_engine

    class Engine(Callback):
        def on_train_begin(self, state):
            assert is_engine(state.model), "accelerate built no DeepSpeed engine"
            assert is_sharded(state.model) == (stage == 3)  # ZeRO-3 partitions the weights themselves

    finetuner.fit(model_dir, *DATA, run_name=f"zero{stage}", device="cpu", callbacks=[Engine()], **FIT)
    if stage != 3:
        return
    with pytest.raises(RuntimeError, match="crash in epoch 2"):
        callbacks = [TrainingCheckpoint(save_every_n_steps=2), Crash()]
        finetuner.fit(model_dir, *DATA, run_name="cut", device="cpu", callbacks=callbacks, **FIT)
    checkpoint = Path(home) / "runs" / "default" / "cut" / "checkpoints" / "step-00000005"  # a window's end
    assert (checkpoint / "sharded" / "zero").is_dir() and not (checkpoint / "model.safetensors").exists()
    finetuner.fit(model_dir, *DATA, resume_from="cut", device="cpu", callbacks=[TrainingCheckpoint()], **FIT)


@pytest.mark.parametrize("stage", [2, 3])
def test_fit_under_deepspeed_trains_like_one_process(tmp_path, stage):
    """``fit`` on 2 processes under DeepSpeed ZeRO-2 (optimizer state and gradients partitioned) and ZeRO-3 (the
    weights too): the metrics before and after (ZeRO-3: measured on the partitioned model, every rank embedding an
    equal share) and the saved artifact (the fp32 weights gathered onto rank 0; frozen layers untouched) equal one
    process's without DeepSpeed, with gradient accumulation, frozen layers, clipping and Adam. Under ZeRO-3 a run
    that crashed mid-epoch resumes from its DeepSpeed step checkpoint (weights and Adam moments in the engine's
    partitions) to the weights of the uninterrupted run."""
    from safetensors.torch import load_file

    import finetuner

    model_dir = str(build_tiny_bert(tmp_path / "bert", dropout=0.0))
    home = tmp_path / "home"
    mp.start_processes(_rank, args=(2, free_port(), model_dir, str(home), stage), nprocs=2, start_method="spawn")
    os.environ["FINETUNER_HOME"] = str(home)
    single = finetuner.fit(model_dir, *DATA, run_name="one", device="cpu", **FIT)
    zero = finetuner.get_run(f"zero{stage}")
    assert zero.status()["status"] == "FINISHED"
    for when in ("before", "after"):
        for name, value in single.metrics()[when].items():
            assert zero.metrics()[when][name] == pytest.approx(value, abs=1e-4), (when, name)
    assert zero.metrics()["after"]["average_precision"] > zero.metrics()["before"]["average_precision"]

    one, two = saved_weights(home, "one"), saved_weights(home, f"zero{stage}")
    start = load_file(str(Path(model_dir) / "model.safetensors"))
    moved = [k for k in one if not torch.equal(one[k], start[k])]
    assert moved and all(".layer.1." in k or "pooler" in k or "head" in k for k in moved), moved  # freeze=1
    assert sorted(two) == sorted(one)
    for key in one:
        assert two[key].dtype == one[key].dtype, key
        torch.testing.assert_close(two[key], one[key], atol=2e-5, rtol=1e-4, msg=key)
        if key not in moved:
            assert torch.equal(two[key], start[key]), key  # frozen: bit for bit
    if stage == 3:
        assert finetuner.get_run("cut").status()["status"] == "FINISHED"
        for key, value in saved_weights(home, "cut").items():
            torch.testing.assert_close(value, two[key], atol=1e-6, rtol=1e-6, msg=key)


def _bf16_rank(rank: int, world: int, port: int, model_dir: str, home: str) -> None:
    become_rank(rank, world, port, home)
    _force_deepspeed(2)
    import finetuner
    from finetuner.training.loop import Callback

    class Bf16(Callback):
        def on_train_begin(self, state):
            dtypes = {p.dtype for p in state.model.module.parameters()}
            assert dtypes == {torch.bfloat16}, dtypes  # the engine trains a bf16 copy

    finetuner.fit(model_dir, *DATA, run_name="bf16", device="cpu", precision="bf16", callbacks=[Bf16()], **FIT)


def test_bf16_under_deepspeed_saves_the_fp32_master_weights(tmp_path):
    """Under bf16 DeepSpeed trains a bf16 copy of the model and keeps the fp32 master weights in its optimizer
    partitions: the artifact holds those (fp32, close to a fp32 run's, not the bf16 copy rounded back), and the frozen
    layers bit for bit as they were (the engine holds them in bf16 only)."""
    from safetensors.torch import load_file

    import finetuner

    model_dir = str(build_tiny_bert(tmp_path / "bert", dropout=0.0))
    home = tmp_path / "home"
    mp.start_processes(_bf16_rank, args=(2, free_port(), model_dir, str(home)), nprocs=2, start_method="spawn")
    os.environ["FINETUNER_HOME"] = str(home)
    finetuner.fit(model_dir, *DATA, run_name="fp32", device="cpu", **FIT)
    run = finetuner.get_run("bf16")
    assert run.metrics()["after"]["average_precision"] > run.metrics()["before"]["average_precision"]
    saved = saved_weights(home, "bf16")
    fp32 = saved_weights(home, "fp32")
    start = load_file(str(Path(model_dir) / "model.safetensors"))
    trained = [k for k in fp32 if not torch.equal(fp32[k], start[k])]
    not_bf16 = 0
    for key, value in saved.items():
        assert value.dtype == torch.float32, key
        if key not in trained:
            assert torch.equal(value, start[key]), key
            continue
        torch.testing.assert_close(value, fp32[key], atol=2e-2, rtol=2e-2, msg=key)  # bf16 steps, fp32 updates
        not_bf16 += int(not torch.equal(value, value.bfloat16().float()))
    assert not_bf16 == len(trained)  # master weights, not a bf16 copy cast back


def _accelerator(ds_config: dict, processes: int = 4):
    from types import SimpleNamespace

    plugin = SimpleNamespace(deepspeed_config=ds_config)
    return SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin), num_processes=processes)


def test_deepspeed_config_takes_the_runs_settings_and_refuses_contradictions():
    """The DeepSpeed config's 'auto' (or missing) entries take the run's batch size per process, one micro-batch per
    engine step (the loop's windows) and max_grad_norm; an explicit other value, or an optimizer / scheduler
    section, is refused naming the entry and fit's option."""
    from finetuner.config import TrainingConfig
    from finetuner.errors import ConfigError
    from finetuner.training.zero import configure_deepspeed

    model = torch.nn.Linear(2, 2)
    config = {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": 1}
    configure_deepspeed(_accelerator(config), model, TrainingConfig(batch_size=64, max_grad_norm=0.5))
    assert config == {"train_batch_size": 64, "train_micro_batch_size_per_gpu": 16, "gradient_accumulation_steps": 1,
                      "gradient_clipping": 0.5}  # fmt: skip
    for given, fragment in (
        ({"gradient_accumulation_steps": 4}, "gradient_accumulation_steps=4, but this run needs 1"),
        ({"gradient_clipping": 1.0}, "gradient_clipping=1.0, but this run needs 0.0 (max_grad_norm)"),
        ({"train_micro_batch_size_per_gpu": 8}, "train_micro_batch_size_per_gpu=8, but this run needs 16"),
        ({"optimizer": {"type": "AdamW"}}, "has the section 'optimizer' (AdamW)"),
        ({"scheduler": {"type": "WarmupLR"}}, "has the section 'scheduler' (WarmupLR)"),
    ):
        with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            configure_deepspeed(_accelerator(dict(given)), model, TrainingConfig(batch_size=64))
    with pytest.raises(ConfigError, match="has weights of its own"):
        from finetuner.losses import get_loss

        loss = get_loss("ArcFaceLoss", embedding_size=2, num_classes=3)
        configure_deepspeed(_accelerator({}), model, TrainingConfig(batch_size=64), loss)
