"""Hard-negative mining: turn (query, positive) pairs into (query, positive, negative_1..n) triplets.

:func:`mine_hard_negatives` embeds the queries and a corpus once (the queries with the model's query prompt, the
corpus with its document prompt), searches the corpus for every distinct query in chunks
(:func:`~finetuner.evaluation.search.top_k`: memory bounded by the chunk sizes, never a full query x corpus matrix),
and keeps as negatives the best-scoring candidates that pass the usual guards against *unlabelled positives* — texts
that answer the query but were never paired with it, which would teach the model the wrong thing:

* **never an item of the query's group**: its positive, any other document paired with it, and every item tied to
  it through shared items (:func:`~finetuner.data.groups.pair_groups`) are left out, as is the query itself;
* **a rank window**: candidates ranked below ``range_min`` (the very closest, the likeliest unlabelled positives)
  or from ``range_max`` on are not considered;
* **a margin to the positive**: a candidate scoring above ``(1 - relative_margin) x`` the positive's score (and,
  with ``absolute_margin``, above the positive's score minus it) is too close to tell apart from a positive.

The triplets come back as Documents (Finetuner's form: root chunks query, positive, negatives) and, with
``output='triplets.csv'``, as a CSV file headed ``anchor,positive,negative_1,...``; ``fit`` reads both as triplets.
"""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from finetuner.data.documents import Document, DocumentArray
from finetuner.data.groups import distinct, item_key
from finetuner.data.shapes import LabelledData, PairData, TripletData
from finetuner.errors import ConfigError, DataError
from finetuner.evaluation.search import top_k
from finetuner.models.inference import embed_items
from finetuner.models.prompts import for_role, model_prompts

logger = logging.getLogger("finetuner")

#: how the negatives are picked among the candidates that pass the guards
SAMPLING = ("top", "random")


