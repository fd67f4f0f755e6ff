"""The demo page at ``/`` in a real browser: Debian's chromium, headless, driven over the DevTools
protocol on a pipe (``--remote-debugging-pipe``: no port, no browser package from PyPI).

Picks an image in the page's file input, waits for the bars, checks them against ``/predict`` and
saves a screenshot (``SWIFTFORMER_UPDATE_SCREENSHOT=1``: to docs/serving_page.png). Skipped where no
chromium is installed; ``.ci/run`` installs it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from test_serve import NAME, TIMEOUT, make_model_dir, settings_for, start_server  # noqa: E402

BROWSER = next(
    (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None
)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium installed (apt-get install chromium)")
SCREENSHOT = Path(__file__).parents[1] / "docs" / "serving_page.png"


class DevTools:
    """A minimal Chrome DevTools protocol client over ``--remote-debugging-pipe`` (fd 3 in, fd 4 out)."""

    def __init__(self, browser: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        flags = [
            "--headless=new",
            "--no-sandbox",  # tests run as root
            "--disable-gpu",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--window-size=900,700",
            "--hide-scrollbars",
        ]

        # the pipe ends become the browser's fd 3 and 4 (bash moves them: no preexec_fn beside threads)
        move = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-'
        self.process = subprocess.Popen(
            ["bash", "-c", move, browser, *flags, "about:blank"],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def _read_message(self, deadline: float) -> dict:
        import select

        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the browser did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], remaining)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("the browser closed the DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, timeout: float = TIMEOUT) -> dict:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def close(self) -> None:
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)
        self.process.terminate()
        try:
            self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(TIMEOUT)


def test_page_classifies_a_picked_image(tmp_path):
    model_dir = make_model_dir(tmp_path / "model")
    image = tmp_path / "gradient.png"
    y, x = np.mgrid[0:120, 0:160]
    Image.fromarray(np.stack([x * 255 // 160, y * 255 // 120, 128 + 0 * x], -1).astype(np.uint8)).save(image)
    server = start_server(settings_for(model_dir, max_wait_ms=1))
    browser = DevTools(BROWSER, tmp_path / "profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        browser.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.send("Page.enable")
        browser.send("Runtime.enable")
        browser.send("Page.navigate", {"url": f"{server.base_url}/"})
        browser.wait_event("Page.loadEventFired")
        assert browser.evaluate("document.getElementById('model').textContent") == NAME

        document = browser.send("DOM.getDocument")["root"]["nodeId"]
        file_input = browser.send("DOM.querySelector", {"nodeId": document, "selector": "#file"})["nodeId"]
        browser.send("DOM.setFileInputFiles", {"nodeId": file_input, "files": [str(image)]})  # fires 'change'

        deadline = time.monotonic() + TIMEOUT
        status = ""
        while not status.endswith("in the server)"):  # the page's state, not time, is waited for
            if time.monotonic() > deadline:
                raise AssertionError(f"the page showed no result: {status!r}")
            status = browser.evaluate("document.getElementById('status').textContent") or ""
            assert "error" not in status, status
            time.sleep(0.05)
        rows = browser.evaluate(
            "[...document.querySelectorAll('.row')].map(r => r.querySelector('.label').innerText.replace(/\\s+/g, ' '))"
        )
        expected = httpx.post(f"{server.base_url}/predict", content=image.read_bytes(), timeout=TIMEOUT).json()
        predictions = expected[0]["predictions"]  # top 5, capped at the model's 4 labels
        assert len(rows) == len(predictions)
        for row, p in zip(rows, predictions):
            assert row.startswith(f"{p['label']} ({p['index']})") and f"{100 * p['score']:.1f} %" in row
        assert status.startswith(f"{NAME}: ")

        time.sleep(0.4)  # let the bars' 0.3 s width transition finish, for the picture only
        png = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"})["data"])
        (tmp_path / "page.png").write_bytes(png)
        if os.environ.get("SWIFTFORMER_UPDATE_SCREENSHOT") == "1":
            SCREENSHOT.write_bytes(png)
        assert png.startswith(b"\x89PNG")
    finally:
        browser.close()
        server.close()
