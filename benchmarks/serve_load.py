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

``--protocols`` says how clients send the image: ``predict`` (the default), ``http-json`` (the v2 infer route, the
file as a base64 BYTES input), ``http-binary`` (``tritonclient.http``, binary tensors) and ``grpc``
(``tritonclient.grpc``; the server gets ``--grpc-port 0``), each asking for the top 5 labels; ``--tls`` serves
HTTPS and gRPC over TLS with a throw-away CA (trustme) the clients verify against (not ``http-binary``). Both apply
to the batching, no-batching and exact-decode servers::

    .venv/bin/python benchmarks/serve_load.py --configs batching --protocols predict http-json http-binary grpc --clients 1 32
    .venv/bin/python benchmarks/serve_load.py --configs batching --protocols predict grpc --clients 1 32 --tls

``two-models`` serves the model under two names (``--model M --model second=M``: two batchers on the shared model
workers) and its clients alternate between them, request by request: what serving two models costs against one
(``batching``). ``--abandoning-clients 64`` adds that many clients that send ``POST /predict`` and give up after
``--abandon-after-ms`` (closing the connection), one every ``--abandon-every-ms`` each (their starts spread over
that interval), while the measured clients run. They are plain sockets in a process of their own, started before
the timed window, so that the load generator takes little of the cores it shares with the server: the rows report
how many requests they sent and abandoned, how many images the server dropped unrun
(``swiftformer_cancelled_total``), how many the model ran, and the CPU seconds the abandoning clients took::

    .venv/bin/python benchmarks/serve_load.py --configs batching two-models --clients 1 32
    .venv/bin/python benchmarks/serve_load.py --configs batching --clients 32 --abandoning-clients 64

The ``ray-1`` / ``ray-2`` configurations start a local Ray instance, whose services listen on every
interface: run the benchmark in a loopback-only network namespace, as the Ray tests do (root)::

    unshare --net sh -c 'ip link set lo up && .venv/bin/python benchmarks/serve_load.py'