def mine_hard_negatives(
    model: Any,
    pairs: Any,
    corpus: Sequence[Any] | None = None,
    *,
    num_negatives: int = 3,
    range_min: int = 0,
    range_max: int = 50,
    relative_margin: float = 0.05,
    absolute_margin: float | None = None,
    sampling: str = "top",
    seed: int = 0,
    batch_size: int = 64,
    output: str | Path | None = None,
    csv_options: Any = None,
    progress: bool = True,
    query_chunk_size: int = 1024,
    index_chunk_size: int = 8192,
) -> DocumentArray:
    """Mine ``num_negatives`` hard negatives for every pair; the triplets as Documents (and a CSV with ``output``).

    Args:
        model: an embedding model (what :func:`finetuner.build_model` or :func:`finetuner.get_model` gives), or
            anything ``build_model`` takes (an alias, hub id, model or artifact folder).
        pairs: (query, positive) pairs of one modality in any form ``fit`` reads (Documents, a CSV file, tuples
            with ``csv_options=CSVOptions(is_labeled=False)``, a DataFrame ...).
        corpus: the items negatives are drawn from (texts, or image sources for an image model); default: the
            distinct documents of ``pairs``.
        num_negatives: negatives per pair.
        range_min: how many of the closest candidates to skip (0: none).
        range_max: only candidates ranked below this are considered.
        relative_margin: a candidate must score at most ``(1 - relative_margin)`` x the positive's score
            (cosine); 0 turns the guard off.
        absolute_margin: also at most the positive's score minus this (None: off).
        sampling: ``'top'`` takes the best-scoring candidates that pass; ``'random'`` draws among them.
        seed: the random draw's seed (``sampling='random'``).
        batch_size: items per forward pass while embedding.
        output: a ``.csv`` path to write the triplets to.
        csv_options: how to read ``pairs`` when it is a CSV file.
        progress: show progress bars.
        query_chunk_size, index_chunk_size: the search's block sizes (its memory bound).

    Returns:
        A DocumentArray of triplet roots (chunks: query, positive, negatives). A pair for which fewer than
        ``num_negatives`` candidates pass the guards is left out, with a warning that says how many.

    Example:
        >>> import finetuner
        >>> model = finetuner.build_model('sentence-transformers/all-MiniLM-L6-v2')
        >>> pairs = [('cat', 'kitty'), ('dog', 'puppy'), ('car', 'automobile'), ('bus', 'coach')]
        >>> triplets = finetuner.mine_hard_negatives(model, pairs, num_negatives=1, progress=False,
        ...                                          csv_options=finetuner.CSVOptions(is_labeled=False))
        >>> [d.text for d in triplets[0].chunks]
        ['cat', 'kitty', 'puppy']
    """
    _check_settings(num_negatives, range_min, range_max, relative_margin, absolute_margin, sampling, output)
    data = _read_pairs(pairs, csv_options)
    model = _as_model(model)
    modality = data.left_modality
    candidates = list(corpus) if corpus is not None else list(data.right)
    if corpus is not None and (isinstance(corpus, (str, bytes)) or not candidates):
        raise DataError("corpus must be a non-empty list of items (texts or image sources), or None")
    cand_keys = [item_key(x) for x in candidates]
    keep = distinct(cand_keys)
    candidates, cand_keys = [candidates[i] for i in keep], [cand_keys[i] for i in keep]

    q_keys = [item_key(x) for x in data.left]
    p_keys = [item_key(x) for x in data.right]
    query_rows = distinct(q_keys)  # mine once per distinct query
    groups = data.groups or []
    group_of: dict[Hashable, int] = {}
    for row, group in enumerate(groups):
        group_of.setdefault(q_keys[row], group)
        group_of.setdefault(p_keys[row], group)
    n_groups = max(groups, default=-1) + 1
    index_ids = [group_of.get(k, n_groups + i) for i, k in enumerate(cand_keys)]  # other items: an id of their own
    query_ids = [groups[r] for r in query_rows]

    prompts = model_prompts(model)
    embed = _embedder(model, batch_size, progress)
    q_emb = embed(for_role([data.left[r] for r in query_rows], prompts, "query"), "embedding queries")
    c_emb = embed(for_role(candidates, prompts, "document"), "embedding corpus")
    at = {k: i for i, k in enumerate(cand_keys)}
    missing = [r for r in distinct(p_keys) if p_keys[r] not in at]  # positives outside a given corpus
    extra = embed(for_role([data.right[r] for r in missing], prompts, "document"), "embedding positives")
    p_index = {p_keys[r]: len(candidates) + j for j, r in enumerate(missing)}
    p_emb = torch.cat([c_emb, extra]) if missing else c_emb  # (n_candidates + n_missing, dim)

    chunks = (query_chunk_size, index_chunk_size)
    scores, indices = _search(q_emb, c_emb, query_ids, index_ids, range_max, chunks, progress)
    q_pos = {q_keys[r]: i for i, r in enumerate(query_rows)}
    positive_rows = [at.get(p_keys[r], p_index.get(p_keys[r])) for r in range(len(data))]
    pos_scores = _row_cosine(q_emb[[q_pos[k] for k in q_keys]], p_emb[positive_rows])  # (n_pairs,)

    rng = np.random.default_rng(seed)
    out = DocumentArray()
    rows: list[list[Any]] = []
    short = 0
    for row in range(len(data)):
        q = q_pos[q_keys[row]]
        margins = (relative_margin, absolute_margin)
        picks = _pick(scores[q], indices[q], float(pos_scores[row]), num_negatives, range_min, margins, sampling, rng)
        if picks is None:
            short += 1
            continue
        items = [data.left[row], data.right[row], *(candidates[j] for j in picks)]
        rows.append(items)
        out.append(Document(chunks=[_document(x, modality) for x in items]))
    _report(len(data), short, num_negatives, relative_margin, range_min, range_max)
    if output is not None:
        write_triplets_csv(output, rows, num_negatives)
    return out


