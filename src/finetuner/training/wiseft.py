"""WiSE-FT: after training, interpolate between the pretrained and the tuned weights (Wortsman et al., 2022)."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from finetuner.errors import ConfigError
from finetuner.training.loop import Callback, TrainState


class WiSEFTCallback(Callback):
    """Replace the tuned weights ``w1`` by ``(1 - alpha) * w0 + alpha * w1`` at the end of training.

    ``w0`` are the weights when training began: the pretrained ones, also when the run is resumed from a checkpoint
    (the callback takes them before the checkpoint's weights are loaded, and the checkpoint records their digest, so
    a resume that would start from other weights is refused). ``alpha=0`` gives back the pretrained model,
    ``alpha=1`` keeps the tuned one; values in between often keep the pretrained model's robustness (CLIP's
    zero-shot skills) while gaining most of the tuning's accuracy. Only floating-point tensors are mixed; integer
    buffers are kept.

    Args:
        alpha: the weight of the tuned model, in [0, 1] (Finetuner's default 0.4).

    Example:
        >>> from finetuner.callback import WiSEFTCallback  # doctest: +SKIP
        >>> run = finetuner.fit('clip-base-en', pairs, callbacks=[WiSEFTCallback(alpha=0.4)])  # doctest: +SKIP
    """

    def __init__(self, alpha: float = 0.4) -> None:
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 <= alpha <= 1:
            raise ConfigError(f"WiSEFTCallback alpha must be a number in [0, 1]; received {alpha!r}")
        self.alpha = float(alpha)
        self._start: dict[str, torch.Tensor] = {}

    @staticmethod
    def _module(state: TrainState) -> torch.nn.Module:
        return state.accelerator.unwrap_model(state.model) if state.accelerator is not None else state.model

    def on_train_begin(self, state: TrainState) -> None:
        self._start = {k: v.detach().to("cpu", copy=True) for k, v in self._module(state).state_dict().items()}

    def _digest(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        for key in sorted(self._start):
            h.update(key.encode())
            h.update(self._start[key].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def state_dict(self) -> dict[str, Any]:
        """The digest of the starting weights (a checkpoint records it; the weights are rebuilt, not stored).

        Example:
            >>> WiSEFTCallback().state_dict()['start_digest'] is None
            True
        """
        return {"start_digest": self._digest() if self._start else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Check, on resume, that the rebuilt starting weights are those the interrupted run started from."""
        saved = state.get("start_digest")
        if saved and self._start and saved != self._digest():
            raise ConfigError(
                "WiSEFTCallback: the model built for this resume does not start from the weights the interrupted "
                "run started from, so the interpolation would not go back to the pretrained model; resume with the "
                "same model, output_dim and seed"
            )

    def on_train_end(self, state: TrainState) -> None:
        module = self._module(state)
        mixed = {}
        for key, tuned in module.state_dict().items():
            start = self._start[key].to(tuned.device)
            if tuned.is_floating_point():
                mixed[key] = torch.lerp(start.to(tuned.dtype), tuned, self.alpha)  # start + alpha * (tuned - start)
            else:
                mixed[key] = tuned
        module.load_state_dict(mixed)
        self._start = {}