``--source DIR`` runs swiftformer's servers from another source tree, such as a git worktree of an older
commit, so that two versions are measured the same way (the clients, the photos and the model folder are this
version's; an old server refuses the flags it did not have yet)::

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/serve_load.py --photo 1920x1080 --configs batching --clients 32 --source /tmp/before

``--model`` is a folder, a hub id or a variant name (random weights, written to a temporary folder so
that the transformers baseline can load it too). Needs ``pip install .[serve]``, ``.[ray]`` for the Ray
configurations and, for the baseline, transformers; a configuration whose package is missing is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from queue import Empty, Queue
from typing import Any

from fastapi import Request  # at module level: FastAPI resolves the endpoint's annotation here

CONFIGS = ("batching", "no-batching", "exact-decode", "two-models", "ray-1", "ray-2", "pipeline")
PHOTOS = 8  # different photos sent with --photo
UPLOAD_MB = 64  # the servers' --max-upload-mb: room for 12 MP photos
NEEDS = {"ray-1": "ray", "ray-2": "ray", "pipeline": "transformers"}  # configurations that need a package
# How a client sends an image (--protocols): POST /predict with the file as the body; the v2 infer route with the
# file as a base64 BYTES input in JSON (httpx); tritonclient.http (binary tensor extension); tritonclient.grpc.
# Every one asks for the top 5 labels. Only the batching and exact-decode servers speak them all.
PROTOCOLS = ("predict", "http-json", "http-binary", "grpc")


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
    p.add_argument(
        "--protocols",
        nargs="+",
        choices=PROTOCOLS,
        default=["predict"],
        help="how clients send images (default predict; others with the batching and exact-decode servers)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS and gRPC over TLS (a throw-away CA from trustme; clients verify): the cost of TLS",
    )
    p.add_argument(
        "--abandoning-clients",
        type=int,
        default=0,
        help="more clients that send a request and give up after --abandon-after-ms, over and over, meanwhile",
    )
    p.add_argument("--abandon-after-ms", type=float, default=50.0, help="when the abandoning clients give up")
    p.add_argument(
        "--abandon-every-ms", type=float, default=1000.0, help="how often each abandoning client sends (default 1000)"
    )
    p.add_argument(
        "--source",
        metavar="DIR",
        help="run swiftformer's servers from the source tree DIR (e.g. a git worktree of an older commit) "
        "instead of the installed package: two versions measured the same way",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per configuration")
    p.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)  # internal: run the baseline
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.tls and args.abandoning_clients:
        p.error("--abandoning-clients speak plain HTTP: measure them without --tls")
    return args


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

    def __init__(
        self, command: list[str], timeout: float, ca: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        self._start(command, env)
        self.grpc_url: str | None = None  # "127.0.0.1:PORT" when the server logs its gRPC service
        self.ca = ca  # the CA file its TLS certificate is verified against (None: plain HTTP)
        self.port = self._port(timeout)
        self.url = f"{'https' if ca else 'http'}://127.0.0.1:{self.port}"

    def _start(self, command: list[str], env: dict[str, str] | None) -> None:
        """Start ``command`` (with ``env``, None: this one's) and collect its output lines in ``self.lines``."""
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.lines: Queue = Queue()
        for stream in (self.process.stderr, self.process.stdout):
            threading.Thread(target=lambda s=stream: [self.lines.put(line) for line in s], daemon=True).start()

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
            grpc = re.search(r"v2 gRPC service on 127\.0\.0\.1:(\d+)", line)
            if grpc:
                self.grpc_url = f"127.0.0.1:{grpc.group(1)}"
            match = re.search(r"running on https?://127\.0\.0\.1:(\d+)", line)
            if match:
                return int(match.group(1))
        self.stop()
        raise RuntimeError("the server did not start:\n" + "".join(seen[-20:]))

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=5, verify=self.ca or True).status_code == 200:
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


def load(
    url: str,
    bodies: list[bytes],
    clients: int,
    total: int,
    warmup: int,
    client_for: Callable | None = None,
    abandoning: int = 0,
    abandon_after_s: float = 0.05,
    abandon_every_s: float = 1.0,
) -> dict:
    """Closed-loop clients until ``total`` timed requests are answered, each client cycling through ``bodies``
    from its own starting point; latencies in ms. ``client_for()`` makes one client's ``(send, close)``, ``send``
    returning an HTTP status (default: ``POST /predict`` with httpx, :func:`protocol_client`). ``abandoning``
    more clients meanwhile send ``POST /predict`` every ``abandon_every_s`` and give up after ``abandon_after_s``
    (closing the connection), until the others are done; ``abandoning_sent`` and ``abandoned`` count their requests."""
    client_for = client_for or (lambda: protocol_client("predict", url, None, None, None))
    # The abandoning clients run in a process of their own, so that they do not take the measured clients' GIL.
    spawn = multiprocessing.get_context("spawn")
    ready, done, sent, abandoned = spawn.Event(), spawn.Event(), spawn.Value("i", 0), spawn.Value("i", 0)
    quitters = spawn.Process(
        target=_abandoning,
        args=(url, bodies, abandoning, abandon_after_s, abandon_every_s, ready, done, sent, abandoned),
    )
    if abandoning:
        quitters.start()
        if not ready.wait(120):  # their process's start is not in the timed window
            raise RuntimeError("the abandoning clients did not start within 120 s")
    lock = threading.Lock()
    counter = {"sent": 0}
    latencies: list[float] = []
    errors: list[str] = []
    overloaded = {"count": 0}
    start_gate = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        send, close = client_for()
        try:
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
                    status = send(body)
                except Exception as err:  # a transport error: counted, the client goes on
                    status = type(err).__name__
                ok = status == 200
                if status == 503:  # the queue was full: the documented overload answer
                    overloaded["count"] += 1
                elif not ok:
                    errors.append(f"{status}")
                if ok and timed:
                    with lock:
                        latencies.append((time.perf_counter() - t0) * 1000)
        finally:
            close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    wall_start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall_start
    # what the load generator of the abandoning clients took from the cores the server shares with it
    quitters_cpu_s = _cpu_seconds(quitters.pid) if abandoning else None
    done.set()
    if abandoning:
        quitters.join()
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
        "abandoning_sent": sent.value,
        "abandoned": abandoned.value,
        "abandoning_client_cpu_s": quitters_cpu_s,
    }


