"""A checkpoint's files: their sizes and digests (recorded at save, checked before a resume), and clear errors when
the disk fills up mid-write.

A checkpoint folder is written under a temporary name and renamed into place, so a crash never leaves a partial one
under its final name; but a disk can still truncate or corrupt a file later (a failing disk, a copy cut short, a
sync that never happened). ``checkpoint.yml`` records the size and BLAKE2b digest of every other file, and
:func:`checkpoint_problem` checks them before a resume loads anything, so a damaged checkpoint is named, not loaded.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from finetuner.errors import FinetunerError, StorageError

CHECKPOINT_FILE = "checkpoint.yml"
LATEST_FILE = "latest.yml"
_CHUNK = 8 * 2**20
_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def digest(path: Path) -> str:
    """The BLAKE2b digest of a file, read in chunks.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / 'a'; _ = f.write_bytes(b'abc'); digest(f)[:12]
        'ba80a53f981c'
    """
    h = hashlib.blake2b()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(folder: Path) -> dict[str, dict[str, Any]]:
    """``{file name: {'size': bytes, 'blake2b': digest}}`` of every file in a checkpoint folder but its YAML (files in
    sub-folders, such as a sharded model's ``sharded/``, by their relative path).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / 'rng.pt').write_bytes(b'abc')
        >>> file_digests(d)['rng.pt']['size']
        3
    """
    folder = Path(folder)
    return {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "blake2b": digest(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() != CHECKPOINT_FILE
    }


def checkpoint_problem(folder: Path) -> str | None:
    """What is wrong with a checkpoint's files (naming the file), or None when they are whole.

    ``checkpoint.yml`` must parse; every file it lists must have its recorded size and digest. Checkpoints from
    before digests were recorded get their safetensors headers checked (a truncated file fails there).

    Example:
        >>> checkpoint_problem(Path('/nonexistent'))
        '/nonexistent/checkpoint.yml is missing'
    """
    folder = Path(folder)
    meta_path = folder / CHECKPOINT_FILE
    if not meta_path.is_file():
        return f"{meta_path} is missing"
    try:
        meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return f"{meta_path} is damaged: {str(exc).splitlines()[0]}"
    if not isinstance(meta, dict) or ("batches_trained" not in meta and "step" not in meta):
        return f"{meta_path} is damaged: it does not describe a checkpoint"
    files = meta.get("files")
    if not isinstance(files, dict):
        if int(meta.get("format", 1)) >= 3:  # written last since format 3: without it the file was cut short
            return f"{meta_path} is truncated or damaged: it lists no files"
        return _legacy_problem(folder)
    for name, record in files.items():
        path = folder / str(name)
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != record.get("size"):
            return f"{path} is truncated or damaged: {size} bytes, {record.get('size')} were written"
        if digest(path) != record.get("blake2b"):
            return f"{path} is corrupted: its content differs from what was written (digest mismatch)"
    return None


def _legacy_problem(folder: Path) -> str | None:
    from safetensors import safe_open

    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                    handle.get_slice(key)
        except Exception as exc:
            return f"{path} is truncated or damaged ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    return None


@contextlib.contextmanager
def checkpoint_write_errors(directory: Path, name: str) -> Iterator[None]:
    """Turn an ``OSError`` while writing checkpoint ``name`` (a full disk above all) into a
    :class:`~finetuner.errors.StorageError` that says so and names the last good checkpoint, which stays as it was.

    Example:
        >>> with checkpoint_write_errors(Path('/tmp'), 'epoch-0001'):
        ...     pass
    """
    try:
        yield
    except FinetunerError:
        raise
    except OSError as exc:
        pointer = Path(directory) / LATEST_FILE
        try:
            last = (yaml.safe_load(pointer.read_text(encoding="utf-8")) or {}).get("checkpoint")
        except (OSError, yaml.YAMLError, AttributeError):
            last = None
        kept = (
            f"the last good checkpoint, {Path(directory) / str(last)}, is intact; resume from it with "
            "fit(<the same arguments>, resume_from=<run name>)"
            if last
            else "no earlier checkpoint exists"
        )
        what = "the disk is full" if exc.errno in _FULL else (exc.strerror or str(exc))
        fix = "free space on that disk (or give TrainingCheckpoint(directory=...) another one)"
        if exc.errno not in _FULL:
            fix = "make the folder writable, or give TrainingCheckpoint(directory=...) another one"
        error = StorageError(
            f"cannot write checkpoint {name} in {directory}: {what}; nothing of it was kept, and {kept}. To go on, "
            f"{fix}"
        )
        error.errno = exc.errno
        raise error from exc
