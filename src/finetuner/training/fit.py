"""``fit`` end to end, as five phases: check -> plan -> build -> train -> save.

1. :func:`~finetuner.training.check.check`: every option and item checked (all problems in one error), the settings
   resolved once (loss, batch size) and frozen;
2. :func:`~finetuner.training.plan.plan`: how the run trains and evaluates, decided from the data and settings;
3. :func:`~finetuner.training.build.build`: the model, loss, loader and embedder (``batch_size='auto'`` measured);
4. :func:`train_and_evaluate`: retrieval metrics before, the training loop, metrics after;
5. :func:`save`: the artifact (:mod:`finetuner.artifacts`) and the report.

The run's folder is opened between 3 and 4; its log file records phases 4 and 5.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetuner import artifacts
from finetuner.data.readers import CSVOptions
from finetuner.evaluation.dimensions import evaluate_with_dimensions
from finetuner.evaluation.model_eval import evaluate_all
from finetuner.losses.matryoshka import matryoshka_dims
from finetuner.models.adapters import merge_adapters
from finetuner.report.dimensions import dimension_table
from finetuner.report.table import metrics_table
from finetuner.run_lock import hold_run
from finetuner.runs import Run, new_run_name, runs_root
from finetuner.training.build import BuiltFit, build
from finetuner.training.callbacks import EvaluationCallback
from finetuner.training.check import CheckedFit, FitOptions, check
from finetuner.training.checkpoint import TrainingInterrupted, deferred_interrupts
from finetuner.training.loop import Callback, TrainState, train
from finetuner.training.plan import FitPlan, plan
from finetuner.training.resume import checkpoint_callbacks, finish_checkpoints, resume_hint
from finetuner.training.run_log import run_log
from finetuner.training.sharding import gather_full_model, meta_copy, uses_fsdp
from finetuner.training.zero import gather_full_weights, skeleton_copy, uses_deepspeed

logger = logging.getLogger("finetuner")


@dataclass
class Trained:
    """What the train phase produced: the bare tuned model, the loop's final state, metrics and examples."""

    model: Any
    state: TrainState
    metrics: dict[str, dict[str, float]]
    examples: dict[str, Any]


def run_fit(
    model: Any,
    train_data: Any,
    eval_data: Any = None,
    *,
    callbacks: Sequence[Callback] | None = None,
    csv_options: CSVOptions | None = None,
    model_options: dict[str, Any] | None = None,
    to_onnx: bool = False,
    verbose: bool = True,
    eval_batch_size: int = 64,
    limit: int = 20,
    resume_from: str | Path | None = None,
    description: str | None = None,
    **settings: Any,
) -> Run:
    """Everything ``finetuner.fit`` does (see there); the settings are :class:`~finetuner.config.TrainingConfig`'s
    fields.

    Every option and every data item is checked before a model is loaded (:mod:`finetuner.validation`); all
    problems come in one error. ``resume_from`` (a run name, run folder or checkpoint folder) continues a run
    that was killed or interrupted from its last checkpoint, given the same arguments.

    Nothing is printed to stdout: ``run.display_metrics()`` prints the before/after table, which the run's log
    (``run.logs()``) and the ``finetuner`` logger (at INFO) also carry. ``verbose=False`` hides the progress bars.

    Example:
        >>> run = run_fit('all-MiniLM-L6-v2', [('a', 'x'), ('b', 'x'), ('c', 'y'), ('d', 'y')])  # doctest: +SKIP
    """
    options = FitOptions(
        callbacks=callbacks,
        csv_options=csv_options,
        model_options=model_options,
        to_onnx=to_onnx,
        verbose=verbose,
        eval_batch_size=eval_batch_size,
        limit=limit,
        resume_from=resume_from,
        description=description,
    )
    checked = check(model, train_data, eval_data, settings, options)
    fit_plan = plan(checked)
    built = build(checked, fit_plan)
    run = open_run(built.accelerator, built.config, checked.resumed_run)
    callbacks = checkpoint_callbacks(checked.callbacks, run, built.fingerprint, checked.checkpoint)
    main = built.accelerator.is_main_process
    with hold_run(run.directory) if main else contextlib.nullcontext(), run_log(
        run.directory / artifacts.LOG_FILE if main else None
    ):
        if main:
            run.set_status("STARTED")
        try:
            summary = fit_plan.summary(int(built.config.batch_size))  # type: ignore[arg-type]
            logger.info("run %s: %s, seed=%s", run.name, summary, built.config.seed)
            for line in checked.skipped:  # on_image_error='skip': every item left out, by name
                logger.warning("skipped %s", line)
            trained = train_and_evaluate(checked, fit_plan, built, run, callbacks)
            if built.config.adapter_options.get("merge"):  # save merged weights, not the adapter alone
                trained.model = merge_adapters(trained.model)
            if trained.metrics:  # the run's log has the table; run.display_metrics() prints it
                logger.info("retrieval metrics:\n%s", metrics_table(trained.metrics))
                if trained.metrics.get("by_dimension"):
                    logger.info("by embedding size:\n%s", dimension_table(trained.metrics["by_dimension"]))
            if main:
                save(run, trained, to_onnx, description)
            built.accelerator.wait_for_everyone()
            if main:
                run.set_status("FINISHED")
            finish_checkpoints(callbacks)
        except BaseException as exc:
            _record_failure(run, exc, main)
            raise
    return run