def _abandoning(
    url: str,
    bodies: list[bytes],
    clients: int,
    after_s: float,
    every_s: float,
    ready: Any,
    done: Any,
    sent: Any,
    abandoned: Any,
) -> None:
    """``clients`` clients (in a process of their own) that each send ``POST /predict`` every ``every_s`` on a new
    connection and give up after ``after_s`` (closing it), until ``done``; their first requests are spread over
    ``every_s`` (not all at once). ``ready`` is set when they start; ``sent`` counts their requests, ``abandoned``
    those given up. Plain asyncio sockets on one thread, not an HTTP client each: a client that hangs up needs
    no more, and the CPU it takes from the cores the server shares with it is a fraction of httpx's."""
    import asyncio
    from urllib.parse import urlsplit

    address = urlsplit(url)
    host, port = address.hostname, address.port
    requests = [
        (
            f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]

    def count(value: Any) -> None:
        with value.get_lock():
            value.value += 1

    async def exchange(request: bytes, deadline: float) -> None:
        """One request on a new connection, hung up on once answered or at ``deadline`` (then counted)."""
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:  # refused (the server's connection limit): tried again after the pause
            return
        try:
            writer.write(request)
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), deadline - time.monotonic())
        except asyncio.TimeoutError:
            count(abandoned)
        except (OSError, asyncio.IncompleteReadError):  # the server closed the connection first
            pass
        finally:
            writer.close()

    async def client(index: int) -> None:
        await asyncio.sleep(every_s * index / clients)
        while not done.is_set():
            start = time.monotonic()
            count(sent)
            await exchange(requests[index % len(requests)], start + after_s)
            index += 1
            await asyncio.sleep(max(0.0, every_s - (time.monotonic() - start)))  # a client retrying after a pause

    async def main() -> None:
        ready.set()
        await asyncio.gather(*(client(i) for i in range(clients)))

    asyncio.run(main())


def protocol_client(
    protocol: str, url: str, grpc_url: str | None, model_names: list[str] | None, ca: str | None
) -> tuple[Callable[[bytes], int | str], Callable[[], None]]:
    """One client's ``(send(jpeg) -> HTTP status, close)`` for ``protocol`` (:data:`PROTOCOLS`), its requests
    going to each of ``model_names`` in turn (None: ``/predict``'s default model); ``ca``: the CA file a TLS
    server's certificate is verified against."""
    names = itertools.cycle(model_names or [None])
    if protocol in ("predict", "http-json"):
        import base64

        import httpx

        session = httpx.Client(timeout=120, verify=ca or True)

        def send(body: bytes) -> int | str:
            name = next(names)
            if protocol == "predict":
                return session.post(
                    f"{url}/predict", content=body, params={"model": name} if name else None
                ).status_code
            image = {"name": "images", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(body).decode()]}
            labels = {"name": "labels", "parameters": {"classification": 5}}
            request = {"inputs": [image], "outputs": [labels]}
            return session.post(f"{url}/v2/models/{name}/infer", json=request).status_code

        return send, session.close
    import numpy as np
    from tritonclient.utils import InferenceServerException

    if protocol == "grpc":
        import tritonclient.grpc as triton

        client = triton.InferenceServerClient(grpc_url, ssl=ca is not None, root_certificates=ca)
    else:
        import tritonclient.http as triton

        if ca is not None:
            raise SystemExit("--tls: the http-binary client (tritonclient.http) is left out; use predict, grpc")
        client = triton.InferenceServerClient(url.split("://", 1)[1], network_timeout=120)
    outputs = [triton.InferRequestedOutput("labels", class_count=5)]

    def send_v2(body: bytes) -> int | str:
        inputs = [triton.InferInput("images", [1], "BYTES")]
        inputs[0].set_data_from_numpy(np.array([body], dtype=np.object_))
        try:
            client.infer(next(names), inputs, outputs=outputs)
        except InferenceServerException as err:
            status = str(err.status())
            return 503 if "503" in status or "UNAVAILABLE" in status else status
        return 200

    return send_v2, client.close


def scrape(url: str, ca: str | None = None) -> str:
    """The server's /metrics text ("" when it cannot be read); ``ca``: as for :func:`protocol_client`."""
    import httpx

    try:
        return httpx.get(f"{url}/metrics", timeout=10, verify=ca or True).text
    except httpx.HTTPError:
        return ""


