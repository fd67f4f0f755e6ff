"""``swiftformer serve``: the real server on a free loopback port, a tiny random model at 64×64.

Servers run in threads (uvicorn on a socket bound to 127.0.0.1:0), except the SIGTERM test, which
runs ``python -m swiftformer serve`` as a user does. Every wait is bounded.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from _helpers import LABELS, assert_close_rel, make_images  # noqa: E402
from _serving import (  # noqa: E402
    BAD_BODIES,
    NAME,
    SERVING_IMAGES,
    TIMEOUT,
    ForwardGate,
    RunningServer,
    assert_same_predictions,
    check_good_request,
    check_v2_endpoints,
    metric,
    png_header,
    predict_cli,
    settings_for,
    start_server,
    wait_for,
)
from swiftformer import SwiftFormerForImageClassification, SwiftFormerImageProcessor  # noqa: E402
from swiftformer.cli import main  # noqa: E402
from swiftformer.serving.server import shut_down  # noqa: E402

FLAG = re.compile(r"(?<![\w-])--[a-z]")  # a command-line flag in a message


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return make_images(tmp_path_factory.mktemp("images"), SERVING_IMAGES)


@pytest.fixture(scope="module")
def server(model_dir) -> Iterator[RunningServer]:
    running = start_server(settings_for(model_dir, max_batch_size=4, max_wait_ms=2, max_queue=16))
    yield running
    running.close()


# ------------------------------------------------------------------------------ /predict
def test_predict_multipart_matches_predict_command(server, model_dir, images, capsys):
    files = [("file", (p.name, p.read_bytes(), "application/octet-stream")) for p in images]
    response = httpx.post(f"{server.base_url}/predict", params={"top_k": 4}, files=files, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert float(response.headers["x-process-time-ms"]) > 0
    rows = response.json()
    assert [r["image"] for r in rows] == [p.name for p in images]
    expected = predict_cli(capsys, model_dir, images)
    for row in rows:
        assert_same_predictions(row, expected[row["image"]])


def test_predict_raw_body_and_top_k(server, images):
    response = httpx.post(f"{server.base_url}/predict?top_k=2", content=images[1].read_bytes(), timeout=TIMEOUT)
    assert response.status_code == 200
    (row,) = response.json()
    assert row["image"] == "body" and len(row["predictions"]) == 2
    default = httpx.post(f"{server.base_url}/predict", content=images[1].read_bytes(), timeout=TIMEOUT).json()
    assert len(default[0]["predictions"]) == 4  # the default 5, capped at the 4 labels


def test_concurrent_requests_batch_and_match_predict(model_dir, images, capsys):
    """8 requests queued while the model is held in a forward pass come out as 2 full batches of 4 (the
    batcher does not wait for images that are not on their way, so releasing the 8 together is not enough
    on a loaded machine: the model is held until all 8 are queued), each answer the same as ``predict``'s."""
    gate = ForwardGate(first_only=True)
    running = start_server(settings_for(model_dir, max_batch_size=4, max_queue=16), gate.prepare)
    url = f"{running.base_url}/predict"
    requests = [images[i % len(images)] for i in range(8)]
    results: list[Any] = [None] * len(requests)

    def send(i: int, path: Path) -> None:
        with httpx.Client(timeout=TIMEOUT) as client:
            files = {"file": (path.name, path.read_bytes())}
            results[i] = client.post(url, params={"top_k": 4}, files=files)

    holder = threading.Thread(target=lambda: httpx.post(url, content=images[0].read_bytes(), timeout=TIMEOUT))
    threads = [threading.Thread(target=send, args=(i, p)) for i, p in enumerate(requests)]
    try:
        holder.start()
        assert gate.entered.wait(TIMEOUT)
        for t in threads:
            t.start()
        wait_for(lambda: running.batcher.queued == len(requests), "the 8 images to be queued")
    finally:
        gate.release.set()
        for t in [holder, *threads]:
            t.join(TIMEOUT)
        text = running.metrics()
        running.close()
    assert all(r is not None and r.status_code == 200 for r in results), results

    assert metric(text, "swiftformer_batch_size_count") == 3  # the held image alone, then 4 and 4
    assert metric(text, "swiftformer_batch_size_bucket", le="1.0") == 1
    assert metric(text, "swiftformer_batch_size_bucket", le="3.0") == 1  # the other two batches held 4 images
    assert metric(text, "swiftformer_images_total") == 9
    expected = predict_cli(capsys, model_dir, images)
    for path, response in zip(requests, results):
        (row,) = response.json()
        assert row["image"] == path.name
        assert_same_predictions(row, expected[path.name])


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_raw_body(server, images, case):
    body, status, kind = BAD_BODIES[case]
    response = httpx.post(f"{server.base_url}/predict", content=body, timeout=TIMEOUT)
    assert response.status_code == status, response.text
    assert response.json()["kind"] == kind
    assert not FLAG.search(response.json()["error"]), response.json()  # a server started from Python has no flags
    check_good_request(server.base_url, images[0])


