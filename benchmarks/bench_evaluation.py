"""Benchmark: finetuner's evaluate_embeddings vs sentence-transformers' InformationRetrievalEvaluator.

Both get the same precomputed, clustered embeddings (items with the same label are relevant) and compute
retrieval metrics at k = 20 with cosine similarity. sentence-transformers is called through its own
``compute_all_metrics(model, corpus_embeddings=...)`` with a stand-in model whose ``encode_query`` returns
the fixed query embeddings, so neither side embeds anything: the timings cover search plus metrics.

Each method runs in a fresh subprocess (``--repeats`` times, alternating; the fastest wall and CPU times
are kept; CPU time is the steadier figure on a shared machine). Peak memory is the growth of the process's
peak RSS (``VmHWM``, reset just before the timed call) over its RSS at that point, after a tiny torch
warm-up in both: the working memory of the evaluation on top of the loaded embeddings (and, for
sentence-transformers, its relevant-docs sets, built before the timer starts). The largest growth over the
repeats is reported.

Usage:
    PYTHONPATH=src python benchmarks/bench_evaluation.py            # 10k queries x 100k index, 384-d
    PYTHONPATH=src python benchmarks/bench_evaluation.py --small    # 2k x 20k, seconds
    PYTHONPATH=src python benchmarks/bench_evaluation.py --threads 1 --repeats 3   # steadier when shared
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("finetuner", "sentence-transformers")


def make_data(args: argparse.Namespace, directory: Path) -> None:
    """Clustered embeddings: label centres plus Gaussian noise; queries and index from the same clusters."""
    rng = np.random.default_rng(args.seed)
    centres = rng.normal(size=(args.labels, args.dim)).astype(np.float32)  # (labels, dim)
    for name, n in (("query", args.queries), ("index", args.index)):
        labels = rng.integers(0, args.labels, size=n)  # (n,)
        emb = np.empty((n, args.dim), dtype=np.float32)  # (n, dim)
        for start in range(0, n, 50_000):
            stop = min(start + 50_000, n)
            noise = rng.normal(scale=args.noise, size=(stop - start, args.dim)).astype(np.float32)
            emb[start:stop] = centres[labels[start:stop]] + noise
        np.save(directory / f"{name}_emb.npy", emb)
        np.save(directory / f"{name}_labels.npy", labels)


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> int:
    """Reset the peak RSS to the current RSS (Linux ``clear_refs``) so that earlier peaks (imports, loading)
    do not count; returns the current RSS in bytes."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then the peak below may include an earlier one: an upper bound
    return rss_bytes()


def peak_rss_bytes() -> int:
    """The process's peak RSS since the last reset (``VmHWM``), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run_finetuner(data: dict[str, np.ndarray], limit: int) -> tuple[tuple[float, float], int, dict[str, float]]:
    try:
        from finetuner.evaluation import evaluate_embeddings
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from finetuner.evaluation import evaluate_embeddings

    before = reset_peak_rss()
    start, cpu_start = time.perf_counter(), time.process_time()
    m = evaluate_embeddings(
        data["query_emb"], data["query_labels"], data["index_emb"], data["index_labels"], limit=limit
    )
    elapsed = (time.perf_counter() - start, time.process_time() - cpu_start)
    comparable = {
        "precision": m["precision_at_k"],
        "recall": m["recall_at_k"],
        "hit": m["hit_at_k"],
        "mrr": m["reciprocal_rank"],
    }
    return elapsed, peak_rss_bytes() - before, comparable


def run_sentence_transformers(
    data: dict[str, np.ndarray], limit: int
) -> tuple[tuple[float, float], int, dict[str, float]]:
    import logging

    import torch
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.util import cos_sim

    logging.disable(logging.INFO)
    q_labels, i_labels = data["query_labels"], data["index_labels"]
    by_label: dict[int, set[str]] = {}
    for i, label in enumerate(i_labels.tolist()):
        by_label.setdefault(label, set()).add(str(i))
    queries = {str(i): str(i) for i in range(len(q_labels))}  # the "text" of query i is its row number
    corpus = {str(i): "" for i in range(len(i_labels))}
    relevant = {str(i): by_label.get(label, set()) for i, label in enumerate(q_labels.tolist())}
    query_emb = torch.from_numpy(data["query_emb"])

    class FixedEmbeddings:
        """Stands in for a SentenceTransformer: returns the precomputed rows of the queries asked for."""

        def encode_query(self, sentences: list[str], **kwargs: Any) -> torch.Tensor:
            return query_emb[[int(s) for s in sentences]]

    evaluator = InformationRetrievalEvaluator(
        queries,
        corpus,
        relevant,
        mrr_at_k=[limit],
        ndcg_at_k=[limit],
        accuracy_at_k=[limit],
        precision_recall_at_k=[limit],
        map_at_k=[limit],
        score_functions={"cosine": cos_sim},
        write_csv=False,
    )
    before = reset_peak_rss()
    start, cpu_start = time.perf_counter(), time.process_time()
    scores = evaluator.compute_all_metrics(FixedEmbeddings(), corpus_embeddings=torch.from_numpy(data["index_emb"]))
    elapsed = (time.perf_counter() - start, time.process_time() - cpu_start)
    s = scores["cosine"]
    comparable = {
        "precision": float(s["precision@k"][limit]),
        "recall": float(s["recall@k"][limit]),
        "hit": float(s["accuracy@k"][limit]),
        "mrr": float(s["mrr@k"][limit]),
    }
    return elapsed, peak_rss_bytes() - before, comparable


def warm_up_torch() -> None:
    """One small matmul and top-k, so one-off start-up memory (BLAS threads, allocator pools) is not counted."""
    import torch

    a, b = torch.randn(64, 384), torch.randn(512, 384)
    (a @ b.T).topk(20, dim=1)


def worker(method: str, directory: Path, limit: int, threads: int | None) -> None:
    """Run one method in this (fresh) process and print its figures as JSON."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    names = ("query_emb", "query_labels", "index_emb", "index_labels")
    data = {name: np.load(directory / f"{name}.npy") for name in names}
    warm_up_torch()
    run = run_finetuner if method == "finetuner" else run_sentence_transformers
    (seconds, cpu_seconds), peak, metrics = run(data, limit)
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_bytes": peak, "metrics": metrics}))


