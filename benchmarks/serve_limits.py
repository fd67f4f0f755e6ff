"""What ``swiftformer serve``'s limits hold under cheap, hostile load (docs/reliability.md, "The server").

Starts ``python -m swiftformer serve`` on 127.0.0.1 (a free port) and measures, sampling the server's
resident memory (RSS) every 20 ms:

1. **Concurrent large uploads**: ``--uploads`` (40) clients at once, each a ``--upload-mb`` (5 MB) body
   that is no image: how many were admitted or refused (503, ``max_inflight_mb``), and the peak RSS.
2. **Idle connections**: ``--idle`` (300) sockets that send half a request's headers, then a real request:
   its status and latency; and how long until the server has closed the half-sent ones
   (``--header-timeout``, 2 s here).
3. **16-bit bombs**: one request of ``--bombs`` (8) highly compressed ``--side``² (7000²) 16-bit grayscale
   PNGs (a few hundred KB in all): the server's peak RSS over its idle RSS, and the time to answer. Beside
   it, in this process, one image's 16-bit → 8-bit conversion by the old float64 formula and by the new strip
   conversion (peak RSS over the decoded image).

    .venv/bin/python benchmarks/serve_limits.py              # the defaults above; about 15 s on 2 cores
"""

from __future__ import annotations

import argparse
import io
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

MB = 1024 * 1024


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="xs", help="model folder, hub id or variant name (default xs: random weights)")
    p.add_argument("--side", type=int, default=7000)
    p.add_argument("--bombs", type=int, default=8)
    p.add_argument("--uploads", type=int, default=40)
    p.add_argument("--upload-mb", type=float, default=5.0)
    p.add_argument("--idle", type=int, default=300)
    p.add_argument("--header-timeout", type=float, default=2.0)
    return p.parse_args(argv)


class Sampler:
    """The peak RSS of a process, sampled every 20 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.process, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> Sampler:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "swiftformer", "serve", "--model", args.model, "--port", "0"]
    command += ["--precision", "fp32", "--header-timeout", str(args.header_timeout)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 300
    for line in process.stderr:  # type: ignore[union-attr]
        match = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
        if match:
            url = match.group(1)
            break
        if time.monotonic() > deadline:
            raise SystemExit("the server did not start")
    else:
        raise SystemExit("the server ended before it started")
    threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()  # type: ignore[union-attr]
    while httpx.get(f"{url}/v2/health/ready", timeout=60).status_code != 200:
        time.sleep(0.1)
    return process, url


def bomb(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((side, side), dtype=np.uint16)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def conversion_peaks(side: int) -> tuple[float, float]:
    """Peak RSS (MB) over the decoded image while converting one 16-bit ``side``² image to 8-bit RGB: the old
    float64 formula, then the strip conversion, each in a fresh subprocess."""
    code = """
import io, sys, threading, time, numpy as np, psutil
from PIL import Image
from swiftformer.image_processing import _array_to_pil, _pil_to_rgb
side, old = int(sys.argv[1]), sys.argv[2] == "old"
image = Image.fromarray(np.zeros((side, side), dtype=np.uint16)); image.load()
me, peak, stop = psutil.Process(), [0], threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], me.memory_info().rss); time.sleep(0.005)
base = me.memory_info().rss; t = threading.Thread(target=sample); t.start()
if old:
    array = np.rint(np.asarray(image).astype(np.float64) / 257).astype(np.uint8)
    rgb = _array_to_pil(array).convert("RGB")
else:
    rgb = _pil_to_rgb(image)
stop.set(); t.join(); print((peak[0] - base) / 2**20)
"""
    return tuple(  # type: ignore[return-value]
        float(
            subprocess.run(
                [sys.executable, "-c", code, str(side), which], capture_output=True, text=True, check=True
            ).stdout
        )
        for which in ("old", "new")
    )


def measure_bombs(args, pid: int, url: str) -> None:
    data = bomb(args.side)
    files = [("file", (f"bomb{i}.png", data)) for i in range(args.bombs)]
    print(f"3. {args.bombs} × {args.side}² 16-bit PNGs, {len(data) * args.bombs / 1024:.0f} KB in all")
    with Sampler(pid) as sampler:
        idle = sampler.peak
        start = time.perf_counter()
        response = httpx.post(f"{url}/predict", files=files, timeout=300)
        seconds = time.perf_counter() - start
    print(
        f"   status {response.status_code} in {seconds:.1f} s; server RSS {idle / MB:.0f} MB → peak {sampler.peak / MB:.0f} MB"
    )
    old, new = conversion_peaks(args.side)
    print(f"   one image's 16→8-bit conversion: float64 formula +{old:.0f} MB, strips +{new:.0f} MB")


def measure_uploads(args, pid: int, url: str) -> None:
    body = b"\x00" * int(args.upload_mb * MB)
    statuses: list[int] = []
    barrier = threading.Barrier(args.uploads)

    def send() -> None:
        with httpx.Client(timeout=120) as client:
            barrier.wait()
            try:
                statuses.append(client.post(f"{url}/predict", content=body).status_code)
            except httpx.HTTPError:
                statuses.append(0)  # the connection closed under an upload refused unread

    threads = [threading.Thread(target=send) for _ in range(args.uploads)]
    with Sampler(pid) as sampler:
        idle = sampler.peak
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    print(f"1. {args.uploads} concurrent {args.upload_mb:g} MB uploads: statuses {counts}")
    print(f"   server RSS {idle / MB:.0f} MB → peak {sampler.peak / MB:.0f} MB")


def measure_idle(args, url: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    sockets = []
    for _ in range(args.idle):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        sockets.append(sock)
    opened = time.monotonic()
    start = time.perf_counter()
    image = io.BytesIO()
    Image.new("RGB", (224, 224), (120, 30, 200)).save(image, "PNG")
    response = httpx.post(f"{url}/predict", content=image.getvalue(), timeout=60)
    latency = time.perf_counter() - start
    closed = 0
    for sock in sockets:
        sock.settimeout(max(0.1, opened + args.header_timeout + 30 - time.monotonic()))
        try:
            while sock.recv(65536):
                pass
            closed += 1
        except (TimeoutError, ConnectionResetError):
            closed += 1 if isinstance(sys.exc_info()[1], ConnectionResetError) else 0
        sock.close()
    print(
        f"2. {args.idle} half-sent requests open: a real request got {response.status_code} in {latency * 1000:.0f} ms;"
    )
    print(f"   {closed} of {args.idle} closed by the server within {time.monotonic() - opened:.1f} s")


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))
    from swiftformer.hardware import hardware_line

    print(hardware_line())
    process, url = start_server(args)
    try:
        measure_uploads(args, process.pid, url)  # first: later RSS keeps what the allocator holds
        measure_idle(args, url)
        measure_bombs(args, process.pid, url)
    finally:
        process.terminate()
        process.wait(60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
