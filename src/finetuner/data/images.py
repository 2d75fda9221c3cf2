"""Load an image from wherever a Document (or a plain item) holds one, as an RGB ``PIL.Image``.

Sources (:func:`load_image`):

- a :class:`~finetuner.data.documents.Document`: its ``tensor``, else its ``blob``, else its ``uri``;
- a str: a local path, a ``file://`` URL, an ``http(s)://`` URL (downloaded with a timeout, transient failures
  retried: :mod:`finetuner.data.remote`) or a ``data:`` URI;
- bytes: an encoded image (PNG, JPEG, GIF, BMP, WebP, TIFF, ... anything Pillow opens);
- an array (``np.ndarray`` or a torch tensor): ``HW``, ``HWC`` or ``CHW`` with 1, 3 or 4 channels, ``uint8``
  (0-255) or float (0-1, or 0-255 when a value exceeds 1); a leading batch axis of size 1 is dropped. For a
  3-D array whose layout is ambiguous (e.g. ``3x3x3``), numpy arrays are read as ``HWC`` and torch tensors as
  ``CHW``;
- a ``PIL.Image`` or a Hugging Face image dict (``{'bytes': ..., 'path': ...}``).

Every source ends as the same 8-bit RGB image: grey is repeated over three channels, transparency is composited
onto white, and JPEG EXIF orientation is applied. So one picture gives the same pixels, and the same embedding,
whichever way it came. Anything that cannot be read raises :class:`~finetuner.errors.DataError` naming the
source (uri, Document id or array shape), what went wrong and what is valid.

Images are decoded in the model's ``preprocess``, i.e. in DataLoader workers, never in the training step.
Downloads are cached per process (up to :data:`HTTP_CACHE_BYTES`), so later epochs do not fetch again; images
fetched before training (``fit(prefetch_images=True)``) come from the disk cache.
"""

from __future__ import annotations

import base64
import io
import os
import re
import urllib.parse
import urllib.request
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from finetuner.data.remote import fetch_url, read_cached
from finetuner.errors import DataError

#: seconds to wait for an ``http(s)://`` image (override with the ``FINETUNER_IMAGE_TIMEOUT`` variable)
DEFAULT_TIMEOUT = float(os.environ.get("FINETUNER_IMAGE_TIMEOUT", "20"))
#: bytes of downloaded images kept in memory per process
HTTP_CACHE_BYTES = 256 * 2**20

_VALID = (
    "an image model takes a local path, a file:// or http(s):// URL, a data:image/... URI, encoded image bytes, "
    "an array (HW, HWC or CHW; uint8 0-255 or float 0-1), a PIL image or a Document holding one of these"
)
_cache: OrderedDict[str, bytes] = OrderedDict()
_cache_size = 0


