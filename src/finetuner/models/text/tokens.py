"""Token batches for text models: tokenise a data set once (:class:`Pretokenized`) and run a padded batch in
groups of similar length (:func:`length_groups`)."""

from __future__ import annotations

from typing import Any

import torch

from finetuner.errors import DataError


def length_groups(
    mask: torch.Tensor, max_groups: int = 4, min_saving: float = 0.2
) -> list[tuple[torch.Tensor, int]] | None:
    """Split a padded batch into up to ``max_groups`` groups of rows of similar length (each trimmed to its own
    longest row) when that saves at least ``min_saving`` of the padded tokens; None when it does not pay.

    On a CPU the cost of a transformer grows with the tokens it runs, padding included; rows of a batch only
    interact through the loss, so embedding them in length groups gives the same embeddings for less work.

    Example:
        >>> mask = torch.tensor([[1] * 8, [1, 1, 0, 0, 0, 0, 0, 0], [1] * 7 + [0], [1, 0, 0, 0, 0, 0, 0, 0]])
        >>> [(rows.tolist(), n) for rows, n in length_groups(mask, max_groups=2)]
        [([3, 1], 2), ([2, 0], 8)]
    """
    lengths = mask.sum(1)  # (batch,)
    batch = lengths.shape[0]
    if batch < 2 * max_groups:
        return None
    order = torch.argsort(lengths, stable=True)
    chunks = [c for c in torch.chunk(order, max_groups) if c.numel()]
    grouped_tokens = sum(int(lengths[c].max()) * c.numel() for c in chunks)
    if grouped_tokens > (1 - min_saving) * batch * mask.shape[1]:
        return None
    return [(c, int(lengths[c].max())) for c in chunks]


class Pretokenized:
    """Tokenise a data set once before training, then only pad per batch (``collate_tokens``).

    Mixed into text models that have ``tokenizer``, ``max_length`` and ``_input_names``: re-tokenising every
    epoch is wasted work, and padding a batch of id lists is cheaper than tokenising its strings.

    Example:
        >>> rows = [{'input_ids': [2, 7, 3], 'attention_mask': [1, 1, 1]},
        ...         {'input_ids': [2, 3], 'attention_mask': [1, 1]}]
        >>> class T(Pretokenized):
        ...     pad_id = 0
        >>> T().collate_tokens(rows)['input_ids'].tolist()
        [[2, 7, 3], [2, 3, 0]]
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

    def collate_tokens(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        """Right-pad pre-tokenised rows into the keyword tensors ``forward`` takes."""
        longest = max(len(r["input_ids"]) for r in rows)
        out: dict[str, torch.Tensor] = {}
        for name in rows[0]:
            fill = self.pad_id if name == "input_ids" else 0
            batch = torch.full((len(rows), longest), fill, dtype=torch.long)  # (batch, seq)
            for i, r in enumerate(rows):
                batch[i, : len(r[name])] = torch.as_tensor(r[name], dtype=torch.long)
            out[name] = batch
        if "attention_mask" not in out:
            lengths = torch.tensor([len(r["input_ids"]) for r in rows])
            out["attention_mask"] = (torch.arange(longest)[None, :] < lengths[:, None]).long()
        return out
