"""Token batches for text models with a bounded set of shapes.

Texts are tokenised once per data set (:class:`Pretokenized`); each batch is then only padded (:class:`TokenCollate`,
run in DataLoader workers). Two rules keep the shapes a model sees few, whatever the data:

- **bucketed lengths**: a batch pads to the next length of a short ladder (:func:`padded_length`: multiples of 8 up
  to 64, then four steps per doubling, capped at ``max_length``), not to its own longest row. A GPU runs a kernel
  plan per input shape (cuDNN attention builds one for every new ``(rows, length)``; ``torch.compile`` guards on
  shapes), so a per-batch length costs host time on almost every batch; a ladder costs at most a few plans.
- **length groups**: a batch of texts of mixed lengths (the short queries and long documents of pairs) is embedded
  in up to ``max_groups`` equal-sized groups of rows of similar length, each padded to its own bucket
  (:func:`length_groups`); the rows only meet again in the loss, so the embeddings are those of one padded block
  (tests check 1e-5) for fewer padded tokens. The groups are chosen here, on the CPU from Python ints, so the
  forward pass reads nothing back from the device.

A grouped batch is ``{GROUPS: [inputs of group 1, ...], RESTORE: (batch,) positions}``: the embeddings of the groups,
concatenated, taken at ``RESTORE`` are the batch's embeddings in its own row order (:func:`embed_grouped`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from finetuner.errors import DataError

#: the key of a grouped batch's list of per-group inputs
GROUPS = "length_groups"
#: the key of a grouped batch's ``(batch,)`` positions of each row in the concatenated groups
RESTORE = "restore_order"
#: length groups per batch by device: a CPU's cost is the tokens it runs; a GPU's also the kernels it launches, so
#: it gets the two groups that separate the queries from the documents of a pair batch (as the raw loop and
#: sentence-transformers embed them) without halving every kernel again
MAX_GROUPS = {"cpu": 4, "cuda": 2}


def padded_length(longest: int, max_length: int | None = None) -> int:
    """The length a batch whose longest row has ``longest`` tokens pads to: a multiple of 8 up to 64, then the
    next of four steps per doubling (80, 96, 112, 128, 160, ..., 448, 512, 640, ...), never above ``max_length``
    (a row longer than ``max_length``, which truncation prevents, keeps its own length).

    Example:
        >>> [padded_length(n) for n in (1, 8, 9, 63, 65, 100, 129, 500)]
        [8, 8, 16, 64, 80, 112, 160, 512]
        >>> padded_length(70, max_length=77), padded_length(90, max_length=77)
        (77, 90)
    """
    n = max(1, int(longest))
    if max_length is not None and n >= max_length:
        return n
    if n <= 64:
        padded = -(-n // 8) * 8
    else:
        step = 1 << (n - 1).bit_length() >> 3  # a quarter of the octave (n lies in (2 * 4 * step, 4 * 4 * step])
        padded = -(-n // step) * step
    return min(padded, int(max_length)) if max_length is not None else padded


def bucket_lengths(max_length: int) -> list[int]:
    """Every length :func:`padded_length` can give for batches cut at ``max_length``.

    Example:
        >>> bucket_lengths(64), len(bucket_lengths(512))
        ([8, 16, 24, 32, 40, 48, 56, 64], 20)
        >>> bucket_lengths(77)[-3:]
        [56, 64, 77]
    """
    return sorted({padded_length(n, max_length) for n in range(1, max_length + 1)})


def length_groups(
    lengths: Sequence[int], max_groups: int = 4, min_saving: float = 0.2, max_length: int | None = None
) -> list[list[int]] | None:
    """Rows of a batch in up to ``max_groups`` equal-sized groups of similar length (shortest first), when padding
    each group to its own bucket saves at least ``min_saving`` of the tokens of one padded block; None when it does
    not pay. Group sizes depend only on the batch size, so a full batch always gives the same row counts.

    Example:
        >>> length_groups([30, 3, 28, 2, 4, 25, 3, 31], max_groups=2)
        [[3, 1, 6, 4], [5, 2, 0, 7]]
        >>> length_groups([30, 29, 28, 31], max_groups=2) is None  # all alike: one block
        True
    """
    batch = len(lengths)
    if max_groups < 2 or batch < 2 * max_groups:
        return None
    order = sorted(range(batch), key=lambda i: lengths[i])
    size = -(-batch // max_groups)
    groups = [order[i : i + size] for i in range(0, batch, size)]
    grouped = sum(len(g) * padded_length(lengths[g[-1]], max_length) for g in groups)
    if grouped > (1 - min_saving) * batch * padded_length(max(lengths), max_length):
        return None
    return groups


def pad_rows(rows: Sequence[dict[str, list[int]]], length: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token rows to ``length`` into the keyword tensors a model takes (with an ``attention_mask``).

    Example:
        >>> pad_rows([{'input_ids': [2, 7, 3]}, {'input_ids': [2, 3]}], 4, pad_id=0)['attention_mask'].tolist()
        [[1, 1, 1, 0], [1, 1, 0, 0]]
    """
    out: dict[str, torch.Tensor] = {}
    for name in rows[0]:
        fill = pad_id if name == "input_ids" else 0
        batch = torch.full((len(rows), length), fill, dtype=torch.long)  # (batch, length)
        for i, r in enumerate(rows):
            batch[i, : len(r[name])] = torch.as_tensor(r[name], dtype=torch.long)
        out[name] = batch
    if "attention_mask" not in out:
        lengths = torch.tensor([len(r["input_ids"]) for r in rows])  # (batch,)
        out["attention_mask"] = (torch.arange(length)[None, :] < lengths[:, None]).long()  # (batch, length)
    return out


