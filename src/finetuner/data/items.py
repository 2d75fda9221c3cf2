"""Turn one cell of a row (a CSV field, a tuple element, a DataFrame value) into :class:`Document` fields.

The routing rules, shared by every reader:

- a **str** is an *image source* and becomes ``uri=`` (modality ``'image'``) when it is

  - an ``http(s)://`` or ``file://`` URL whose path ends with an image extension (``.png``, ``.jpg``, ...), or
  - a ``data:image/...`` URI, or
  - a local path ending with an image extension that is one line and has no whitespace or has a ``/``
    (``img/1f600.png``, ``my photos/cat.jpg``); relative paths resolve against the CSV file's folder (the
    working directory for in-memory data) and are stored absolute. Such a path **must exist**: a missing file
    raises :class:`~finetuner.errors.DataError` naming the row, so a typo never turns an image into text;

  every other str is text (modality ``'text'``); an empty or whitespace-only str is an error;
- **bytes** become ``blob``, numpy arrays and torch tensors become ``tensor``, a PIL image becomes a numpy
  ``tensor`` and a Hugging Face image dict (``{'bytes': ..., 'path': ...}``) becomes ``blob`` or ``uri``: all
  of them modality ``'image'``;
- anything else (numbers, None, NaN) cannot be an item and raises :class:`~finetuner.errors.DataError`.

Remote URLs are kept as ``uri`` (preprocessing downloads them, with a timeout); ``convert_to_blob`` reads
local files and data URIs into ``blob`` right away (the ``uri`` is kept).
"""

from __future__ import annotations

import base64
import math
import mimetypes
import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from finetuner.data.vectors import VECTOR, is_vector
from finetuner.errors import DataError

IMAGE_EXTENSIONS = frozenset(
    {
        ".png",
        ".jpg",
        ".jpeg",
        ".jfif",
        ".gif",
        ".bmp",
        ".webp",
        ".tif",
        ".tiff",
        ".ico",
        ".ppm",
        ".pgm",
        ".pbm",
    }
)

#: Document keyword arguments for one item, and its modality ('text' or 'image')
Fields = tuple[dict[str, Any], str]


def _extension(value: str) -> str:
    """The lower-case extension of a path, or of a URL's path (its host when it has none), query ignored."""
    if value[:8].lower().startswith(("http://", "https://", "file://")):
        parsed = urllib.parse.urlparse(value)
        value = parsed.path or parsed.netloc  # 'https://...skirt-1.png' parses as a host without a path
    return os.path.splitext(value)[1].lower()


def _image_kind(value: str) -> str | None:
    """'url', 'file-url', 'data' or 'path' when ``value`` looks like an image source, else None."""
    value = value.strip()
    lowered = value[:11].lower()
    if lowered.startswith("data:"):
        return "data" if lowered.startswith("data:image/") and "\n" not in value else None
    if lowered.startswith(("http://", "https://", "file://")):
        if "\n" in value or _extension(value) not in IMAGE_EXTENSIONS:
            return None
        return "file-url" if lowered.startswith("file://") else "url"
    if value[value.rfind(".") :].lower() not in IMAGE_EXTENSIONS or "\n" in value:  # most texts stop here
        return None
    if "/" in value or "\\" in value or not any(c.isspace() for c in value):
        return "path"
    return None


def looks_like_image(value: Any) -> bool:
    """Whether ``value`` is (syntactically) an image source: image path, URL or data URI, bytes or an array.

    Example:
        >>> [looks_like_image(x) for x in ('img/1f600.png', 'https://x.org/a.jpg?s=1', 'a cat', b'...')]
        [True, True, False, True]
    """
    if isinstance(value, str):
        return _image_kind(value) is not None
    return _is_binary_image(value)


def _is_binary_image(value: Any) -> bool:
    module = type(value).__module__
    return (
        isinstance(value, (bytes, bytearray, memoryview, np.ndarray))
        or module.startswith("torch")
        or module.startswith("PIL")
        or (isinstance(value, dict) and ("bytes" in value or "path" in value))
    )