def open_run(accelerator: Any, config: Any, resumed: Path | None) -> Run:
    """Rank 0 creates the run folder and records the resolved settings (or reopens a resumed run); the other ranks
    get the same run.

    Example:
        >>> run = open_run(accelerator, built.config, None)  # doctest: +SKIP
    """
    if resumed is not None:
        return Run(resumed)
    name = config.run_name or new_run_name()
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        name = broadcast_object_list([name])[0]
    if accelerator.is_main_process:
        run = Run.create(name, config.experiment_name, config.to_dict())
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        run = Run(runs_root() / (config.experiment_name or "default") / name)
    return run


def train_and_evaluate(
    checked: CheckedFit, fit_plan: FitPlan, built: BuiltFit, run: Run, callbacks: Sequence[Callback]
) -> Trained:
    """Retrieval metrics before (kept from before an interruption when resuming), the loop, metrics after.

    Every rank embeds a share of the evaluation data and all compute the same figures; rank 0 writes the "before"
    figures at once, so an interrupted run keeps them.

    Example:
        >>> trained = train_and_evaluate(checked, fit_plan, built, run, callbacks)  # doctest: +SKIP
        >>> sorted(trained.metrics)  # doctest: +SKIP
        ['after', 'before']
    """
    accelerator = built.accelerator
    # the model is sharded (FSDP) or handed to DeepSpeed's engine when train prepares it; keep a weightless copy
    deepspeed = uses_deepspeed(accelerator)
    skeleton = None
    if deepspeed:
        skeleton = skeleton_copy(built.model, keep_frozen=accelerator.is_main_process)
    elif uses_fsdp(accelerator):
        skeleton = meta_copy(built.model)
    sharding = skeleton is not None
    if not sharding:  # each rank gets its shards only (a model larger than one GPU never moves whole)
        built.model.to(accelerator.device)
    metrics: dict[str, dict[str, float]] = {}
    examples: dict[str, Any] = {}
    measure = measurement(fit_plan, built, checked.callbacks, checked.options.limit)
    dims = matryoshka_dims(built.loss) if fit_plan.evaluations else []
    by_dim: dict[int, dict[str, Any]] = {}  # a Matryoshka run: {size: {stage: metrics}}
    if dims:  # the same embedding of the evaluation data, measured at each trained size too
        measured: list[dict[int, dict[str, float]]] = []

        def measure(model: Any) -> tuple[dict[str, float], list[dict[str, Any]]]:
            values, shown, per_dim = evaluate_with_dimensions(
                fit_plan.evaluations, built.embed, checked.options.limit, dims
            )
            measured.append(per_dim)
            return values, shown

    if checked.checkpoint is not None and run.metrics().get("before"):  # measured before the interruption
        metrics["before"] = run.metrics()["before"]
        examples["before"] = run.example_results().get("before", [])
        by_dim = dict(run.metrics().get("by_dimension") or {})
    elif measure is not None:

        def measure_before(model: Any) -> None:
            metrics["before"], examples["before"] = measure(model)
            if dims:
                by_dim.update({d: {"before": values} for d, values in measured[-1].items()})
                metrics["by_dimension"] = by_dim  # type: ignore[assignment]
            logger.info("before: %s", metrics["before"])
            if accelerator.is_main_process:
                artifacts.write_results(run.directory, metrics, examples)

        if sharding:  # measured on the sharded model, once train has prepared it
            callbacks = [_AtTrainBegin(measure_before), *callbacks]
        else:
            measure_before(built.model)
    started = time.perf_counter()
    with deferred_interrupts():  # the first Ctrl-C saves a checkpoint after the current step
        state = train(
            built.model,
            built.loss,
            built.loader,
            built.config,
            miner=built.miner,
            callbacks=callbacks,
            accelerator=accelerator,
            progress=checked.options.verbose,
        )
    model = accelerator.unwrap_model(state.model)
    logger.info("trained %d epochs in %.1f s", len(state.history), time.perf_counter() - started)
    if measure is not None:
        metrics["after"], examples["after"] = measure(model)
        if dims:
            for d, values in measured[-1].items():
                by_dim.setdefault(d, {})["after"] = values
            metrics["by_dimension"] = by_dim  # type: ignore[assignment]
        logger.info("after: %s", metrics["after"])
    if skeleton is not None:  # the full weights gathered onto rank 0, which saves the artifact
        gather = gather_full_weights if deepspeed else gather_full_model
        model = gather(model, skeleton, accelerator.process_index) or model
    return Trained(model, state, metrics, examples)


