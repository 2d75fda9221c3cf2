"""ClassSampler cost against the number of classes: the tree-based sampler vs the previous algorithm, one run.

The previous algorithm (finetuner 7fc973a, kept here only as the reference) shuffled every class with its own
``rng.permutation`` at the start of an epoch and drew each batch's classes with ``rng.choice(classes, m,
replace=False, p=weights / weights.sum())``: O(classes) per batch. Today's ``ClassSampler`` shuffles all classes
in one sort and draws from a 64-ary sum tree (data/weight_tree.py): O(m log classes) per batch. Labels: ``C``
classes of 2-6 items (random), batch 64, 2 items per class (32 classes per batch). Measured per size and
algorithm, alternating: the epoch start (shuffling every class, up to the first batch) and the mean time per batch
over the next ``--batches`` batches; the process CPU clock, best of ``--repeats``. Then, apart from the timing,
the peak of memory allocated (tracemalloc) from the epoch start through 10 batches, beyond the sampler itself.

    PYTHONPATH=src python benchmarks/bench_class_sampler.py --classes 1000 100000 1000000
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings
from collections.abc import Iterator
from itertools import islice

import numpy as np

from finetuner.data.samplers import ClassSampler

BATCH, K = 64, 2


def previous_batches(sampler: ClassSampler, seed: int, epoch: int) -> Iterator[list[int]]:
    """The batches of the previous ClassSampler (7fc973a) on the same classes: a permutation per class per epoch
    and an O(classes) ``rng.choice`` per batch."""
    rng = np.random.default_rng([seed, epoch])
    k, bounds, order = sampler.num_items_per_class, sampler._bounds, sampler._order
    sizes = np.diff(bounds)
    groups = -(-sizes // k)
    need = np.where((groups > 1) & (sizes % k > 0), k - sizes % k, 0)
    extra_bounds = np.concatenate([[0], np.cumsum(need)])
    shuffled, extras = np.empty_like(order), np.empty(int(extra_bounds[-1]), dtype=order.dtype)
    remaining = np.zeros(sampler.num_classes)

    def refill(c: int) -> None:
        start, end = bounds[c], bounds[c + 1]
        perm = rng.permutation(order[start:end])
        shuffled[start:end] = perm
        short = (end - start) % k
        if extra_bounds[c + 1] > extra_bounds[c]:
            extras[extra_bounds[c] : extra_bounds[c + 1]] = rng.choice(perm[: len(perm) - short], k - short, False)
        remaining[c] = groups[c]

    def take(c: int) -> np.ndarray:
        g = int(remaining[c]) - 1
        start = bounds[c] + g * k
        group = shuffled[start : min(start + k, bounds[c + 1])]
        remaining[c] = g
        if g == groups[c] - 1 and extra_bounds[c + 1] > extra_bounds[c]:
            return np.concatenate([group, extras[extra_bounds[c] : extra_bounds[c + 1]]])
        return group

    for c in range(sampler.num_classes):
        refill(c)
    for _ in range(len(sampler)):
        weights = remaining + 1e-3
        chosen = rng.choice(sampler.num_classes, sampler.classes_per_batch, replace=False, p=weights / weights.sum())
        batch: list[int] = []
        for c in chosen:
            if remaining[c] == 0:
                refill(c)
            batch.extend(int(i) for i in take(int(c)))
        yield batch


def measure(make: object, batches: int) -> tuple[float, float]:
    """CPU seconds to the first batch and per batch over the next ``batches``."""
    start = time.process_time()
    it = make()  # type: ignore[operator]
    next(it)
    first = time.process_time()
    n = sum(1 for _ in islice(it, batches))
    return first - start, (time.process_time() - first) / n


def peak_mib(make: object) -> float:
    """The peak of memory allocated while starting an epoch and drawing 10 batches."""
    tracemalloc.start()
    it = make()  # type: ignore[operator]
    sum(1 for _ in islice(it, 10))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[1000, 100_000, 1_000_000])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for classes in args.classes:
        labels = np.repeat(np.arange(classes), np.random.default_rng(0).integers(2, 7, size=classes))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampler = ClassSampler(labels, BATCH, K, seed=0)
        batches = min(args.batches, len(sampler) - 1)
        best: dict[str, tuple[float, float]] = {}
        makers = {"previous": lambda s=sampler: previous_batches(s, 0, 0), "tree": lambda s=sampler: iter(s)}
        for _ in range(args.repeats):  # the two algorithms alternate, so a busy spell hits both
            for name, make in makers.items():
                got = measure(make, batches)
                best[name] = tuple(min(a, b) for a, b in zip(best.get(name, got), got))  # type: ignore[assignment]
        memory = {name: peak_mib(make) for name, make in makers.items()}
        rows.append((classes, len(labels), best, memory))
        print(classes, best, memory, flush=True)
    print("\n| classes | items | epoch start: previous (s) | tree (s) | ratio | per batch: previous (ms) | tree (ms) "
          "| ratio | peak MiB: previous | tree |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    for classes, items, best, memory in rows:
        (p0, p1), (t0, t1) = best["previous"], best["tree"]
        print(f"| {classes:,} | {items:,} | {p0:.3f} | {t0:.3f} | x{p0 / t0:.1f} | {p1 * 1e3:.2f} | {t1 * 1e3:.3f} "
              f"| x{p1 / t1:.1f} | {memory['previous']:.1f} | {memory['tree']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