def test_bad_multipart_uploads(server, images):
    url = f"{server.base_url}/predict"
    empty = httpx.post(url, files={"file": ("empty.jpg", b"")}, timeout=TIMEOUT)
    assert empty.status_code == 400 and empty.json()["kind"] == "empty"
    assert "empty.jpg" in empty.json()["error"]
    # one bad file among good ones: the whole request is refused, naming it
    files = [("file", (images[0].name, images[0].read_bytes())), ("file", ("junk.png", b"junk"))]
    mixed = httpx.post(url, files=files, timeout=TIMEOUT)
    assert mixed.status_code == 400 and "junk.png" in mixed.json()["error"]
    wrong_field = httpx.post(url, files={"image": ("a.png", images[0].read_bytes())}, timeout=TIMEOUT)
    assert wrong_field.status_code == 400 and "'file'" in wrong_field.json()["error"]
    # a limit of the server is named as ServeSettings spells it (the command's flag: --max-image-pixels)
    big = httpx.post(url, files={"file": ("big.png", png_header(2000, 1000))}, timeout=TIMEOUT)
    assert big.status_code == 413 and big.json() == {
        "error": "big.png: the image claims 2000×1000 = 2000000 pixels, over the server's max_image_pixels (1000000); "
        "refused before decoding",
        "kind": "image_too_large",
    }
    bad_k = httpx.post(url, params={"top_k": 0}, content=images[0].read_bytes(), timeout=TIMEOUT)
    assert bad_k.status_code == 400 and bad_k.json()["kind"] == "bad_request"
    check_good_request(server.base_url, images[0])


def test_upload_limit_without_content_length(server, images):
    def chunks() -> Iterator[bytes]:  # a chunked body: the limit is enforced while reading
        for _ in range(24):
            yield b"\0" * 65536

    response = httpx.post(f"{server.base_url}/predict", content=chunks(), timeout=TIMEOUT)
    assert response.status_code == 413 and response.json() == {
        "error": "the request body is over the server's max_upload_mb (1 MB)",
        "kind": "too_large",
    }
    assert response.headers["connection"] == "close"  # the rest of the body is never read as a next request
    check_good_request(server.base_url, images[0])


def test_unknown_route_and_method(server, images):
    assert httpx.get(f"{server.base_url}/nope", timeout=TIMEOUT).json()["kind"] == "not_found"
    assert httpx.get(f"{server.base_url}/predict", timeout=TIMEOUT).status_code == 405
    check_good_request(server.base_url, images[0])


def test_errors_are_counted_by_kind(server):
    httpx.post(f"{server.base_url}/predict", content=b"not an image", timeout=TIMEOUT)
    text = server.metrics()
    assert metric(text, "swiftformer_errors_total", kind="bad_image") >= 1
    assert metric(text, "swiftformer_requests_total", endpoint="/predict", status="400") >= 1
    assert metric(text, "swiftformer_request_latency_seconds_count", endpoint="/predict") >= 1
    assert "swiftformer_queue_depth" in text and "swiftformer_images_in_flight" in text


# ------------------------------------------------------------------------------ Open Inference Protocol v2
def test_v2_json(server, images):
    check_v2_endpoints(server.base_url, NAME, images)


def _pixels(model_dir: Path, images: list[Path]) -> np.ndarray:
    return SwiftFormerImageProcessor.from_pretrained(model_dir)([str(p) for p in images])["pixel_values"]


def _eager_logits(model_dir: Path, pixels: np.ndarray) -> torch.Tensor:
    model = SwiftFormerForImageClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return model(torch.from_numpy(pixels)).logits


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_pixel_values(server, model_dir, images, binary):
    http = pytest.importorskip("tritonclient.http")
    client = http.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=TIMEOUT)
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)
        assert client.get_model_metadata(NAME)["name"] == NAME
        pixels = _pixels(model_dir, images)
        inputs = [http.InferInput("pixel_values", list(pixels.shape), "FP32")]
        inputs[0].set_data_from_numpy(pixels, binary_data=binary)
        outputs = [
            http.InferRequestedOutput("logits", binary_data=binary),
            http.InferRequestedOutput("probabilities", binary_data=binary),
            http.InferRequestedOutput("labels", binary_data=binary, class_count=3),
        ]
        result = client.infer(NAME, inputs, outputs=outputs)
        logits = torch.from_numpy(result.as_numpy("logits").copy())
        assert_close_rel(logits, _eager_logits(model_dir, pixels), rel=1e-5, what="served logits")
        probs = result.as_numpy("probabilities")
        np.testing.assert_allclose(probs, logits.softmax(-1).numpy(), atol=1e-6)
        labels = result.as_numpy("labels")
        assert labels.shape == (len(images), 3)
        for row, top in zip(probs, labels):
            parts = [(item.decode() if isinstance(item, bytes) else item).split(":") for item in top]
            assert [int(p[1]) for p in parts] == list(np.argsort(-row)[:3])
            assert [p[2] for p in parts] == [LABELS[int(p[1])] for p in parts]
    finally:
        client.close()


