"""Batch inference: raw items in, an embedding matrix out (no gradients, model left as it was)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from finetuner.distributed import is_sharded
from finetuner.models.attention import attention_backends


class _Items(torch.utils.data.Dataset):
    def __init__(self, items: Sequence[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


def embed_items(
    model: Any,
    items: Sequence[Any],
    *,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    progress: bool | str = False,
    forward: Callable[..., torch.Tensor] | None = None,
    preprocess: Callable[[list[Any]], dict[str, torch.Tensor]] | None = None,
) -> torch.Tensor:
    """Embed ``items`` in batches with ``model`` and return a float32 ``(len(items), dim)`` tensor on the CPU.

    Args:
        model: an embedding model (``preprocess`` + ``forward``).
        items: raw inputs the model's ``preprocess`` takes (texts, image sources).
        batch_size: items per forward pass.
        device: where to run (default: the model's device).
        num_workers: DataLoader workers for preprocessing (tokenising, image decoding).
        progress: show a progress bar (a string is used as its description).
        forward, preprocess: use these instead of the model's own (a CLIP tower's ``encode_text`` ...).

    Example:
        >>> import finetuner
        >>> model = finetuner.build_model('sentence-transformers/all-MiniLM-L6-v2')
        >>> embed_items(model, ['a skirt', 'a shirt']).shape
        torch.Size([2, 384])
    """
    preprocess = preprocess or model.preprocess
    forward = forward or model
    order = None
    if len(items) > batch_size and all(isinstance(x, str) for x in items):
        # longest texts first, so each batch pads to similar lengths (results are put back in input order)
        order = sorted(range(len(items)), key=lambda i: -len(items[i]))
        items = [items[i] for i in order]
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    loader = DataLoader(
        _Items(items), batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=preprocess
    )
    was_training = model.training
    model.eval()
    chunks: list[torch.Tensor] = []
    desc = progress if isinstance(progress, str) else "encoding"
    try:
        # a sharded model (FSDP) keeps weights gathered in inference mode, which a later training step cannot use
        grad_off = torch.no_grad() if is_sharded(model) else torch.inference_mode()
        with grad_off, attention_backends(device):
            for inputs in tqdm(loader, desc=desc, disable=not progress, leave=False):
                inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
                chunks.append(forward(**inputs).float().cpu())  # (batch, dim)
    finally:
        model.train(was_training)
    if not chunks:
        return torch.empty(0, getattr(model, "output_dim", 0))
    out = torch.cat(chunks)  # (n, dim)
    if order is not None:
        out = out[torch.argsort(torch.tensor(order))]
    return out
