"""Image loading: every source gives the same RGB pixels; bad sources give a DataError naming them."""

from __future__ import annotations

import base64
import contextlib
import http.server
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from finetuner import Document
from finetuner.data import images
from finetuner.data.images import array_to_image, decode_image, load_image, read_source
from finetuner.errors import DataError


def _rgb_array(seed: int = 0, size: tuple[int, int] = (12, 9)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)  # (H, W, 3)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def png_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    arr = _rgb_array()
    path = tmp_path / "img.png"
    path.write_bytes(_png(arr))
    return path, arr


def test_every_source_gives_the_same_pixels(png_file: tuple[Path, np.ndarray]) -> None:
    path, arr = png_file
    raw = path.read_bytes()
    data_uri = "data:image/png;base64," + base64.b64encode(raw).decode()
    chw = np.moveaxis(arr, -1, 0)
    sources = {
        "path": str(path),
        "pathlib": path,
        "file-url": path.as_uri(),
        "data-uri": data_uri,
        "bytes": raw,
        "hwc-uint8": arr,
        "chw-uint8": chw,
        "hwc-float": arr.astype(np.float32) / 255.0,
        "chw-float-torch": torch.from_numpy(chw.astype(np.float32) / 255.0),
        "hwc-float-0-255": arr.astype(np.float64),
        "batch-of-one": arr[None],
        "pil": Image.fromarray(arr),
        "doc-uri": Document(uri=str(path)),
        "doc-blob": Document(blob=raw, uri="ignored-when-blob-is-set.png"),
        "doc-tensor": Document(tensor=arr),
        "hf-image-dict": {"bytes": raw, "path": None},
    }
    for name, source in sources.items():
        img = load_image(source)
        assert img.mode == "RGB", name
        np.testing.assert_array_equal(np.asarray(img), arr, err_msg=name)


def test_grey_and_transparent_images_become_rgb() -> None:
    grey = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8
    for source in (grey, grey[..., None], grey[None], torch.from_numpy(grey)[None], Image.fromarray(grey)):
        out = np.asarray(load_image(source))
        assert out.shape == (5, 6, 3)
        np.testing.assert_array_equal(out[..., 0], grey)
        np.testing.assert_array_equal(out[..., 2], grey)
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)  # fully transparent black -> white
    assert np.asarray(load_image(rgba)).min() == 255
    assert np.asarray(load_image(np.ones((2, 2), dtype=bool))).min() == 255


def test_ambiguous_layout_follows_the_library_convention() -> None:
    cube = np.zeros((3, 3, 3), dtype=np.uint8)
    cube[0] = 255  # numpy: first row white (HWC); torch: red channel (CHW)
    assert np.asarray(load_image(cube))[0].min() == 255
    assert np.asarray(load_image(torch.from_numpy(cube)))[..., 0].min() == 255


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.png.*does not exist"):
        load_image(str(tmp_path / "nope.png"))
    with pytest.raises(DataError, match=r"nope\.png.*Document 'd1'"):
        load_image(Document(uri=str(tmp_path / "nope.png"), id="d1"))
    with pytest.raises(DataError, match="folder"):
        load_image(str(tmp_path))


def test_corrupt_image_names_the_uri(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg at all")
    with pytest.raises(DataError, match=r"broken\.jpg.*cannot decode.*PNG, JPEG"):
        load_image(str(bad))
    with pytest.raises(DataError, match=r"<5 bytes>"):
        load_image(b"\x00\x01\x02\x03\x04")
    with pytest.raises(DataError, match="empty"):
        decode_image(b"", "x.png")
    with pytest.raises(DataError, match="HTML"):
        load_image(b"<html>404</html>")


def test_text_and_odd_sources_are_rejected_clearly() -> None:
    with pytest.raises(DataError, match="it is text, not an image source"):
        load_image("a red pencil skirt")
    with pytest.raises(DataError, match=r"Document 't'.*only text"):
        load_image(Document(text="hello", id="t"))
    with pytest.raises(DataError, match="unsupported scheme 'ftp'"):
        load_image("ftp://example.org/a.png")
    with pytest.raises(DataError, match="no image source"):
        load_image(3.5)
    with pytest.raises(DataError, match="file:// URLs must name a local file"):
        read_source("file://otherhost/a.png")


def test_bad_arrays_say_what_is_valid() -> None:
    with pytest.raises(DataError, match=r"received shape \(2, 5, 5, 5\)"):
        array_to_image(np.zeros((2, 5, 5, 5)))
    with pytest.raises(DataError, match=r"\[-1, 1\]"):
        load_image(np.linspace(-1, 1, 12).reshape(3, 4))
    with pytest.raises(DataError, match="NaN"):
        load_image(np.full((2, 2), np.nan))
    with pytest.raises(DataError, match=r"\[0, 1000\]"):
        load_image(np.array([[0, 1000]], dtype=np.int32))


class _Handler(http.server.BaseHTTPRequestHandler):
    png = b""
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        if self.path.startswith("/slow"):
            time.sleep(1.5)
        if self.path.startswith(("/img.png", "/slow")):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(self.png)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(self.png)
        else:
            self.send_error(404, "Not Found")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, np.ndarray]]:
    arr = _rgb_array(3)
    _Handler.png, _Handler.hits = _png(arr), 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", arr
    finally:
        httpd.shutdown()
        httpd.server_close()
        images._cache.clear()


def test_http_image_loads_once_and_equals_the_local_one(server: tuple[str, np.ndarray]) -> None:
    base, arr = server
    for _ in range(2):
        np.testing.assert_array_equal(np.asarray(load_image(f"{base}/img.png")), arr)
    np.testing.assert_array_equal(np.asarray(load_image(Document(uri=f"{base}/img.png?v=1"))), arr)
    assert _Handler.hits == 2  # the repeat came from the cache


def test_http_404_and_timeout_are_clear_errors(server: tuple[str, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = server
    monkeypatch.setattr("finetuner.data.remote.RETRIES", 0)  # one attempt (retries: tests/data/test_remote_images.py)
    with pytest.raises(DataError, match=r"missing\.png.*HTTP 404"):
        load_image(f"{base}/missing.png")
    started = time.perf_counter()
    with pytest.raises(DataError, match=r"slow\.png.*no answer within 0\.3 s.*FINETUNER_IMAGE_TIMEOUT"):
        load_image(f"{base}/slow.png", timeout=0.3)
    assert time.perf_counter() - started < 1.4
    with pytest.raises(DataError, match="cannot reach the server"):
        load_image("http://127.0.0.1:9/nothing-listens-here.png", timeout=2)