def test_tritonclient_encoded_images(server, images):
    http = pytest.importorskip("tritonclient.http")
    client = http.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=TIMEOUT)
    try:
        data = np.array([p.read_bytes() for p in images], dtype=np.object_)
        inputs = [http.InferInput("images", [len(images)], "BYTES")]
        inputs[0].set_data_from_numpy(data)
        result = client.infer(NAME, inputs, outputs=[http.InferRequestedOutput("probabilities")])
        probs = result.as_numpy("probabilities")
    finally:
        client.close()
    files = [("file", (p.name, p.read_bytes())) for p in images]
    served = httpx.post(f"{server.base_url}/predict", params={"top_k": 4}, files=files, timeout=TIMEOUT).json()
    for row, expected in zip(probs, served):
        for p in expected["predictions"]:
            assert row[p["index"]] == pytest.approx(p["score"], abs=1e-6)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_requests(server, images, algorithm):
    http = pytest.importorskip("tritonclient.http")
    client = http.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=TIMEOUT)
    try:
        inputs = [http.InferInput("images", [2], "BYTES")]
        inputs[0].set_data_from_numpy(np.array([p.read_bytes() for p in images[:2]], dtype=np.object_))
        plain = client.infer(NAME, inputs).as_numpy("probabilities")
        packed = client.infer(NAME, inputs, request_compression_algorithm=algorithm).as_numpy("probabilities")
    finally:
        client.close()
    np.testing.assert_array_equal(packed, plain)


def test_v2_empty_outputs_means_every_output_and_media_types_ignore_case(server, images):
    image = base64.b64encode(images[0].read_bytes()).decode()
    request = {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": [image]}], "outputs": []}
    response = httpx.post(f"{server.base_url}/v2/models/{NAME}/infer", json=request, timeout=TIMEOUT)
    assert [o["name"] for o in response.json()["outputs"]] == ["logits", "probabilities", "labels"]  # KServe's rule
    form = httpx.Request("POST", "http://x", files=[("file", (images[0].name, images[0].read_bytes()))])
    body, kind = form.read(), form.headers["content-type"]
    for content_type in (kind, kind.replace("multipart/form-data", "Multipart/Form-Data")):
        response = httpx.post(
            f"{server.base_url}/predict", content=body, headers={"Content-Type": content_type}, timeout=TIMEOUT
        )
        assert response.status_code == 200 and response.json()[0]["image"] == images[0].name, response.text


def test_tritonclient_errors(server, model_dir, images):
    http = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    pixels = _pixels(model_dir, images[:1])
    client = http.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=TIMEOUT)

    def infer(name: str, datatype: str, array: np.ndarray, model: str = NAME) -> InferenceServerException:
        inputs = [http.InferInput(name, list(array.shape), datatype)]
        inputs[0].set_data_from_numpy(array)
        with pytest.raises(InferenceServerException) as caught:
            client.infer(model, inputs)
        return caught.value

    try:
        assert infer("pixels", "FP32", pixels).status() == "400"  # wrong input name
        err = infer("pixel_values", "FP64", pixels.astype(np.float64))
        assert err.status() == "400" and "FP32" in err.message()
        err = infer("pixel_values", "FP32", pixels[:, :, :32, :32].copy())
        assert err.status() == "400" and "[N, 3, 64, 64]" in err.message()
        assert infer("pixel_values", "FP32", pixels, model="other").status() == "404"
        assert infer("images", "BYTES", np.array([b"not an image"], dtype=np.object_)).status() == "400"
        assert not client.is_model_ready("other")
    finally:
        client.close()
    check_good_request(server.base_url, images[0])


V2_BAD = {
    "not json": (b"{nope", {}, 400),
    "two inputs": (
        json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}] * 2}).encode(),
        {},
        400,
    ),
    "shape and data disagree": (
        json.dumps(
            {"inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": [1, 3, 64, 64], "data": [0.0]}]}
        ).encode(),
        {},
        400,
    ),
    "binary size past the body": (
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "pixel_values",
                        "datatype": "FP32",
                        "shape": [1, 3, 64, 64],
                        "parameters": {"binary_data_size": 49152},
                    }
                ]
            }
        ).encode(),
        {},
        400,
    ),
    "bad header length": (b'{"inputs": []}', {"Inference-Header-Content-Length": "999"}, 400),
    "unknown output": (
        json.dumps(
            {
                "inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}],
                "outputs": [{"name": "embeddings"}],
            }
        ).encode(),
        {},
        400,
    ),
    "not base64": (
        json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": ["@@@"]}]}).encode(),
        {},
        400,
    ),
    "an integer float32 cannot hold": (
        b'{"inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": [1], "data": [1' + b"0" * 400 + b"]}]}",
        {},
        400,
    ),
    "corrupt gzip": (b"\x1f\x8b not gzip", {"Content-Encoding": "gzip"}, 400),
    "gzip inflating past the upload limit": (gzip.compress(b" " * (2 << 20)), {"Content-Encoding": "gzip"}, 413),
    "unknown content encoding": (b"{}", {"Content-Encoding": "br"}, 415),
}


