"""What the serving tests share (tests/test_serve.py, test_serve_page.py, test_serve_ray.py): servers in threads on a
free loopback port, the requests and checks they make, and bounded waits."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from _helpers import LABELS
from swiftformer.cli import main
from swiftformer.serving import ServeSettings
from swiftformer.serving.server import build_app, shut_down, uvicorn_server
from swiftformer.serving.settings import ModelSettings

NAME = "tiny"
TIMEOUT = 60  # seconds, for any one wait


# Four small images of different sizes, formats and modes (they all preprocess to 64×64).
SERVING_IMAGES = {"a.png": (80, 60, 3), "b.jpg": (50, 90, 3), "c.png": (64, 64, 4), "d.bmp": (30, 40)}


def predict_cli(capsys, model_dir: Path, files: list[Path], top_k: int = 4) -> dict[str, dict]:
    """``swiftformer predict --json`` at the precision and backend the servers here use."""
    options = ["--json", "--top-k", str(top_k), "--precision", "fp32", "--backend", "inductor"]
    code = main(["predict", *map(str, files), "--model", str(model_dir), *options])
    out, _ = capsys.readouterr()
    assert code == 0
    return {Path(row["image"]).name: row for row in map(json.loads, out.splitlines())}


def assert_same_predictions(served: dict, expected: dict) -> None:
    """Same classes in the same order, scores within 1e-5."""
    got = [(p["index"], p["label"]) for p in served["predictions"]]
    want = [(p["index"], p["label"]) for p in expected["predictions"]]
    assert got == want, (served, expected)
    for a, b in zip(served["predictions"], expected["predictions"]):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def png_header(width: int, height: int) -> bytes:
    """A PNG of a few bytes whose header claims ``width`` × ``height`` (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def check_good_request(base_url: str, image: Path) -> None:
    """The server still answers a good request (after a bad one)."""
    response = httpx.post(f"{base_url}/predict", content=image.read_bytes(), timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.json()[0]["predictions"][0]["label"] in LABELS.values()


def check_v2_endpoints(base_url: str, name: str, images: list[Path]) -> None:
    """Server and model metadata, health, and a JSON infer with base64 images (httpx)."""
    assert httpx.get(f"{base_url}/v2/health/live", timeout=TIMEOUT).status_code == 200
    assert httpx.get(f"{base_url}/v2/health/ready", timeout=TIMEOUT).json() == {"ready": True}
    assert httpx.get(f"{base_url}/v2/models/{name}/ready", timeout=TIMEOUT).status_code == 200
    server = httpx.get(f"{base_url}/v2", timeout=TIMEOUT).json()
    assert server["name"] == "swiftformer" and "binary_tensor_data" in server["extensions"]
    meta = httpx.get(f"{base_url}/v2/models/{name}", timeout=TIMEOUT).json()
    assert meta["name"] == name
    assert {i["name"]: i["shape"] for i in meta["inputs"]} == {"pixel_values": [-1, 3, 64, 64], "images": [-1]}
    assert [o["name"] for o in meta["outputs"]] == ["logits", "probabilities", "labels"]
    body = {
        "id": "42",
        "inputs": [
            {
                "name": "images",
                "datatype": "BYTES",
                "shape": [len(images)],
                "data": [base64.b64encode(p.read_bytes()).decode() for p in images],
            }
        ],
        "outputs": [{"name": "probabilities"}, {"name": "labels", "parameters": {"classification": 2}}],
    }
    response = httpx.post(f"{base_url}/v2/models/{name}/infer", json=body, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["model_name"] == name and result["id"] == "42"
    probs, labels = result["outputs"]
    assert probs["shape"] == [len(images), 4] and labels["shape"] == [len(images), 2]
    probs = np.array(probs["data"]).reshape(len(images), 4)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    for row, pair in zip(probs, np.array(labels["data"]).reshape(len(images), 2)):
        score, index, label = pair[0].split(":")
        assert int(index) == row.argmax() and label == LABELS[int(index)]
        assert float(score) == pytest.approx(row.max(), abs=1e-6)


# ------------------------------------------------------------------------------ servers in threads
@dataclass
class RunningServer:
    app: Any
    server: Any
    thread: threading.Thread
    port: int

    @property
    def base_url(self) -> str:
        scheme = "https" if self.app.state.service.settings.ssl_certfile else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def grpc_url(self) -> str:
        """``127.0.0.1:PORT`` of the v2 gRPC service (settings with ``grpc_port=0``: the port it was given)."""
        return f"127.0.0.1:{self.app.state.grpc_port}"

    @property
    def repository(self):
        return self.app.state.repository

    @property
    def backend(self):
        """The default model's backend (the only one's, for most tests)."""
        return self.repository.get().backend

    @property
    def batcher(self):
        return self.backend.batcher

    def metrics(self) -> str:
        return httpx.get(f"{self.base_url}/metrics", timeout=TIMEOUT).text

    def close(self) -> None:
        shut_down(self.server)
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the server did not stop"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT, interval: float = 0.01) -> None:
    """Wait until ``condition()`` holds (it is state, not time, that is waited for), at most ``timeout``; it is
    asked every ``interval`` seconds (longer for a costly question)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class ForwardGate:
    """Holds a served model's forward passes (not its warm-up) until :attr:`release` is set: pass
    :meth:`prepare` to :func:`start_server`. :attr:`entered` is set once a batch is held, :attr:`sizes` lists the
    held batches' sizes; ``first_only``: hold the first batch only, the later ones run at once."""

    def __init__(self, first_only: bool = False) -> None:
        self.release, self.entered = threading.Event(), threading.Event()
        self.sizes: list[int] = []
        self.first_only = first_only

    def prepare(self, backend: Any) -> None:
        forward = backend.classifier.forward

        def gated_forward(pixels):
            if backend.batcher.ready.is_set() and not (self.first_only and self.entered.is_set()):
                self.sizes.append(len(pixels))
                self.entered.set()
                assert self.release.wait(TIMEOUT)
            return forward(pixels)

        backend.classifier.forward = gated_forward


class DecodeGate:
    """Holds the server's first ``held`` decodes (``swiftformer.serving.app.prepare``) until :attr:`release` is set:
    :meth:`install` it before :func:`start_server`. :attr:`decoded` lists the label of every upload whose decoding
    began; :meth:`wait_held` returns once ``held`` decodes are held, :meth:`waiting` counts the uploads still waiting
    for a decoding thread."""

    def __init__(self, held: int) -> None:
        self.held, self.release = held, threading.Event()
        self.decoded: list[str] = []
        self._all_held = threading.Barrier(held + 1, timeout=TIMEOUT)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from swiftformer.serving import app as serving_app

        prepare = serving_app.prepare

        def held_prepare(data: bytes, *args: Any) -> Any:
            self.decoded.append(args[2])  # prepare(data, processor, max_pixels, label, fast)
            if len(self.decoded) <= self.held:
                self._all_held.wait()
                assert self.release.wait(TIMEOUT)
            return prepare(data, *args)

        monkeypatch.setattr(serving_app, "prepare", held_prepare)

    def wait_held(self) -> None:
        self._all_held.wait()

    @staticmethod
    def waiting(running: RunningServer) -> int:
        return running.app.state.service.executor._work_queue.qsize()  # the jobs no decoding thread has taken


def start_server(
    settings: ServeSettings, prepare: Callable[[Any], None] | None = None, wait_ready: bool = True
) -> RunningServer:
    app = build_app(settings)
    if prepare is not None:
        prepare(app.state.repository.get().backend)
    server = uvicorn_server(app, settings, log_level="warning")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # loopback only; a free port chosen by the kernel
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    running = RunningServer(app, server, thread, sock.getsockname()[1])
    wait_for(lambda: server.started or not thread.is_alive(), "uvicorn to start")
    assert thread.is_alive(), "uvicorn failed to start"
    if wait_ready:
        for served in app.state.repository.served():
            assert served.backend.batcher.ready.wait(TIMEOUT), f"model {served.name} did not warm up"
    return running


def model_for(model_dir: Path | str, name: str | None = NAME, **options: Any) -> ModelSettings:
    """A model as the serving tests serve it: fp32 on inductor, what predict_cli runs (the same numbers)."""
    return ModelSettings(path=str(model_dir), name=name, **{"precision": "fp32", "backend": "inductor", **options})


def settings_for(model_dir: Path | None, models: tuple[ModelSettings, ...] = (), **options: Any) -> ServeSettings:
    """Server settings for ``model_dir`` served as NAME, or for ``models``, with the tests' small limits."""
    defaults = dict(
        models=models or (model_for(model_dir),),
        model_workers=1,
        decode_threads=2,
        max_upload_mb=1,
        max_image_pixels=10**6,
    )
    return ServeSettings(**{**defaults, **options})


def jpeg_bytes(size: tuple[int, int] = (96, 96)) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


BAD_BODIES = {
    "not an image": (b"hello, this is text", 400, "bad_image"),
    "truncated jpeg": (jpeg_bytes()[: len(jpeg_bytes()) // 2], 400, "bad_image"),
    "0 bytes": (b"", 400, "empty"),
    "60000x60000 header": (png_header(60000, 60000), 413, "image_too_large"),
    "over max_image_pixels": (png_header(2000, 1000), 413, "image_too_large"),
    "over max_upload_mb": (b"\xff" * (3 * 1024 * 1024 // 2), 413, "too_large"),
}


def raw_post(port: int, path: str, body: bytes) -> socket.socket:
    """A socket that has sent a whole POST of ``body`` to ``path`` and not read the answer (close it to go away)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
    sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock
