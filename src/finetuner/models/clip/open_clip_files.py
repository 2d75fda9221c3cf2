"""How an open_clip tower saves and loads alone: the split of an open_clip model, the folder's files, the offline
rebuild.

An open_clip ``CLIP`` (or ``CustomTextCLIP``) is split in two: the vision tower is its ``visual`` module (what
``model.encode_image`` runs); the text tower is the rest, minus ``logit_scale`` / ``logit_bias``, and embeds with
``model.encode_text``. Each tower's folder is self-contained and loads without the network:

```
metadata.yml            kind open-clip-text / open-clip-vision, the source name, output_dim, ...
open_clip_config.json   open_clip's own format: {"model_cfg": ..., "preprocess_cfg": ...}
model.safetensors       this tower's weights, named as in the whole open_clip model (visual.* for the vision tower)
tokenizer files         text tower of a model with a Hugging Face tokenizer
hf-text/config.json     text tower of a model with a Hugging Face text encoder
```

Loading builds the architecture from ``open_clip_config.json`` with ``open_clip.create_model('local-dir:...',
load_weights=False)`` (no download; the other tower replaced by a tiny stand-in), keeps the tower's half and loads
the saved weights into it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from finetuner.errors import ArtifactError
from finetuner.models.clip.open_clip_names import import_open_clip

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "model.safetensors"
HF_TEXT_DIR = "hf-text"


def split_open_clip(model: nn.Module) -> tuple[nn.Module, nn.Module, float]:
    """``(text part, visual, temperature)`` of an open_clip model: the text part is the model with ``visual``,
    ``logit_scale`` and ``logit_bias`` removed (``encode_text`` uses none of them), so each half alone is kept.

    Example:
        >>> text, visual, temperature = split_open_clip(open_clip.create_model('ViT-B-32'))  # doctest: +SKIP
    """
    visual = model.visual
    scale = getattr(model, "logit_scale", None)
    temperature = float(torch.exp(-scale.detach().float().reshape(-1)[0])) if scale is not None else 0.07
    del model.visual
    for name in ("logit_scale", "logit_bias"):
        if isinstance(getattr(model, name, None), nn.Parameter):
            delattr(model, name)
    return model, visual, temperature


def save_weights(module: nn.Module, path: Path, prefix: str = "") -> None:
    """Write ``module``'s weights to the safetensors file ``path``, each name prefixed with ``prefix``.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> save_weights(nn.Linear(2, 2), folder / WEIGHTS_FILE, prefix='visual.')
        >>> sorted(load_file(str(folder / WEIGHTS_FILE)))
        ['visual.bias', 'visual.weight']
    """
    state = {prefix + k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    save_file(state, str(path))


def load_weights(module: nn.Module, directory: Path, prefix: str = "") -> None:
    """Load the weights named ``prefix...`` from ``directory``'s ``model.safetensors`` into ``module``; an
    :class:`ArtifactError` when the file is missing or does not fit.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> save_weights(nn.Linear(2, 2), folder / WEIGHTS_FILE, prefix='visual.')
        >>> load_weights(nn.Linear(2, 2), folder, prefix='visual.')
    """
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise ArtifactError(f"{directory} has no {WEIGHTS_FILE}; the artifact is incomplete")
    state = {k[len(prefix) :]: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ArtifactError(
            f"{path} does not fit the open_clip architecture in {CONFIG_FILE}: missing {list(missing)[:5]}, "
            f"unexpected {list(unexpected)[:5]}"
        )


def read_config(directory: Path) -> dict[str, Any]:
    """The ``open_clip_config.json`` of a saved tower; an :class:`ArtifactError` when missing or damaged.

    Example:
        >>> read_config(Path('/nonexistent'))
        Traceback (most recent call last):
        ...
        finetuner.errors.ArtifactError: /nonexistent has no open_clip_config.json; it is not a saved open_clip tower
    """
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ArtifactError(f"{directory} has no {CONFIG_FILE}; it is not a saved open_clip tower")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); the artifact is damaged") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_cfg"), dict):
        raise ArtifactError(f"{path} has no 'model_cfg'; the artifact is damaged")
    return config


#: stand-ins for the half a load does not keep (built instead of the real one, then dropped): small and offline
_PLACEHOLDER = {
    "vision_cfg": {"image_size": 8, "patch_size": 8, "width": 8, "layers": 1, "head_width": 8},
    "text_cfg": {"context_length": 2, "vocab_size": 8, "width": 8, "heads": 1, "layers": 1},
}


def rebuild(directory: Path, keep: str) -> tuple[nn.Module, dict[str, Any]]:
    """The open_clip model described by ``directory``'s config, randomly initialised and built offline; the
    half other than ``keep`` (``'text'`` or ``'vision'``) is a tiny stand-in, so loading a tower never builds
    (or downloads anything for) the other one.

    Example:
        >>> model, config = rebuild(Path('artifacts/run/models/clip-vision'), keep='vision')  # doctest: +SKIP
    """
    open_clip = import_open_clip(f"loading {directory}")
    config = read_config(directory)
    overrides: dict[str, Any] = {}
    if keep == "text":
        overrides["vision_cfg"] = dict(_PLACEHOLDER["vision_cfg"])
        text_cfg = dict(config["model_cfg"].get("text_cfg", {}))
        if text_cfg.get("hf_model_name"):  # a Hugging Face text encoder: its config was saved next to the weights
            text_cfg["hf_model_name"] = str((directory / HF_TEXT_DIR).absolute())
            text_cfg["hf_model_pretrained"] = False
            overrides["text_cfg"] = text_cfg
    else:
        overrides["text_cfg"] = dict(_PLACEHOLDER["text_cfg"])
    quiet = _DropMessage("No pretrained weights loaded")  # true, and misleading: the tower's weights load next
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        model = open_clip.create_model(
            f"local-dir:{directory.absolute()}",
            load_weights=False,
            pretrained_image=False,
            pretrained_text=False,
            **overrides,
        )
    except Exception as exc:  # open_clip raises bare RuntimeError/ValueError/OSError here
        raise ArtifactError(f"{directory}: open_clip cannot build the saved architecture: {exc}") from exc
    finally:
        root.removeFilter(quiet)
    return model, config


class _DropMessage(logging.Filter):
    """Drop log records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefix)


def write_config(directory: Path, config: dict[str, Any]) -> None:
    """Create ``directory`` and write ``config`` (``{'model_cfg': ..., 'preprocess_cfg': ...}``) into its
    ``open_clip_config.json``.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp()) / 'tower'
        >>> write_config(folder, {'model_cfg': {'embed_dim': 8}})
        >>> read_config(folder)
        {'model_cfg': {'embed_dim': 8}}
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
