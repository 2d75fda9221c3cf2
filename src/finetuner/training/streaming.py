"""``fit(..., streaming=True)``: train on files and datasets larger than memory (the data side is
:mod:`finetuner.data.streamed`).

The check phase opens the data memory-mapped (:func:`open_source`), checks a sample of its rows up front with the
same validation as in-memory data (``validate_rows``: the first N and N drawn at random, or ``'all'``), decides the
columns' roles from the names, and builds the index of every training item in one pass (:func:`index_source`),
where every row's cells are checked and bad ones handled by ``on_bad_row``. The build phase gives a loader that
fetches each batch's rows and tokenises them in the loader (:func:`streamed_loaders`), with the same samplers as
in-memory data.

Streaming takes labelled texts and text pairs; explicit opt-in (``streaming=True``), since the in-memory path
is faster for data that fits (texts tokenised once) and reads any form of data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetuner.config import TrainingConfig
from finetuner.data.datasets import LabelledCollate
from finetuner.data.options import CSVOptions
from finetuner.data.samplers import ClassSampler, RandomBatchSampler
from finetuner.data.schema import plan_layout
from finetuner.data.shapes import LabelledData, PairData, data_kind
from finetuner.data.streamed import (
    StreamedData,
    StreamedItems,
    build_index,
    csv_layout,
    is_bad_cell,
    is_streamable,
    open_dataset,
    sample_rows,
)
from finetuner.data.table import DOCUMENT, ITEM, LABEL, QUERY
from finetuner.errors import ConfigError, DataError


@dataclass
class StreamSource:
    """Streamed training data, opened: the memory-mapped dataset, the rows checked up front and how to read them.

    Attributes:
        dataset: the ``datasets.Dataset``.
        sample: the rows checked up front, as a small ``datasets.Dataset`` the validation reads.
        csv_options: the options the rows are read with (a header-less CSV file's names already applied).
        source: how messages name the data.
        line_offset: for CSV files, the file line of row 0 (messages name lines); None otherwise.
        roles: the column of each role (``'item'``, ``'label'``; ``'query'``, ``'document'``).
    """

    dataset: Any
    sample: Any
    csv_options: CSVOptions | None
    source: str
    line_offset: int | None = None
    roles: dict[str, str] = dataclasses.field(default_factory=dict)

    def where(self, row: int) -> str:
        """How messages name row ``row``."""
        return f"row {row}" + (f" (line {row + self.line_offset})" if self.line_offset is not None else "")


def open_source(train_data: Any, csv_options: CSVOptions | None, config: TrainingConfig) -> StreamSource:
    """Open ``train_data`` memory-mapped and take the rows to check up front (module docstring).

    Raises:
        ConfigError: the data is not a streamable form, or an option does not apply to streamed data.
        DataError: a CSV file whose columns have no names.

    Example:
        >>> source = open_source('train.csv', None, TrainingConfig(streaming=True))  # doctest: +SKIP
    """
    if not is_streamable(train_data):
        raise ConfigError(
            f"streaming=True reads CSV, JSON Lines or Parquet files (.csv .tsv .json .jsonl .parquet) or Hugging "
            f"Face datasets (Dataset, IterableDataset); received {_shown(train_data)}. Data already in memory "
            "trains without streaming=True."
        )
    if config.val_split > 0:
        raise ConfigError("val_split needs the whole data in memory; with streaming=True pass eval_data instead")
    if config.sampler == "length":
        raise ConfigError("sampler='length' needs every text's length up front; with streaming=True use 'class' "
                          "or 'random'")  # fmt: skip
    if csv_options is not None and csv_options.sampling_rate is not None:
        raise ConfigError("CSVOptions.sampling_rate does not apply to streamed data; choose rows with datasets' "
                          ".select() or .shuffle() first")  # fmt: skip
    options, line_offset = csv_options, None
    kwargs: dict[str, Any] = {"header": True}
    if isinstance(train_data, (str, Path)):
        path = Path(train_data)
        if not path.is_file():
            raise DataError(f"train_data {str(path)!r}: no such file")
        if path.suffix.lower() in (".csv", ".tsv"):
            options, kwargs, line_offset = _csv_reading(path, csv_options or CSVOptions())
        source = f"train_data {path.name!r}"
    else:
        source = f"train_data ({type(train_data).__name__})"
    dataset = open_dataset(train_data, **kwargs)
    if isinstance(dataset.column_names, dict):
        raise ConfigError(f"{source}: a dataset dictionary; pass one split, e.g. data['train']")
    if options is not None and options.size is not None and options.size < dataset.num_rows:
        dataset = dataset.select(range(options.size))
    seed = config.seed if config.seed is not None else 0
    stream = StreamSource(dataset, None, options, source, line_offset)
    stream.roles = _roles(stream)
    chosen = sample_rows(dataset.num_rows, config.validate_rows, seed)
    if config.on_bad_row == "skip":  # the rows the index pass leaves out are not checked up front either
        cells = dataset.select(chosen).select_columns(list(stream.roles.values()))
        chosen = chosen[[not any(is_bad_cell(v) for v in row.values()) for row in cells]]
    stream.sample = dataset.select(chosen)
    return stream


def _roles(source: StreamSource) -> dict[str, str]:
    """The column of each role, from the column names alone (streamed data is not read by its values)."""
    names = [str(n) for n in source.dataset.column_names]
    first = [(source.where(0), [row[n] for n in names]) for row in source.dataset.select(range(1))]
    layout = plan_layout(len(names), names, first, source.csv_options, what=source.source)
    if not layout.description.startswith("the column names"):
        raise DataError(
            f"{source.source}: its column names ({', '.join(names)}) do not say the roles, and streamed data is "
            "not read by its values. Rename the columns, e.g. CSVOptions(columns={'my_text': 'text', 'my_class': "
            "'label'}) or {'a': 'query', 'b': 'document'}."
        )
    return {role: names[position] for role, position in zip(layout.roles, layout.positions)}


def _csv_reading(path: Path, options: CSVOptions) -> tuple[CSVOptions, dict[str, Any], int]:
    """How ``datasets`` reads a CSV file: its delimiter, and its header or the names ``columns`` gives."""
    from finetuner.data.readers.csv_files import _has_header

    delimiter, first = csv_layout(path, options.dialect, options.encoding)
    header = options.header if options.header != "auto" else _has_header(first, "", rows=0)
    kwargs: dict[str, Any] = {"header": bool(header), "delimiter": delimiter, "encoding": options.encoding}
    if header:
        return options, {**kwargs, "column_names": first}, 2
    names = options.columns
    if not isinstance(names, (list, tuple)) or len(names) != len(first) or not all(isinstance(n, str) for n in names):
        raise DataError(
            f"train_data {path.name!r}: streaming reads columns by their names, and the first row "
            f"({', '.join(map(repr, first[:4]))}) is not a header. Add a header row (text,label or query,document), "
            f"or name every column: CSVOptions(header=False, columns=[{', '.join(['...'] * len(first))}])."
        )
    kwargs["column_names"] = list(names)
    return dataclasses.replace(options, columns=None, header="auto"), kwargs, 1


def index_source(source: StreamSource, sample: LabelledData | PairData | Any, config: TrainingConfig) -> StreamedData:
    """The index of the training items (:func:`~finetuner.data.streamed.build_index`), from the roles the
    checked sample's column names give.

    Raises:
        ConfigError, DataError: data other than labelled texts or text pairs, or roles that only values decide.
    """
    kind = data_kind(sample)
    if kind not in ("labelled", "pairs") or getattr(sample, "modality", None) not in ("text", None) or (
        isinstance(sample, PairData) and sample.left_modality != "text"
    ):
        raise ConfigError(
            f"streaming=True trains labelled texts and text pairs; {source.source} holds {kind} "
            f"({'/'.join(getattr(sample, 'modalities', ()))})"
        )
    column = source.roles
    if kind == "labelled":
        columns, label = (column[ITEM],), column[LABEL]
    else:
        columns, label = (column[QUERY], column[DOCUMENT]), None
    return build_index(
        source.dataset, kind, columns, label, source=source.source, on_bad_row=config.on_bad_row, where=source.where
    )


def streamed_loaders(
    model: Any, data: StreamedData, sampler: str, items_per_class: int, seed: int, shard: dict[str, int],
    workers: int, pin: bool, device_type: str,
) -> Callable[[int], torch.utils.data.DataLoader]:  # fmt: skip
    """Loaders for any global batch size: the planned sampler over the index; each batch's rows fetched (this
    process's share only) and tokenised in the loader.

    Example:
        >>> shard = {'rank': 0, 'world_size': 1}
        >>> make = streamed_loaders(model, data, 'class', 4, 0, shard, 0, False, 'cpu')  # doctest: +SKIP
    """
    preprocess = (
        model.text_batches(device_type)
        if hasattr(model, "text_batches")
        else getattr(model, "training_preprocess", None) or model.preprocess
    )
    items = StreamedItems(data)
    labels = np.asarray(data.labels)

    def loader(batch_size: int) -> torch.utils.data.DataLoader:
        if sampler == "class":
            batches: Any = ClassSampler(labels, batch_size, items_per_class, seed=seed, **shard)
        else:
            batches = RandomBatchSampler(len(labels), batch_size, seed=seed, **shard)
        return torch.utils.data.DataLoader(
            items,
            batch_sampler=batches,
            collate_fn=LabelledCollate(preprocess),
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=pin,
        )

    return loader


def _shown(data: Any) -> str:
    if isinstance(data, (str, Path)):
        return repr(str(data))
    return f"a {type(data).__name__}"
