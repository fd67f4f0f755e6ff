"""The Open Inference Protocol v2 over gRPC (``swiftformer.serving.grpc_v2``), spoken by ``tritonclient.grpc`` as it
is, against the real server (HTTP and gRPC in one process, a tiny random model at 64×64, fp32)."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path
from queue import Queue

import numpy as np
import pytest

pytest.importorskip("fastapi")
grpcclient = pytest.importorskip("tritonclient.grpc")
httpx = pytest.importorskip("httpx")
import grpc  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from tritonclient.grpc import service_pb2 as pb  # noqa: E402
from tritonclient.grpc import service_pb2_grpc as pb_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from _helpers import LABELS, make_images  # noqa: E402
from _serving import (  # noqa: E402
    NAME,
    SERVING_IMAGES,
    TIMEOUT,
    DecodeGate,
    RunningServer,
    metric,
    settings_for,
    start_server,
    wait_for,
)
from swiftformer import SwiftFormerImageProcessor  # noqa: E402


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return make_images(tmp_path_factory.mktemp("images"), SERVING_IMAGES)


@pytest.fixture(scope="module")
def server(model_dir) -> Iterator[RunningServer]:
    running = start_server(settings_for(model_dir, grpc_port=0, max_batch_size=4, max_wait_ms=2, max_queue=16))
    yield running
    running.close()


@pytest.fixture
def client(server) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    yield client
    client.close()


def _pixels(model_dir: Path, images: list[Path]) -> np.ndarray:
    from PIL import Image

    processor = SwiftFormerImageProcessor.from_pretrained(model_dir)
    return processor([Image.open(p) for p in images], return_tensors="np")["pixel_values"].astype(np.float32)


def _grpc_error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_health_and_metadata(server, client):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "swiftformer" and "classification" in meta["extensions"]
    model = client.get_model_metadata(NAME, as_json=True)
    assert model["name"] == NAME and model["versions"] == ["1"]
    assert {i["name"]: i["shape"] for i in model["inputs"]} == {
        "pixel_values": ["-1", "3", "64", "64"],
        "images": ["-1"],
    }
    assert [o["name"] for o in model["outputs"]] == ["logits", "probabilities", "labels"]


def test_pixel_values_match_http(server, client, model_dir, images):
    pixels = _pixels(model_dir, images)
    grpc_inputs = [grpcclient.InferInput("pixel_values", list(pixels.shape), "FP32")]
    grpc_inputs[0].set_data_from_numpy(pixels)
    outputs = [
        grpcclient.InferRequestedOutput("logits"),
        grpcclient.InferRequestedOutput("probabilities"),
        grpcclient.InferRequestedOutput("labels", class_count=3),
    ]
    result = client.infer(NAME, grpc_inputs, outputs=outputs, request_id="7")
    assert result.get_response().id == "7"

    http = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=TIMEOUT)
    try:
        http_inputs = [httpclient.InferInput("pixel_values", list(pixels.shape), "FP32")]
        http_inputs[0].set_data_from_numpy(pixels)
        expected = http.infer(NAME, http_inputs).as_numpy("logits")
    finally:
        http.close()
    logits = result.as_numpy("logits")
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)  # fp32: the same model, maybe another batch
    probs = result.as_numpy("probabilities")
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    labels = result.as_numpy("labels")
    assert labels.shape == (len(images), 3)
    for row, top in zip(probs, labels):
        parts = [item.decode().split(":") for item in top]
        assert [int(p[1]) for p in parts] == list(np.argsort(-row)[:3])
        assert [p[2] for p in parts] == [LABELS[int(p[1])] for p in parts]


def test_encoded_images_match_predict(server, client, images):
    data = np.array([p.read_bytes() for p in images], dtype=np.object_)
    inputs = [grpcclient.InferInput("images", [len(images)], "BYTES")]
    inputs[0].set_data_from_numpy(data)
    probs = client.infer(NAME, inputs, outputs=[grpcclient.InferRequestedOutput("probabilities")]).as_numpy(
        "probabilities"
    )
    files = [("file", (p.name, p.read_bytes())) for p in images]
    served = httpx.post(f"{server.base_url}/predict", params={"top_k": 4}, files=files, timeout=TIMEOUT).json()
    for row, expected in zip(probs, served):
        for p in expected["predictions"]:
            assert row[p["index"]] == pytest.approx(p["score"], abs=1e-6)


def test_typed_contents(server, model_dir, images):
    """Values in ``contents`` (fp32_contents, bytes_contents) instead of raw_input_contents, with the bare stub."""
    pixels = _pixels(model_dir, images[:2])
    tensor = pb.ModelInferRequest.InferInputTensor(name="pixel_values", datatype="FP32", shape=list(pixels.shape))
    tensor.contents.fp32_contents.extend(pixels.reshape(-1).tolist())
    files = pb.ModelInferRequest.InferInputTensor(name="images", datatype="BYTES", shape=[2])
    files.contents.bytes_contents.extend([p.read_bytes() for p in images[:2]])
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        typed = stub.ModelInfer(pb.ModelInferRequest(model_name=NAME, inputs=[tensor]), timeout=TIMEOUT)
        raw = stub.ModelInfer(
            pb.ModelInferRequest(
                model_name=NAME,
                inputs=[pb.ModelInferRequest.InferInputTensor(**_fields(tensor))],
                raw_input_contents=[pixels.tobytes()],
            ),
            timeout=TIMEOUT,
        )
        from_files = stub.ModelInfer(pb.ModelInferRequest(model_name=NAME, inputs=[files]), timeout=TIMEOUT)
    assert [o.name for o in typed.outputs] == ["logits", "probabilities", "labels"]
    logits = np.frombuffer(typed.raw_output_contents[0], dtype="<f4").reshape(2, 4)
    np.testing.assert_allclose(logits, np.frombuffer(raw.raw_output_contents[0], dtype="<f4").reshape(2, 4), atol=1e-6)
    assert list(from_files.outputs[1].shape) == [2, 4]


def _fields(tensor) -> dict:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}


def test_errors_have_their_status_codes(server, client, model_dir, images):
    pixels = _pixels(model_dir, images[:1])

    def infer(name: str, datatype: str, array: np.ndarray, model: str = NAME) -> InferenceServerException:
        inputs = [grpcclient.InferInput(name, list(array.shape), datatype)]
        inputs[0].set_data_from_numpy(array)
        return _grpc_error(lambda: client.infer(model, inputs))

    before = server.metrics()
    err = infer("pixel_values", "FP32", pixels, model="other")
    assert err.status() == "StatusCode.NOT_FOUND" and "unknown model 'other'" in err.message()
    err = infer("pixel_values", "FP64", pixels.astype(np.float64))
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "must have datatype FP32, got FP64" in err.message()
    err = infer("pixel_values", "FP32", pixels[:, :, :32, :32].copy())
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "[N, 3, 64, 64]" in err.message()
    err = infer("images", "BYTES", np.array([b"not an image"], dtype=np.object_))
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "images[0]" in err.message()
    assert "\n" not in err.message()
    assert _grpc_error(lambda: client.get_model_metadata("other")).status() == "StatusCode.NOT_FOUND"
    too_large = np.array([b"\xff" * (3 * 1024 * 1024 // 2)], dtype=np.object_)  # over max_upload_mb (1)
    assert infer("images", "BYTES", too_large).status() == "StatusCode.RESOURCE_EXHAUSTED"  # refused by gRPC itself
    after = server.metrics()
    assert (
        metric(after, "swiftformer_errors_total", kind="not_found")
        == metric(before, "swiftformer_errors_total", kind="not_found") + 2
    )
    assert metric(after, "swiftformer_requests_total", endpoint="grpc:ModelInfer", status="404") >= 1
    assert client.is_model_ready(NAME)  # still serving


def test_warming_up_and_a_full_queue_are_unavailable_non_finite_is_internal(model_dir, images):
    warm_gate, forward_gate, in_forward = threading.Event(), threading.Event(), threading.Event()

    def prepare(backend) -> None:
        classifier = backend.classifier
        warm_up, forward = classifier.warm_up, classifier.forward

        def gated_warm_up():
            assert warm_gate.wait(TIMEOUT)
            return warm_up()

        def held_and_poisoned_forward(pixels):
            if not backend.batcher.ready.is_set():  # the warm-up
                return forward(pixels)
            in_forward.set()
            assert forward_gate.wait(TIMEOUT)
            logits = forward(pixels).clone()
            logits[0] = math.nan
            return logits

        classifier.warm_up, classifier.forward = gated_warm_up, held_and_poisoned_forward

    running = start_server(
        settings_for(model_dir, grpc_port=0, max_batch_size=1, max_queue=1), prepare, wait_ready=False
    )
    client = grpcclient.InferenceServerClient(running.grpc_url)
    try:
        inputs = [grpcclient.InferInput("images", [1], "BYTES")]
        inputs[0].set_data_from_numpy(np.array([images[0].read_bytes()], dtype=np.object_))
        assert client.is_server_live() and not client.is_server_ready()
        err = _grpc_error(lambda: client.infer(NAME, inputs))
        assert err.status() == "StatusCode.UNAVAILABLE" and "warming up" in err.message()
        warm_gate.set()
        assert running.batcher.ready.wait(TIMEOUT)

        held: list = []
        first = threading.Thread(target=lambda: held.append(_grpc_error(lambda: client.infer(NAME, inputs))))
        first.start()
        assert in_forward.wait(TIMEOUT)  # one image in the forward pass: the queue (1) is full
        err = _grpc_error(lambda: client.infer(NAME, inputs))
        assert err.status() == "StatusCode.UNAVAILABLE" and "the server is busy" in err.message()
        forward_gate.set()
        first.join(TIMEOUT)
        (err,) = held
        assert err.status() == "StatusCode.INTERNAL" and "images[0]: the model's logits" in err.message()
    finally:
        warm_gate.set()
        forward_gate.set()
        client.close()
        running.close()


def test_http_and_grpc_images_batch_together(model_dir, images):
    """One queue: while the model thread holds a first image, an HTTP and a gRPC request queue up and then run as
    one batch of two."""
    release, in_forward = threading.Event(), threading.Event()

    def prepare(backend) -> None:
        forward = backend.classifier.forward

        def held_forward(pixels):
            if backend.batcher.ready.is_set() and not in_forward.is_set():  # the first request's batch
                in_forward.set()
                assert release.wait(TIMEOUT)
            return forward(pixels)

        backend.classifier.forward = held_forward

    running = start_server(settings_for(model_dir, grpc_port=0, max_batch_size=2, max_wait_ms=0), prepare)
    client = grpcclient.InferenceServerClient(running.grpc_url)
    answers: dict[str, object] = {}

    def over_http(key: str) -> None:
        answers[key] = httpx.post(f"{running.base_url}/predict", content=images[0].read_bytes(), timeout=TIMEOUT)

    def over_grpc() -> None:
        inputs = [grpcclient.InferInput("images", [1], "BYTES")]
        inputs[0].set_data_from_numpy(np.array([images[0].read_bytes()], dtype=np.object_))
        answers["grpc"] = client.infer(NAME, inputs).as_numpy("probabilities")

    threads = [threading.Thread(target=over_http, args=("first",))]
    try:
        threads[0].start()
        assert in_forward.wait(TIMEOUT)
        threads += [threading.Thread(target=over_http, args=("http",)), threading.Thread(target=over_grpc)]
        for thread in threads[1:]:
            thread.start()
        wait_for(lambda: running.batcher.queued == 2, "the HTTP and the gRPC image to be queued")
        release.set()
        for thread in threads:
            thread.join(TIMEOUT)
        text = running.metrics()
        assert metric(text, "swiftformer_batch_size_count") == 2  # the held image, then both together
        assert metric(text, "swiftformer_batch_size_bucket", le="1.0") == 1
        http_scores = {p["index"]: p["score"] for p in answers["http"].json()[0]["predictions"]}
        for index, score in http_scores.items():
            assert answers["grpc"][0, index] == pytest.approx(score, abs=1e-6)
    finally:
        release.set()
        client.close()
        running.close()


def test_a_call_cancelled_while_its_images_wait_for_decoding_is_not_decoded(model_dir, images, monkeypatch):
    """Both decoding threads are held on two HTTP requests; a gRPC call's two images wait for a thread and the
    client cancels the call. Released, its images are never decoded, and they are counted cancelled."""
    gate = DecodeGate(held=2)
    gate.install(monkeypatch)
    running = start_server(settings_for(model_dir, grpc_port=0, decode_threads=2))
    client = grpcclient.InferenceServerClient(running.grpc_url)
    answers: Queue = Queue()

    def over_http() -> None:
        answers.put(httpx.post(f"{running.base_url}/predict", content=images[0].read_bytes(), timeout=TIMEOUT))

    try:
        for _ in range(2):
            threading.Thread(target=over_http, daemon=True).start()
        gate.wait_held()
        inputs = [grpcclient.InferInput("images", [2], "BYTES")]
        inputs[0].set_data_from_numpy(np.array([p.read_bytes() for p in images[:2]], dtype=np.object_))
        call = client.async_infer(NAME, inputs, callback=lambda result, error: answers.put(error))
        wait_for(lambda: gate.waiting(running) == 2, "the call's two images to wait for a decoding thread")
        call.cancel()
        wait_for(lambda: metric(running.metrics(), "swiftformer_cancelled_total", model=NAME) == 2, "the cancel")
        gate.release.set()
        got = [answers.get(timeout=TIMEOUT) for _ in range(3)]
        assert sorted(getattr(a, "status_code", 0) for a in got) == [0, 200, 200]
        (error,) = [a for a in got if not hasattr(a, "status_code")]
        assert "cancel" in str(error).lower()
        assert gate.decoded == ["body", "body"]  # the HTTP requests' only: the call's images never were
        text = running.metrics()  # the call counted as a client gone, as HTTP counts one
        assert metric(text, "swiftformer_requests_total", endpoint="grpc:ModelInfer", status="499", model=NAME) == 1
    finally:
        gate.release.set()
        client.close()
        running.close()


def test_a_busy_grpc_port_is_one_line_before_the_model_loads():
    import socket

    from swiftformer.serving import ModelSettings, ServeSettings
    from swiftformer.serving.server import check_grpc_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen for gRPC on 127.0.0.1:{port}: Address already in use"):
            check_grpc_port(ServeSettings(models=(ModelSettings("xs"),), grpc_port=port))
    check_grpc_port(ServeSettings(models=(ModelSettings("xs"),), grpc_port=0))  # a free port: nothing to check
