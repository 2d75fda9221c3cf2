"""Memory of in-batch-negative losses on a large batch of pairs: finetuner's InfoNCELoss against
pytorch-metric-learning's NTXentLoss (the same loss on classes of two), forward and backward on the CPU.

Each loss runs in a fresh process; the figure is the growth of peak RSS over the process's size before the call.

    python benchmarks/bench_pair_loss_memory.py --pairs 4096 --dim 384
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(name: str, pairs: int, dim: int) -> None:
    import torch
    from pytorch_metric_learning.losses import NTXentLoss

    from finetuner.losses.contrastive import InfoNCELoss

    torch.manual_seed(0)
    emb = torch.randn(2 * pairs, dim, requires_grad=True)
    labels = torch.arange(pairs).repeat_interleave(2)
    loss_fn = InfoNCELoss(0.05) if name == "InfoNCELoss" else NTXentLoss(0.05)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    try:
        loss = loss_fn(emb, labels)
        loss.backward()
        result = {"seconds": time.perf_counter() - started, "loss": float(loss.detach())}
    except RuntimeError as exc:  # the allocator's refusal, reported as the result
        result = {"error": str(exc).split("\n")[0][:200]}
    result["peak_growth_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.pairs, args.dim)
        return
    print(f"{args.pairs} pairs ({2 * args.pairs} embeddings of {args.dim} dims), forward + backward, CPU")
    print("| loss | seconds | peak memory growth (MiB) | loss value |")
    print("|---|---:|---:|---:|")
    for name in ("InfoNCELoss", "NTXentLoss"):
        done = subprocess.run(
            [sys.executable, __file__, "--child", name, "--pairs", str(args.pairs), "--dim", str(args.dim)],
            capture_output=True, text=True,
        )
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"| {name} | crashed: {done.stderr.strip().splitlines()[-1:]} | | |")
            continue
        r = json.loads(line[7:])
        if "error" in r:
            print(f"| {name} | failed: {r['error']} | {r['peak_growth_mib']:.0f} | |")
        else:
            print(f"| {name} | {r['seconds']:.2f} | {r['peak_growth_mib']:.0f} | {r['loss']:.4f} |")
    print(f"\nReproduce: python benchmarks/bench_pair_loss_memory.py --pairs {args.pairs} --dim {args.dim}")


if __name__ == "__main__":
    main()