def measure(method: str, directory: Path, limit: int, threads: int | None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", method, "--data-dir", str(directory), "--limit", str(limit)]
    cmd += ["--threads", str(threads)] if threads else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="2k queries x 20k index")
    parser.add_argument("--queries", type=int, default=None, help="number of queries (default 10000)")
    parser.add_argument("--index", type=int, default=None, help="index size (default 100000)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--labels", type=int, default=None, help="clusters (default: index / 100)")
    parser.add_argument("--noise", type=float, default=3.0, help="per-dimension noise around a centre")
    parser.add_argument("--limit", type=int, default=20, help="k of the metrics")
    parser.add_argument("--repeats", type=int, default=2, help="runs per method; the fastest is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data_dir, args.limit, args.threads)
        return
    args.queries = args.queries or (2_000 if args.small else 10_000)
    args.index = args.index or (20_000 if args.small else 100_000)
    args.labels = args.labels or max(1, args.index // 100)

    command = "PYTHONPATH=src python benchmarks/bench_evaluation.py " + " ".join(sys.argv[1:])
    print(f"reproduce: {command.strip()}")
    print(
        f"{args.queries} queries x {args.index} index, {args.dim}-d, {args.labels} labels, "
        f"noise {args.noise}, k = {args.limit}, cosine, torch threads {args.threads or torch_threads()}"
    )
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        make_data(args, Path(tmp))
        for _ in range(args.repeats):
            for method in METHODS:  # alternate, so a busy machine slows both alike
                r = measure(method, Path(tmp), args.limit, args.threads)
                best = results.setdefault(method, r)  # fastest wall and CPU time, largest memory growth
                best["seconds"] = min(best["seconds"], r["seconds"])
                best["cpu_seconds"] = min(best["cpu_seconds"], r["cpu_seconds"])
                best["peak_bytes"] = max(best["peak_bytes"], r["peak_bytes"])

    ours, theirs = results["finetuner"], results["sentence-transformers"]
    print(f"\n{date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| method | wall time (s) | CPU time (s) | peak memory over inputs (MiB) | P@k | R@k | hit@k | MRR@k |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for method in METHODS:
        r, m = results[method], results[method]["metrics"]
        print(
            f"| {method} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['peak_bytes'] / 2**20:.0f} "
            f"| {m['precision']:.4f} "
            f"| {m['recall']:.4f} | {m['hit']:.4f} | {m['mrr']:.4f} |"
        )
    print(
        f"\nsentence-transformers / finetuner: wall time x{theirs['seconds'] / ours['seconds']:.2f}, "
        f"CPU time x{theirs['cpu_seconds'] / ours['cpu_seconds']:.2f}, "
        f"peak memory x{theirs['peak_bytes'] / max(ours['peak_bytes'], 1):.1f}"
    )


if __name__ == "__main__":
    main()