def _check_settings(
    num_negatives: Any,
    range_min: Any,
    range_max: Any,
    relative_margin: Any,
    absolute_margin: Any,
    sampling: Any,
    output: Any,
) -> None:
    problems = []

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not (is_int(num_negatives) and num_negatives >= 1):
        problems.append(f"num_negatives must be an int >= 1; received {num_negatives!r}")
    if not (is_int(range_min) and range_min >= 0):
        problems.append(f"range_min must be an int >= 0; received {range_min!r}")
    if not (is_int(range_max) and range_max >= 1):
        problems.append(f"range_max must be an int >= 1; received {range_max!r}")
    elif is_int(range_min) and is_int(num_negatives) and range_max < range_min + num_negatives:
        problems.append(
            f"range_max ({range_max}) leaves fewer than num_negatives ({num_negatives}) candidates after range_min "
            f"({range_min}); raise range_max to at least {range_min + num_negatives}"
        )
    if not (_is_number(relative_margin) and 0 <= relative_margin < 1):
        problems.append(f"relative_margin must be a number in [0, 1); received {relative_margin!r}")
    if absolute_margin is not None and not _is_number(absolute_margin):
        problems.append(f"absolute_margin must be a number or None; received {absolute_margin!r}")
    if sampling not in SAMPLING:
        problems.append(f"sampling must be one of {', '.join(SAMPLING)}; received {sampling!r}")
    if output is not None and Path(output).suffix.lower() != ".csv":
        problems.append(f"output must be a .csv path; received {str(output)!r}")
    if problems:
        raise ConfigError("mine_hard_negatives: " + "; ".join(problems))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_pairs(pairs: Any, csv_options: Any) -> PairData:
    from finetuner.data.shaping import read_shape

    data = pairs if isinstance(pairs, PairData) else read_shape(pairs, csv_options, name="pairs")
    if isinstance(data, PairData) and data.left_modality == data.right_modality:
        return data
    if isinstance(data, LabelledData):
        raise DataError(
            "mine_hard_negatives takes (query, positive) pairs, but the data reads as labelled items (item, label); "
            "if the rows are pairs, pass csv_options=CSVOptions(is_labeled=False) (CLI: --csv-pairs). For labelled "
            "items, a miner does this during training (fit(..., miner='TripletMarginMiner'))"
        )
    if isinstance(data, TripletData):
        raise DataError(
            "mine_hard_negatives takes (query, positive) pairs, but the data already holds negatives (triplets); "
            "to mine new ones, read its query and positive columns: CSVOptions(columns=('anchor', 'positive'))"
        )
    if isinstance(data, PairData):
        raise DataError(
            f"mine_hard_negatives takes pairs of one modality; these pair {data.left_modality} with "
            f"{data.right_modality} items"
        )
    raise DataError(f"mine_hard_negatives takes (query, positive) pairs; the data holds {type(data).__name__}")


def _as_model(model: Any) -> Any:
    if isinstance(model, torch.nn.Module) and hasattr(model, "preprocess"):
        return model
    if isinstance(model, (torch.nn.Module, dict)):
        raise ConfigError("mine_hard_negatives needs a single-modality embedding model (finetuner.build_model(...))")
    from finetuner import artifacts
    from finetuner.models import build_model

    return build_model(artifacts.model_source(model))


def _embedder(model: Any, batch_size: int, progress: bool) -> Any:
    def embed(items: list[Any], what: str) -> torch.Tensor:
        if not items:
            return torch.empty(0, model.output_dim)
        return embed_items(model, items, batch_size=batch_size, progress=what if progress else False)

    return embed


