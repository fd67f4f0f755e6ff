"""``swiftformer serve --ray``: the same endpoints on a local Ray instance with 2 replicas, autoscaling
from 1 replica to 2 under load and back, and the command itself on a Ray instance of its own.

Opt-in (``SWIFTFORMER_RAY_TESTS=1``), since a local Ray instance's own services (GCS, raylet, agents)
listen on all interfaces, whatever ``--host`` says. ``make test-ray`` (run by ``make test`` as root)
runs them where nothing else can reach: in a network namespace of their own that has only loopback,

    unshare --net sh -c 'ip link set lo up && SWIFTFORMER_RAY_TESTS=1 .venv/bin/python -m pytest -q tests/test_serve_ray.py'

Two and a half to three and a half minutes on 2 cores. Once opted in, a missing ``ray[serve]`` fails the module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("SWIFTFORMER_RAY_TESTS") != "1":
    reason = "Ray tests run apart: `make test-ray` (SWIFTFORMER_RAY_TESTS=1 in a loopback-only network namespace)"
    pytest.skip(reason, allow_module_level=True)

import httpx
import ray

from _helpers import free_port, make_images
from _serving import (
    BAD_BODIES,
    NAME,
    SERVING_IMAGES,
    TIMEOUT,
    assert_same_predictions,
    check_good_request,
    check_v2_endpoints,
    predict_cli,
    wait_for,
)
from swiftformer.serving import ServeSettings
from swiftformer.serving.ray_serve import run_on_ray  # imports ray.serve without its pydantic warnings
from swiftformer.serving.settings import ModelSettings

REPLICAS = 2


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return make_images(tmp_path_factory.mktemp("images"), SERVING_IMAGES)


def test_serve_command_on_local_ray(model_dir, images, tmp_path):
    """``python -m swiftformer serve --ray --autoscale 1,2`` starts a Ray instance of its own (before the module's,
    below), deploys with autoscaling, serves once its replica is warm, and on SIGTERM drains, shuts Ray down and
    exits 0."""
    url = f"http://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "swiftformer", "serve", "--model", f"{NAME}={model_dir}"]
    command += ["--ray", "--port", url.rsplit(":", 1)[1], "--precision", "fp32", "--backend", "inductor"]
    command += ["--max-wait-ms", "1", "--autoscale", "1,2"]
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    try:

        def ready() -> bool:
            assert process.poll() is None, f"exited {process.returncode}: {log.read_text()[-3000:]}"
            try:
                return httpx.get(f"{url}/v2/health/ready", timeout=TIMEOUT).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, "the Ray replica to be ready", timeout=2 * TIMEOUT)
        check_good_request(url, images[0])
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0, log.read_text()[-3000:]
        assert "with 1 to 2 Ray Serve replicas (autoscaling" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)


@pytest.fixture(scope="module")
def base_url(model_dir) -> Iterator[str]:
    from ray import serve

    settings = ServeSettings(
        models=(ModelSettings(str(model_dir), name=NAME, precision="fp32", backend="inductor"),),
        host="127.0.0.1",
        port=free_port(),
        max_batch_size=4,
        max_wait_ms=3000,  # concurrent requests released together always batch
        max_queue=16,
        max_upload_mb=1,
        max_image_pixels=10**6,
    )
    # a local instance on loopback (inside `make test-ray`'s network namespace nothing else exists)
    ray.init(_node_ip_address="127.0.0.1", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run_on_ray(settings, replicas=REPLICAS, num_cpus_per_replica=0.5)  # returns once both are warm
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def test_v2_endpoints(base_url, images):
    check_v2_endpoints(base_url, NAME, images)


def test_concurrent_requests_batch_on_both_replicas_and_match_predict(base_url, model_dir, images, capsys):
    before = scrape_replicas(base_url)
    requests = [images[i % len(images)] for i in range(8)]
    barrier = threading.Barrier(len(requests), timeout=TIMEOUT)
    results: list[Any] = [None] * len(requests)

    def send(i: int, path: Path) -> None:
        with httpx.Client(timeout=TIMEOUT) as client:
            barrier.wait()
            files = {"file": (path.name, path.read_bytes())}
            results[i] = client.post(f"{base_url}/predict", params={"top_k": 4}, files=files)

    threads = [threading.Thread(target=send, args=(i, p)) for i, p in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert all(r is not None and r.status_code == 200 for r in results), results
    expected = predict_cli(capsys, model_dir, images)
    for path, response in zip(requests, results):
        assert_same_predictions(response.json()[0], expected[path.name])

    after = scrape_replicas(base_url)
    images_run = {pid: after[pid]["images"] - before[pid]["images"] for pid in after}
    batches_run = {pid: after[pid]["batches"] - before[pid]["batches"] for pid in after}
    assert sum(images_run.values()) == len(requests)
    # 8 requests on 2 replicas: one got at least 4, released together within 3 s: a batch > 1
    assert any(images_run[pid] > batches_run[pid] for pid in after), (images_run, batches_run)


def scrape_replicas(base_url: str) -> dict[str, dict[str, float]]:
    """pid -> {"batches", "images"} of each replica. /metrics is the answering replica's: scrape until
    both have answered (bounded)."""
    from prometheus_client.parser import text_string_to_metric_families

    replicas: dict[str, dict[str, float]] = {}
    for _ in range(60):
        sample = {"batches": 0.0, "images": 0.0}
        for family in text_string_to_metric_families(httpx.get(f"{base_url}/metrics", timeout=TIMEOUT).text):
            for s in family.samples:
                if s.name == "swiftformer_server_info":
                    sample["pid"] = s.labels["pid"]
                elif s.name == "swiftformer_batch_size_count":
                    sample["batches"] = s.value
                elif s.name == "swiftformer_batch_size_sum":
                    sample["images"] = s.value
        replicas[sample.pop("pid")] = sample
        if len(replicas) == REPLICAS:
            return replicas
    raise AssertionError(f"saw only replicas {list(replicas)}")


@pytest.mark.parametrize("case", ["not an image", "truncated jpeg", "0 bytes", "60000x60000 header"])
def test_bad_input(base_url, images, case):
    body, status, kind = BAD_BODIES[case]
    response = httpx.post(f"{base_url}/predict", content=body, timeout=TIMEOUT)
    assert response.status_code == status, response.text
    assert response.json()["kind"] == kind
    check_good_request(base_url, images[0])


def test_unknown_model(base_url, images):
    body = {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}]}
    response = httpx.post(f"{base_url}/v2/models/other/infer", json=body, timeout=TIMEOUT)
    assert response.status_code == 404
    check_good_request(base_url, images[0])


def test_autoscaling_adds_a_replica_under_load_and_removes_it_after(base_url, model_dir, images):
    """``--autoscale 1,2`` as a second application on the module's Ray (2 CPUs; 0.5 a replica, so both
    applications fit at their largest): one replica idle, two under concurrent requests, one again once they
    stop. Short delays; the waits are on ``serve.status()``, each with a deadline."""
    from ray import serve

    from swiftformer.serving.ray_serve import application
    from swiftformer.serving.settings import RayAutoscaling

    model = ModelSettings(str(model_dir), name=NAME, precision="fp32", backend="inductor")
    settings = ServeSettings(models=(model,), max_batch_size=2, max_wait_ms=1)
    scaling = RayAutoscaling(1, 2, upscale_delay_s=1, downscale_delay_s=2, look_back_period_s=11)
    app = application(settings, num_cpus_per_replica=0.5, autoscaling=scaling)
    serve.run(app, name="autoscaled", route_prefix="/autoscaled")  # returns once its first replica is warm
    url = f"{base_url}/autoscaled"

    def running() -> int:
        deployment = serve.status().applications["autoscaled"].deployments["SwiftFormer"]
        return deployment.replica_states.get("RUNNING", 0)

    try:
        assert running() == 1
        check_good_request(url, images[0])
        # 12 clients in a closed loop: ~12 requests held against a target of 2 (max_batch_size) a replica
        stop, statuses = threading.Event(), []
        body = images[0].read_bytes()

        def client() -> None:
            with httpx.Client(timeout=TIMEOUT) as http:
                for _ in range(2000):  # bounded, whatever the autoscaler does
                    if stop.is_set():
                        return
                    statuses.append(http.post(f"{url}/predict", content=body).status_code)

        clients = [threading.Thread(target=client) for _ in range(12)]
        for t in clients:
            t.start()
        try:
            wait_for(lambda: running() >= 2, "a second replica under load", timeout=2 * TIMEOUT, interval=0.5)
        finally:
            stop.set()
            for t in clients:
                t.join(TIMEOUT)
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
        wait_for(lambda: running() == 1, "back to one replica once idle", timeout=2 * TIMEOUT, interval=0.5)
        check_good_request(url, images[0])
    finally:
        serve.delete("autoscaled")
