"""Images from URLs against a local HTTP server on 127.0.0.1 that fails on purpose: transient failures (503, a
dropped connection, a timeout) are retried with backoff, a 404 is not; ``fit(prefetch_images=True)`` fetches every
image first and lists the failures by item; ``on_image_error='skip'`` trains without them and names them."""

from __future__ import annotations

import contextlib
import http.server
import io
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

import finetuner
from finetuner.data import images
from finetuner.data.images import load_image
from finetuner.errors import DataError

#: the server answers at most this many requests and stops by itself after this many seconds
MAX_REQUESTS, LIFETIME = 400, 120


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class Flaky(http.server.BaseHTTPRequestHandler):
    """``/ok/N.png``: image N; ``/flaky/K/N.png``: HTTP 503 for the first K requests, then image N;
    ``/drop/K/N.png``: the connection closed without an answer K times; ``/slow/K/N.png``: K answers too slow for
    the client's timeout; ``/missing/N.png``: 404; ``/html/N.png``: an HTML page with status 200."""

    hits: ClassVar[Counter] = Counter()
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        hits = type(self).hits
        hits[self.path] += 1
        if sum(hits.values()) > MAX_REQUESTS:
            self.close_connection = True
            return
        parts = self.path.strip("/").split("/")
        kind, n = parts[0], int(parts[-1].split(".")[0])
        failing = int(parts[1]) if len(parts) == 3 else 0
        if kind == "missing":
            self._answer(404, b"not found", "text/plain")
        elif kind == "html":
            self._answer(200, b"<html><body>sign in</body></html>", "text/html")
        elif kind == "flaky" and hits[self.path] <= failing:
            self._answer(503, b"busy", "text/plain")
        elif kind == "drop" and hits[self.path] <= failing:
            self.close_connection = True  # no status line at all: the client sees the connection end
        elif kind == "slow" and hits[self.path] <= failing:
            time.sleep(1.0)
            with contextlib.suppress(OSError):
                self._answer(200, _png(n), "image/png")
        else:
            self._answer(200, _png(n), "image/png")

    def _answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path, monkeypatch) -> Iterator[str]:
    monkeypatch.setattr("finetuner.data.remote.BACKOFF", 0.05)  # quick retries; the schedule is tested apart
    monkeypatch.setenv("FINETUNER_IMAGE_CACHE", str(tmp_path / "image-cache"))
    Flaky.hits = Counter()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    stopper = threading.Timer(LIFETIME, httpd.shutdown)  # stops by itself, whatever the test does
    stopper.daemon = True
    stopper.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        stopper.cancel()
        httpd.shutdown()
        httpd.server_close()
        images._cache.clear()


def _same(img: Image.Image, n: int) -> bool:
    return np.array_equal(np.asarray(img), np.asarray(Image.open(io.BytesIO(_png(n))).convert("RGB")))


@pytest.mark.parametrize("path", ["flaky/2/1.png", "drop/2/2.png"])
def test_transient_failures_are_retried(server, path):
    assert _same(load_image(f"{server}/{path}"), int(path[-5]))
    assert Flaky.hits[f"/{path}"] == 3  # two failures, then the answer


def test_a_timeout_is_retried(server):
    assert _same(load_image(f"{server}/slow/1/3.png", timeout=0.3), 3)
    assert Flaky.hits["/slow/1/3.png"] == 2


def test_a_404_is_not_retried(server):
    with pytest.raises(DataError, match=r"missing/4\.png.*HTTP 404"):
        load_image(f"{server}/missing/4.png")
    assert Flaky.hits["/missing/4.png"] == 1


def test_retries_give_up_with_a_clear_error(server, monkeypatch):
    monkeypatch.setattr("finetuner.data.remote.RETRIES", 2)
    with pytest.raises(DataError, match=r"flaky/9/5\.png.*HTTP 503.*tried 3 times"):
        load_image(f"{server}/flaky/9/5.png")
    assert Flaky.hits["/flaky/9/5.png"] == 3


