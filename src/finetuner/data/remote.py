"""Images behind ``http(s)://`` URLs: downloads that retry transient failures, a disk cache, and fetching every remote
image before training.

- :func:`fetch_url` retries what is worth retrying (a timeout, a connection reset or dropped mid-answer, HTTP 408,
  425, 429 and 5xx) up to :data:`RETRIES` more times, waiting :data:`BACKOFF` seconds, then twice that, and so on (a
  server's ``Retry-After`` is honoured up to 30 s); anything else (HTTP 404 or 403, a host that does not resolve, a
  port where nothing listens) fails at once.
- :func:`prefetch` downloads many URLs into the disk cache (:func:`cache_dir`) with bounded parallelism and a
  progress bar, and returns the failures by URL, so ``fit(prefetch_images=True)`` can list every failed item before a
  model is loaded, and ``on_image_error='skip'`` can leave those items out.
- Image loading (:func:`finetuner.data.images.load_image`) reads an URL from the disk cache when it is there.

Settings: ``FINETUNER_IMAGE_RETRIES`` (default 3), ``FINETUNER_IMAGE_BACKOFF`` (seconds, default 0.5),
``FINETUNER_IMAGE_WORKERS`` (parallel downloads of a prefetch, default 8) and ``FINETUNER_IMAGE_CACHE`` (the cache
folder, default ``$FINETUNER_HOME/cache/images``; delete it to fetch again).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from finetuner.errors import DataError
from finetuner.fileio import atomic_write_bytes

#: extra attempts after a transient failure
RETRIES = int(os.environ.get("FINETUNER_IMAGE_RETRIES", "3"))
#: seconds before the first retry (doubled for each further one, with up to 25 % jitter)
BACKOFF = float(os.environ.get("FINETUNER_IMAGE_BACKOFF", "0.5"))
#: parallel downloads of a prefetch
WORKERS = int(os.environ.get("FINETUNER_IMAGE_WORKERS", "8"))
#: the largest download accepted, in bytes
MAX_DOWNLOAD_BYTES = 64 * 2**20
#: HTTP statuses worth another try
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class _Transient(Exception):
    """A failure another attempt may not meet; ``wait`` is a server's ``Retry-After``, if any."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


def is_remote(value: object) -> bool:
    """Whether ``value`` is an ``http(s)://`` URL.

    Example:
        >>> is_remote('https://example.org/a.png'), is_remote('img/a.png')
        (True, False)
    """
    return isinstance(value, str) and value.strip()[:8].lower().startswith(("http://", "https://"))


def cache_dir() -> Path:
    """Where fetched images are kept: ``$FINETUNER_IMAGE_CACHE``, else ``$FINETUNER_HOME/cache/images``.

    Example:
        >>> cache_dir().name
        'images'
    """
    explicit = os.environ.get("FINETUNER_IMAGE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = Path(os.environ.get("FINETUNER_HOME", Path.home() / ".finetuner")).expanduser()
    return home / "cache" / "images"


def cached_path(url: str) -> Path:
    """The cache file of ``url`` (named by the URL's SHA-256).

    Example:
        >>> len(cached_path('https://example.org/a.png').name)
        64
    """
    return cache_dir() / hashlib.sha256(url.strip().encode("utf-8")).hexdigest()


def read_cached(url: str) -> bytes | None:
    """The cached bytes of ``url``, or None when it was not fetched before.

    Example:
        >>> read_cached('https://example.org/never-fetched.png') is None
        True
    """
    try:
        return cached_path(url).read_bytes()
    except OSError:
        return None


def fetch_url(url: str, timeout: float) -> bytes:
    """Download ``url``, retrying transient failures (see the module docstring).

    Raises:
        DataError: the download failed for good; the message names the URL, what went wrong and how often it was
            tried.

    Example:
        >>> fetch_url('https://example.org/a.png', timeout=5)  # doctest: +SKIP
        b'\\x89PNG...'
    """
    attempts = RETRIES + 1
    for attempt in range(attempts):
        try:
            return _get(url, timeout)
        except _Transient as exc:
            if attempt == attempts - 1:
                tried = f" (tried {attempts} times)" if attempts > 1 else ""
                raise DataError(f"cannot load image {_short(url)}: {exc}{tried}") from None
            delay = BACKOFF * 2**attempt * (1 + 0.25 * random.random())
            time.sleep(min(exc.wait, 30.0) if exc.wait is not None else delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _get(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "finetuner (image download)"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read(MAX_DOWNLOAD_BYTES + 1)
    except urllib.error.HTTPError as exc:
        message = f"the server answered HTTP {exc.code} {exc.reason}"
        if exc.code in TRANSIENT_STATUSES:
            raise _Transient(message, _retry_after(exc.headers.get("Retry-After"))) from None
        raise DataError(f"cannot load image {_short(url)}: {message}; check that the URL is right and public") from None
    except TimeoutError:
        raise _Transient(_timeout(timeout)) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise _Transient(_timeout(timeout)) from None
        if isinstance(reason, ConnectionError) and not isinstance(reason, ConnectionRefusedError):  # reset, aborted
            raise _Transient(f"the connection broke ({reason})") from None
        raise DataError(f"cannot load image {_short(url)}: cannot reach the server ({reason})") from None
    except (ConnectionError, http.client.HTTPException) as exc:  # reset mid-answer, closed without one
        raise _Transient(f"the connection broke ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise DataError(f"cannot load image {_short(url)}: the download failed ({exc})") from exc
    if len(raw) > MAX_DOWNLOAD_BYTES:
        raise DataError(f"cannot load image {_short(url)}: larger than {MAX_DOWNLOAD_BYTES // 2**20} MiB")
    return raw


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: use the backoff
        return None


def _timeout(timeout: float) -> str:
    return (
        f"no answer within {timeout:g} s; raise the limit with the FINETUNER_IMAGE_TIMEOUT environment variable, or "
        "download the images and give local paths"
    )


def prefetch(
    urls: Iterable[str], *, timeout: float, workers: int | None = None, progress: bool = True
) -> dict[str, str]:
    """Download every URL not yet in the disk cache into it, ``workers`` at a time (default :data:`WORKERS`), and
    check that each is an image Pillow can open; returns ``{url: what went wrong}`` for those that failed.

    Example:
        >>> prefetch([], timeout=5)
        {}
    """
    from tqdm.auto import tqdm

    wanted = {u.strip() for u in urls if is_remote(u)}
    todo = sorted(u for u in wanted if not cached_path(u).is_file())
    failures: dict[str, str] = {}
    if not todo:
        return failures
    with ThreadPoolExecutor(max_workers=max(1, workers or WORKERS), thread_name_prefix="finetuner-fetch") as pool:
        futures = {pool.submit(_fetch_one, url, timeout): url for url in todo}
        bar = tqdm(as_completed(futures), total=len(futures), desc="fetching images", disable=not progress)
        for future in bar:
            problem = future.result()
            if problem is not None:
                failures[futures[future]] = problem
                bar.set_postfix(failed=len(failures))
    return failures


def _fetch_one(url: str, timeout: float) -> str | None:
    """Fetch one URL into the cache; what went wrong, or None."""
    from PIL import Image

    try:
        raw = fetch_url(url, timeout)
        with Image.open(io.BytesIO(raw)) as img:  # reads the header only: an HTML error page fails here
            img.verify()
    except DataError as exc:
        return str(exc)
    except Exception as exc:
        return f"cannot load image {_short(url)}: the download is not an image Pillow can open ({type(exc).__name__})"
    atomic_write_bytes(cached_path(url), raw)
    return None


def _short(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