def is_missing(value: Any) -> bool:
    """None, NaN, pandas NA/NaT, or a str that is empty or only whitespace.

    Example:
        >>> is_missing(float('nan')), is_missing('  '), is_missing('a'), is_missing(0)
        (True, True, False, False)
    """
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def item_fields(value: Any, *, where: str, base_dir: Path, convert_to_blob: bool = False) -> Fields:
    """The Document fields and modality for one item (see the module docstring for the rules).

    Args:
        value: the item: text, an image source, bytes, an array, a PIL image or a Hugging Face image dict.
        where: how to name the item in errors, e.g. ``"train_data 'train.csv' line 4, column 'image'"``.
        base_dir: the folder relative image paths resolve against.
        convert_to_blob: also read local image files and data URIs into ``blob``.

    Example:
        >>> item_fields('pencil skirt', where='item 0', base_dir=Path('.'))
        ({'text': 'pencil skirt'}, 'text')
    """
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if is_missing(value):
        raise DataError(
            f"{where}: empty field ({value!r}); every item needs text or an image source. Fill it in or "
            "remove the row."
        )
    if isinstance(value, str):
        kind = _image_kind(value)
        if kind is None:
            return {"text": value}, "text"
        return _image_fields(
            value.strip(), kind, where=where, base_dir=base_dir, convert_to_blob=convert_to_blob
        )
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"blob": bytes(value)}, "image"
    if isinstance(value, np.ndarray) or type(value).__module__.startswith("torch"):
        return {"tensor": value}, VECTOR if is_vector(value) else "image"
    if type(value).__module__.startswith("PIL"):
        return {"tensor": np.asarray(value)}, "image"
    if isinstance(value, dict) and ("bytes" in value or "path" in value):  # a Hugging Face `Image()` feature
        if value.get("bytes"):
            return {"blob": bytes(value["bytes"])}, "image"
        if value.get("path"):
            return item_fields(
                str(value["path"]), where=where, base_dir=base_dir, convert_to_blob=convert_to_blob
            )
    raise DataError(
        f"{where}: cannot use {type(value).__name__} {_short(value)} as an item; an item is text (str), an "
        "image path/URL/data URI (str), bytes, an array or a PIL image. Convert it to one of these."
    )


def _image_fields(value: str, kind: str, *, where: str, base_dir: Path, convert_to_blob: bool) -> Fields:
    fields: dict[str, Any] = {"uri": value}
    local: Path | None = None
    if kind == "path":
        local = Path(os.path.expanduser(value))
        if not local.is_absolute():
            local = Path(os.path.abspath(base_dir / local))
        if not local.is_file():
            raise DataError(
                f"{where}: {value!r} looks like an image path but there is no such file (looked for "
                f"{local}). Relative paths resolve against {base_dir}; fix the path or remove the row."
            )
        fields["uri"] = str(local)
    elif kind == "file-url":
        local = Path(urllib.request.url2pathname(urllib.parse.urlparse(value).path))
        if not local.is_file():
            raise DataError(f"{where}: {value!r} names no existing file (looked for {local}); fix the URL.")
    if kind == "data":
        header, _, payload = value.partition(",")
        fields["mime_type"] = header[5:].split(";")[0]
        if convert_to_blob:
            try:
                raw = (
                    base64.b64decode(payload)
                    if ";base64" in header
                    else urllib.parse.unquote_to_bytes(payload)
                )
            except ValueError as exc:
                raise DataError(
                    f"{where}: the data URI does not decode ({exc}); re-encode the image."
                ) from exc
            fields["blob"] = raw
    else:
        mime = mimetypes.types_map.get(_extension(value))
        if mime:
            fields["mime_type"] = mime
        if convert_to_blob and local is not None:
            fields["blob"] = local.read_bytes()
    return fields, "image"


def label_value(value: Any, *, where: str) -> Any:
    """A label cell as plain Python (str stripped, numpy scalars unwrapped); an empty or image label raises.

    Example:
        >>> label_value(' skirt ', where='line 2'), label_value(np.int64(3), where='row 0')
        ('skirt', 3)
    """
    if is_missing(value):
        raise DataError(
            f"{where}: empty label ({value!r}); give every labelled item a label, or read the data as pairs "
            "with CSVOptions(is_labeled=False)."
        )
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        value = value.strip()
        if _image_kind(value) is not None:
            raise DataError(
                f"{where}: the label {value!r} is an image source, so these rows look like (text, image) "
                "pairs, not (item, label). Pass CSVOptions(is_labeled=False) to read pairs, or choose the "
                "item and label columns with CSVOptions(columns=('image', 'category'))."
            )
    try:
        hash(value)
    except TypeError:
        raise DataError(
            f"{where}: a label must be hashable (str, int, ...); received {type(value).__name__} "
            f"{_short(value)}."
        ) from None
    return value


def plain(value: Any) -> Any:
    """A tag value as plain Python where it is a numpy scalar; other values unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
