"""``finetuner.synthesize``: training data made from a corpus on this machine, with a generation model you name.

For every document of the corpus a Hugging Face model (a doc2query-style seq2seq model, or a causal language model
prompted for a query) writes ``num_queries`` queries; each (query, document) row goes into ``synthesized.csv`` in the
run's folder, which ``fit`` reads as pairs (``run.train_data``). The rows are written batch by batch, each batch
seeded: a run stopped midway (Ctrl-C, a crash) continues where it stopped when ``synthesize`` is called again with the
same ``run_name`` and arguments, and ends with the same file an uninterrupted run writes.

With a ``relation_miner`` (Finetuner's ``SynthesisModels.relation_miner``: an embedding model), the pairs then get
``num_relations`` hard negatives each, mined by :func:`finetuner.mine_hard_negatives` from the corpus (the documents
closest to the query that are not its own, with the usual margin against unlabelled positives), and
``synthesized-triplets.csv`` (``query, positive, negative_1..n``) becomes the run's training data. A pair for which
too few candidates pass the guards is left out, with a warning that counts them.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from finetuner import artifacts
from finetuner.errors import ArtifactError, ConfigError, DataError, InputTypeError
from finetuner.fileio import read_yaml, write_yaml
from finetuner.run_views import SYNTHESIS, SYNTHESIS_FILE, TRIPLETS_FILE
from finetuner.runs import Run, new_run_name, runs_root

logger = logging.getLogger("finetuner")

STATE_FILE = "synthesis-state.yml"
HEADER = ("query", "document")
#: settings a continued run may change (the rest must match the run it continues)
_MAY_CHANGE = ("description", "device")


@dataclass
class SynthesisModels:
    """The models of a synthesis run (Finetuner's ``SynthesisModels``, plus the ``generator`` a local run needs).

    Args:
        relation_miner: an embedding model (an alias, hub id or folder) to mine hard negatives with; one name.
        cross_encoder: Finetuner scored pairs with a cross-encoder on its cloud; not available here.
        generator: the Hugging Face generation model (hub id or folder) that writes the queries.

    Example:
        >>> SynthesisModels(generator='doc2query/msmarco-t5-small-v1').generator
        'doc2query/msmarco-t5-small-v1'
    """

    relation_miner: str | list[str] | None = None
    cross_encoder: str | None = None
    generator: str | None = None


#: Finetuner's presets ran on Jina AI Cloud; they name no generator, so synthesize explains what to give instead
synthesis_model_en = SynthesisModels(relation_miner="sbert-base-en", cross_encoder="crossencoder-base-en")
synthesis_model_multi = SynthesisModels(relation_miner="distiluse-base-multi", cross_encoder="crossencoder-base-ml")


def synthesize(
    query_data: Any = None,
    corpus_data: Any = None,
    models: SynthesisModels | str | None = None,
    num_relations: int = 10,
    run_name: str | None = None,
    description: str | None = None,
    experiment_name: str | None = None,
    device: str = "auto",
    num_workers: int = 0,
    csv_options: Any = None,
    public: bool = False,
    *,
    num_queries: int = 1,
    batch_size: int = 16,
    max_new_tokens: int = 32,
    max_input_length: int = 512,
    prompt: str | None = None,
    generation_options: dict[str, Any] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Run:
    """Write (query, document) training pairs for ``corpus_data`` with a generation model (see the module).

    Args:
        query_data: example queries (texts) shown to a causal language model in its prompt; optional.
        corpus_data: the documents: a list of texts, a DocumentArray of text Documents, a ``.txt`` file (one
            document a line) or a ``.csv`` file with a header (its ``text`` column, or its only column).
        models: ``SynthesisModels(generator=...)``, or the generator's name alone.
        num_relations: hard negatives mined per pair when ``models`` has a ``relation_miner``.
        run_name, experiment_name, description: as for ``fit``; the same ``run_name`` continues a stopped run.
        device: ``'auto'`` (a GPU when there is one), ``'cpu'``, ``'cuda'``...
        num_workers, csv_options: accepted for Finetuner's signature; unused.
        public: no local meaning (warned about and ignored).
        num_queries: queries written per document.
        batch_size: documents per generation batch.
        max_new_tokens, max_input_length: the longest query and the longest document read, in tokens.
        prompt: a causal model's prompt template (``{document}``, ``{examples}``) or a seq2seq model's prefix.
        generation_options: keyword arguments of ``generate`` (default top-k sampling, k=10).
        seed: the seed of batch 0 (batch i uses ``seed + i``).
        progress: show a progress bar.

    Returns:
        The synthesis :class:`~finetuner.runs.Run`; ``run.train_data`` is the path of its CSV.

    Example:
        >>> models = SynthesisModels(generator='doc2query/msmarco-t5-small-v1')
        >>> run = finetuner.synthesize(corpus_data=['Paris is the capital of France.'], models=models)  # doctest: +SKIP
        >>> run2 = finetuner.fit('bert-base-en', train_data=run.train_data)  # doctest: +SKIP
    """
    generator_name = _generator(models)
    corpus = read_texts(corpus_data, "corpus_data")
    examples = read_texts(query_data, "query_data") if query_data is not None else []
    for name, value, least in (
        ("num_queries", num_queries, 1),
        ("batch_size", batch_size, 1),
        ("max_new_tokens", max_new_tokens, 1),
        ("max_input_length", max_input_length, 1),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{name} must be an int >= {least}; received {value!r}")
    if public:
        warnings.warn("public=True has no meaning here: the data stays on this machine. Ignored.", stacklevel=2)
    device = _device(device)
    config = {
        "task": SYNTHESIS,
        "generator": generator_name,
        "num_queries": num_queries,
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        "max_input_length": max_input_length,
        "prompt": prompt,
        "generation_options": dict(generation_options or {}),
        "seed": seed,
        "examples": _digest(examples),
        "corpus_size": len(corpus),
        "corpus": _digest(corpus),
        "description": description,
        "device": device,
    }
    miner = _relation_miner(models)
    if miner is not None:
        if isinstance(num_relations, bool) or not isinstance(num_relations, int) or num_relations < 1:
            raise ConfigError(f"num_relations must be an int >= 1; received {num_relations!r}")
        config.update(relation_miner=miner, num_relations=num_relations)
    folder = runs_root() / (experiment_name or "default") / (run_name or new_run_name())
    resume = _resume_point(folder, config)  # None for a new run; a mismatch is refused before the model loads
    from finetuner.synthesis.generation import QueryGenerator

    generator = QueryGenerator(
        generator_name, device, max_new_tokens, max_input_length, prompt, examples, dict(generation_options or {})
    )
    run, (done, offset) = (
        (_create(folder, experiment_name, config), (0, 0)) if resume is None else (Run(folder), resume)
    )
    _write(run, corpus, generator, num_queries, batch_size, seed, done, offset or _size(run), progress, miner is None)
    if miner is not None:
        _mine(run, miner, corpus, num_relations, progress)
    return run


def _write(
    run: Run,
    corpus: list[str],
    generator: Any,
    num_queries: int,
    batch_size: int,
    seed: int,
    done: int,
    offset: int,
    progress: bool,
    finish: bool = True,
) -> None:
    """Generate from document ``done`` on, appending rows batch by batch; the state names the file's safe length."""
    path, state_path = run.directory / SYNTHESIS_FILE, run.directory / STATE_FILE
    run.set_status("STARTED")
    _log(run, f"synthesis from document {done} of {len(corpus)} with {generator.source}")
    dropped = 0
    try:
        with open(path, "r+b") as raw:
            raw.truncate(offset)  # rows written after the last saved state are written again
        with (
            open(path, "a", encoding="utf-8", newline="") as out,
            tqdm(total=len(corpus), initial=done, disable=not progress, desc="synthesize", unit="doc") as bar,
        ):
            writer = csv.writer(out)
            for start in range(done, len(corpus), batch_size):
                docs = corpus[start : start + batch_size]
                queries = generator.generate(docs, num_queries, seed + start // batch_size)
                for doc, found in zip(docs, queries):
                    kept = list(dict.fromkeys(q for q in found if q))  # no empty or repeated queries
                    dropped += len(found) - len(kept)
                    writer.writerows((q, doc) for q in kept)
                out.flush()
                os.fsync(out.fileno())
                write_yaml(state_path, {"documents_done": start + len(docs), "bytes": path.stat().st_size})
                bar.update(len(docs))
    except BaseException as exc:
        run.set_status(
            "FAILED",
            f"{type(exc).__name__}: {exc}\nrun synthesize again with run_name={run.name!r} (and the same arguments) "
            "to continue",
        )
        _log(run, f"stopped: {type(exc).__name__}: {exc}")
        raise
    _log(run, f"done: {len(corpus)} documents; {dropped} empty or repeated queries left out")
    if finish:
        run.set_status("FINISHED")


def _mine(run: Run, miner: str, corpus: list[str], num_relations: int, progress: bool) -> None:
    """Hard negatives from ``corpus`` for every synthesized pair, written to the run's triplets file (a rerun with
    the same run_name mines again, into a fresh file: the file is written only once the mining has finished)."""
    from finetuner.data.shapes import PairData
    from finetuner.mining import mine_hard_negatives

    _log(run, f"mining {num_relations} hard negatives per pair with {miner}")
    target = run.directory / TRIPLETS_FILE
    partial = target.with_name("synthesized-triplets.partial.csv")  # mine_hard_negatives writes .csv files
    try:
        rows = _pairs_of(run.directory / SYNTHESIS_FILE)
        pairs = PairData([q for q, _ in rows], [d for _, d in rows], "text", "text", [str(i) for i in range(len(rows))])
        mine_hard_negatives(miner, pairs, corpus, num_negatives=num_relations, output=partial, progress=progress)
        os.replace(partial, target)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        run.set_status("FAILED", f"{type(exc).__name__}: {exc}\nrun synthesize again with run_name={run.name!r}")
        _log(run, f"mining stopped: {type(exc).__name__}: {exc}")
        raise
    _log(run, f"hard negatives written to {TRIPLETS_FILE}")
    run.set_status("FINISHED")


def _pairs_of(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = [(row["query"], row["document"]) for row in csv.DictReader(f)]
    if len(rows) < 2:
        raise DataError(f"{path} holds {len(rows)} (query, document) pair(s); mining hard negatives needs at least 2")
    return rows


def read_texts(data: Any, name: str) -> list[str]:
    """The texts of ``data``: a list of str, text Documents, a ``.txt`` file (a text a line) or a ``.csv`` file with a
    header (its ``text`` column, or its only column). Every text must be a non-empty str.

    Example:
        >>> read_texts(['a', 'b'], 'corpus_data')
        ['a', 'b']
        >>> read_texts(['a', ''], 'corpus_data')
        Traceback (most recent call last):
        ...
        finetuner.errors.DataError: corpus_data item 1 is empty; give every document some text
    """
    if isinstance(data, (str, os.PathLike)):
        texts = _read_file(Path(data).expanduser(), name)
    elif isinstance(data, Sequence) or type(data).__module__.startswith("docarray"):
        texts = [getattr(d, "text", d) for d in data]
    else:
        raise InputTypeError(
            f"{name} must be a list of texts, a DocumentArray or a .txt / .csv file; received {type(data).__name__}"
        )
    if not texts:
        raise DataError(f"{name} is empty")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"{name} item {i} is a {type(text).__name__}, not a text")
        if not text.strip():
            raise DataError(f"{name} item {i} is empty; give every document some text")
    return list(texts)


def _read_file(path: Path, name: str) -> list[str]:
    if not path.is_file():
        raise DataError(f"{name}: there is no file {path}")
    if path.suffix.lower() != ".csv":
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0]) if rows else []
    column = "text" if "text" in columns else (columns[0] if len(columns) == 1 else None)
    if column is None:
        raise DataError(
            f"{name}: {path} has columns {columns}; name the documents' column 'text' (or give a list of texts)"
        )
    return [row[column] for row in rows]


