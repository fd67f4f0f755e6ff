"""Load test of ``swiftformer serve``: closed-loop clients on loopback, batching on vs off vs Ray Serve vs a
transformers ``pipeline`` behind a minimal FastAPI endpoint.

Each configuration runs as its own server process on 127.0.0.1 (a free port) and is driven in turn by each
number of ``--clients``: that many threads each send ``POST /predict`` with one 224² JPEG and send the next
as soon as the answer is in, until ``--requests`` requests have been answered (the first ``--warmup`` are
not timed). Printed per configuration and client count: requests/s, latency p50/p90/p99, the mean batch
size (from /metrics; under Ray, that of the replica that answered the scrape), the server's CPU time per request
(user + system of its process tree over the run, warm-up requests included; not under Ray), 503s (overload, with
Retry-After), other errors, and the server's resident memory (its process tree) before and after. On a machine
shared with the clients (or other jobs) requests/s move with the load; CPU ms per request much less.

    .venv/bin/python benchmarks/serve_load.py --model xs                     # 1, 8, 32, 128 clients, all configs
    .venv/bin/python benchmarks/serve_load.py --model runs/xs/best --configs batching no-batching --clients 32

``--photo 1920x1080`` sends photo-like JPEGs of that size instead (8 of them, each client cycling through them;
``benchmarks/decode_agreement.py``'s generator) and reports the model thread's idle percentage during each run
(from ``swiftformer_model_busy_seconds_total`` before and after); ``exact-decode`` is ``batching`` with
``--exact-decode``::

    .venv/bin/python benchmarks/serve_load.py --photo 1920x1080 --configs batching exact-decode --clients 1 32

The ``ray-1`` / ``ray-2`` configurations start a local Ray instance, whose services listen on every
interface: run the benchmark in a loopback-only network namespace, as the Ray tests do (root)::

    unshare --net sh -c 'ip link set lo up && .venv/bin/python benchmarks/serve_load.py'

``--model`` is a folder, a hub id or a variant name (random weights, written to a temporary folder so
that the transformers baseline can load it too). Needs ``pip install .[serve]``, ``.[ray]`` for the Ray
configurations and, for the baseline, transformers; a configuration whose package is missing is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from queue import Empty, Queue

from fastapi import Request  # at module level: FastAPI resolves the endpoint's annotation here

CONFIGS = ("batching", "no-batching", "exact-decode", "ray-1", "ray-2", "pipeline")
PHOTOS = 8  # different photos sent with --photo
UPLOAD_MB = 64  # the servers' --max-upload-mb: room for 12 MP photos
NEEDS = {"ray-1": "ray", "ray-2": "ray", "pipeline": "transformers"}  # configurations that need a package


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="xs", help="model folder, hub id or variant name (default xs)")
    p.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    p.add_argument(
        "--clients",
        type=int,
        nargs="+",
        default=[1, 8, 32, 128],
        help="concurrent closed-loop clients (default 1 8 32 128)",
    )
    p.add_argument("--requests", type=int, default=320, help="timed requests per client count (default 320)")
    p.add_argument("--warmup", type=int, default=20, help="untimed requests first (default 20)")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--precision", default="auto")
    p.add_argument("--backend", default="auto")
    p.add_argument("--image-size", type=int, default=224, help="side of the random JPEG sent (default 224)")
    p.add_argument("--photo", metavar="WxH", help="send photo-like JPEGs of this size instead (e.g. 1920x1080)")
    p.add_argument("--timeout", type=float, default=600, help="seconds for a server to start (default 600)")
    p.add_argument("--json", action="store_true", help="one JSON object per configuration")
    p.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)  # internal: run the baseline
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ------------------------------------------------------------------------------ the baseline server
def baseline_server(model: str, port: int) -> None:
    """transformers' image-classification pipeline behind one FastAPI endpoint, one image per call."""
    import uvicorn
    from fastapi import FastAPI
    from PIL import Image
    from transformers import pipeline

    classify = pipeline("image-classification", model=model, device="cpu")
    lock = threading.Lock()  # a pipeline is not meant for concurrent calls
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> list:
        data = await request.body()

        def run() -> list:
            image = Image.open(io.BytesIO(data)).convert("RGB")
            with lock:
                return classify(image, top_k=5)

        return [{"image": "body", "predictions": await asyncio.to_thread(run)}]

    @app.get("/v2/health/ready")
    def ready() -> dict:
        return {"ready": True}

    print("baseline ready", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# ------------------------------------------------------------------------------ driving a server
class Server:
    """A server subprocess on 127.0.0.1; its port read from its log."""

    def __init__(self, command: list[str], timeout: float) -> None:
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: Queue = Queue()
        for stream in (self.process.stderr, self.process.stdout):
            threading.Thread(target=lambda s=stream: [self.lines.put(line) for line in s], daemon=True).start()
        self.port = self._port(timeout)
        self.url = f"http://127.0.0.1:{self.port}"

    def _port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except Empty:
                if self.process.poll() is not None:
                    break
                continue
            seen.append(line)
            match = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
            if match:
                return int(match.group(1))
        self.stop()
        raise RuntimeError("the server did not start:\n" + "".join(seen[-20:]))

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError("the server exited before it was ready")
            time.sleep(0.2)
        raise RuntimeError(f"the server was not ready within {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def load(url: str, bodies: list[bytes], clients: int, total: int, warmup: int) -> dict:
    """Closed-loop clients until ``total`` timed requests are answered, each client cycling through ``bodies``
    from its own starting point; latencies in ms."""
    import httpx

    lock = threading.Lock()
    counter = {"sent": 0}
    latencies: list[float] = []
    errors: list[str] = []
    overloaded = {"count": 0}
    start_gate = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        with httpx.Client(timeout=120) as session:
            start_gate.wait()
            while True:
                body = bodies[index % len(bodies)]
                index += 1
                with lock:
                    if counter["sent"] >= warmup + total:
                        return
                    counter["sent"] += 1
                    timed = counter["sent"] > warmup
                t0 = time.perf_counter()
                try:
                    response = session.post(f"{url}/predict", content=body)
                    ok = response.status_code == 200
                    if response.status_code == 503:  # the queue was full: the documented overload answer
                        overloaded["count"] += 1
                    elif not ok:
                        errors.append(f"{response.status_code}")
                except httpx.HTTPError as err:
                    ok = False
                    errors.append(type(err).__name__)
                if ok and timed:
                    with lock:
                        latencies.append((time.perf_counter() - t0) * 1000)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    wall_start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall_start
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {
        "requests_per_s": len(latencies) / wall if wall else float("nan"),
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(latencies) if latencies else float("nan"),
        "answered": len(latencies),
        "overloaded_503": overloaded["count"],
        "errors": len(errors),
        "wall_s": wall,
    }


def scrape(url: str) -> str:
    """The server's /metrics text ("" when it cannot be read)."""
    import httpx

    try:
        return httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return ""


def mean_batch_size(text: str) -> float | None:
    values = dict(
        re.findall(r"^swiftformer_batch_size_(sum|count)(?:\{[^}]*\})? ([0-9.e+]+)$", text, flags=re.MULTILINE)
    )
    if not values or float(values.get("count", 0)) == 0:
        return None
    return float(values["sum"]) / float(values["count"])


def model_busy_seconds(text: str) -> float | None:
    match = re.search(r"^swiftformer_model_busy_seconds_total(?:\{[^}]*\})? ([0-9.e+-]+)$", text, flags=re.MULTILINE)
    return float(match.group(1)) if match else None


def idle_percent(before: str, after: str, wall: float) -> float | None:
    """The model thread's idle share of ``wall`` seconds, from the busy seconds of two scrapes (None without them)."""
    busy = [model_busy_seconds(before), model_busy_seconds(after)]
    if busy[0] is None or busy[1] is None or wall <= 0:
        return None
    return 100 * max(0.0, 1 - (busy[1] - busy[0]) / wall)


def model_folder(ref: str, scratch: Path) -> str:
    """A folder for ``ref`` that both servers load: ``ref`` itself, or a variant saved with random weights."""
    from swiftformer.configuration import variant_key

    if Path(ref).exists() or variant_key(ref) is None:
        return ref
    from swiftformer import SwiftFormerImageProcessor
    from swiftformer.inference import load_model

    folder = scratch / ref
    load_model(ref).save_pretrained(folder)
    SwiftFormerImageProcessor().save_pretrained(folder)
    return str(folder)


def request_bodies(photo: str | None, image_size: int) -> list[bytes]:
    """What the clients send: ``PHOTOS`` photo-like JPEGs of ``photo`` ("WxH"), or one random JPEG of ``image_size``²."""
    if photo is None:
        return [jpeg(image_size)]
    from decode_agreement import jpeg as encode
    from decode_agreement import photo as make_photo

    width, height = parse_size(photo)
    return [encode(make_photo(width, height, seed), 85) for seed in range(PHOTOS)]


def parse_size(text: str) -> tuple[int, int]:
    """``"1920x1080"`` -> (1920, 1080)."""
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def jpeg(size: int) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def server_memory_mb(server: Server) -> float | None:
    """Resident memory of the server process and its children (Ray's replicas are not its children), MB."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        root = psutil.Process(server.process.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
    except psutil.Error:
        return None


def server_cpu_seconds(server: Server) -> float | None:
    """CPU seconds (user + system) used so far by the server process and its children: per request, a cost that
    does not depend on what else the machine runs (the clients included)."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        root = psutil.Process(server.process.pid)
        return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return None


def _available(name: str) -> bool:
    import importlib.util

    needed = NEEDS.get(name)
    return needed is None or importlib.util.find_spec(needed) is not None


def run_configs(args: argparse.Namespace, bodies: list[bytes]) -> list[dict]:
    """Each configuration's server started in turn and driven by each client count; one row per pair."""
    rows = []
    queue = 4 * max(args.clients) + 64
    configs = [name for name in args.configs if _available(name)]
    for name in sorted(set(args.configs) - set(configs)):
        print(f"# {name}: left out, {NEEDS[name]} is not installed", file=sys.stderr)
    with tempfile.TemporaryDirectory() as scratch:
        model = model_folder(args.model, Path(scratch))
        serve = [sys.executable, "-m", "swiftformer", "serve", "--model", model, "--host", "127.0.0.1"]
        serve += ["--precision", args.precision, "--backend", args.backend, "--max-queue", str(queue)]
        serve += ["--max-upload-mb", str(UPLOAD_MB)]
        batching = ["--max-batch-size", str(args.max_batch_size), "--max-wait-ms", str(args.max_wait_ms)]
        commands = {
            "batching": [*serve, "--port", "0", *batching],
            "no-batching": [*serve, "--port", "0", "--max-batch-size", "1", "--max-wait-ms", "0"],
            "exact-decode": [*serve, "--port", "0", *batching, "--exact-decode"],
            # one replica per core at most: 2 replicas on 2 cores get one thread each
            "ray-1": [*serve, *batching, "--ray", "--replicas", "1", "--num-cpus-per-replica", "2"],
            "ray-2": [*serve, *batching, "--ray", "--replicas", "2", "--num-cpus-per-replica", "1"],
            "pipeline": [sys.executable, os.path.abspath(__file__), "--baseline-server", "--model", model],
        }
        for name in configs:
            command = commands[name]
            if name == "pipeline" or name.startswith("ray"):
                port = _free_port()
                server: Server = _PortServer([*command, "--port", str(port)], port, args.timeout)
            else:
                server = Server(command, args.timeout)
            try:
                server.wait_ready(args.timeout)
                for clients in args.clients:
                    before, metrics_before = server_memory_mb(server), scrape(server.url)
                    cpu_before = server_cpu_seconds(server)
                    result = load(server.url, bodies, clients, args.requests, args.warmup)
                    cpu_after = server_cpu_seconds(server)
                    metrics_after = scrape(server.url)
                    row = {
                        "config": name,
                        "clients": clients,
                        **result,
                        "mean_batch_size": mean_batch_size(metrics_after),
                    }
                    # Ray: the scrape reaches one replica, whose busy time is not the whole server's
                    idle = (
                        None
                        if name.startswith("ray")
                        else idle_percent(metrics_before, metrics_after, result["wall_s"])
                    )
                    # the warm-up requests are inside the CPU interval too: counted, so the figure is per request sent
                    cpu_ms = (
                        None
                        if cpu_before is None or cpu_after is None or name.startswith("ray")
                        else 1e3 * (cpu_after - cpu_before) / (args.requests + args.warmup)
                    )
                    row.update(
                        rss_before_mb=before,
                        rss_after_mb=server_memory_mb(server),
                        model_idle_percent=idle,
                        server_cpu_ms_per_request=cpu_ms,
                    )
                    rows.append(row)
                    if args.json:
                        print(json.dumps(row), flush=True)
            finally:
                server.stop()
    return rows


def print_table(rows: list[dict]) -> None:
    print(
        f"{'config':<12} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'batch':>6} "
        f"{'idle %':>6} {'CPU ms':>7} {'503s':>5} {'errors':>6} {'RSS MB before/after':>20}"
    )
    for r in rows:
        batch = f"{r['mean_batch_size']:.2f}" if r["mean_batch_size"] else "-"
        idle = f"{r['model_idle_percent']:.0f}" if r.get("model_idle_percent") is not None else "-"
        cpu = f"{r['server_cpu_ms_per_request']:.1f}" if r.get("server_cpu_ms_per_request") is not None else "-"
        memory = "-"
        if r["rss_before_mb"] is not None and r["rss_after_mb"] is not None:
            memory = f"{r['rss_before_mb']:.0f}/{r['rss_after_mb']:.0f}"
        print(
            f"{r['config']:<12} {r['clients']:7d} {r['requests_per_s']:8.1f} {r['p50_ms']:8.1f} {r['p90_ms']:8.1f} "
            f"{r['p99_ms']:8.1f} {batch:>6} {idle:>6} {cpu:>7} {r['overloaded_503']:5d} {r['errors']:6d} {memory:>20}"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.baseline_server:
        baseline_server(args.model, args.port)
        return 0
    rows = run_configs(args, request_bodies(args.photo, args.image_size))
    if not args.json:
        print_table(rows)
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _PortServer(Server):
    """A server whose port is chosen here (the baseline prints no uvicorn line at warning level; Ray's
    proxy logs its own lines)."""

    def __init__(self, command: list[str], port: int, timeout: float) -> None:
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines = Queue()
        for stream in (self.process.stderr, self.process.stdout):
            threading.Thread(target=lambda s=stream: [self.lines.put(line) for line in s], daemon=True).start()
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


if __name__ == "__main__":
    sys.exit(main())
