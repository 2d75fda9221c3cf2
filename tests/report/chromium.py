"""Render a page in headless Chromium over the DevTools protocol (a pipe, no extra packages): screenshot + errors.

Used by the report test and to make ``docs/img/report.png``:
``python -m tests.report.chromium <run or page> docs/img/report.png``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """The path of a Chromium/Chrome binary, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class Rendered:
    """What the browser saw: a PNG screenshot, console errors/warnings, exceptions, failed requests."""

    png: bytes
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


class _Pipe:
    """Chromium's ``--remote-debugging-pipe``: JSON messages ending in NUL, commands on fd 3, replies on fd 4."""

    def __init__(self, binary: str, profile: str, width: int, height: int) -> None:
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def child_fds() -> None:  # the pipe ends become fds 3 and 4 (moved out of the way first)
            os.dup2(to_chrome_r, 100)
            os.dup2(from_chrome_w, 101)
            os.dup2(100, 3)
            os.dup2(101, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child_fds,
            pass_fds=(3, 4),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)


def render(page: str | Path, width: int = 1280, height: int = 2000, binary: str | None = None) -> Rendered:
    """Load ``page`` (a local file) in headless Chromium; its full-page screenshot and every problem it reported."""
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("no Chromium/Chrome binary on PATH")
    url = Path(page).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="finetuner-chromium-") as profile:
        pipe = _Pipe(binary, profile, width, height)
        try:
            targets = pipe.send("Target.getTargets")["targetInfos"]
            target = next(t["targetId"] for t in targets if t["type"] == "page")
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            pipe.events.clear()
            pipe.send("Page.navigate", {"url": url}, session=session)
            pipe.wait_for("Page.loadEventFired")
            time.sleep(0.3)  # late console messages
            shot = pipe.send(
                "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session
            )
            png = base64.b64decode(shot["data"])
        finally:
            pipe.close()
    out = Rendered(png)
    for event in pipe.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            out.errors.append(f"console.{params['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            out.errors.append(f"exception: {params.get('exceptionDetails', {}).get('text')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
            entry = params["entry"]
            out.errors.append(f"log {entry.get('level')}: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed":
            out.errors.append(f"request failed: {params.get('errorText')}")
        elif method == "Network.requestWillBeSent":
            out.requests.append(params.get("request", {}).get("url", ""))
    return out


if __name__ == "__main__":  # python -m tests.report.chromium <run folder or page.html> <out.png> [width height]
    target = Path(sys.argv[1])
    page = target / "report.html" if target.is_dir() else target
    size = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (1280, 2000)
    result = render(page, *size)
    Path(sys.argv[2]).write_bytes(result.png)
    print(f"{sys.argv[2]}: {len(result.png)} bytes; problems: {result.errors or 'none'}")
