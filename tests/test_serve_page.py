"""The demo page at ``/`` in a real browser: Debian's ``chromium`` (``apt-get install chromium``),
headless, driven by Playwright (``pip install playwright``; its own browser downloads are not used:
the browser is launched by ``executable_path``).

Picks a PNG through the page's file input (the file chooser that clicking the drop zone opens), waits
for the result with Playwright's auto-waiting ``expect`` (bounded), checks the bars against the
server's ``/predict`` answer and takes a screenshot (``SWIFTFORMER_UPDATE_SCREENSHOT=1``: saved to
docs/serving_page.png, the picture in docs/serving.md).

Skipped, with the reason, where chromium or Playwright is missing; with
``SWIFTFORMER_REQUIRE_BROWSER=1`` (``.ci/run`` sets it and installs chromium) it fails instead.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from _helpers import make_images, make_model_dir  # noqa: E402
from _serving import NAME, TIMEOUT, model_for, settings_for, start_server  # noqa: E402

try:
    from playwright.sync_api import Browser, expect, sync_playwright
except ImportError as error:  # the `test` extra has it
    PLAYWRIGHT_MISSING: str | None = f"playwright is not installed ({error}; pip install playwright)"
else:
    PLAYWRIGHT_MISSING = None

GRAD_CAM = importlib.util.find_spec("pytorch_grad_cam") is not None  # the explain extra, for the overlay
CHROMIUM = shutil.which("chromium")  # Debian's package; /usr/bin/chromium
REQUIRE_BROWSER = os.environ.get("SWIFTFORMER_REQUIRE_BROWSER") == "1"
SCREENSHOT = Path(__file__).parents[1] / "docs" / "serving_page.png"
# No network beyond loopback, no background services, no GPU; --no-sandbox since tests run as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing() -> str | None:
    if PLAYWRIGHT_MISSING:
        return PLAYWRIGHT_MISSING
    if CHROMIUM is None:
        return "no chromium on PATH (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    missing = _missing()
    if missing and REQUIRE_BROWSER:
        pytest.fail(f"SWIFTFORMER_REQUIRE_BROWSER=1 but {missing}", pytrace=False)
    if missing:
        pytest.skip(f"browser test not run: {missing}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_page_classifies_a_picked_image(tmp_path, browser, model_dir):
    image = tmp_path / "gradient.png"
    y, x = np.mgrid[0:120, 0:160]
    Image.fromarray(np.stack([x * 255 // 160, y * 255 // 120, 128 + 0 * x], -1).astype(np.uint8)).save(image)
    server = start_server(settings_for(model_dir, max_wait_ms=1))
    context = browser.new_context(viewport={"width": 900, "height": 700}, device_scale_factor=1)
    context.set_default_timeout(TIMEOUT * 1000)
    try:
        expected = httpx.post(f"{server.base_url}/predict", content=image.read_bytes(), timeout=TIMEOUT).json()
        predictions = expected[0]["predictions"]  # top 5, capped at the model's 4 labels

        page = context.new_page()
        page.goto(f"{server.base_url}/")
        expect(page.locator("#model")).to_have_value(NAME)

        with page.expect_file_chooser() as chooser:  # a click on the drop zone opens the file input
            page.locator("#drop").click()
        chooser.value.set_files(image)

        status = page.locator("#status")
        # the page's state is waited for, not time: the final status line, or an error (bounded)
        expect(status).to_have_text(re.compile(r"in the server\)$|error|failed"), timeout=TIMEOUT * 1000)
        assert status.get_attribute("class") != "error", status.text_content()
        assert re.fullmatch(rf"{NAME}: \d+ ms \(\d+\.\d ms in the server\)", status.text_content() or "")

        rows = page.locator("#bars .row")
        expect(rows).to_have_count(len(predictions))
        top = predictions[0]
        expect(rows.first.locator(".label")).to_have_text(f"{top['label']} ({top['index']}){100 * top['score']:.1f} %")
        labels = [re.sub(r"\s+", " ", text) for text in rows.locator(".label").all_inner_texts()]
        for label, p in zip(labels, predictions):
            assert label.startswith(f"{p['label']} ({p['index']})") and f"{100 * p['score']:.1f} %" in label

        # beside the bars, the Grad-CAM overlay of POST /explain replaces the preview once it arrives
        note = page.locator("#heat-note")
        if GRAD_CAM:
            expect(page.locator("#overlay")).to_be_visible(timeout=TIMEOUT * 1000)  # the first one imports grad-cam
            expect(note).to_have_text(f"Grad-CAM at stage3: where the model looks for {top['label']}")
            assert page.evaluate("document.getElementById('overlay').naturalWidth") == 256
            expect(page.locator("#preview")).to_be_hidden()
        else:  # without the explain extra the page says so, and the preview stays
            expect(note).to_have_text(re.compile(r"^no heatmap: .*pip install \.\[explain\]"))

        # each bar's width is set on the next animation frame: wait for that, then the screenshot
        # fast-forwards the 0.3 s width transition (animations="disabled")
        page.wait_for_function("[...document.querySelectorAll('.bar')].every(b => b.style.width !== '')")
        png = page.screenshot(animations="disabled")
        (tmp_path / "page.png").write_bytes(png)
        if os.environ.get("SWIFTFORMER_UPDATE_SCREENSHOT") == "1":
            SCREENSHOT.write_bytes(png)
        assert png.startswith(b"\x89PNG")
    finally:
        context.close()
        server.close()


def test_page_sends_the_api_key_it_was_given(tmp_path, browser, model_dir):
    """On a server with API keys: the page shows a key field; without a key the server's 401 is shown, with it the
    image is classified, and the key stays in the tab (sessionStorage) across a reload."""
    key = "page-key-0123456789"
    image = tmp_path / "grey.png"
    Image.fromarray(np.full((64, 64, 3), 128, dtype=np.uint8)).save(image)
    server = start_server(settings_for(model_dir, max_wait_ms=1, api_keys=(key,)))
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT * 1000)
    try:
        page = context.new_page()
        page.goto(f"{server.base_url}/")
        status = page.locator("#status")
        expect(page.locator("#key")).to_be_visible()

        page.locator("#file").set_input_files(image)
        expect(status).to_have_text(re.compile(r"^error 401: this route needs an API key"))

        page.locator("#key").fill(key)
        page.locator("#key").dispatch_event("change")
        page.locator("#file").set_input_files([])
        page.locator("#file").set_input_files(image)
        expect(status).to_have_text(re.compile(r"in the server\)$|error|failed"))
        assert status.get_attribute("class") != "error", status.text_content()

        page.reload()
        expect(page.locator("#key")).to_have_value(key)
    finally:
        context.close()
        server.close()


def test_page_classifies_with_the_model_picked(tmp_path, browser, model_dir):
    """Two models: the page lists both, the first selected; the one picked answers (its labels, its name)."""
    colours = {0: "red", 1: "green", 2: "blue"}
    other = make_model_dir(tmp_path / "colours", id2label=colours)
    (image,) = make_images(tmp_path / "images", {"a.png": (40, 50, 3)})
    server = start_server(settings_for(None, (model_for(model_dir), model_for(other, "colours")), max_wait_ms=1))
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT * 1000)
    try:
        page = context.new_page()
        page.goto(f"{server.base_url}/")
        picker = page.locator("#model")
        expect(picker).to_have_value(NAME)
        assert picker.locator("option").all_inner_texts() == [NAME, "colours"]
        expect(page.locator("#classes")).to_have_text("4")
        picker.select_option("colours")
        expect(page.locator("#classes")).to_have_text("3")
        with page.expect_file_chooser() as chooser:
            page.locator("#drop").click()
        chooser.value.set_files(image)
        status = page.locator("#status")
        expect(status).to_have_text(re.compile(r"in the server\)$|error|failed"), timeout=TIMEOUT * 1000)
        assert (status.text_content() or "").startswith("colours: "), status.text_content()
        rows = page.locator("#bars .row .label span:first-child")
        expect(page.locator("#bars .row")).to_have_count(3)
        assert {re.sub(r" \(\d\)$", "", text) for text in rows.all_inner_texts()} == set(colours.values())
    finally:
        context.close()
        server.close()