def _metric_total(text: str, name: str) -> float | None:
    """The sum of a metric over its label sets (e.g. one per model), None when it is not in ``text``."""
    found = re.findall(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$", text, flags=re.MULTILINE)
    return sum(map(float, found)) if found else None


def mean_batch_size(before: str, after: str) -> float | None:
    """The mean batch size of the batches run between two scrapes."""
    totals = [_metric_total(t, f"swiftformer_batch_size_{k}") for t in (before, after) for k in ("sum", "count")]
    if None in totals:
        return None
    sum_before, count_before, sum_after, count_after = totals
    batches = count_after - count_before
    return (sum_after - sum_before) / batches if batches > 0 else None


def model_busy_seconds(text: str) -> float | None:
    return _metric_total(text, "swiftformer_model_busy_seconds_total")


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
    return _cpu_seconds(server.process.pid)


def _cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by process ``pid`` and its children (None without psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        root = psutil.Process(pid)
        return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return None


def _available(name: str) -> bool:
    import importlib.util

    needed = NEEDS.get(name)
    return needed is None or importlib.util.find_spec(needed) is not None


def run_configs(args: argparse.Namespace, bodies: list[bytes]) -> list[dict]:
    """Each configuration's server started in turn and driven by each protocol and client count; one row each."""
    rows = []
    queue = 4 * max(args.clients) + 64 + args.abandoning_clients
    configs = [name for name in args.configs if _available(name)]
    source = source_env(args.source)
    for name in sorted(set(args.configs) - set(configs)):
        print(f"# {name}: left out, {NEEDS[name]} is not installed", file=sys.stderr)
    with tempfile.TemporaryDirectory() as scratch:
        model = model_folder(args.model, Path(scratch))
        serve = [sys.executable, "-m", "swiftformer", "serve", "--model", model, "--host", "127.0.0.1"]
        serve += ["--precision", args.precision, "--backend", args.backend, "--max-queue", str(queue)]
        serve += ["--max-upload-mb", str(UPLOAD_MB)]
        own = ["--port", "0"]  # the servers that speak every protocol (not Ray's proxy, not the baseline)
        if "grpc" in args.protocols:
            own += ["--grpc-port", "0"]
        ca = None
        if args.tls:
            ca, tls_flags = throwaway_tls(Path(scratch))
            own += tls_flags
        batching = ["--max-batch-size", str(args.max_batch_size), "--max-wait-ms", str(args.max_wait_ms)]
        commands = {
            "batching": [*serve, *own, *batching],
            "no-batching": [*serve, *own, "--max-batch-size", "1", "--max-wait-ms", "0"],
            "exact-decode": [*serve, *own, *batching, "--exact-decode"],
            # the same weights under two names, each with its own batcher: the clients alternate between them
            "two-models": [*serve, "--model", f"second={model}", *own, *batching],
            # one replica per core at most: 2 replicas on 2 cores get one thread each
            "ray-1": [*serve, *batching, "--ray", "--replicas", "1", "--num-cpus-per-replica", "2"],
            "ray-2": [*serve, *batching, "--ray", "--replicas", "2", "--num-cpus-per-replica", "1"],
            "pipeline": [sys.executable, os.path.abspath(__file__), "--baseline-server", "--model", model],
        }
        for name in configs:
            command = commands[name]
            env = None if name == "pipeline" else source  # the baseline is transformers, whatever the source
            if name == "pipeline" or name.startswith("ray"):
                if args.tls:
                    print(f"# {name}: left out, --tls is for the batching, no-batching and exact-decode servers")
                    continue
                port = _free_port()
                server: Server = _PortServer([*command, "--port", str(port)], port, args.timeout, env)
                protocols = ["predict"]
            else:
                server = Server(command, args.timeout, ca, env)
                protocols = args.protocols
            try:
                server.wait_ready(args.timeout)
                for protocol in protocols:
                    for clients in args.clients:
                        names = [Path(model).name, "second"] if name == "two-models" else [Path(model).name]
                        row = measure(server, name, protocol, clients, args, bodies, names)
                        rows.append(row)
                        if args.json:
                            print(json.dumps(row), flush=True)
            finally:
                server.stop()
    return rows


def measure(
    server: Server,
    name: str,
    protocol: str,
    clients: int,
    args: argparse.Namespace,
    bodies: list[bytes],
    models: list[str],
) -> dict:
    """One row: ``clients`` closed-loop clients of ``protocol`` against ``server``, with its metrics and CPU time."""
    before, metrics_before = server_memory_mb(server), scrape(server.url, server.ca)
    cpu_before = server_cpu_seconds(server)

    # /predict: the server's default model unless there are several to take turns; v2 routes name theirs
    names = models if protocol != "predict" or len(models) > 1 else None

    def client_for() -> tuple[Callable, Callable]:
        return protocol_client(protocol, server.url, server.grpc_url, names, server.ca)

    result = load(
        server.url,
        bodies,
        clients,
        args.requests,
        args.warmup,
        client_for,
        args.abandoning_clients,
        args.abandon_after_ms / 1000,
        args.abandon_every_ms / 1000,
    )
    cpu_after = server_cpu_seconds(server)
    metrics_after = scrape(server.url, server.ca)
    ray = name.startswith("ray")  # the scrape reaches one replica, whose busy time is not the whole server's
    # the warm-up requests are inside the CPU interval too: counted, so the figure is per request sent
    cpu_ms = (
        None
        if cpu_before is None or cpu_after is None or ray
        else 1e3 * (cpu_after - cpu_before) / (args.requests + args.warmup)
    )
    return {
        "config": name,
        "protocol": protocol + (" (TLS)" if server.ca else ""),
        "clients": clients,
        **result,
        "mean_batch_size": mean_batch_size(metrics_before, metrics_after),
        "rss_before_mb": before,
        "rss_after_mb": server_memory_mb(server),
        "model_idle_percent": None if ray else idle_percent(metrics_before, metrics_after, result["wall_s"]),
        "server_cpu_ms_per_request": cpu_ms,
        "cancelled_images": _delta(metrics_before, metrics_after, "swiftformer_cancelled_total"),
        "images_run": _delta(metrics_before, metrics_after, "swiftformer_images_total"),
    }


def _delta(before: str, after: str, name: str) -> float | None:
    totals = [_metric_total(before, name), _metric_total(after, name)]
    return None if None in totals else totals[1] - totals[0]


def throwaway_tls(folder: Path) -> tuple[str, list[str]]:
    """A CA (trustme) and a certificate for 127.0.0.1 signed by it, written to ``folder``: (the CA file the
    clients verify with, the server's ``--ssl-certfile/--ssl-keyfile`` flags)."""
    import trustme

    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1")
    paths = {name: str(folder / f"{name}.pem") for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(paths["ca"])
    certificate.cert_chain_pems[0].write_to_path(paths["cert"])
    certificate.private_key_pem.write_to_path(paths["key"])
    return paths["ca"], ["--ssl-certfile", paths["cert"], "--ssl-keyfile", paths["key"]]


def print_table(rows: list[dict]) -> None:
    if any(r.get("abandoning_sent") for r in rows):
        print(
            "sent / abandoned: requests the abandoning clients sent / gave up on; cancelled: images the server dropped "
            "unrun (CPU s: what their load generator took from the cores it shares with the server)"
        )
        for r in rows:
            print(
                f"  {r['config']} {r['protocol']} {r['clients']} clients: {r['abandoning_sent']} sent, "
                f"{r['abandoned']} abandoned, {r.get('cancelled_images')} cancelled; "
                f"the abandoning clients took {r['abandoning_client_cpu_s']:.1f} CPU s"
            )
    print(
        f"{'config':<12} {'protocol':<17} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'batch':>6} "
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
            f"{r['config']:<12} {r['protocol']:<17} {r['clients']:7d} {r['requests_per_s']:8.1f} {r['p50_ms']:8.1f} {r['p90_ms']:8.1f} "
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


def source_env(source: str | None) -> dict[str, str] | None:
    """The environment that makes ``python -m swiftformer`` import the package in ``source`` (its ``src`` folder
    when it has one); None: this process's own."""
    if source is None:
        return None
    tree = Path(source).resolve()
    package_root = tree / "src" if (tree / "src" / "swiftformer").is_dir() else tree
    if not (package_root / "swiftformer" / "__init__.py").is_file():
        raise SystemExit(f"--source {source}: no swiftformer package there (looked for {package_root}/swiftformer)")
    path = [str(package_root), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _PortServer(Server):
    """A server whose port is chosen here (the baseline prints no uvicorn line at warning level; Ray's
    proxy logs its own lines)."""

    def __init__(self, command: list[str], port: int, timeout: float, env: dict[str, str] | None = None) -> None:
        self._start(command, env)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


if __name__ == "__main__":
    sys.exit(main())