def _generator(models: Any) -> str:
    if isinstance(models, str):
        return models
    if not isinstance(models, SynthesisModels):
        raise InputTypeError(
            "models must be SynthesisModels(generator=...) or a generation model's name; received "
            f"{type(models).__name__}"
        )
    if not models.generator:
        raise ConfigError(
            "synthesize needs a generation model: models=SynthesisModels(generator='doc2query/msmarco-t5-small-v1') "
            "or any Hugging Face seq2seq / causal language model (Finetuner's synthesis models ran on its cloud)"
        )
    if models.cross_encoder is not None:
        raise ConfigError(
            f"cross_encoder={models.cross_encoder!r}: scoring pairs with a cross-encoder (Finetuner's cloud synthesis) "
            "is not available; drop it"
        )
    return models.generator


def _relation_miner(models: Any) -> str | None:
    """The embedding model that mines hard negatives, or None; Finetuner allowed a list: one name is taken here."""
    miner = getattr(models, "relation_miner", None)
    if isinstance(miner, (list, tuple)):
        if len(miner) != 1:
            raise ConfigError(
                f"relation_miner={miner!r}: give one embedding model to mine hard negatives with (a name or folder)"
            )
        miner = miner[0]
    if miner is not None and not isinstance(miner, str):
        raise ConfigError(f"relation_miner must be a model name or folder; received {type(miner).__name__}")
    return miner