class _AtTrainBegin(Callback):
    """Calls ``action(model)`` when training begins (after accelerate has prepared the model)."""

    def __init__(self, action: Callable[[Any], None]) -> None:
        self.action = action

    def on_train_begin(self, state: TrainState) -> None:
        self.action(state.model)


def measurement(
    fit_plan: FitPlan, built: BuiltFit, callbacks: Sequence[Callback], limit: int
) -> Callable[[Any], tuple[dict[str, float], list[dict[str, Any]]]] | None:
    """How the run's metrics before and after are measured: on the evaluation data (``eval_data`` or
    ``val_split``), else by the first :class:`~finetuner.callback.EvaluationCallback` (as Finetuner did), else not.

    Example:
        >>> measure = measurement(fit_plan, built, callbacks, 20)  # doctest: +SKIP
        >>> metrics, examples = measure(built.model)  # doctest: +SKIP
    """
    if fit_plan.evaluations:
        return lambda model: evaluate_all(fit_plan.evaluations, built.embed, limit)  # built.embed: the tuned model
    first = next((cb for cb in callbacks if isinstance(cb, EvaluationCallback)), None)
    return first.measure if first is not None else None


def save(run: Run, trained: Trained, to_onnx: bool = False, description: str | None = None) -> None:
    """Write the run's artifact into its folder: the models and input map, metrics, examples, the run's metadata
    (with the run's ``description``, when it has one), ONNX files (``to_onnx``) and ``report.html``.

    Example:
        >>> save(run, trained)  # doctest: +SKIP
    """
    folders = artifacts.save_models(run.directory, trained.model)
    artifacts.write_results(run.directory, trained.metrics, trained.examples)
    artifacts.write_run_metadata(run.directory, run.name, trained.state.history, description)
    if to_onnx:
        from finetuner.export.onnx import export_onnx

        for name, tower in artifacts.model_towers(trained.model).items():
            export_onnx(tower, folders[name])
    from finetuner.report import write_report_safely

    write_report_safely(run.directory)


def _record_failure(run: Run, exc: BaseException, main: bool) -> None:
    """The run's status and log say what went wrong and, with a checkpoint, how to resume."""
    hint = resume_hint(run, exc)
    if main:
        run.set_status("FAILED", f"{type(exc).__name__}: {exc}" + (f"\n{hint}" if hint else ""))
    logger.exception("run %s failed%s", run.name, f"; {hint}" if hint else "")
    if hint and hasattr(exc, "add_note") and not isinstance(exc, TrainingInterrupted):
        exc.add_note(hint)
