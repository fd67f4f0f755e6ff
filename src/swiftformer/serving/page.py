"""The demo page at ``GET /``: one self-contained HTML file (no CDN, no external requests) to pick a model
from those served, pick or drop an image and see the top 5 as bars, the model's name and the time taken,
and beside them the Grad-CAM overlay of ``POST /explain`` (where the model looks for its top class).

On a server with API keys the page shows a field for one: it is kept in the tab's ``sessionStorage`` (gone when
the tab closes, never sent anywhere but this server's ``/predict`` and ``/explain``, as ``Authorization: Bearer``).
The page itself is served without a key."""

from __future__ import annotations

import html
import json

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SwiftFormer · __TITLE__</title>
<style>
  :root { color-scheme: light dark; --accent: #2f6fdf; --muted: #888; }
  body { font: 16px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
  h1 { font-size: 1.4rem; margin-bottom: .2rem; }
  .sub { color: var(--muted); margin-top: 0; }
  #drop { border: 2px dashed var(--muted); border-radius: 12px; padding: 1.5rem; text-align: center; cursor: pointer; }
  #drop.over { border-color: var(--accent); background: rgba(47, 111, 223, .08); }
  #result { display: flex; gap: 1.5rem; margin-top: 1.5rem; align-items: flex-start; flex-wrap: wrap; }
  #views { margin: 0; max-width: 16rem; }
  #preview, #overlay { max-width: 16rem; max-height: 16rem; border-radius: 8px; display: none; }
  #heat-note { color: var(--muted); font-size: .85rem; margin-top: .3rem; }
  #bars { flex: 1; min-width: 16rem; }
  .row { margin-bottom: .6rem; }
  .label { display: flex; justify-content: space-between; font-size: .95rem; }
  .track { background: rgba(127, 127, 127, .2); border-radius: 4px; height: .9rem; overflow: hidden; }
  .bar { background: var(--accent); height: 100%; width: 0; transition: width .3s; }
  #status { color: var(--muted); min-height: 1.4em; margin-top: 1rem; }
  #status.error { color: #d33; }
</style>
</head>
<body>
<h1>SwiftFormer image classification</h1>
<p class="sub"><label for="model">model</label> <select id="model">__OPTIONS__</select> · <span id="classes"></span> classes</p>
<div id="drop" tabindex="0">
  <p><b>Drop an image here</b> or click to choose one (up to __MAX_MB__ MB)</p>
  <input id="file" type="file" accept="image/*" hidden>
</div>
<p id="key-row" __KEY_HIDDEN__><label>API key <input id="key" type="password" autocomplete="off" size="32"></label>
  <small class="sub">kept in this tab only (sessionStorage)</small></p>
<div id="status" role="status"></div>
<div id="result">
  <figure id="views">
    <img id="preview" alt="the image sent">
    <img id="overlay" alt="where the model looks">
    <figcaption id="heat-note"></figcaption>
  </figure>
  <div id="bars"></div>
</div>
<script>
"use strict";
const MODELS = __MODELS_JSON__;
const picker = document.getElementById("model");
const classes = document.getElementById("classes");
function model() { return picker.value; }
function showClasses() { classes.textContent = String(MODELS[model()]); }
picker.addEventListener("change", showClasses);
showClasses();
const drop = document.getElementById("drop");
const input = document.getElementById("file");
const statusLine = document.getElementById("status");
const bars = document.getElementById("bars");
const preview = document.getElementById("preview");
const overlay = document.getElementById("overlay");
const heatNote = document.getElementById("heat-note");
const keyInput = document.getElementById("key");
keyInput.value = sessionStorage.getItem("swiftformer-api-key") || "";
keyInput.addEventListener("change", () => sessionStorage.setItem("swiftformer-api-key", keyInput.value.trim()));

function authorized() {  // the request options with the key, when one was given
  const key = keyInput.value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

function say(text, isError) {
  statusLine.textContent = text;
  statusLine.className = isError ? "error" : "";
}

function show(predictions) {
  bars.replaceChildren();
  for (const p of predictions) {
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("div");
    label.className = "label";
    const name = document.createElement("span");
    name.textContent = p.label + " (" + p.index + ")";
    const score = document.createElement("span");
    score.textContent = (100 * p.score).toFixed(1) + " %";
    label.append(name, score);
    const track = document.createElement("div");
    track.className = "track";
    const bar = document.createElement("div");
    bar.className = "bar";
    track.append(bar);
    row.append(label, track);
    bars.append(row);
    requestAnimationFrame(() => { bar.style.width = (100 * p.score).toFixed(2) + "%"; });
  }
}

// The heatmap of POST /explain (Grad-CAM of the top class) replaces the preview when it arrives.
async function explain(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  heatNote.textContent = "computing where the model looks …";
  try {
    const response = await fetch("explain?model=" + encodeURIComponent(model()), { method: "POST", body: form, headers: authorized() });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      heatNote.textContent = "no heatmap: " + (body.error || "error " + response.status);
      return;
    }
    const label = decodeURIComponent(response.headers.get("x-explain-label") || "");
    overlay.src = URL.createObjectURL(await response.blob());
    overlay.alt = "where the model looks for " + label;
    overlay.style.display = "block";
    preview.style.display = "none";
    heatNote.textContent = "Grad-CAM at " + response.headers.get("x-explain-layer") + ": where the model looks for " + label;
  } catch (err) {
    heatNote.textContent = "no heatmap: " + err;
  }
}

async function classify(file) {
  if (!file) return;
  preview.src = URL.createObjectURL(file);
  preview.style.display = "block";
  overlay.style.display = "none";
  heatNote.textContent = "";
  bars.replaceChildren();
  say("classifying " + file.name + " …");
  const form = new FormData();
  form.append("file", file, file.name);
  const start = performance.now();
  try {
    const response = await fetch("predict?top_k=5&model=" + encodeURIComponent(model()), { method: "POST", body: form, headers: authorized() });
    const total = performance.now() - start;
    const body = await response.json();
    if (!response.ok) { say("error " + response.status + ": " + (body.error || JSON.stringify(body)), true); return; }
    show(body[0].predictions);
    const server = response.headers.get("x-process-time-ms");
    say(model() + ": " + total.toFixed(0) + " ms" + (server ? " (" + Number(server).toFixed(1) + " ms in the server)" : ""));
    explain(file);
  } catch (err) {
    say("request failed: " + err, true);
  }
}

drop.addEventListener("click", () => input.click());
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
input.addEventListener("change", () => classify(input.files[0]));
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  classify(e.dataTransfer.files[0]);
});
</script>
</body>
</html>
"""


def render_page(models: list[tuple[str, int]], default: str, max_upload_mb: float, needs_key: bool = False) -> str:
    """The page for ``models`` (name, number of labels), ``default`` selected (names escaped for HTML and for
    the script); with a key field when ``needs_key``."""
    options = "".join(
        f'<option value="{html.escape(name)}"{" selected" if name == default else ""}>{html.escape(name)}</option>'
        for name, _ in models
    )
    title = default if any(name == default for name, _ in models) else (models[0][0] if models else "no model")
    return (
        _PAGE.replace("__KEY_HIDDEN__", "" if needs_key else "hidden")
        .replace("__TITLE__", html.escape(title))
        .replace("__OPTIONS__", options)
        .replace("__MAX_MB__", f"{max_upload_mb:g}")
        .replace("__MODELS_JSON__", json.dumps(dict(models)).replace("<", "\\u003c"))
    )
