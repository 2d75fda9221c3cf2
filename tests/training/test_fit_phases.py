"""fit's phases on their own (check -> plan -> build -> train -> save) and its logging, which the caller owns."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from tests.conftest import make_texts

import finetuner
from finetuner import artifacts
from finetuner.data.shapes import PairData
from finetuner.errors import ConfigError
from finetuner.training.build import build
from finetuner.training.check import CheckedFit, FitOptions, check
from finetuner.training.fit import open_run, save, train_and_evaluate
from finetuner.training.plan import plan

PAIRS = FitOptions(csv_options=finetuner.CSVOptions(is_labeled=False))


@pytest.fixture
def no_model_loading(monkeypatch):
    monkeypatch.setattr("finetuner.training.build.build_model", lambda *a, **k: pytest.fail("a model was loaded"))


def _pairs(n: int) -> list[tuple[str, str]]:
    texts = make_texts(n)
    return [(a, b) for (a, _), (b, _) in zip(texts[0::2], texts[1::2])]


def test_check_resolves_the_loss_and_the_batch_size_once_and_freezes_them(no_model_loading):
    checked = check("bert-base-en", make_texts(3), None, {"device": "cpu"}, FitOptions())
    config = checked.config
    assert (config.loss, config.batch_size) == ("TripletMarginLoss", 12)  # 'auto'; None: 32 on a CPU, <= 12 items
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.loss = "ArcFaceLoss"  # type: ignore[misc]
    pairs = check("bert-base-en", _pairs(4), None, {"device": "cpu", "batch_size": 8}, PAIRS).config
    assert (pairs.loss, pairs.batch_size) == ("InfoNCELoss", 8)
    assert check("bert-base-en", _pairs(4), None, {"device": "cpu", "batch_size": "auto"}, PAIRS).config.batch_size == (
        "auto"  # measured on the model, in the build phase
    )
    split = check("bert-base-en", make_texts(5), None, {"device": "cpu", "val_split": 0.2}, FitOptions())
    assert (len(split.train), len(split.eval)) == (16, 4)  # one of each class's 5 held out
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        check("bert-base-en", make_texts(3), None, {"epoch": 2}, FitOptions())


def test_plan_decides_the_sampler_and_the_evaluations_without_a_model(no_model_loading):
    texts = make_texts(3)
    labelled = plan(check("bert-base-en", texts, texts, {"device": "cpu"}, FitOptions()))
    assert (labelled.task, labelled.sampler, labelled.items_per_class) == ("labelled", "class", 4)
    assert [prefix for prefix, _ in labelled.evaluations] == [""]
    arcface = plan(check("bert-base-en", texts, None, {"device": "cpu", "loss": "ArcFaceLoss"}, FitOptions()))
    assert (arcface.sampler, arcface.evaluations) == ("random", [])  # class weights: any batch has a use
    pairs = plan(check("bert-base-en", _pairs(4), None, {"device": "cpu"}, PAIRS))
    assert (pairs.task, pairs.sampler, pairs.items_per_class, len(pairs.train)) == ("pairs", "class", 2, 16)
    clip_data = PairData(["a red square", "a blue circle", "a bar"], ["r.png", "b.png", "c.png"], "text", "image",
                         ["0", "1", "2"])
    config = check("bert-base-en", texts, None, {"device": "cpu"}, FitOptions()).config
    clip_config = dataclasses.replace(config, loss="CLIPLoss", batch_size=3)
    clip = plan(CheckedFit("clip-base-en", clip_config, clip_data, clip_data))
    assert (clip.task, clip.sampler) == ("clip", "pairs")  # the images are not read: no model, no files
    assert [prefix for prefix, _ in clip.evaluations] == ["", "image_to_text/"]
    assert clip.summary(3) == "3 text-image pairs, batch size 3"


def test_build_train_and_save_one_run_phase_by_phase(tiny_bert):
    settings = {"device": "cpu", "epochs": 1, "batch_size": 8, "seed": 0, "run_name": "phase-by-phase"}
    checked = check(tiny_bert, make_texts(4), make_texts(2, seed=5), settings, FitOptions(verbose=False))
    fit_plan = plan(checked)
    built = build(checked, fit_plan)
    _, labels = next(iter(built.loader))
    assert labels.shape == (8,) and type(built.loss).__name__ == "TripletMarginLoss"
    assert built.fingerprint["batch_size"] == 8 and built.fingerprint["loss"] == "TripletMarginLoss"
    run = open_run(built.accelerator, built.config, None)
    assert (run.config["loss"], run.config["batch_size"]) == ("TripletMarginLoss", 8)  # config.yml: resolved
    trained = train_and_evaluate(checked, fit_plan, built, run, checked.callbacks)
    assert sorted(trained.metrics) == ["after", "before"] and len(trained.state.history) == 1
    assert trained.state.batches_trained == len(built.loader)
    save(run, trained)
    assert artifacts.is_artifact(run.directory)
    assert tuple(artifacts.read_run_metadata(run.directory)) == artifacts.RUN_METADATA_KEYS
    assert finetuner.get_model(run.directory).output_dim == built.model.output_dim


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_fit_logs_to_its_file_and_leaves_the_callers_logging_as_it_was(tiny_bert):
    log = logging.getLogger("finetuner")
    before = (log.level, log.propagate, list(log.handlers))
    caller = _Records()  # the caller's own handler, at the root, which shows warnings (the root's default level)
    logging.getLogger().addHandler(caller)
    try:
        run = finetuner.fit(tiny_bert, make_texts(3), make_texts(2, seed=5), epochs=1, device="cpu", verbose=False)
        assert (log.level, log.propagate, list(log.handlers)) == before  # no global change
        assert not [r for r in caller.records if r.name == "finetuner" and r.levelno < logging.WARNING]
        assert " INFO run " in run.logs() and " INFO before: " in run.logs()  # the run's file has its messages
        log.setLevel(logging.INFO)  # a caller who wants them sees them
        finetuner.fit(tiny_bert, make_texts(3), epochs=1, device="cpu", verbose=False)
        assert any(r.name == "finetuner" and r.getMessage().startswith("run ") for r in caller.records)
    finally:
        logging.getLogger().removeHandler(caller)
        log.setLevel(before[0])


def test_the_command_shows_warnings_and_with_verbose_the_log(capsys):
    from finetuner.cli import _console_logging

    log = logging.getLogger("finetuner")
    before = (log.level, list(log.handlers))
    with _console_logging(verbose=False):
        log.info("hidden")
        log.warning("shown")
    with _console_logging(verbose=True):
        log.info("now shown")
    assert capsys.readouterr().err.splitlines() == ["shown", "now shown"]
    assert (log.level, list(log.handlers)) == before
