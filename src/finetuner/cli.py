"""The ``finetuner`` command (also ``python -m finetuner``): fit, encode, evaluate, mine, export, merge,
truncate, report, list-models, demo.

Under ``accelerate launch -m finetuner fit ...`` or ``torchrun --nproc_per_node N -m finetuner fit ...`` the same
command trains on every process (and on every machine with ``torchrun --nnodes``); process 0 alone prints the metrics
and writes the artifact, and every process exits with status 0 when the run succeeds.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from finetuner.cli_args import add_csv_options, csv_options_from, freeze_arg, int_or_all, int_or_auto, json_object
from finetuner.config import IMAGE_ERROR_POLICIES, SAMPLERS
from finetuner.errors import FinetunerError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetuner", description="Fine-tune embedding models for search, locally."
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also show the run's log (INFO messages) on stderr"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="fine-tune a model and save the artifact")
    fit.add_argument("--model", required=True, help="alias, Hugging Face id or local folder")
    fit.add_argument(
        "--train-data",
        required=True,
        help="CSV file: item,label; pairs; anchor,positive,negative_1..; a,b,score. Without labels (--loss SimCSE, "
        "SimCLR): a .txt file of texts, a one-column CSV file, or (SimCLR) a folder of images",
    )
    fit.add_argument("--eval-data", help="CSV file to measure retrieval before and after")
    fit.add_argument("--output", default="artifacts", help="where the artifact folder is written")
    fit.add_argument("--epochs", type=int, default=5)
    fit.add_argument("--learning-rate", type=float)
    fit.add_argument("--head-learning-rate", type=float,
                     help="learning rate of the projection heads --output-dim adds (default: the model's)")
    fit.add_argument("--batch-size", type=int_or_auto, help="an int >= 2, or auto: the largest that fits in memory")
    fit.add_argument(
        "--loss",
        default="auto",
        help="a loss name; auto: by the data (labelled: TripletMarginLoss, pairs and triplets: InfoNCELoss, "
        "scored pairs: CoSENTLoss, text-image: CLIPLoss)",
    )
    fit.add_argument("--loss-options", type=json_object)
    fit.add_argument("--miner")
    fit.add_argument("--miner-options", type=json_object)
    fit.add_argument("--optimizer", default="Adam")
    fit.add_argument("--optimizer-options", type=json_object)
    fit.add_argument("--scheduler")
    fit.add_argument("--scheduler-options", type=json_object)
    fit.add_argument("--output-dim", type=int)
    fit.add_argument("--freeze", type=freeze_arg, default=False, help="true, false, or N trainable last layers")
    fit.add_argument("--device", default="auto")
    fit.add_argument("--precision", default="auto", choices=["auto", "no", "fp16", "bf16"])
    fit.add_argument(
        "--num-workers", type=int_or_auto, default="auto", help="DataLoader workers; auto: 0 on the CPU, <= 8 on a GPU"
    )
    fit.add_argument(  # None: fit's own default (4; 2 for the two views of SimCSE and SimCLR)
        "--num-items-per-class", type=int, help="items of each class in a batch with the class sampler (default 4)"
    )
    fit.add_argument(
        "--sampler",
        default="auto",
        choices=SAMPLERS,
        help="class: num-items-per-class items of each class per batch; random; length: text pairs of similar "
        "length together; auto: class, or random for losses that learn class centres",
    )
    fit.add_argument("--val-split", type=float, default=0.0)
    fit.add_argument("--seed", type=int)
    fit.add_argument("--run-name")
    fit.add_argument("--experiment-name")
    fit.add_argument("--model-options", type=json_object)
    fit.add_argument("--adapter", choices=["lora"], help="train a LoRA adapter (pip install 'finetuner[peft]')")
    fit.add_argument("--adapter-options", type=json_object, help='e.g. \'{"r": 16, "alpha": 32, "merge": true}\'')
    fit.add_argument("--to-onnx", action="store_true")
    fit.add_argument("--resume-from", help="continue a killed or interrupted run: its name or checkpoint folder")
    fit.add_argument("--save-every-n-steps", type=int, help="also checkpoint every N steps (always: each epoch)")
    fit.add_argument(
        "--streaming", action="store_true", default=None,
        help="read --train-data (.csv .jsonl .parquet) memory-mapped, batch by batch: for data larger than memory",
    )  # fmt: skip
    fit.add_argument(
        "--validate-rows", type=int_or_all, help="streaming: rows checked up front (N first + N random, or all)"
    )
    fit.add_argument(
        "--on-bad-row", choices=["fail", "skip"], help="streaming: a bad row met in the index pass fails or is left out"
    )
    fit.add_argument(
        "--prefetch-images",
        action="store_true",
        help="fetch every http(s) image into the disk cache before training (failures listed by item up front)",
    )
    fit.add_argument(
        "--on-image-error",
        choices=IMAGE_ERROR_POLICIES,
        default="fail",
        help="an image that cannot be fetched: fail (stop before training, listing them) or skip the item (the "
        "count is reported, the run's log names each)",
    )
    add_csv_options(fit)

    enc = sub.add_parser("encode", help="embed items with a tuned (or pretrained) model into a .npy file")
    enc.add_argument("--model", required=True, help="artifact folder, run name, alias or hub id")
    enc.add_argument("--select-model", help="clip-text or clip-vision for a CLIP artifact")
    enc.add_argument(
        "--data",
        required=True,
        help="a .csv file, read as fit reads data (header and layout detected; every row's item is embedded, e.g. "
        "the text of text,label rows, one vector per row), or any other file with one item a line",
    )
    enc.add_argument("--output", required=True, help="the .npy file to write")
    enc.add_argument("--batch-size", type=int, default=32)
    add_csv_options(enc)
    enc.add_argument("--role", choices=["query", "document"], help="put the model's prompt for this role first")
    enc.add_argument("--dim", type=int, help="keep the first N dimensions (a model trained with matryoshka_dims)")

    ev = sub.add_parser("evaluate", help="retrieval metrics of a model on labelled data")
    ev.add_argument("--model", required=True, help="artifact folder, run name, alias or hub id")
    ev.add_argument("--select-model")
    ev.add_argument("--query-data", required=True)
    ev.add_argument("--index-data")
    ev.add_argument("--limit", type=int, default=20)
    add_csv_options(ev)

    models = sub.add_parser(
        "list-models", help="the model aliases, and whether each loads here without a download (package, cached)"
    )
    models.add_argument("--local", action="store_true", help="only the models available on this machine")
    from finetuner.cli_mine import add_mine_command

    add_mine_command(sub, add_csv_options)
    exp = sub.add_parser("export", help="write model.onnx into an artifact's model folder(s), checked against PyTorch")
    exp.add_argument("artifact", help="artifact folder or run name")
    exp.add_argument("--select-model", help="export only this model (clip-text or clip-vision for CLIP)")
    exp.add_argument("--opset", type=int, default=17)
    mrg = sub.add_parser("merge", help="write a copy of an adapter artifact with the adapters merged into the weights")
    mrg.add_argument("artifact", help="artifact folder, run name or model folder")
    mrg.add_argument("--output", required=True, help="the new folder")
    trn = sub.add_parser("truncate", help="set a saved model's default embedding size (Matryoshka: truncate_dim)")
    trn.add_argument("artifact", help="artifact folder, run name or model folder")
    trn.add_argument("--dim", type=int, required=True, help="the number of dimensions encode returns; 0 removes it")
    trn.add_argument("--select-model", help="only this model (clip-text or clip-vision for CLIP)")
    rep = sub.add_parser("report", help="rebuild a run's report.html and open it")
    rep.add_argument("run", help="run name, run folder or artifact folder")
    rep.add_argument("--no-open", action="store_true", help="only print the page's path")
    demo = sub.add_parser("demo", help="an offline demo fine-tune on bundled real data")
    demo.add_argument("task", choices=["text", "image", "clip"], nargs="?", default="text")
    demo.add_argument("--epochs", type=int)
    demo.add_argument("--output", default="artifacts")
    return parser


def _load_any(ref: str, select_model: str | None) -> Any:
    """A tuned model (artifact or model folder, or a run's name, as ``get_model`` takes them) or a pretrained one
    (alias, hub id, Hugging Face folder)."""
    import finetuner
    from finetuner import artifacts
    from finetuner.runs import get_run
    from finetuner.safety import is_plain_name

    path = Path(ref).expanduser()
    if artifacts.is_artifact(path) or (path / artifacts.MODEL_METADATA_FILE).is_file():
        return finetuner.get_model(path, select_model=select_model)
    if not path.exists() and is_plain_name(ref):
        try:
            run = get_run(ref)
        except FinetunerError:
            run = None
        if run is not None:
            if not artifacts.is_artifact(run.directory):
                status = run.status().get("status")
                raise FinetunerError(f"run {ref!r} ({run.directory}) has no saved model yet; its status is {status}")
            return finetuner.get_model(run.directory, select_model=select_model)
    return finetuner.build_model(ref, select_model=select_model)


def _read_items(path: str, csv_options: Any) -> list[Any]:
    """The items to embed: a ``.csv`` read as ``fit`` reads data (header and layout detected, every row kept; each
    row's item, e.g. the text of ``text,label`` rows), any other file one item per non-blank line."""
    from finetuner.data.readers import load_data

    p = Path(path).expanduser()
    if not p.is_file():
        raise FinetunerError(f"--data {path}: no such file")
    if p.suffix.lower() != ".csv":
        return [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    docs = load_data(p, csv_options, name="--data")
    paired = [i for i, d in enumerate(docs) if len(d.chunks) > 1]
    if paired:
        raise FinetunerError(
            f"--data {path}: the rows were read as pairs (row {paired[0] + 1} holds two items), so it is unclear "
            "which column to embed; give --csv-labeled to embed the first column of each row, or a .txt file "
            "with one item a line"
        )
    return [d.content if d.content is not None else d.uri for d in docs]


def _is_main_process() -> bool:
    """Whether this is the first process of a (possibly multi-process, multi-machine) run: global rank 0."""
    import os

    return int(os.environ.get("RANK", "0") or 0) == 0


def _run(args: argparse.Namespace) -> int:
    import finetuner

    if args.command == "fit":
        keys = (  # noqa: SIM905 - one readable string of fit's option names
            "epochs learning_rate head_learning_rate batch_size loss loss_options miner miner_options optimizer "
            "optimizer_options scheduler scheduler_options output_dim freeze device precision num_workers "
            "num_items_per_class sampler val_split seed run_name experiment_name model_options to_onnx resume_from "
            "prefetch_images on_image_error adapter adapter_options streaming validate_rows on_bad_row"
        ).split()
        options = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
        if args.save_every_n_steps is not None:
            from finetuner.training import TrainingCheckpoint

            options["callbacks"] = [TrainingCheckpoint(save_every_n_steps=args.save_every_n_steps)]
        run = finetuner.fit(
            args.model, args.train_data, args.eval_data, csv_options=csv_options_from(args), **options
        )
        if _is_main_process():  # under torchrun / accelerate launch, rank 0 alone reports and saves
            if run.metrics():
                run.display_metrics()
            print(f"artifact: {run.save_artifact(args.output)}")
    elif args.command == "encode":
        import numpy as np

        items = _read_items(args.data, csv_options_from(args))
        model = _load_any(args.model, args.select_model)
        vectors = finetuner.encode(model, items, batch_size=args.batch_size, role=args.role, dim=args.dim)
        np.save(args.output, vectors)
        print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings to {args.output}")
    elif args.command == "evaluate":
        from finetuner.report.table import metrics_table

        metrics = finetuner.evaluate(
            _load_any(args.model, args.select_model),
            args.query_data,
            args.index_data,
            limit=args.limit,
            csv_options=csv_options_from(args),
        )
        print(metrics_table({"metrics": metrics}))
    elif args.command == "merge":
        from finetuner.export.merge import merge_artifact
        from finetuner.runs import resolve_folder

        print(f"wrote {merge_artifact(resolve_folder(args.artifact), args.output)}")
    elif args.command == "truncate":
        from finetuner.export.truncate import set_truncate_dim
        from finetuner.runs import resolve_folder

        for folder in set_truncate_dim(resolve_folder(args.artifact), args.dim or None, args.select_model):
            print(f"{folder}: truncate_dim={args.dim or None}")
    elif args.command in ("export", "report"):
        from finetuner.runs import resolve_folder

        root = resolve_folder(args.run if args.command == "report" else args.artifact)
        if args.command == "export":
            from finetuner.export.onnx import export_artifact

            for path in export_artifact(root, args.select_model, opset=args.opset):
                print(f"wrote {path}")
        else:
            from finetuner.report import open_report, write_report

            page = write_report(root)
            print(page)
            if not args.no_open:
                open_report(page)
    elif args.command == "mine":
        from finetuner.cli_mine import run_mine

        corpus = _read_items(args.corpus) if args.corpus else None
        print(run_mine(args, _load_any(args.model, None), corpus, csv_options_from(args)))
    elif args.command == "list-models":
        finetuner.describe_models(local_only=args.local)
    elif args.command == "demo":
        import importlib

        module = importlib.import_module(f"finetuner.demos.{args.task}")
        extra = {"epochs": args.epochs} if args.epochs else {}
        module.run(output=args.output, **extra)
    return 0


@contextlib.contextmanager
def _console_logging(verbose: bool) -> Iterator[None]:
    """The command's logging: the ``finetuner`` logger's warnings and errors on stderr (its INFO messages too with
    ``--verbose``); each run's full log is in its ``logs.txt`` either way. Undone when the command returns."""
    log = logging.getLogger("finetuner")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = log.level
    log.addHandler(handler)
    if verbose:
        log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``finetuner`` command; returns the exit status.

    Example:
        >>> main(['list-models'])  # doctest: +SKIP
        0
    """
    args = _parser().parse_args(argv)
    with _console_logging(args.verbose):
        try:
            return _run(args)
        except FinetunerError as exc:
            print(f"finetuner: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:  # the first Ctrl-C during fit saved a checkpoint; say how to resume
            print(f"finetuner: {exc or 'interrupted'}", file=sys.stderr)
            return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
