"""The few docarray methods Finetuner's docs call on ``Document`` / ``DocumentArray``, on the stand-ins.

- ``DocumentArray.summary()`` / ``Document.summary()``: a short description, printed and returned;
- ``DocumentArray.batch(batch_size, shuffle=False)``: the documents in batches;
- ``query.match(index, limit=20, metric='cosine', exclude_self=False)``: each query's nearest index documents by
  their ``embedding`` into ``doc.matches`` (copies, each with ``scores[metric].value``: the distance, smallest first,
  as docarray reports it);
- ``Document.load_uri_to_blob()`` (also ``convert_uri_to_blob``): the file or URL's bytes into ``blob``.

Everything else of docarray (``push``/``pull`` to Jina AI Cloud, ``plot_image_sprites``, ``display``, point clouds)
is not here: install docarray (``pip install 'finetuner[docarray]'``) and use its objects, which finetuner accepts
wherever it accepts these.
"""

from __future__ import annotations

import copy
import random
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from finetuner.errors import ConfigError, DataError

METRICS = ("cosine", "euclidean", "sqeuclidean")
_CLOUD = (
    "Jina AI Cloud, where Finetuner pushed and pulled DocumentArrays, is gone; keep data in local files instead (a CSV "
    "fit reads, or docarray's own save/load: pip install 'finetuner[docarray]')"
)


@dataclass
class Score:
    """A named score of a match (docarray's ``NamedScore``): ``value`` is the distance."""

    value: float


class DocumentOps:
    """``summary``, ``load_uri_to_blob`` and the refusals of cloud and 3D calls, mixed into ``Document``."""

    __slots__ = ()

    def summary(self) -> str:
        """The document's fields that are set, one per line; printed and returned."""
        lines = [f"Document {self.id}"]  # type: ignore[attr-defined]
        for name in ("text", "uri", "mime_type", "modality"):
            value = getattr(self, name)
            if value is not None:
                lines.append(f"  {name}: {value!r:.80}")
        if self.blob is not None:  # type: ignore[attr-defined]
            lines.append(f"  blob: {len(self.blob)} bytes")  # type: ignore[attr-defined]
        for name in ("tensor", "embedding"):
            value = getattr(self, name)
            if value is not None:
                lines.append(f"  {name}: shape {tuple(getattr(value, 'shape', np.shape(value)))}")
        if self.tags:  # type: ignore[attr-defined]
            lines.append(f"  tags: {self.tags!r:.100}")  # type: ignore[attr-defined]
        for name in ("chunks", "matches"):
            if len(getattr(self, name)):
                lines.append(f"  {name}: {len(getattr(self, name))}")
        text = "\n".join(lines)
        print(text)
        return text

    def load_uri_to_blob(self, timeout: float = 30.0) -> Any:
        """Read the file or URL ``uri`` names into ``blob`` (data URIs too); returns the document."""
        uri = self.uri  # type: ignore[attr-defined]
        if not uri:
            raise DataError(f"Document {self.id}: no uri to load")  # type: ignore[attr-defined]
        scheme = urllib.parse.urlparse(uri).scheme.lower()
        if scheme in ("http", "https", "data"):
            with urllib.request.urlopen(uri, timeout=timeout) as response:
                self.blob = response.read()  # type: ignore[attr-defined]
        else:
            path = urllib.request.url2pathname(urllib.parse.urlparse(uri).path) if scheme == "file" else uri
            try:
                self.blob = Path(path).expanduser().read_bytes()  # type: ignore[attr-defined]
            except OSError as exc:
                raise DataError(f"Document {self.id}: cannot read {uri!r} ({exc})") from None  # type: ignore
        return self

    convert_uri_to_blob = load_uri_to_blob

    def load_uri_to_point_cloud_tensor(self, *args: Any, **kwargs: Any) -> Any:
        """Finetuner's 3D meshes: not supported here."""
        raise ConfigError("3D meshes and point clouds are not supported: finetuner tunes text, image and CLIP models")