def load_image(source: Any, *, timeout: float | None = None) -> Image.Image:
    """Load ``source`` (see the module docstring for every accepted form) as an 8-bit RGB image.

    Args:
        source: a Document, path/URL/data URI, bytes, array, PIL image or Hugging Face image dict.
        timeout: seconds to wait for an ``http(s)://`` download (default :data:`DEFAULT_TIMEOUT`).

    Raises:
        DataError: the image cannot be found, fetched or decoded; the message names the source.

    Example:
        >>> import numpy as np
        >>> img = load_image(np.zeros((4, 6), dtype=np.uint8))   # a grey HW array
        >>> img.mode, img.size
        ('RGB', (6, 4))
        >>> load_image('a red shirt')  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        finetuner.errors.DataError: cannot load image 'a red shirt': it is text, not an image source; an image ...
    """
    if hasattr(source, "blob") and hasattr(source, "tensor") and hasattr(source, "uri"):  # a Document
        return _from_document(source, timeout)
    if isinstance(source, Image.Image):
        return to_rgb(source)
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, str):
        return decode_image(read_source(source, timeout=timeout), describe(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image(bytes(source), describe(source))
    if isinstance(source, np.ndarray) or type(source).__module__.startswith("torch"):
        return array_to_image(source, describe(source))
    if isinstance(source, dict) and ("bytes" in source or "path" in source):  # Hugging Face `Image()` feature
        if source.get("bytes"):
            return decode_image(bytes(source["bytes"]), describe(source.get("path") or source["bytes"]))
        if source.get("path"):
            return load_image(str(source["path"]), timeout=timeout)
    raise DataError(f"cannot load image from {describe(source)}: {type(source).__name__} is no image source; {_VALID}")


def _from_document(doc: Any, timeout: float | None) -> Image.Image:
    name = describe(doc)
    if doc.tensor is not None:
        return array_to_image(doc.tensor, name)
    if doc.blob is not None:
        return decode_image(bytes(doc.blob), name)
    if doc.uri:
        try:
            raw = read_source(str(doc.uri), timeout=timeout)
        except DataError as exc:
            raise DataError(f"{exc} (Document {doc.id!r})") from None
        return decode_image(raw, name)
    text = getattr(doc, "text", None)
    what = f"only text {_short(text)}" if text else "no content"
    raise DataError(f"cannot load image from {name}: the Document has {what}; set its uri, blob or tensor")


def describe(source: Any) -> str:
    """How errors name an image source: its uri, the Document id, the byte count or the array shape.

    Example:
        >>> describe('img/cat.png'), describe(b'abc')
        ("'img/cat.png'", '<3 bytes>')
    """
    if hasattr(source, "blob") and hasattr(source, "uri"):
        if source.uri:
            return f"{_short(source.uri)} (Document {source.id!r})"
        return f"Document {source.id!r}"
    if isinstance(source, str):
        return _short(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if hasattr(source, "shape") and hasattr(source, "dtype"):
        return f"<{type(source).__name__} of shape {tuple(source.shape)}, {source.dtype}>"
    return f"<{type(source).__name__}>"


def read_source(uri: str, *, timeout: float | None = None) -> bytes:
    """The encoded bytes behind a path, ``file://`` / ``http(s)://`` URL or ``data:`` URI.

    Example:
        >>> read_source('data:image/png;base64,iVBORw0K')[:4]
        b'\\x89PNG'
    """
    value = uri.strip()
    lowered = value[:8].lower()
    if lowered.startswith("data:"):
        return _read_data_uri(value)
    if lowered.startswith(("http://", "https://")):
        return _download(value, DEFAULT_TIMEOUT if timeout is None else timeout)
    if lowered.startswith("file:"):
        parsed = urllib.parse.urlparse(value)
        if parsed.netloc not in ("", "localhost"):
            raise DataError(f"cannot load image {_short(uri)}: file:// URLs must name a local file (no host)")
        return _read_file(Path(urllib.request.url2pathname(parsed.path)), uri)
    if "://" in value[:16]:
        scheme = value.split("://", 1)[0]
        raise DataError(f"cannot load image {_short(uri)}: unsupported scheme {scheme!r}; {_VALID}")
    path = Path(os.path.expanduser(value))
    if not path.exists() and not _looks_like_path(value):
        raise DataError(f"cannot load image {_short(uri)}: it is text, not an image source; {_VALID}")
    return _read_file(path, uri)


def _looks_like_path(value: str) -> bool:
    ext = os.path.splitext(value)[1]
    return bool(re.fullmatch(r"\.[A-Za-z0-9]{1,5}", ext)) or ("/" in value and " " not in value)


def _read_file(path: Path, uri: str) -> bytes:
    if not path.is_file():
        where = f" (resolved to {path.absolute()})" if not path.is_absolute() else ""
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"cannot load image {_short(uri)}: the file {what}{where}; fix the path")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot load image {_short(uri)}: {exc.strerror or exc}") from exc


def _read_data_uri(uri: str) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep:
        raise DataError(f"cannot load image {_short(uri)}: a data URI needs a ',' before its payload")
    try:
        if header.lower().endswith(";base64"):
            return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=False)
        return urllib.parse.unquote_to_bytes(payload)
    except ValueError as exc:
        raise DataError(f"cannot load image {_short(uri)}: the data URI payload does not decode ({exc})") from exc


def _download(url: str, timeout: float) -> bytes:
    """The bytes behind ``url``: from this process's memory cache, the disk cache a prefetch fills, or the network
    (with retries: :func:`finetuner.data.remote.fetch_url`)."""
    global _cache_size
    if url in _cache:
        _cache.move_to_end(url)
        return _cache[url]
    raw = read_cached(url)
    if raw is None:
        raw = fetch_url(url, timeout)
    if len(raw) <= HTTP_CACHE_BYTES:
        _cache[url] = raw
        _cache_size += len(raw)
        while _cache_size > HTTP_CACHE_BYTES:
            _cache_size -= len(_cache.popitem(last=False)[1])
    return raw


def decode_image(raw: bytes, name: str = "image") -> Image.Image:
    """Decode encoded image bytes into RGB (EXIF orientation applied); ``name`` is used in errors.

    Example:
        >>> import io
        >>> buf = io.BytesIO(); Image.new('L', (3, 2), 200).save(buf, format='PNG')
        >>> decode_image(buf.getvalue()).getpixel((0, 0))
        (200, 200, 200)
    """
    if not raw:
        raise DataError(f"cannot load image {name}: it is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return to_rgb(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        head = raw[:16]
        kind = "text/HTML, not an image" if head.lstrip()[:1] in (b"<", b"{") else f"starts with {head!r}"
        raise DataError(
            f"cannot load image {name}: Pillow cannot decode it ({type(exc).__name__}: {exc}; the data {kind}); "
            "give a PNG, JPEG, GIF, BMP, WebP or TIFF file"
        ) from None


def to_rgb(img: Image.Image) -> Image.Image:
    """An 8-bit RGB copy: grey repeated over three channels, transparency composited onto white.

    Example:
        >>> to_rgb(Image.new('RGBA', (1, 1), (0, 0, 0, 0))).getpixel((0, 0))
        (255, 255, 255)
    """
    if img.mode == "RGB":
        return img.copy()
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16/32-bit grey: scale to 8 bit
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return array_to_image(np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8), "image")
    return img.convert("RGB")


def array_to_image(array: Any, name: str = "array") -> Image.Image:
    """An RGB image from an ``HW``, ``HWC`` or ``CHW`` array (uint8 0-255, float 0-1 or 0-255).

    Example:
        >>> import numpy as np
        >>> chw = np.full((3, 2, 2), 0.5, dtype=np.float32)
        >>> array_to_image(chw).getpixel((0, 0))
        (128, 128, 128)
    """
    is_torch = type(array).__module__.startswith("torch")
    if is_torch:
        array = array.detach().cpu()
        if array.is_floating_point():
            array = array.float()
        array = array.numpy()
    arr = np.asarray(array)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # CHW -> HWC
    elif arr.ndim == 3 and is_torch and arr.shape[0] in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # ambiguous torch layout: CHW
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)) or 0 in arr.shape:
        raise DataError(
            f"cannot load image {name}: an image array has shape HW, HWC or CHW with 1, 3 or 4 channels; "
            f"received shape {tuple(np.shape(array))}"
        )
    arr = _to_uint8(arr, name)
    mode = "L" if arr.ndim == 2 else ("RGB" if arr.shape[-1] == 3 else "RGBA")
    return to_rgb(Image.fromarray(np.ascontiguousarray(arr), mode=mode))


def _to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        values = arr.astype(np.float64)
        if not np.isfinite(values).all():
            raise DataError(f"cannot load image {name}: the array holds NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0 or high > 255:
            raise DataError(
                f"cannot load image {name}: float pixel values must lie in [0, 1] (or [0, 255]); received "
                f"[{low:g}, {high:g}]. Undo any normalisation first: the model normalises images itself"
            )
        scale = 255.0 if high <= 1.0 else 1.0
        return np.clip(values * scale, 0, 255).round().astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > 255:
            raise DataError(
                f"cannot load image {name}: integer pixel values must lie in [0, 255]; received [{low}, {high}]"
            )
        return arr.astype(np.uint8)
    raise DataError(f"cannot load image {name}: arrays of dtype {arr.dtype} are not images; use uint8 or float")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