def _device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, str) or not (device in ("cpu", "cuda", "mps") or device.startswith("cuda:")):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; received {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but no CUDA device is available; use device='cpu' or 'auto'")
    return device


def _digest(texts: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for text in texts:
        h.update(text.encode("utf-8") + b"\x00")
    return h.hexdigest()


def _create(folder: Path, experiment_name: str | None, config: dict[str, Any]) -> Run:
    """A new synthesis run whose CSV holds the header."""
    run = Run.create(folder.name, experiment_name, config)
    with open(run.directory / SYNTHESIS_FILE, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerow(HEADER)
    write_yaml(run.directory / STATE_FILE, {"documents_done": 0, "bytes": _size(run)})
    return run


def _size(run: Run) -> int:
    return (run.directory / SYNTHESIS_FILE).stat().st_size


def _resume_point(folder: Path, config: dict[str, Any]) -> tuple[int, int] | None:
    """None for a run folder that does not exist yet; for a synthesis run started with the same settings, the
    documents done and the CSV's length then; anything else is refused."""
    if not folder.exists():
        return None
    saved = Run(folder).config
    if saved.get("task") != SYNTHESIS:
        raise ArtifactError(f"{folder} is a {saved.get('task', 'training')} run; choose another run_name")
    diffs = [
        f"{k}: {saved.get(k)!r} then, {v!r} now"
        for k, v in config.items()
        if k not in _MAY_CHANGE and saved.get(k) != v
    ]
    if diffs:
        raise ConfigError(
            f"run {folder.name} was started with other settings; continue it with the same ones:\n  "
            + "\n  ".join(diffs)
        )
    state = read_yaml(folder / STATE_FILE, None) or {}
    if "documents_done" not in state or not (folder / SYNTHESIS_FILE).is_file():
        raise ArtifactError(f"{folder} has no {STATE_FILE} or {SYNTHESIS_FILE}; it cannot be continued")
    logger.info("continuing synthesis run %s from document %d", folder.name, state["documents_done"])
    return int(state["documents_done"]), int(state["bytes"])


def _log(run: Run, line: str) -> None:
    logger.info("%s", line)
    with open(run.directory / artifacts.LOG_FILE, "a", encoding="utf-8") as f:
        f.write(line + "\n")