class TokenCollate:
    """Pad pre-tokenised rows into a batch of bucketed length, in length groups when ``max_groups`` > 1 and the
    rows differ enough in length (see the module's docstring). Small and free of model state, so DataLoader
    workers get a copy cheaply.

    Args:
        pad_id: the tokenizer's padding id.
        max_length: the length texts were cut at (the longest bucket).
        max_groups: at most this many length groups per batch (1: always one block).
        min_saving: group only when that saves this share of the padded tokens.

    Example:
        >>> rows = [{'input_ids': [2] + [5] * n + [3]} for n in (1, 30, 2, 28)]
        >>> TokenCollate(0, 64)(rows)['input_ids'].shape
        torch.Size([4, 32])
        >>> batch = TokenCollate(0, 64, max_groups=2)(rows)
        >>> [g['input_ids'].shape[1] for g in batch[GROUPS]], batch[RESTORE].tolist()
        ([8, 32], [0, 3, 1, 2])
    """

    def __init__(self, pad_id: int, max_length: int, max_groups: int = 1, min_saving: float = 0.2) -> None:
        self.pad_id, self.max_length = int(pad_id), int(max_length)
        self.max_groups, self.min_saving = int(max_groups), float(min_saving)

    def __call__(self, rows: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        lengths = [len(r["input_ids"]) for r in rows]
        groups = length_groups(lengths, self.max_groups, self.min_saving, self.max_length)
        if groups is None:
            return pad_rows(rows, padded_length(max(lengths), self.max_length), self.pad_id)
        parts = [
            pad_rows([rows[i] for i in g], padded_length(max(lengths[i] for i in g), self.max_length), self.pad_id)
            for g in groups
        ]
        order = torch.tensor([i for g in groups for i in g])  # (batch,) original row of each grouped row
        return {GROUPS: parts, RESTORE: torch.argsort(order)}  # grouped position of each original row


def is_grouped(inputs: dict[str, Any]) -> bool:
    """Whether ``inputs`` is a length-grouped batch.

    Example:
        >>> is_grouped({'input_ids': torch.zeros(2, 8)}), is_grouped({GROUPS: [], RESTORE: torch.zeros(0)})
        (False, True)
    """
    return GROUPS in inputs


def embed_grouped(embed: Callable[[dict[str, torch.Tensor]], torch.Tensor], inputs: dict[str, Any]) -> torch.Tensor:
    """``embed`` each group of a grouped batch and put the rows back in the batch's order (an index on the device,
    nothing read back).

    Example:
        >>> batch = TokenCollate(0, 64, max_groups=2)([{'input_ids': [1] * n} for n in (1, 30, 2, 28)])
        >>> embed_grouped(lambda x: x['attention_mask'].sum(1, keepdim=True), batch).flatten().tolist()
        [1, 30, 2, 28]
    """
    parts = [embed(group) for group in inputs[GROUPS]]  # (group rows, dim) each
    return torch.cat(parts)[inputs[RESTORE]]  # (batch, dim)


class Pretokenized:
    """Tokenise a data set once before training, then only pad per batch.

    Mixed into text models that have ``tokenizer``, ``max_length`` and ``_input_names``: re-tokenising every
    epoch is wasted work, and padding a batch of id lists is cheaper than tokenising its strings.

    Example:
        >>> rows = [{'input_ids': [2, 7, 3], 'attention_mask': [1, 1, 1]},
        ...         {'input_ids': [2, 3], 'attention_mask': [1, 1]}]
        >>> class T(Pretokenized):
        ...     pad_id, max_length = 0, 16
        >>> T().collate_tokens(rows)['input_ids'].tolist()
        [[2, 7, 3, 0, 0, 0, 0, 0], [2, 3, 0, 0, 0, 0, 0, 0]]
    """

    tokenizer: Any
    max_length: int
    _input_names: list[str]

    @property
    def pad_id(self) -> int:
        """The tokenizer's padding id."""
        return int(self.tokenizer.pad_token_id or 0)

    def pretokenize(self, items: list[str]) -> list[dict[str, list[int]]]:
        """Token ids (no padding) of every text, computed once with the fast tokenizer's batch call."""
        bad = [i for i, t in enumerate(items) if not isinstance(t, str)]
        if bad:
            raise DataError(f"text model received a {type(items[bad[0]]).__name__} at position {bad[0]}; str only")
        encoded = self.tokenizer(list(items), truncation=True, max_length=self.max_length)
        names = [n for n in self._input_names if n in encoded]
        return [{n: encoded[n][i] for n in names} for i in range(len(items))]

    def token_collate(self, max_groups: int = 1) -> TokenCollate:
        """The batch padding for training: bucketed lengths, in up to ``max_groups`` length groups."""
        return TokenCollate(self.pad_id, self.max_length, max_groups)

    def training_inputs(
        self, items: list[str], device_type: str, num_workers: int = 0, max_groups: int | None = None
    ) -> tuple[list[dict[str, list[int]]], TokenCollate]:
        """What a training loader holds and how it collates: the texts tokenised once (one batch call of the fast
        tokenizer; ``num_workers`` is not needed for it), and batches padded to bucketed lengths in up to
        ``max_groups`` length groups (default: what pays on ``device_type``, :data:`MAX_GROUPS`; 1 for one block,
        as two-tower batches take).

        Example:
            >>> rows, collate = model.training_inputs(['a cat', 'a dog'], 'cpu')  # doctest: +SKIP
        """
        groups = MAX_GROUPS.get(device_type, MAX_GROUPS["cuda"]) if max_groups is None else max_groups
        return self.pretokenize(items), self.token_collate(groups)

    def collate_tokens(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        """Right-pad pre-tokenised rows to their bucketed length (one block) into the tensors ``forward`` takes."""
        return pad_rows(rows, padded_length(max(len(r["input_ids"]) for r in rows), self.max_length), self.pad_id)

    def tokenize(self, items: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise and pad a batch of texts (what ``preprocess`` returns): one block of bucketed length."""
        return self.collate_tokens(self.pretokenize(items))