class DocumentArrayOps:
    """``summary``, ``batch``, ``match`` and the refusals of cloud calls, mixed into ``DocumentArray``."""

    def summary(self) -> str:
        """Length, content kinds, labels and chunks of the array; printed and returned."""
        docs = list(self)  # type: ignore[call-overload]
        kinds = Counter(d.content_type or ("uri" if d.uri else "empty") for d in docs)
        labels = Counter(d.tags.get("finetuner_label") for d in docs if "finetuner_label" in d.tags)
        lines = [f"DocumentArray of {len(docs)} documents", f"  content: {dict(sorted(kinds.items()))}"]
        if labels:
            lines.append(
                f"  labels: {len(labels)} ({', '.join(f'{k!r}: {v}' for k, v in labels.most_common(5))}"
                + (", ..." if len(labels) > 5 else "")
                + ")"
            )
        chunked = sum(1 for d in docs if len(d.chunks))
        if chunked:
            lines.append(f"  documents with chunks: {chunked}")
        with_embedding = sum(1 for d in docs if d.embedding is not None)
        if with_embedding:
            lines.append(f"  with embeddings: {with_embedding}")
        text = "\n".join(lines)
        print(text)
        return text

    def batch(self, batch_size: int, shuffle: bool = False, show_progress: bool = False) -> Iterator[Any]:
        """The documents in DocumentArrays of ``batch_size`` (the last may be smaller), shuffled if asked."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1; received {batch_size!r}")
        docs = list(self)  # type: ignore[call-overload]
        if shuffle:
            random.shuffle(docs)
        for i in range(0, len(docs), batch_size):
            yield type(self)(docs[i : i + batch_size])  # type: ignore[call-arg]

    def match(
        self,
        darray: Any,
        metric: str = "cosine",
        limit: int | None = 20,
        exclude_self: bool = False,
        only_id: bool = False,
        batch_size: int = 1024,
        **kwargs: Any,
    ) -> None:
        """Find each document's nearest documents of ``darray`` by ``embedding``; fill ``doc.matches``."""
        if metric not in METRICS:
            raise ConfigError(f"match metric must be one of {', '.join(METRICS)}; received {metric!r}")
        if kwargs:
            raise ConfigError(f"match options {sorted(kwargs)} are docarray's; install docarray to use them")
        queries, index = list(self), list(darray)  # type: ignore[call-overload]
        for name, docs in (("query", queries), ("index", index)):
            missing = [i for i, d in enumerate(docs) if d.embedding is None]
            if missing:
                raise DataError(
                    f"{name} document {missing[0]} has no embedding ({len(missing)} in all); embed both sides first "
                    "(finetuner.encode(model, docs))"
                )
        if not queries or not index:
            return
        x = np.stack([np.asarray(d.embedding, dtype=np.float32).ravel() for d in index])  # (n, dim)
        k = len(index) if limit is None else min(int(limit) + int(exclude_self), len(index))
        for start in range(0, len(queries), batch_size):
            part = queries[start : start + batch_size]
            q = np.stack([np.asarray(d.embedding, dtype=np.float32).ravel() for d in part])  # (b, dim)
            dist = _distances(q, x, metric)  # (b, n)
            top = np.argsort(dist, axis=1, kind="stable")[:, :k]  # (b, k)
            for doc, row, order in zip(part, dist, top):
                hits = [j for j in order if not (exclude_self and index[j].id == doc.id)][: limit or None]
                doc.matches = type(darray)([_match(index[j], metric, row[j], only_id) for j in hits])

    @classmethod
    def pull(cls, *args: Any, **kwargs: Any) -> Any:
        """Finetuner's cloud storage: refused, with what to do instead."""
        raise ConfigError(f"DocumentArray.pull: {_CLOUD}")

    def push(self, *args: Any, **kwargs: Any) -> Any:
        """Finetuner's cloud storage: refused, with what to do instead."""
        raise ConfigError(f"DocumentArray.push: {_CLOUD}")


def _distances(q: np.ndarray, x: np.ndarray, metric: str) -> np.ndarray:
    """``(b, n)`` distances, smallest = nearest: 1 - cosine, euclidean or squared euclidean."""
    if metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return 1.0 - qn @ xn.T  # (b, n)
    squared = (q * q).sum(1)[:, None] - 2 * q @ x.T + (x * x).sum(1)[None, :]  # (b, n)
    squared = np.maximum(squared, 0.0)
    return squared if metric == "sqeuclidean" else np.sqrt(squared)


def _match(doc: Any, metric: str, distance: float, only_id: bool) -> Any:
    hit = type(doc)(id=doc.id) if only_id else copy.copy(doc)
    if not only_id:
        hit.matches = type(doc.matches)()
    hit.scores = {metric: Score(float(distance))}
    return hit
