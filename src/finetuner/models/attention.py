"""Which kernel scaled-dot-product attention runs on a GPU, chosen on purpose rather than left to torch's default.

Hugging Face models call ``torch.nn.functional.scaled_dot_product_attention``; on an H100/H200 torch tries cuDNN's
attention first. cuDNN builds an execution plan for every input shape it has not seen, on the host: a GPU profile of
finetuner's text workload (bert-base, batch 256 pairs; ``../shared/perf``) spent 4.3 s of 4.7 s of host time for 8
steps in ``_cudnn_attention_forward/backward`` while the GPU worked 0.47 s, and the same steps ran 8.4x faster with
cuDNN attention off. Bounded shapes (:mod:`finetuner.models.text.tokens`) leave few plans to build, but every new
evaluation or ``encode`` batch shape would still pay, so by default finetuner runs attention on

1. **flash** attention (no mask: vision transformers, unpadded text groups): no per-shape planning;
2. **memory-efficient** attention (takes the padding mask BERT-style models pass): no per-shape planning;
3. **math** (the reference kernel) where neither applies (fp32 with dropout on old GPUs, odd head sizes).

``FINETUNER_SDPA_BACKENDS`` (comma-separated, in priority order, from ``flash``, ``efficient``, ``cudnn``, ``math``)
replaces that list; ``benchmarks/bench_train_gpu.py`` measures each choice on the benchmark's shapes so the default
can follow the figures. On the CPU only the math and flash-CPU kernels exist and nothing is changed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

from finetuner.errors import ConfigError

#: the name of each backend as ``FINETUNER_SDPA_BACKENDS`` takes it
BACKEND_NAMES = ("flash", "efficient", "cudnn", "math")
#: the default priority on CUDA (see the module's docstring)
DEFAULT_BACKENDS = ("flash", "efficient", "math")
ENV = "FINETUNER_SDPA_BACKENDS"


def chosen_backends() -> tuple[str, ...]:
    """The attention backends in priority order: ``FINETUNER_SDPA_BACKENDS`` or :data:`DEFAULT_BACKENDS`.

    Example:
        >>> chosen_backends()
        ('flash', 'efficient', 'math')
    """
    value = os.environ.get(ENV, "").strip()
    if not value:
        return DEFAULT_BACKENDS
    names = tuple(n.strip().lower() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in BACKEND_NAMES]
    if unknown or not names:
        raise ConfigError(f"{ENV}={value!r}: unknown backend(s) {unknown}; valid: {', '.join(BACKEND_NAMES)}")
    return names


def _torch_backends(names: tuple[str, ...]) -> list[Any]:
    from torch.nn.attention import SDPBackend

    table = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "math": SDPBackend.MATH,
    }
    return [table[n] for n in names]


@contextlib.contextmanager
def attention_backends(device: torch.device | str | None) -> Iterator[None]:
    """Run the enclosed forward passes with :func:`chosen_backends` on CUDA (in that priority); elsewhere a no-op.
    The backward pass uses the kernel its forward chose.

    Example:
        >>> with attention_backends('cpu'):
        ...     torch.nn.functional.scaled_dot_product_attention(*torch.ones(3, 1, 2, 4)).shape
        torch.Size([1, 2, 4])
    """
    if torch.device(device or "cpu").type != "cuda":
        yield
        return
    from torch.nn.attention import sdpa_kernel

    with sdpa_kernel(_torch_backends(chosen_backends()), set_priority=True):
        yield
