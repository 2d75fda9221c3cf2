"""The teacher's side of distillation: its embeddings of the training texts, computed once, in chunks cached on disk.

The cache lives under ``$FINETUNER_HOME/cache/teacher/<key>/`` (default ``~/.finetuner``); the key is a hash of the
teacher's name, a digest of its weights and the texts, so a changed teacher or data set is embedded anew, and a run
that stops half-way keeps the chunks already written.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetuner.data.shapes import RowData
from finetuner.errors import ConfigError
from finetuner.fileio import atomic_write_bytes
from finetuner.losses.distill import DistillMSELoss, MarginMSELoss, margins
from finetuner.losses.matryoshka import MatryoshkaLoss
from finetuner.models import build_model
from finetuner.models.adapters import weights_digest
from finetuner.models.inference import embed_items

logger = logging.getLogger("finetuner")

#: texts per cached chunk
CHUNK = 4096


def cache_root() -> Path:
    """``$FINETUNER_HOME/cache/teacher`` (default ``~/.finetuner/cache/teacher``).

    Example:
        >>> cache_root().parts[-2:]
        ('cache', 'teacher')
    """
    return Path(os.environ.get("FINETUNER_HOME", Path.home() / ".finetuner")).expanduser() / "cache" / "teacher"


def teacher_embeddings(
    teacher: Any, texts: list[str], *, batch_size: int = 64, device: str = "cpu", chunk: int = CHUNK
) -> torch.Tensor:
    """The teacher's embeddings of ``texts`` ``(len(texts), dim)``, from the disk cache where present.

    Example:
        >>> vectors = teacher_embeddings('sentence-transformers/all-MiniLM-L6-v2', ['a cat', 'a dog'])  # doctest: +SKIP
        >>> tuple(vectors.shape)  # doctest: +SKIP
        (2, 384)
    """
    model = build_model(teacher) if isinstance(teacher, (str, os.PathLike)) else teacher
    model.to(torch.device(device))
    key = hashlib.sha256()
    key.update(f"{teacher if isinstance(teacher, (str, os.PathLike)) else type(teacher).__name__}".encode())
    key.update(weights_digest(model).encode())
    for text in texts:
        key.update(text.encode("utf-8") + b"\0")
    folder = cache_root() / key.hexdigest()[:24]
    parts = []
    for n, start in enumerate(range(0, len(texts), chunk)):
        path = folder / f"part-{n:05d}.npy"
        if path.is_file():
            parts.append(np.load(path, allow_pickle=False))
            continue
        vectors = embed_items(model, texts[start : start + chunk], batch_size=batch_size).numpy()  # (chunk, dim)
        buffer = io.BytesIO()
        np.save(buffer, vectors, allow_pickle=False)
        atomic_write_bytes(path, buffer.getvalue())
        parts.append(vectors)
    logger.info("teacher embeddings of %d texts: %s", len(texts), folder)
    return torch.from_numpy(np.concatenate(parts))


def prepare_distillation(loss: Any, items: list[Any] | None, student_dim: int, accelerator: Any = None) -> None:
    """Give a :class:`~finetuner.losses.distill.DistillMSELoss` its teacher vectors (in ``items`` order), checking
    the teacher's size against the student's; any other loss is left alone.

    Raises:
        ConfigError: no teacher was named, or it embeds into another size than the student.

    Example:
        >>> from finetuner.losses.distill import DistillMSELoss
        >>> loss = DistillMSELoss('sentence-transformers/all-MiniLM-L6-v2')
        >>> prepare_distillation(loss, ['a cat', 'a dog'], student_dim=384)  # doctest: +SKIP
        >>> tuple(loss.teacher_vectors.shape)  # doctest: +SKIP
        (2, 384)
    """
    if not isinstance(loss, DistillMSELoss):
        return
    if loss.teacher is None:
        raise ConfigError("loss='DistillMSE' needs a teacher: loss_options={'teacher': MODEL_NAME_OR_FOLDER}")
    if items is None:  # streamed data: its items are read batch by batch, never held as a list
        raise ConfigError("loss='DistillMSE' needs the training texts in memory; train it without streaming=True")
    vectors = _shared_teacher_embeddings(loss, list(items), accelerator)
    if vectors.shape[1] != student_dim:
        raise ConfigError(
            f"the teacher {loss.teacher!r} embeds into {vectors.shape[1]} dimensions and the student into "
            f"{student_dim}; give the student a projection head of the teacher's size with output_dim="
            f"{vectors.shape[1]}"
        )
    loss.set_teacher_vectors(vectors)


def prepare_margin_distillation(loss: Any, rows: RowData, accelerator: Any = None, chunk: int = 65536) -> None:
    """Give a :class:`~finetuner.losses.distill.MarginMSELoss` (or a Matryoshka loss around one) the teacher's
    margins of every triplet row ``(n_rows, k)``, from the teacher's embeddings of the rows' items; any other loss is
    left alone.

    Raises:
        ConfigError: no teacher was named.

    Example:
        >>> from finetuner.data.shapes import TripletData
        >>> from finetuner.losses.distill import MarginMSELoss
        >>> loss = MarginMSELoss('sentence-transformers/all-MiniLM-L6-v2')
        >>> rows = TripletData(['q'], ['p'], [('n1', 'n2')], 'text', 'text', ['0']).as_rows()
        >>> prepare_margin_distillation(loss, rows)  # doctest: +SKIP
        >>> tuple(loss.teacher_margins.shape)  # doctest: +SKIP
        (1, 2)
    """
    loss = loss.loss if isinstance(loss, MatryoshkaLoss) else loss
    if not isinstance(loss, MarginMSELoss):
        return
    if loss.teacher is None:
        raise ConfigError("loss='MarginMSE' needs a teacher: loss_options={'teacher': MODEL_NAME_OR_FOLDER}")
    vectors = _shared_teacher_embeddings(loss, list(rows.items), accelerator)  # (n_items, teacher_dim)
    index = torch.tensor(rows.rows, dtype=torch.long)  # (n_rows, 2 + k)
    parts = []
    for start in range(0, len(index), chunk):  # bounded memory: (chunk, 2 + k, teacher_dim) at a time
        members = vectors[index[start : start + chunk]]  # (chunk, 2 + k, teacher_dim)
        parts.append(margins(members[:, 0], members[:, 1], members[:, 2:], loss.similarity))  # (chunk, k)
    loss.set_teacher_margins(torch.cat(parts))


def _shared_teacher_embeddings(loss: Any, items: list[Any], accelerator: Any) -> torch.Tensor:
    """The teacher's embeddings of ``items``; with several processes the first process of each machine embeds them
    into the disk cache while the others wait, then the others read that cache (the teacher runs once per machine).
    An error of the first process is raised after the others are released, so no process hangs at the barrier."""
    device = accelerator.device.type if accelerator is not None else "cpu"
    embed = partial(teacher_embeddings, loss.teacher, items, batch_size=loss.teacher_batch_size, device=device)
    if accelerator is None or accelerator.num_processes == 1:
        return embed()
    first = accelerator.is_local_main_process
    if not first:
        accelerator.wait_for_everyone()  # until the first process has written the cache
    try:
        vectors, error = embed(), None
    except Exception as exc:  # re-raised below, after the barrier the other processes wait at
        vectors, error = None, exc
    if first:
        accelerator.wait_for_everyone()
    if error is not None:
        raise error
    return vectors
