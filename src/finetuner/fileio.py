"""Atomic file and folder writes (a crash never leaves a half-written file or folder under the final name); YAML.

Everything is written under a temporary name in the same folder (same file system), flushed to disk, then
renamed into place with ``os.replace``, which is atomic on POSIX and Windows. A folder that already exists under
the final name is moved aside first and removed only after the new one is in place.

What lands under the final name has the modes the process's umask gives a new file or folder (``0o644`` / ``0o755``
under the usual umask ``022``), as ``open`` and ``mkdir`` (and ``save_pretrained``) would give it, not the private
``0o600`` / ``0o700`` of the temporary names.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

#: the names of what a write in progress (or one killed midway) leaves beside its target
STAGING_PATTERNS = (".*.tmp-*", ".*.old-*", ".*.tmp")


def current_umask() -> int:
    """The process's umask (read without changing it where ``/proc`` allows).

    Example:
        >>> 0 <= current_umask() <= 0o777
        True
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode a new folder (``0o777``) or file (``0o666``) gets under the umask.

    Example:
        >>> old = os.umask(0o022); modes = oct(default_mode(True)), oct(default_mode()); _ = os.umask(old); modes
        ('0o755', '0o644')
    """
    return (0o777 if directory else 0o666) & ~current_umask()


def apply_umask(root: str | Path) -> None:
    """Give ``root`` and everything under it the modes the umask gives new files and folders.

    Example:
        >>> import tempfile
        >>> old = os.umask(0o022); d = Path(tempfile.mkdtemp()); apply_umask(d); _ = os.umask(old)
        >>> oct(d.stat().st_mode & 0o777)
        '0o755'
    """
    root = Path(root)
    file_mode, dir_mode = default_mode(), default_mode(directory=True)
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        os.chmod(path, dir_mode if path.is_dir() else file_mode)


def fsync_tree(path: str | Path) -> None:
    """Flush every file under ``path`` (and ``path`` itself when it is a file) to disk.

    Example:
        >>> import tempfile
        >>> fsync_tree(tempfile.mkdtemp())
    """
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for f in files:
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Write a folder under a temporary name and rename it to ``target`` only when the block succeeds.

    If the block raises (or the process dies), ``target`` is untouched: it keeps its old content or stays
    absent; the temporary folder (a hidden ``.<name>.tmp-*`` sibling) is removed when possible.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_directory(root / 'model') as staging:
        ...     _ = (staging / 'weights.txt').write_text('1 2 3')
        >>> (root / 'model' / 'weights.txt').read_text()
        '1 2 3'
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        yield staging
        apply_umask(staging)  # mkdtemp makes 0o700, and writers that stage their own files (safetensors) 0o600
        fsync_tree(staging)
        replace_directory(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_directory(source: Path, target: Path) -> None:
    """Move the folder ``source`` to ``target``, replacing an existing ``target`` (moved aside, then removed).

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / 'new').mkdir(); (root / 'old').mkdir()
        >>> replace_directory(root / 'new', root / 'old')
        >>> sorted(p.name for p in root.iterdir())
        ['old']
    """
    aside: Path | None = None
    if target.exists():
        aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, aside / target.name)
    os.replace(source, target)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename).

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / 'a.bin'
        >>> atomic_write_bytes(f, b'abc'); f.read_bytes()
        b'abc'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, default_mode())  # mkstemp makes it 0o600
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_yaml(path: Path, obj: Any) -> None:
    """Write ``obj`` as YAML atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, default_mode())  # mkstemp makes it 0o600
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(obj, f, sort_keys=False, allow_unicode=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_yaml(path: Path, default: Any = None) -> Any:
    """Read a YAML file safely (no object construction); ``default`` when it does not exist."""
    if not path.is_file():
        return default
    return yaml.safe_load(path.read_text(encoding="utf-8"))
