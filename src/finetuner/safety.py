"""Loading artifacts without running code: no unpickling, safe zip extraction, refused pickle files.

Rules (each enforced here and tested in ``tests/reliability``):

- model weights are read with safetensors only; a model folder whose weights exist only in a pickle-based
  format (``pytorch_model.bin``, ``*.pt``, ``*.pkl``, ...) is refused with :class:`~finetuner.errors.ArtifactError`
  before any loader sees it; pickle files next to safetensors weights are ignored (never opened);
- a Hugging Face ``config.json`` that asks for custom code (``auto_map``) is refused;
- torch files that must be read (optimizer state in checkpoints) go through :func:`load_torch_file`, i.e.
  ``torch.load(weights_only=True)``, whose unpickler only rebuilds tensors and plain Python values;
- a zip archive is extracted member by member after checking every name: absolute paths, ``..``
  components, drive letters, links and special files, and archives that would unpack to more than
  :data:`MAX_UNPACKED_BYTES` are refused.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import warnings
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from finetuner.errors import ArtifactError

#: file name patterns whose loading would unpickle (and so could run code)
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".dill"})
#: how much a zip artifact may unpack to (bytes); larger archives are refused as a likely zip bomb
MAX_UNPACKED_BYTES = 64 * 1024**3
#: how many members a zip artifact may have
MAX_MEMBERS = 100_000


def pickle_files(directory: str | Path) -> list[Path]:
    """The files under ``directory`` whose format is pickle-based (by suffix).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / 'pytorch_model.bin').write_bytes(b'x')
        >>> [p.name for p in pickle_files(d)]
        ['pytorch_model.bin']
    """
    root = Path(directory)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)


def check_model_dir(directory: str | Path) -> None:
    """Refuse a saved model folder that could only be loaded by unpickling or by running custom code.

    Raises:
        ArtifactError: the weights exist only as pickle files, or ``config.json`` names custom code.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / 'pytorch_model.bin').write_bytes(b'x')
        >>> check_model_dir(d)
        Traceback (most recent call last):
        ...
        finetuner.errors.ArtifactError: ... holds pickle-based weights (pytorch_model.bin) and no safetensors ...
    """
    root = Path(directory)
    pickles = pickle_files(root)
    has_safetensors = any(root.rglob("*.safetensors"))
    if pickles and not has_safetensors:
        names = ", ".join(str(p.relative_to(root)) for p in pickles[:5])
        raise ArtifactError(
            f"{root} holds pickle-based weights ({names}) and no safetensors weights; finetuner never "
            "unpickles files from an artifact, because unpickling can run arbitrary code. Convert the "
            "weights to safetensors (model.save_pretrained(path, safe_serialization=True)) with a copy you trust."
        )
    config = root / "config.json"
    if config.is_file():
        try:
            cfg = json.loads(config.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{config} is not valid JSON ({exc}); the artifact is damaged") from None
        if isinstance(cfg, dict) and cfg.get("auto_map"):
            raise ArtifactError(
                f"{config} asks for custom model code (auto_map: {sorted(cfg['auto_map'])}); finetuner does not "
                "run code shipped inside an artifact. Use a model whose architecture transformers knows."
            )


def load_torch_file(path: str | Path, *, map_location: Any = "cpu") -> Any:
    """Read a ``torch.save`` file with ``weights_only=True`` (tensors and plain Python values only).

    Raises:
        ArtifactError: the file is missing, damaged, or holds objects other than tensors and plain values
            (a pickle payload is refused before any of its code runs).

    Example:
        >>> import tempfile, torch, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / 'state.pt'
        >>> torch.save({'step': 3, 'w': torch.ones(2)}, f)
        >>> load_torch_file(f)['step']
        3
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; the checkpoint is incomplete")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(
            f"{path} is not a plain tensor file and was not loaded (finetuner reads torch files with "
            f"weights_only=True, so no code in them runs): {first}"
        ) from None


def _bad_member(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member is unsafe to extract, or None."""
    name = info.filename
    if "\x00" in name:
        return "has a NUL byte in its name"
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or name.startswith(("/", "\\")):
        return "is an absolute path"
    if ".." in posix.parts or ".." in windows.parts:
        return "climbs out of the folder with '..'"
    mode = info.external_attr >> 16
    if mode and (stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))):
        return "is a link or special file"
    return None


def safe_extract_zip(archive: str | Path, destination: str | Path) -> Path:
    """Extract ``archive`` into ``destination`` after checking every member; nothing is written if one is bad.

    Raises:
        ArtifactError: the file is not a zip archive, or a member is absolute, climbs out with ``..``, is a
            link or special file, or the archive would unpack to more than :data:`MAX_UNPACKED_BYTES`.

    Example:
        >>> import tempfile, zipfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> with zipfile.ZipFile(root / 'evil.zip', 'w') as z:
        ...     z.writestr('../escape.txt', 'x')
        >>> safe_extract_zip(root / 'evil.zip', root / 'out')
        Traceback (most recent call last):
        ...
        finetuner.errors.ArtifactError: ... member '../escape.txt' climbs out of the folder with '..'; ...
    """
    archive, destination = Path(archive), Path(destination)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArtifactError(f"{archive} is not a readable zip archive ({exc})") from None
    with zf:
        members = zf.infolist()
        if len(members) > MAX_MEMBERS:
            raise ArtifactError(f"{archive} has {len(members)} members (more than {MAX_MEMBERS}); refused")
        total = 0
        for info in members:
            why = _bad_member(info)
            if why:
                raise ArtifactError(
                    f"{archive}: member {info.filename!r} {why}; refusing to extract this archive (it could "
                    "write outside its folder). Re-create the zip from the artifact folder itself."
                )
            total += info.file_size
        if total > MAX_UNPACKED_BYTES:
            raise ArtifactError(
                f"{archive} would unpack to {total / 1024**3:.1f} GiB (limit {MAX_UNPACKED_BYTES / 1024**3:.0f} "
                "GiB); refused as a likely zip bomb"
            )
        destination.mkdir(parents=True, exist_ok=True)
        root = destination.resolve()
        for info in members:
            target = (root / info.filename).resolve()
            if target != root and root not in target.parents:  # belt and braces after the name checks
                raise ArtifactError(f"{archive}: member {info.filename!r} resolves outside the folder; refused")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                copied = _copy_limited(src, dst, info.file_size)
            if copied != info.file_size:
                raise ArtifactError(f"{archive}: member {info.filename!r} is larger than its header says; refused")
    return destination


def _copy_limited(src: Any, dst: Any, limit: int) -> int:
    """Copy at most ``limit + 1`` bytes (so a lying size header is detected without unpacking a bomb)."""
    copied = 0
    while copied <= limit:
        chunk = src.read(min(1 << 20, limit + 1 - copied))
        if not chunk:
            break
        dst.write(chunk)
        copied += len(chunk)
    return copied


def is_plain_name(name: object) -> bool:
    """Whether ``name`` is a plain file or folder name (no separators, not ``.`` or ``..``, printable).

    Example:
        >>> is_plain_name('clip-text'), is_plain_name('../etc'), is_plain_name('a/b'), is_plain_name('')
        (True, False, False, False)
    """
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\:\x00")
        and name.isprintable()
        and name == name.strip()
    )


def remove_tree(path: str | Path) -> None:
    """Remove a folder tree, ignoring errors (used for temporary extraction folders)."""
    shutil.rmtree(os.fspath(path), ignore_errors=True)