@pytest.mark.parametrize("case", list(V2_BAD))
def test_v2_bad_requests(server, images, case):
    body, headers, status = V2_BAD[case]
    response = httpx.post(f"{server.base_url}/v2/models/{NAME}/infer", content=body, headers=headers, timeout=TIMEOUT)
    assert response.status_code == status, response.text
    assert "error" in response.json()
    check_good_request(server.base_url, images[0])


def test_v2_versions(server):
    assert httpx.get(f"{server.base_url}/v2/models/{NAME}/versions/1", timeout=TIMEOUT).status_code == 200
    assert httpx.get(f"{server.base_url}/v2/models/{NAME}/versions/2", timeout=TIMEOUT).status_code == 404
    for odd in ("%C2%B2", "%EF%BC%91"):  # "²" and a full-width "1": digits to str.isdigit, no version numbers
        response = httpx.get(f"{server.base_url}/v2/models/{NAME}/versions/{odd}", timeout=TIMEOUT)
        assert response.status_code == 404 and response.json()["kind"] == "not_found", response.text
    assert httpx.get(f"{server.base_url}/v2/models/other/ready", timeout=TIMEOUT).status_code == 404


# ------------------------------------------------------------------------------ /explain
def test_explain_returns_the_overlay_of_the_top_class(server, images):
    pytest.importorskip("pytorch_grad_cam")
    from urllib.parse import unquote

    predicted = httpx.post(f"{server.base_url}/predict", content=images[0].read_bytes(), timeout=TIMEOUT).json()
    top = predicted[0]["predictions"][0]
    response = httpx.post(f"{server.base_url}/explain", content=images[0].read_bytes(), timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    headers = response.headers
    assert (headers["x-explain-method"], headers["x-explain-layer"]) == ("gradcam", "stage3")
    assert int(headers["x-explain-index"]) == top["index"] and unquote(headers["x-explain-label"]) == top["label"]
    assert float(headers["x-explain-score"]) == pytest.approx(top["score"], abs=1e-4)  # eager vs fused fp32
    with Image.open(io.BytesIO(response.content)) as picture:
        assert picture.format == "PNG" and picture.width == 256 and picture.height > 256  # the 64² input, enlarged

    files = [("file", (images[1].name, images[1].read_bytes(), "image/jpeg"))]
    params = {"target": "fish", "method": "gradcam++", "layer": "stage3"}
    response = httpx.post(f"{server.base_url}/explain", params=params, files=files, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.headers["x-explain-index"] == "3" and response.headers["x-explain-layer"] == "stage3"


@pytest.mark.parametrize(
    ("params", "files", "kind", "message"),
    [
        ({"target": "zebra"}, 1, "bad_request", "target 'zebra' is not among this model's 4 labels"),
        ({"layer": "stage9"}, 1, "bad_request", "layer 'stage9' is not a stage of this model"),
        ({"method": "scorecam"}, 1, "bad_request", "method 'scorecam' is not served"),
        ({"method": "attention"}, 1, "bad_request", "method 'attention' needs an 'l2' attention model"),
        ({}, 2, "bad_request", "/explain takes one image per request, got 2"),
        ({}, 0, "bad_image", "not an image"),
    ],
)
def test_explain_bad_requests(server, images, params, files, kind, message):
    pytest.importorskip("pytorch_grad_cam")
    uploads = [("file", (p.name, p.read_bytes(), "application/octet-stream")) for p in images[:files]]
    if not files:
        uploads = [("file", ("x.png", b"not an image", "image/png"))]
    response = httpx.post(f"{server.base_url}/explain", params=params, files=uploads, timeout=TIMEOUT)
    assert response.status_code == 400
    body = response.json()
    assert body["kind"] == kind and message in body["error"], body
    check_good_request(server.base_url, images[0])


# ------------------------------------------------------------------------------ page, OpenAPI
def test_page_is_self_contained(server):
    response = httpx.get(f"{server.base_url}/", timeout=TIMEOUT)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert NAME in page and "predict?top_k=5" in page and "drop" in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page loads something from outside"


def test_openapi_documents_typed_models(server):
    schema = httpx.get(f"{server.base_url}/openapi.json", timeout=TIMEOUT).json()
    components = schema["components"]["schemas"]
    for model in ("ImagePrediction", "Prediction", "ErrorResponse", "InferRequest", "InferResponse", "ModelMetadata"):
        assert model in components, model
    assert "multipart/form-data" in schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "image/png" in schema["paths"]["/explain"]["post"]["responses"]["200"]["content"]
    docs = httpx.get(f"{server.base_url}/docs", timeout=TIMEOUT)  # no CDN scripts: not served, and says so
    assert docs.status_code == 404 and "/openapi.json" in docs.json()["error"]


# ------------------------------------------------------------------------------ readiness, queue full
def test_not_ready_until_warm_then_queue_full(model_dir, images):
    warm_gate, forward_gate, in_forward = threading.Event(), threading.Event(), threading.Event()

    def prepare(backend) -> None:
        classifier = backend.classifier
        warm_up, forward = classifier.warm_up, classifier.forward

        def gated_warm_up():
            assert warm_gate.wait(TIMEOUT)
            return warm_up()

        def gated_forward(pixels):
            if backend.batcher.ready.is_set():  # requests, not the warm-up
                in_forward.set()
                assert forward_gate.wait(TIMEOUT)
            return forward(pixels)

        classifier.warm_up, classifier.forward = gated_warm_up, gated_forward

    running = start_server(settings_for(model_dir, max_batch_size=1, max_queue=2), prepare, wait_ready=False)
    url = running.base_url
    try:
        assert httpx.get(f"{url}/v2/health/live", timeout=TIMEOUT).status_code == 200
        assert httpx.get(f"{url}/v2/health/ready", timeout=TIMEOUT).status_code == 400
        early = httpx.post(f"{url}/predict", content=images[0].read_bytes(), timeout=TIMEOUT)
        assert early.status_code == 503 and early.json()["kind"] == "not_ready" and "Retry-After" in early.headers
        warm_gate.set()
        assert running.batcher.ready.wait(TIMEOUT)
        assert httpx.get(f"{url}/v2/health/ready", timeout=TIMEOUT).status_code == 200

        too_many = httpx.post(
            f"{url}/predict", files=[("file", (p.name, p.read_bytes())) for p in images[:3]], timeout=TIMEOUT
        )
        assert too_many.status_code == 413 and too_many.json() == {
            "error": "3 images in one request, over the server's max_queue (2)",
            "kind": "too_many_images",
        }

        # one image held in the forward pass, one queued: the queue (2) is full
        answers: Queue = Queue()
        senders = [
            threading.Thread(
                target=lambda: answers.put(
                    httpx.post(f"{url}/predict", content=images[0].read_bytes(), timeout=TIMEOUT)
                )
            )
            for _ in range(2)
        ]
        senders[0].start()
        assert in_forward.wait(TIMEOUT)
        senders[1].start()
        wait_for(lambda: running.batcher.admitted == 2, "the second request to be admitted")
        full = httpx.post(f"{url}/predict", content=images[0].read_bytes(), timeout=TIMEOUT)
        assert full.status_code == 503 and full.json() == {
            "error": "the server is busy: 2 images queued or running, its max_queue is 2",
            "kind": "queue_full",
        }
        assert full.headers["Retry-After"] == "1"
        assert metric(running.metrics(), "swiftformer_images_in_flight") == 2
        forward_gate.set()
        for sender in senders:
            sender.join(TIMEOUT)
        assert [answers.get(timeout=TIMEOUT).status_code for _ in senders] == [200, 200]
        check_good_request(url, images[0])
    finally:
        warm_gate.set()
        forward_gate.set()
        running.close()


class _RecordingClassifier:
    """A stand-in model for the batcher alone: logits are the first 3 pixel values; batch sizes recorded."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def warm_up(self) -> None:
        pass

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(len(pixels))
        return pixels.flatten(1)[:, :3]


def _started_batcher(max_wait_ms: float, metrics: Any = None):
    from swiftformer.serving.batching import DynamicBatcher

    classifier = _RecordingClassifier()
    batcher = DynamicBatcher(classifier, max_batch_size=8, max_wait_ms=max_wait_ms, max_queue=8, metrics=metrics)
    batcher.start()
    assert batcher.ready.wait(TIMEOUT)
    return batcher, classifier


@pytest.mark.parametrize(
    ("backend", "compile", "padded"),
    [
        ("inductor", True, [1, 2, 4, 4, 8, 9]),
        ("inductor", False, [1, 2, 3, 4, 5, 9]),
        ("onnxruntime", False, [1, 2, 3, 4, 5, 9]),
    ],
)
@pytest.mark.slow
def test_batches_are_padded_only_for_compiled_inductor(model_dir, backend, compile, padded):
    """Compiled inductor builds a graph per shape: batches are padded to the warmed-up sizes 1, 2, 4, 8;
    the other backends take any batch size, and padding would only add compute."""
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    from swiftformer.serving.model import Classifier

    model = SwiftFormerForImageClassification.from_pretrained(model_dir)
    classifier = Classifier(
        model, SwiftFormerImageProcessor(), name=NAME, backend=backend, compile=compile, max_batch_size=8
    )
    assert classifier.batch_sizes == [1, 2, 4, 8]
    assert [classifier.padded_size(n) for n in (1, 2, 3, 4, 5, 9)] == padded
    x = torch.randn(3, 3, 64, 64)
    assert classifier.forward(x).shape == (3, len(LABELS))


def test_a_lone_request_does_not_wait_for_a_batch_to_fill():
    batcher, classifier = _started_batcher(max_wait_ms=600_000)  # ten minutes: only "nothing else is coming" ends it
    try:
        with batcher.admission(1):
            (future,) = batcher.submit([torch.full((3, 2, 2), 7.0)])
            assert future.result(timeout=TIMEOUT).tolist() == [7.0, 7.0, 7.0]
        assert classifier.batch_sizes == [1]
    finally:
        batcher.stop()


def test_the_batcher_waits_for_images_still_being_decoded():
    batcher, classifier = _started_batcher(max_wait_ms=600_000)
    decoded, results = threading.Event(), Queue()

    def second_request() -> None:  # admitted first, "decodes" until told, then submits
        with batcher.admission(1):
            assert decoded.wait(TIMEOUT)
            results.put(batcher.submit([torch.full((3, 2, 2), 2.0)])[0].result(timeout=TIMEOUT))

    sender = threading.Thread(target=second_request)
    try:
        sender.start()
        wait_for(lambda: batcher.admitted == 1, "the second request to be admitted")
        with batcher.admission(1):
            (first,) = batcher.submit([torch.full((3, 2, 2), 1.0)])
            wait_for(lambda: batcher.queued == 1, "the first image to be queued")
            assert not first.done()  # held: one more image is on its way
            decoded.set()
            assert first.result(timeout=TIMEOUT).tolist() == [1.0] * 3
        sender.join(TIMEOUT)
        assert results.get(timeout=TIMEOUT).tolist() == [2.0] * 3
        assert classifier.batch_sizes == [2]  # one forward pass for both
    finally:
        decoded.set()
        batcher.stop()


def test_model_thread_time_is_counted_busy_and_waiting_for_decode():
    """The model thread's busy seconds grow with each batch; the time it waits for an admitted image still being
    decoded counts as waiting for decode (the metrics of docs/serving.md, "Metrics")."""
    from swiftformer.serving.metrics import ServeMetrics

    metrics = ServeMetrics(8)
    batcher, classifier = _started_batcher(max_wait_ms=600_000, metrics=metrics.for_model(NAME))

    def waiting() -> float:
        return metric(metrics.render().decode(), "swiftformer_model_waiting_for_decode_seconds_total")

    def busy() -> float:
        return metric(metrics.render().decode(), "swiftformer_model_busy_seconds_total")

    try:
        with batcher.admission(1):
            assert busy() == 0 and waiting() == 0
            (first,) = batcher.submit([torch.full((3, 2, 2), 1.0)])
            assert first.result(timeout=TIMEOUT) is not None
        after_one, waited = busy(), waiting()
        assert after_one > 0
        with batcher.admission(2):  # two images admitted, one decoded: the model waits for the other
            (second,) = batcher.submit([torch.full((3, 2, 2), 2.0)])
            # the model thread waiting on the condition again (submit's notify took it off the waiters): with an
            # image queued and one on its way, that is the wait for the batch to fill
            wait_for(lambda: len(batcher._cond._waiters) == 1, "the model thread to wait for the other image")
            (third,) = batcher.submit([torch.full((3, 2, 2), 3.0)])
            assert second.result(timeout=TIMEOUT) is not None and third.result(timeout=TIMEOUT) is not None
        assert waiting() > waited and busy() > after_one
        assert classifier.batch_sizes == [1, 2]
    finally:
        batcher.stop()


def test_served_requests_move_the_model_busy_seconds(server, images):
    before = metric(server.metrics(), "swiftformer_model_busy_seconds_total")
    check_good_request(server.base_url, images[0])
    text = server.metrics()
    assert metric(text, "swiftformer_model_busy_seconds_total") > before
    assert "swiftformer_model_waiting_for_decode_seconds_total" in text


def test_decode_threads_reach_the_server(server, monkeypatch, capsys):
    """--decode-threads (default: the cores of the affinity mask) reaches ServeSettings, the decode pool and
    /metrics."""
    from swiftformer.hardware import process_cores
    from swiftformer.serving import ServeSettings
    from swiftformer.serving.settings import ModelSettings

    assert metric(server.metrics(), "swiftformer_decode_threads") == 2  # settings_for's decode_threads
    assert server.app.state.service.executor._max_workers == 2
    if hasattr(os, "sched_getaffinity"):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
        assert process_cores() == 3 and ServeSettings(models=(ModelSettings("m"),)).decode_threads == 3
    seen = []
    monkeypatch.setattr("swiftformer.serving.serve", lambda settings: seen.append(settings.decode_threads) or 0)
    assert main(["serve", "--model", "m"]) == 0 and main(["serve", "--model", "m", "--decode-threads", "5"]) == 0
    assert seen == [process_cores(), 5]
    assert main(["serve", "--model", "m", "--decode-threads", "0"]) == 2
    assert "--decode-threads must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="decode_threads"):
        ServeSettings(models=(ModelSettings("m"),), decode_threads=0)


def test_ray_serve_config_file_is_valid_and_builds_the_application(model_dir):
    """examples/serve_config.yaml passes Ray Serve's own schema (what `serve run` / `serve deploy` check) and its
    import path builds the application (without starting Ray); bad args are named."""
    pytest.importorskip("ray.serve")
    import importlib

    import yaml
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load((Path(__file__).parents[1] / "examples" / "serve_config.yaml").read_text())
    (app,) = ServeDeploySchema.model_validate(config).applications
    module, name = app.import_path.split(":")
    builder = getattr(importlib.import_module(module), name)
    assert isinstance(builder({**app.args, "model": str(model_dir)}), serve.Application)
    for bad, message in [
        ({"model": str(model_dir), "replica": 2}, "unknown keys \\['replica'\\]"),
        ({"model": str(model_dir), "replicas": 0}, "replicas must be a positive integer"),
        ({"replicas": 2}, "'model' .* is required"),
        ({"model": str(model_dir), "max_batch_size": 0}, "max_batch_size"),
    ]:
        with pytest.raises(ValueError, match=message):
            builder(bad)


def test_ray_autoscaling_config_targets_a_batch_per_replica(model_dir):
    """``autoscale`` in the config file's args becomes Ray's own AutoscalingConfig (validated by Ray), with
    the target of ongoing requests a replica's max_batch_size; bad autoscale args are named."""
    pytest.importorskip("ray.serve")
    from ray.serve.config import AutoscalingConfig

    from swiftformer.serving.ray_serve import app_builder
    from swiftformer.serving.settings import RayAutoscaling

    scaling = RayAutoscaling(2, 5, upscale_delay_s=1, downscale_delay_s=3)
    config = AutoscalingConfig(**scaling.ray_config(max_batch_size=16))
    assert (config.min_replicas, config.initial_replicas, config.max_replicas) == (2, 2, 5)
    assert config.target_ongoing_requests == 16
    assert (config.upscale_delay_s, config.downscale_delay_s, config.look_back_period_s) == (1, 3, 15)

    app = app_builder(
        {"model": str(model_dir), "max_batch_size": 4, "autoscale": {"min_replicas": 1, "max_replicas": 3}}
    )
    deployed = app._bound_deployment._deployment_config.autoscaling_config  # Ray's record of what it will run
    assert (deployed.min_replicas, deployed.max_replicas, deployed.target_ongoing_requests) == (1, 3, 4)
    for autoscale, message in [
        ({"min_replicas": 1, "max_replicas": 3, "replicas": 2}, r"unknown keys \['replicas'\]"),
        ({"max_replicas": 3}, r"missing \['min_replicas'\]"),
        ({"min_replicas": 0, "max_replicas": 3}, "min_replicas must be at least 1"),
        ({"min_replicas": 3, "max_replicas": 2}, r"max_replicas \(2\) must be at least min_replicas \(3\)"),
        ({"min_replicas": 1, "max_replicas": 2, "look_back_period_s": 5}, "look_back_period_s must be more than 10"),
        ("1,4", "autoscale must be a mapping"),
    ]:
        with pytest.raises(ValueError, match=message):
            app_builder({"model": str(model_dir), "autoscale": autoscale})
    with pytest.raises(ValueError, match="either replicas or autoscale"):
        app_builder({"model": str(model_dir), "replicas": 2, "autoscale": {"min_replicas": 1, "max_replicas": 2}})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--autoscale", "1,4"], "--autoscale go with --ray"),
        (["--ray", "--autoscale", "1,4", "--replicas", "2"], "--autoscale MIN,MAX and --replicas N exclude each other"),
        (["--ray", "--autoscale", "3,2"], r"--autoscale MAX \(2\) must be at least --autoscale MIN \(3\)"),
        (["--ray", "--autoscale=-1,4"], "--autoscale MIN must be at least 1, got -1"),
        (["--ray", "--autoscale", "0,4"], "--autoscale MIN must be at least 1, got 0"),
        (["--ray", "--autoscale", "1-4"], "--autoscale takes MIN,MAX, two whole numbers such as 1,4; got '1-4'"),
        (["--ray", "--autoscale", "1,4.5"], "--autoscale takes MIN,MAX"),
        (["--ray", "--upscale-delay", "2"], "--upscale-delay: only with --autoscale"),
        (
            ["--ray", "--autoscale", "1,2", "--downscale-delay", "-1"],
            "--downscale-delay must be a finite number of seconds",
        ),
        (["--ray", "--autoscale", "1,2", "--upscale-delay", "nan"], "--upscale-delay must be a finite number"),
        (["--ray", "--autoscale", "1,2", "--look-back-period", "5"], "--look-back-period must be more than 10"),
    ],
)
def test_serve_autoscale_options_are_checked(capsys, argv, message):
    assert main(["serve", "--model", "m", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and re.search(message, err), err


def test_serve_autoscale_reaches_ray(monkeypatch):
    """``--ray --autoscale 1,3`` with its delays reaches serve_on_ray as RayAutoscaling; without it, replicas."""
    pytest.importorskip("ray.serve")
    from swiftformer.serving.settings import RayAutoscaling

    seen: list[tuple[int, RayAutoscaling | None]] = []

    def fake(settings, *, address, replicas, num_cpus_per_replica, autoscaling) -> int:
        seen.append((replicas, autoscaling))
        return 0

    monkeypatch.setattr("swiftformer.serving.ray_serve.serve_on_ray", fake)
    assert main(["serve", "--model", "m", "--ray", "--autoscale", " 1, 3", "--upscale-delay", "0.5"]) == 0
    assert main(["serve", "--model", "m", "--ray", "--replicas", "2"]) == 0
    assert seen == [(1, RayAutoscaling(1, 3, upscale_delay_s=0.5)), (2, None)]


# ------------------------------------------------------------------------------ the command
def test_shutdown_finishes_the_request_in_the_forward_pass(model_dir, images):
    """uvicorn's SIGTERM handler (``shut_down``) while a request is inside the forward pass: that request is
    still answered, and the server thread then ends."""
    gate = ForwardGate()
    running = start_server(settings_for(model_dir, max_batch_size=4), gate.prepare)
    answer: Queue = Queue()
    url = running.base_url
    sender = threading.Thread(
        target=lambda: answer.put(httpx.post(f"{url}/predict", content=images[0].read_bytes(), timeout=TIMEOUT))
    )
    try:
        sender.start()
        assert gate.entered.wait(TIMEOUT)
        shut_down(running.server)  # as SIGTERM: stop accepting, finish what is in flight
        gate.release.set()
        response = answer.get(timeout=TIMEOUT)
        assert response.status_code == 200 and response.json()[0]["image"] == "body"
        running.thread.join(TIMEOUT)
        assert not running.thread.is_alive(), "the server did not stop"
    finally:
        gate.release.set()
        if running.thread.is_alive():
            running.close()


def test_serve_command_answers_then_exits_0_on_sigterm(model_dir, images):
    """``python -m swiftformer serve``: ready after warm-up, answers, and exits 0 on a real SIGTERM."""
    command = [sys.executable, "-m", "swiftformer", "serve", "--model", f"{NAME}={model_dir}", "--port", "0"]
    command += ["--max-batch-size", "4", "--max-wait-ms", "60000"]
    command += ["--precision", "fp32", "--backend", "inductor"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: Queue = Queue()
    log: list[str] = []
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True)
    reader.start()
    try:
        port = None
        deadline = time.monotonic() + TIMEOUT
        while port is None:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except Empty:
                raise AssertionError(f"no 'Uvicorn running on' line: {log}") from None
            log.append(line)
            match = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
            port = int(match.group(1)) if match else None
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{url}/v2/health/ready", timeout=TIMEOUT).status_code == 200, "ready")
        # a lone request does not wait --max-wait-ms (60 s) for a batch to fill: nothing else is on its way
        response = httpx.post(f"{url}/predict", content=images[0].read_bytes(), timeout=TIMEOUT)
        assert response.status_code == 200 and response.json()[0]["image"] == "body"
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)


def test_serve_options_are_checked(capsys):
    for argv in (
        ["--max-batch-size", "0"],
        ["--max-upload-mb", "0"],
        ["--replicas", "2"],
        ["--compile", "--backend", "openvino"],
    ):
        assert main(["serve", "--model", "m", *argv]) == 2
        assert "error" in capsys.readouterr().err


def test_import_stays_light():
    code = "import sys, swiftformer, swiftformer.serving; assert 'fastapi' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=TIMEOUT)


def test_uploads_decode_fast_by_default_and_exactly_on_request(tmp_path, monkeypatch):
    from swiftformer.image_processing import DRAFT_INFO
    from swiftformer.serving.images import decode_image, prepare

    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    smooth = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((1600, 1200), Image.BICUBIC)
    smooth.save(buffer, "JPEG", quality=90)
    data, processor = buffer.getvalue(), SwiftFormerImageProcessor(size=64)
    assert decode_image(data, 10**8, draft=processor).info[DRAFT_INFO][2] > 1  # decoded at a reduced scale
    exact, fast = prepare(data, processor, 10**8), prepare(data, processor, 10**8, fast_decode=True)
    assert torch.equal(exact, processor(Image.open(io.BytesIO(data)), return_tensors="pt")["pixel_values"][0])
    assert not torch.equal(exact, fast) and (exact - fast).abs().mean() < 0.02  # < 1 level on average
    # the command line: fast by default, --exact-decode turns it off (the settings reach the server)
    seen = []
    monkeypatch.setattr("swiftformer.serving.serve", lambda settings: seen.append(settings.fast_decode) or 0)
    assert main(["serve", "--model", "m"]) == 0 and main(["serve", "--model", "m", "--exact-decode"]) == 0
    assert seen == [True, False]


def test_model_metadata_says_which_decode(server):
    metadata = httpx.get(f"{server.base_url}/v2/models/{NAME}", timeout=TIMEOUT).json()
    assert metadata["parameters"]["decode"] == "fast"