def test_backoff_doubles_between_attempts(monkeypatch):
    from finetuner.data import remote

    waits, attempts = [], []

    def failing(url, timeout):
        attempts.append(url)
        raise remote._Transient("the server answered HTTP 503")

    monkeypatch.setattr(remote, "_get", failing)
    monkeypatch.setattr(remote.time, "sleep", waits.append)
    monkeypatch.setattr(remote, "RETRIES", 3)
    monkeypatch.setattr(remote, "BACKOFF", 1.0)
    with pytest.raises(DataError, match="tried 4 times"):
        remote.fetch_url("http://example.invalid/a.png", 1.0)
    assert len(attempts) == 4 and len(waits) == 3
    for wait, base in zip(waits, (1.0, 2.0, 4.0)):
        assert base <= wait <= 1.25 * base


def test_prefetch_caches_every_image_and_reports_failures(server, monkeypatch):
    from finetuner.data.remote import cached_path, prefetch

    urls = [f"{server}/ok/{i}.png" for i in range(12)] + [f"{server}/flaky/1/20.png", f"{server}/missing/21.png",
                                                          f"{server}/html/22.png"]
    failures = prefetch(urls, timeout=5, workers=4, progress=False)
    assert sorted(failures) == [f"{server}/html/22.png", f"{server}/missing/21.png"]
    assert "HTTP 404" in failures[f"{server}/missing/21.png"] and "not an image" in failures[f"{server}/html/22.png"]
    assert all(cached_path(u).is_file() for u in urls[:13])
    served = sum(Flaky.hits.values())
    assert _same(load_image(urls[3]), 3) and sum(Flaky.hits.values()) == served  # read from the disk cache
    assert prefetch(urls[:13], timeout=5, progress=False) == {} and sum(Flaky.hits.values()) == served


def _image_data(server, bad=()):
    """16 image items of 4 classes; the given indices point at URLs that fail."""
    rows = []
    for i in range(16):
        url = f"{server}/missing/{i}.png" if i in bad else f"{server}/flaky/1/{i}.png"
        rows.append((url, f"class-{i % 4}"))
    return rows


def test_fit_prefetch_lists_every_failed_item_before_loading_a_model(server, monkeypatch):
    def tripwire(*args, **kwargs):
        raise AssertionError("a model was loaded although images had failed")

    monkeypatch.setattr("finetuner.training.build.build_model", tripwire)
    with pytest.raises(DataError) as info:
        finetuner.fit("resnet50", _image_data(server, bad=(2, 7)), prefetch_images=True, epochs=1, verbose=False)
    message = str(info.value)
    assert "2 remote image(s) could not be fetched before training" in message
    assert f"train_data item 2 ({server}/missing/2.png)" in message and "item 7" in message
    assert "on_image_error='skip'" in message and len(info.value.problems) == 2


@pytest.fixture(scope="module")
def tiny_resnet(tmp_path_factory) -> str:
    from transformers import ResNetConfig, ResNetModel, ViTImageProcessor

    directory = tmp_path_factory.mktemp("tiny-resnet-remote")
    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    ResNetModel(config).save_pretrained(directory)
    ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(
        directory
    )
    return str(directory)


def test_fit_skips_failed_items_counts_and_names_them(server, tiny_resnet, caplog):
    data = _image_data(server, bad=(5,))
    with caplog.at_level("WARNING", logger="finetuner"):
        run = finetuner.fit(tiny_resnet, data, on_image_error="skip", epochs=1, batch_size=8, device="cpu",
                            run_name="skip-images", num_items_per_class=2, verbose=False)
    assert run.status()["status"] == "FINISHED"
    assert "left out 1 item(s) whose image could not be fetched" in caplog.text
    assert f"skipped train_data item 5 ({server}/missing/5.png): " in run.logs()
    assert "15 image items" in run.logs()  # trained without it
    assert Flaky.hits["/flaky/1/3.png"] == 2  # fetched once before training (with its retry), never again
