"""Bad options, caught before any model is loaded, with the valid values or the closest name; and a mix of
bad data and bad options reported all at once."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tests.reliability.catalogue import (
    GOOD,
    Case,
    check_case,
    clip,
    good_docs,
    lab,
    no_model_loading,
)
from tests.reliability.test_rel_bad_data import DATA_CASES

import finetuner
from finetuner import Document
from finetuner.errors import ConfigError, DataError, InputTypeError, ValidationError
from finetuner.training import Callback, TrainingCheckpoint

pytestmark = pytest.mark.usefixtures(no_model_loading.__name__)

OPTION_CASES = [
    # ---- options: names ------------------------------------------------------------------------------------
    Case(
        "unknown-loss",
        ConfigError,
        ["unknown loss 'TripletMarginLos'", "did you mean 'TripletMarginLoss'"],
        options={"loss": "TripletMarginLos"},
    ),
    Case(
        "unknown-miner",
        ConfigError,
        ["unknown miner 'TripletMiner'", "did you mean"],
        options={"miner": "TripletMiner"},
    ),
    Case(
        "unknown-optimizer",
        ConfigError,
        ["unknown optimizer 'Adamw'", "did you mean 'AdamW'"],
        options={"optimizer": "Adamw"},
    ),
    Case(
        "unknown-scheduler",
        ConfigError,
        ["unknown scheduler 'cosin'", "did you mean 'cosine'"],
        options={"scheduler": "cosin"},
    ),
    Case(
        "unknown-sampler",
        ConfigError,
        ["unknown sampler 'balanced'", "Valid sampler names"],
        options={"sampler": "balanced"},
    ),
    Case(
        "length-sampler-on-labelled-items",
        ConfigError,
        ["sampler='length' batches text pairs", "train_data holds labelled text items"],
        options={"sampler": "length"},
    ),
    Case(
        "length-sampler-on-text-image-pairs",
        ConfigError,
        ["sampler='length' batches text pairs", "train_data holds text-image pairs"],
        train=clip,
        model="clip-base-en",
        options={"sampler": "length"},
    ),
    Case(
        "class-sampler-on-text-image-pairs",
        ConfigError,
        ["duplicate-free pair sampler; sampler='class' does not apply"],
        train=clip,
        model="clip-base-en",
        options={"sampler": "class"},
    ),
    Case(
        "unknown-model-name",
        ConfigError,
        ["unknown model 'bert-bas-en'", "did you mean 'bert-base-en'"],
        model="bert-bas-en",
    ),
    Case(
        "model-folder-missing",
        ConfigError,
        ["looks like a local folder but there is no such folder"],
        model="./no/such/model",
    ),
    Case("model-wrong-type", InputTypeError, ["model must be a model name", "received int"], model=123),
    Case(
        "unknown-fit-option", ConfigError, ["unknown option(s) 'epoch' (did you mean 'epochs'?)"], options={"epoch": 3}
    ),
    # ---- options: numbers ----------------------------------------------------------------------------------
    Case("epochs-zero", ConfigError, ["epochs must be an int >= 1; received 0"], options={"epochs": 0}),
    Case("epochs-float", ConfigError, ["epochs must be an int >= 1; received 2.5"], options={"epochs": 2.5}),
    Case(
        "learning-rate-negative",
        ConfigError,
        ["learning_rate must be a number in (0, 1); received -0.1"],
        options={"learning_rate": -0.1},
    ),
    Case(
        "learning-rate-nan",
        ConfigError,
        ["learning_rate must be a number in (0, 1); received nan"],
        options={"learning_rate": math.nan},
    ),
    Case("batch-size-one", ConfigError, ["batch_size must be an int >= 2", "received 1"], options={"batch_size": 1}),
    Case(
        "batch-size-str", ConfigError, ["batch_size must be an int >= 2", "received '32'"], options={"batch_size": "32"}
    ),
    Case(
        "val-split-too-big",
        ConfigError,
        ["val_split must be a number in [0, 1); received 1.5"],
        options={"val_split": 1.5},
    ),
    Case(
        "val-split-and-eval-data",
        ConfigError,
        ["give either eval_data or val_split, not both"],
        eval=lambda tmp: list(GOOD),
        options={"val_split": 0.2},
    ),
    Case("output-dim-zero", ConfigError, ["output_dim must be an int >= 1", "received 0"], options={"output_dim": 0}),
    Case(
        "items-per-class-zero",
        ConfigError,
        ["num_items_per_class must be an int >= 1; received 0"],
        options={"num_items_per_class": 0},
    ),
    Case(
        "grad-accumulation-zero",
        ConfigError,
        ["gradient_accumulation_steps must be an int >= 1"],
        options={"gradient_accumulation_steps": 0},
    ),
    Case("log-every-zero", ConfigError, ["log_every must be an int >= 1; received 0"], options={"log_every": 0}),
    Case(
        "max-grad-norm-negative",
        ConfigError,
        ["max_grad_norm must be a positive number"],
        options={"max_grad_norm": -1.0},
    ),
    Case("freeze-str", ConfigError, ["freeze must be True, False or a layer count"], options={"freeze": "yes"}),
    Case("seed-str", ConfigError, ["seed must be an int or None; received 'abc'"], options={"seed": "abc"}),
    Case(
        "warmup-ratio-too-big",
        ConfigError,
        ["warmup_ratio'] must be a number in [0, 1); received 2"],
        options={"scheduler": "linear", "scheduler_options": {"warmup_ratio": 2}},
    ),
    Case(
        "eval-batch-size-zero",
        ConfigError,
        ["eval_batch_size must be an int >= 1; received 0"],
        options={"eval_batch_size": 0},
    ),
    Case("limit-zero", ConfigError, ["limit must be an int >= 1; received 0"], options={"limit": 0}),
    # ---- options: devices ----------------------------------------------------------------------------------
    Case(
        "cuda-without-cuda",
        ConfigError,
        ["device='cuda' but no CUDA device is available", "Use device='cpu'"],
        options={"device": "cuda"},
        skip="this machine has CUDA" if torch.cuda.is_available() else None,
    ),
    Case("cuda-index-without-gpu", ConfigError, ["device='cuda:7'"], options={"device": "cuda:7"}),
    Case(
        "unknown-device",
        ConfigError,
        ["device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; received 'gpu'"],
        options={"device": "gpu"},
    ),
    Case(
        "fp16-on-cpu",
        ConfigError,
        ["precision='fp16' needs a CUDA GPU"],
        options={"precision": "fp16", "device": "cpu"},
    ),
    # ---- options: types and option keys --------------------------------------------------------------------
    Case(
        "loss-options-not-dict",
        InputTypeError,
        ["loss_options must be a dict (or None); received list"],
        options={"loss_options": [("margin", 0.1)]},
    ),
    Case(
        "optimizer-options-str",
        InputTypeError,
        ["optimizer_options must be a dict (or None); received str"],
        options={"optimizer_options": "fast"},
    ),
    Case(
        "model-options-not-dict",
        InputTypeError,
        ["model_options must be a dict or None; received str"],
        options={"model_options": "mean"},
    ),
    Case(
        "loss-option-misspelt",
        ConfigError,
        ["loss TripletMarginLoss has no option 'margn' (did you mean 'margin'?)"],
        options={"loss_options": {"margn": 0.2}},
    ),
    Case(
        "miner-option-misspelt",
        ConfigError,
        ["miner TripletMarginMiner has no option 'type_of_triplet'"],
        options={"miner": "TripletMarginMiner", "miner_options": {"type_of_triplet": "hard"}},
    ),
    Case(
        "optimizer-option-misspelt",
        ConfigError,
        ["optimizer Adam has no option 'betaz' (did you mean 'betas'?)"],
        options={"optimizer_options": {"betaz": (0.9, 0.99)}},
    ),
    Case(
        "lr-in-optimizer-options",
        ConfigError,
        ["not optimizer_options={'lr': ...}"],
        options={"optimizer_options": {"lr": 0.1}},
    ),
    Case(
        "miner-options-without-miner",
        ConfigError,
        ["miner_options given without a miner"],
        options={"miner_options": {"margin": 0.1}},
    ),
    Case(
        "scheduler-options-without-scheduler",
        ConfigError,
        ["scheduler_options given without a scheduler"],
        options={"scheduler_options": {"num_warmup_steps": 3}},
    ),
    Case(
        "loss-instance-with-options",
        ConfigError,
        ["loss_options only apply to a loss given by name"],
        options={"loss": torch.nn.MSELoss(), "loss_options": {"margin": 1}},
    ),
    Case(
        "loss-wrong-type",
        InputTypeError,
        ["loss must be a loss name or a torch.nn.Module; received int"],
        options={"loss": 3},
    ),
    Case(
        "callbacks-not-a-list",
        InputTypeError,
        ["callbacks must be a list of callbacks; received TrainingCheckpoint"],
        options={"callbacks": TrainingCheckpoint()},
    ),
    Case(
        "callback-class-not-instance",
        InputTypeError,
        ["callbacks[0] is the class TrainingCheckpoint, not an instance"],
        options={"callbacks": [TrainingCheckpoint]},
    ),
    Case(
        "callback-of-wrong-type",
        InputTypeError,
        ["callbacks[1] is a str, not a callback"],
        options={"callbacks": [Callback(), "early-stop"]},
    ),
    Case(
        "csv-options-as-dict",
        InputTypeError,
        ["csv_options must be a finetuner.CSVOptions; received dict"],
        options={"csv_options": {"is_labeled": True}},
    ),
    Case(
        "run-name-escapes",
        ConfigError,
        ["run_name must be a plain folder name", "received '../escape'"],
        options={"run_name": "../escape"},
    ),
    Case(
        "verbose-not-bool",
        InputTypeError,
        ["verbose must be True or False; received 'yes'"],
        options={"verbose": "yes"},
    ),
    Case(
        "resume-from-unknown-run",
        ConfigError,
        ["resume_from='no-such-run': no run named 'no-such-run'"],
        options={"resume_from": "no-such-run"},
    ),
    Case(
        "resume-from-folder-without-checkpoints",
        ConfigError,
        ["no complete checkpoint in"],
        options={"resume_from": "."},
    ),
]


def test_catalogue_size() -> None:
    cases = DATA_CASES + OPTION_CASES
    assert len(cases) >= 100, len(cases)
    assert len({c.id for c in cases}) == len(cases), "case ids are unique"


@pytest.mark.parametrize("case", OPTION_CASES, ids=[c.id for c in OPTION_CASES])
def test_bad_option_is_caught_before_training(case: Case, tmp_path: Path) -> None:
    check_case(case, tmp_path)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    train = [
        lab("", "fruit", id="e1"),  # empty text
        lab("apple", None, id="n1"),  # missing label
        *good_docs(),
        Document(uri=str(tmp_path / "gone.png"), tags={"finetuner_label": "fruit"}, id="i1"),  # image among texts
    ]
    evals = [("", "x"), ("b", "y")]
    with pytest.raises(ValidationError) as info:
        finetuner.fit(
            "bert-base-en",
            train,
            evals,
            epochs=0,
            loss="TripletMarginLos",
            loss_options=[1],
            device="gpu",
        )
    err = info.value
    assert isinstance(err, DataError) and isinstance(err, ConfigError) and isinstance(err, TypeError)
    text = "\n".join(err.problems)
    for fragment in (
        "epochs must be an int >= 1",
        "unknown loss 'TripletMarginLos'",
        "loss_options must be a dict",
        "device must be",
        "item 0 (id 'e1'): empty text",
        "item 6 (id 'i1'",
        "gone.png' does not exist",
        "eval_data item 0, column 1: empty field",
    ):
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    assert f"{len(err.problems)} problems found before training" in str(err)


def test_deepspeed_on_the_cpu_is_refused(monkeypatch) -> None:
    """accelerate builds DeepSpeed's engine only for GPU runs: a DeepSpeed launch of a CPU run would silently train
    without it, so it is refused before a model loads."""
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ConfigError) as info:
        finetuner.fit("bert-base-en", list(GOOD), epochs=1, device="cpu")
    assert "accelerate is configured for DeepSpeed (ACCELERATE_USE_DEEPSPEED=true)" in str(info.value)
    assert "accelerate uses DeepSpeed only on GPUs and this run is on the CPU" in str(info.value)


def test_deepspeed_refuses_what_assumes_whole_weights(monkeypatch) -> None:
    """Under DeepSpeed (on a GPU machine) every option that cannot work on a sharded model is named up front."""
    from finetuner.config import TrainingConfig
    from finetuner.training.callbacks import BestModelCheckpoint
    from finetuner.validation.launcher import launcher_problems

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = TrainingConfig(device="cuda", batch_size="auto", mini_batch_size=8, adapter="lora", compile=True)
    problems = launcher_problems(config, [BestModelCheckpoint(monitor="train_loss")])
    assert len(problems) == 5 and all(p.startswith("accelerate is configured for DeepSpeed") for p in problems)
    assert "callbacks[0] is a BestModelCheckpoint" in problems[-1] and "under DeepSpeed" in problems[-1]
    assert launcher_problems(TrainingConfig(device="cuda", batch_size=32), [TrainingCheckpoint()]) == []


def test_fsdp_on_the_cpu_is_refused(monkeypatch) -> None:
    """accelerate shards models only on GPUs: an FSDP launch of a CPU run would silently train unsharded."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    with pytest.raises(ConfigError) as info:
        finetuner.fit("bert-base-en", list(GOOD), epochs=1, device="cpu")
    assert "accelerate uses FSDP only on GPUs and this run is on the CPU" in str(info.value)


def test_fsdp_refuses_what_assumes_whole_weights(monkeypatch) -> None:
    """Under FSDP (on a GPU machine), FSDP1 and every option that cannot work on a sharded model is named up front,
    all at once, each with what to do instead."""
    from finetuner.config import TrainingConfig
    from finetuner.training.callbacks import BestModelCheckpoint
    from finetuner.validation.launcher import launcher_problems

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = TrainingConfig(device="cuda", batch_size="auto", mini_batch_size=8, adapter="lora", compile=True)
    problems = launcher_problems(config, [TrainingCheckpoint(), BestModelCheckpoint(monitor="train_loss")])
    text = "\n".join(problems)
    for fragment in (
        "FSDP version 1; finetuner supports FSDP2: set fsdp_version: 2",
        "adapter='lora' does not work on a sharded model",
        "batch_size='auto' does not work on a sharded model",
        "mini_batch_size=8 does not work on a sharded model",
        "compile=True does not work on a sharded model",
        "callbacks[1] is a BestModelCheckpoint",
    ):
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    assert len(problems) == 6
    monkeypatch.setenv("FSDP_VERSION", "2")
    assert launcher_problems(TrainingConfig(device="cuda", batch_size=32), [TrainingCheckpoint()]) == []
