"""A CPU stand-in for ``torch.cuda.set_sync_debug_mode('error')``: records every op that would make the host wait
for a GPU (a value read back, a data-dependent output size), with where it was called from.

On the CPU nothing waits, but the same ops run: ``.item()``, ``float(t)``, ``bool(t)`` and ``if t:`` dispatch
``aten._local_scalar_dense`` / ``aten.is_nonzero``; ``torch.equal`` returns a Python bool; ``nonzero``,
``masked_select``, ``unique`` and boolean indexing size their output from the data. On a GPU each is a
``cudaStreamSynchronize``.
"""

from __future__ import annotations

import traceback
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode

#: ops whose result the host must wait for on a GPU
SYNCING = {
    "aten._local_scalar_dense.default",
    "aten.is_nonzero.default",
    "aten.item.default",
    "aten.equal.default",
    "aten.nonzero.default",
    "aten.masked_select.default",
    "aten._unique2.default",
    "aten.unique_dim.default",
    "aten.unique_consecutive.default",
    "aten.repeat_interleave.Tensor",
}


class HostSyncs(TorchDispatchMode):
    """Records syncing ops as ``(op, label, stack)``; ``label`` is what :attr:`where` holds when the op ran (the
    training step, say), set by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any, str]] = []
        self.where: Any = None

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = str(func)
        if name in SYNCING:
            stack = "".join(traceback.format_stack(limit=14)[:-1])
            self.calls.append((name, self.where, stack))
        return func(*args, **(kwargs or {}))

    def report(self) -> str:
        """The recorded calls, each with the end of its stack (for an assertion message)."""
        return "\n\n".join(f"{name} at {where}:\n{stack[-1500:]}" for name, where, stack in self.calls)