def _search(
    queries: torch.Tensor,
    corpus: torch.Tensor,
    query_ids: list[int],
    index_ids: list[int],
    k: int,
    chunks: tuple[int, int],
    progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The top k corpus items of every query, its own group's items left out; blocks of queries for the bar."""
    query_chunk_size, index_chunk_size = chunks
    block = max(query_chunk_size, 1024)
    scores, indices = [], []
    q_ids = torch.tensor(query_ids, dtype=torch.int64)  # (n_queries,)
    i_ids = torch.tensor(index_ids, dtype=torch.int64)  # (n_corpus,)
    for start in tqdm(range(0, len(queries), block), desc="searching", disable=not progress, leave=False):
        s, i = top_k(
            queries[start : start + block],
            corpus,
            k,
            query_ids=q_ids[start : start + block],
            index_ids=i_ids,
            query_chunk_size=query_chunk_size,
            index_chunk_size=index_chunk_size,
        )  # (block, <=k) each, best first, -1 where exclusion left nothing
        scores.append(s.cpu().numpy())
        indices.append(i.cpu().numpy())
    width = max((x.shape[1] for x in indices), default=0)
    scores = [np.pad(s, ((0, 0), (0, width - s.shape[1])), constant_values=-np.inf) for s in scores]
    indices = [np.pad(i, ((0, 0), (0, width - i.shape[1])), constant_values=-1) for i in indices]
    return np.concatenate(scores), np.concatenate(indices)  # (n_queries, width) each


def _row_cosine(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.cosine_similarity(a, b, dim=1).numpy()  # (n,)


def _pick(
    scores: np.ndarray,
    indices: np.ndarray,
    positive: float,
    n: int,
    range_min: int,
    margins: tuple[float, float | None],
    sampling: str,
    rng: np.random.Generator,
) -> list[int] | None:
    """The corpus rows chosen as one pair's negatives (None when fewer than ``n`` pass the guards)."""
    relative_margin, absolute_margin = margins
    valid = indices >= 0  # (k,)
    scores, indices = scores[valid][range_min:], indices[valid][range_min:]
    ok = scores <= positive * (1.0 - relative_margin) if relative_margin else np.ones(len(scores), dtype=bool)
    if absolute_margin is not None:
        ok &= scores <= positive - absolute_margin
    eligible = indices[ok]
    if len(eligible) < n:
        return None
    if sampling == "random":
        return eligible[np.sort(rng.choice(len(eligible), size=n, replace=False))].tolist()  # best first
    return eligible[:n].tolist()


def _document(item: Any, modality: str) -> Document:
    if modality == "text":
        return Document(content=item)
    return item if isinstance(item, Document) else Document(uri=str(item))


def _report(total: int, short: int, n: int, relative_margin: float, range_min: int, range_max: int) -> None:
    logger.info("mined %d negatives for %d of %d pairs", n, total - short, total)
    if short == total:
        raise DataError(
            f"no pair has {n} candidates that pass the guards (ranks {range_min}..{range_max - 1}, at most "
            f"{1 - relative_margin:.2f} x the positive's score); give a larger corpus, raise range_max or lower "
            "relative_margin"
        )
    if short:
        warnings.warn(
            f"{short} of {total} pairs have fewer than {n} candidates that pass the guards (ranks {range_min}.."
            f"{range_max - 1}, at most {1 - relative_margin:.2f} x the positive's score) and were left out of the "
            "triplets; raise range_max or lower relative_margin to keep them",
            stacklevel=3,
        )


def write_triplets_csv(path: str | Path, rows: Sequence[Sequence[Any]], num_negatives: int) -> Path:
    """Write triplet rows as a CSV file headed ``anchor,positive,negative_1..n`` (texts, or image URIs).

    Example:
        >>> import tempfile
        >>> path = write_triplets_csv(Path(tempfile.mkdtemp()) / 't.csv', [['cat', 'kitty', 'puppy']], 1)
        >>> path.read_text()
        'anchor,positive,negative_1\\ncat,kitty,puppy\\n'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ["anchor", "positive", *(f"negative_{i}" for i in range(1, num_negatives + 1))]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([_cell(x) for x in row])
    return path


def _cell(item: Any) -> str:
    if isinstance(item, str):
        return item
    uri = getattr(item, "uri", None)
    if uri:
        return str(uri)
    raise DataError(f"cannot write {type(item).__name__} items to a CSV file (only texts and image URIs)")


__all__ = ["SAMPLING", "mine_hard_negatives", "write_triplets_csv"]
