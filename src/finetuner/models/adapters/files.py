"""The folder of a model saved as its adapter alone, written and read here.

::

    <model folder>/
      metadata.yml          kind: lora, modality, output_dim, base_kind and ``adapter`` (AdapterInfo: the adapter,
                            its options, the base's name or folder, the tower, the build arguments, the base digest)
      adapter/              peft's own layout (adapter_config.json, adapter_model.safetensors), so
                            ``peft.PeftModel.from_pretrained(backbone, folder / 'adapter')`` reads it too
      extra.safetensors     the tower's weights outside its backbone (a projection head, GeM's p), when it has any

A few MiB instead of the whole model. Loading rebuilds the base (offline: an alias with packaged weights, a local
folder, or a hub id in the local cache), checks its weights against the digest taken before training, and puts the
adapter back on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import load_file, save_file

from finetuner.errors import ArtifactError
from finetuner.fileio import atomic_directory
from finetuner.models.adapters import ADAPTER_KIND, AdapterInfo, towers_of, weights_digest
from finetuner.models.io import METADATA_FILE

ADAPTER_DIR = "adapter"
EXTRA_FILE = "extra.safetensors"


def _outside_backbone(tower: Any) -> dict[str, Any]:
    """The tower's state outside its backbone (a head, pooling parameters), by state-dict key."""
    return {k: v.detach().cpu().contiguous() for k, v in tower.state_dict().items() if not k.startswith("backbone.")}


def save_adapted(tower: Any, directory: str | Path) -> Path:
    """Save a tower that carries an adapter as the adapter alone (see the module docstring); atomically.

    Example:
        >>> save_adapted(model, 'out/model')  # doctest: +SKIP
        PosixPath('out/model')
    """
    info: AdapterInfo = tower.adapter_info
    d = Path(directory)
    with atomic_directory(d) as staging:
        tower.backbone.save_pretrained(str(staging / ADAPTER_DIR), safe_serialization=True)
        extra = _outside_backbone(tower)
        if extra:
            save_file(extra, str(staging / EXTRA_FILE))
        meta = {
            "kind": ADAPTER_KIND,
            "modality": tower.modality,
            "output_dim": int(tower.output_dim),
            "base_kind": info.base_kind,
            "adapter": info.to_dict(),
        }
        (staging / METADATA_FILE).write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    return d


def load_adapted(directory: str | Path, metadata: dict[str, Any]) -> Any:
    """Rebuild a model saved by :func:`save_adapted`: the base, checked against the digest, plus the adapter
    (trainable, so ``fit`` on the artifact trains the adapter further).

    Raises:
        ArtifactError: the base cannot be built here, or its weights differ from those the adapter was trained on.

    Example:
        >>> model = load_adapted('out/model', read_metadata('out/model'))  # doctest: +SKIP
    """
    from peft import PeftModel

    from finetuner.models.factory import build_model

    d = Path(directory)
    raw = metadata.get("adapter")
    if not isinstance(raw, dict) or "base" not in raw:
        raise ArtifactError(f"{d / METADATA_FILE} has no 'adapter' entry naming the base; the artifact is damaged")
    info = AdapterInfo(**raw)
    build = dict(info.build or {})
    try:
        base = build_model(info.base, output_dim=build.get("output_dim"), model_options=build.get("model_options"))
    except Exception as exc:  # any loader failure: say which base and why
        raise ArtifactError(
            f"{d} holds a {info.adapter} adapter for the base model {info.base!r}, which could not be loaded here "
            f"({type(exc).__name__}: {exc}); the base must be available offline (its folder, or the Hugging Face "
            "cache), or merge the adapter where it is (finetuner merge)"
        ) from exc
    towers = towers_of(base)
    if info.tower not in towers:
        raise ArtifactError(f"{d}: the base {info.base!r} has no tower {info.tower!r} (it has {list(towers)})")
    tower = towers[info.tower]
    found = weights_digest(tower.backbone)
    if info.digest and found != info.digest:
        raise ArtifactError(
            f"{d}: the base model {info.base!r} loaded here has other weights than the one the adapter was trained "
            f"on (digest {found}, expected {info.digest}); load it where that base is, or merge the adapter there"
        )
    tower.backbone = PeftModel.from_pretrained(tower.backbone, str(d / ADAPTER_DIR), is_trainable=True)
    if (d / EXTRA_FILE).is_file():
        extra = load_file(str(d / EXTRA_FILE))
        expected = set(_outside_backbone(tower))
        if set(extra) != expected:
            raise ArtifactError(
                f"{d / EXTRA_FILE} holds {sorted(extra)}, but the rebuilt model has {sorted(expected)} outside its "
                "backbone; the artifact does not fit its base"
            )
        tower.load_state_dict(extra, strict=False)
    tower.adapter_info = info
    return tower
