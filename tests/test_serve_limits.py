"""``swiftformer serve`` bounds its resources before it spends them (issue 27, docs/serving.md "Limits"):
the ``Host`` allow-list, admission by bytes and images before a body is read, header and body deadlines,
the connection limit, disconnects as one log line, no non-finite result, strict v2 flags, no /docs from a
CDN, and 16-bit images decoded in bounded memory to the pixels of their 8-bit versions.

Servers run in threads on a free loopback port (tests/_serving.py); the slow and half-sent clients are raw
sockets to it. Every timeout here is a fraction of a second, and every wait is bounded.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import socket
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from _serving import NAME, TIMEOUT, RunningServer, metric, settings_for, start_server, wait_for  # noqa: E402
from swiftformer.cli import main  # noqa: E402

HEADER_TIMEOUT, BODY_TIMEOUT = 0.5, 2.0
MARGIN = 3.0  # seconds a deadline may be late on a loaded 2-core machine
MB = 1024 * 1024
ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}|object at")  # a memory address, an object's repr


@pytest.fixture(scope="module")
def server(model_dir) -> Iterator[RunningServer]:
    settings = settings_for(
        model_dir,
        max_upload_mb=1,
        max_inflight_mb=1.5,
        max_connections=6,
        header_timeout=HEADER_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
        allowed_hosts=("models.internal",),
        max_queue=8,
    )
    running = start_server(settings)
    yield running
    running.close()


# ------------------------------------------------------------------------------ raw HTTP
def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body of the response on ``sock`` (read until the server closes or the
    Content-Length is in)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the connection closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def request_head(method: str, path: str, host: str | None = "127.0.0.1", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1"] + ([f"Host: {host}"] if host is not None else [])
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed ``sock`` within ``seconds`` (and what it sent before)."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        pass
    return True, received


def one_json_error(body: bytes) -> dict:
    """A JSON error body of one line, strict JSON (no NaN), naming a kind; no object repr or address."""
    error = json.loads(body, parse_constant=lambda c: pytest.fail(f"{c} in a JSON body"))
    assert set(error) == {"error", "kind"} and "\n" not in error["error"], error
    assert not ADDRESS.search(error["error"]), error
    return error


# ------------------------------------------------------------------------------ Host
HOSTS = [
    ("localhost with the port", "localhost:{port}", 200),
    ("127.0.0.1 without a port", "127.0.0.1", 200),
    ("[::1] with the port", "[::1]:{port}", 200),
    ("upper case", "LOCALHOST:{port}", 200),
    ("an allowed_hosts name", "models.internal:8000", 200),
    ("a rebinding name", "attacker.example:{port}", 400),
    ("a lookalike", "127.0.0.1.attacker.example", 400),
    ("localhost as a suffix", "evil-localhost", 400),
    ("empty", "", 400),
    ("no Host header", None, 400),
]


@pytest.mark.parametrize(("case", "host", "status"), HOSTS, ids=[h[0] for h in HOSTS])
def test_host_header_allow_list(server, case, host, status):
    with connect(server.port) as sock:
        sock.sendall(request_head("GET", "/v2/health/live", None if host is None else host.format(port=server.port)))
        got, _, body = read_response(sock)
    assert got == status, body
    if status == 400:
        assert one_json_error(body)["kind"] == "bad_host"


def test_host_refusal_names_what_is_allowed(server):
    response = httpx.get(f"{server.base_url}/predict", headers={"Host": "attacker.example"}, timeout=TIMEOUT)
    assert response.status_code == 400 and response.json() == {
        "error": "Host 'attacker.example' is not served here (allowed: 127.0.0.1, [::1], localhost, models.internal; "
        "the server's allowed_hosts adds names)",
        "kind": "bad_host",
    }


def test_allowed_hosts_rules():
    from swiftformer.serving import ServeSettings
    from swiftformer.serving.limits import allowed_hosts, host_name
    from swiftformer.serving.settings import ModelSettings

    assert ServeSettings(models=(ModelSettings("m"),), allowed_hosts=["a.example"]).allowed_hosts == (
        "a.example",
    )  # a config's list
    for bad in ("a.example", [""], [3]):  # a bare string would be its letters
        with pytest.raises(ValueError, match="allowed_hosts must be a list of host names"):
            ServeSettings(models=(ModelSettings("m"),), allowed_hosts=bad)

    assert allowed_hosts("0.0.0.0", ()) == {"localhost", "127.0.0.1", "[::1]"}  # a wildcard is no name
    assert "192.168.1.5" in allowed_hosts("192.168.1.5", ())
    assert "[fe80::1]" in allowed_hosts("::", ("fe80::1",))
    assert allowed_hosts("127.0.0.1", ("*",)) is None
    assert [host_name(h) for h in ("[::1]:80", "a.b:1", "A.B", "[::1")] == ["[::1]", "a.b", "a.b", "[::1"]


# ------------------------------------------------------------------------------ admission before reading
def test_content_length_over_the_bytes_in_flight_is_refused_unread(server, images_8bit):
    """One upload of 1 MB holds its bytes (half sent); a second declaring 1 MB is over max_inflight_mb (1.5):
    503 + Retry-After without a byte of its body sent. When the first ends, its bytes are free again."""
    holder = connect(server.port)
    try:
        holder.sendall(request_head("POST", "/predict", content_length=str(MB)) + b"\0" * 1000)
        wait_for(lambda: server.app.middleware_stack is not None and _inflight(server) == MB, "the first upload")
        with connect(server.port) as sock:
            sock.sendall(request_head("POST", "/predict", content_length=str(MB)))  # headers only
            status, headers, body = read_response(sock)
            assert closed_within(sock, MARGIN)[0]  # the unread body is dropped with the connection
        assert status == 503 and headers["retry-after"] == "1" and headers["connection"] == "close"
        error = one_json_error(body)
        assert error == {
            "error": "the server is busy: 1.0 MB of request bodies in flight, its max_inflight_mb is 1.5",
            "kind": "busy",
        }
    finally:
        holder.close()
    wait_for(lambda: _inflight(server) == 0, "the first upload's bytes to be given back")
    response = httpx.post(f"{server.base_url}/predict", content=images_8bit["L"][0], timeout=TIMEOUT)
    assert response.status_code == 200, response.text


def test_chunked_body_over_the_bytes_in_flight_is_refused_as_it_arrives(server):
    holder = connect(server.port)
    try:
        holder.sendall(request_head("POST", "/predict", content_length=str(MB)) + b"\0" * 1000)
        wait_for(lambda: _inflight(server) == MB, "the first upload")
        with connect(server.port) as sock:  # 0.5 MB are left: the 9th chunk of 64 KB is over
            sock.sendall(request_head("POST", "/predict", transfer_encoding="chunked"))
            for _ in range(9):
                sock.sendall(b"10000\r\n" + b"\0" * 65536 + b"\r\n")
            status, headers, body = read_response(sock)
        assert status == 503 and headers["retry-after"] == "1" and one_json_error(body)["kind"] == "busy"
    finally:
        holder.close()
    wait_for(lambda: _inflight(server) == 0, "every reservation to be given back")


def _inflight(running: RunningServer) -> int:
    guard = running.app.middleware_stack
    while guard is not None and type(guard).__name__ != "_Guard":
        guard = getattr(guard, "app", None)
    return -1 if guard is None else guard.budget.used


def test_a_post_is_refused_before_its_body_when_no_image_would_be_admitted(model_dir):
    """Warming up (no image is admitted): 503 not_ready to the headers alone, the 1 MB body never sent."""
    gate = threading.Event()

    def prepare(backend) -> None:
        warm_up = backend.classifier.warm_up
        backend.classifier.warm_up = lambda: gate.wait(TIMEOUT) and warm_up()

    running = start_server(settings_for(model_dir, max_upload_mb=2), prepare, wait_ready=False)
    try:
        with connect(running.port) as sock:
            sock.sendall(request_head("POST", "/predict", content_length=str(MB)))
            status, headers, body = read_response(sock)
        assert status == 503 and headers["retry-after"] == "1" and one_json_error(body)["kind"] == "not_ready"
        assert httpx.get(f"{running.base_url}/metrics", timeout=TIMEOUT).status_code == 200  # a GET still is
    finally:
        gate.set()
        running.close()


# ------------------------------------------------------------------------------ slow and idle clients
def test_half_sent_headers_are_closed_after_the_header_timeout(server):
    timeouts = metric(server.metrics(), "swiftformer_errors_total", kind="timeout")
    with connect(server.port) as sock:
        start = time.monotonic()
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        closed, received = closed_within(sock, HEADER_TIMEOUT + MARGIN)
        elapsed = time.monotonic() - start
    assert closed and HEADER_TIMEOUT * 0.9 <= elapsed <= HEADER_TIMEOUT + MARGIN, elapsed
    status, _, body = read_response(_Replay(received))
    assert status == 408 and one_json_error(body) == {
        "error": f"the request's headers did not arrive within the server's header_timeout ({HEADER_TIMEOUT:g} s)",
        "kind": "timeout",
    }
    assert metric(server.metrics(), "swiftformer_errors_total", kind="timeout") == timeouts + 1


def test_an_idle_connection_is_closed_after_the_header_timeout(server):
    with connect(server.port) as sock:
        closed, received = closed_within(sock, HEADER_TIMEOUT + MARGIN)
    assert closed and received == b""  # nothing was asked: closed without a word


SLOW_BODIES = [  # a body that stops coming: within the upload limit 408, over it (read to be dropped) 413
    ("within max_upload_mb", 1000, 408, "timeout"),
    ("over max_upload_mb", 3 * MB // 2, 413, "too_large"),
]


@pytest.mark.parametrize(("case", "length", "status", "kind"), SLOW_BODIES, ids=[c[0] for c in SLOW_BODIES])
def test_a_slow_body_is_answered_at_the_body_timeout(server, case, length, status, kind):
    with connect(server.port) as sock:
        start = time.monotonic()
        sock.sendall(request_head("POST", "/predict", content_length=str(length)) + b"\xff" * 10)
        got, headers, body = read_response(sock)
        elapsed = time.monotonic() - start
    assert got == status and headers["connection"] == "close"
    assert BODY_TIMEOUT * 0.9 <= elapsed <= BODY_TIMEOUT + MARGIN, elapsed
    error = one_json_error(body)
    assert error["kind"] == kind
    if kind == "timeout":
        assert (
            error["error"] == f"the request body did not arrive within the server's body_timeout ({BODY_TIMEOUT:g} s)"
        )


def test_oversized_headers_are_refused(server):
    with connect(server.port) as sock:
        sock.sendall(b"GET /v2 HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"a" * (70 * 1024))
        status, _, body = read_response(sock)
    assert status == 431 and one_json_error(body)["kind"] == "bad_request"


@pytest.mark.parametrize("garbage", [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"GET / HTTP/9.9\r\n\r\n"])
def test_what_is_not_http_gets_a_json_400(server, garbage):
    with connect(server.port) as sock:  # a TLS hello to a plain-HTTP port, a bad version
        sock.sendall(garbage)
        status, headers, body = read_response(sock)
    assert status == 400 and headers["connection"] == "close"
    assert one_json_error(body) == {
        "error": "not a valid HTTP/1.1 request (invalid http request received)",
        "kind": "bad_request",
    }


class _Replay:
    """A socket stand-in that replays bytes already received (for read_response)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, n: int) -> bytes:
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk


# ------------------------------------------------------------------------------ connection limit
@pytest.fixture(scope="module")
def crowded(model_dir) -> Iterator[RunningServer]:
    """max_connections 6, and deadlines long enough that only the limit closes a connection here."""
    running = start_server(settings_for(model_dir, max_connections=6, header_timeout=60, body_timeout=60))
    yield running
    running.close()


def test_idle_connections_make_room_for_a_request(crowded, images_8bit):
    """max_connections (6) idle connections: a new request is answered, and the oldest idle one is closed."""
    idle = []
    try:
        for _ in range(6):
            idle.append(connect(crowded.port))
            wait_for(lambda: len(_connections(crowded)) == len(idle), "the connection to be accepted")  # in order
        response = httpx.post(f"{crowded.base_url}/predict", content=images_8bit["L"][0], timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        assert closed_within(idle[0], MARGIN) == (True, b"")
        assert closed_within(idle[1], 0.2)[0] is False  # the others stay
    finally:
        for sock in idle:
            sock.close()
    wait_for(lambda: not _connections(crowded), "the connections to close")


def _connections(running: RunningServer) -> set:
    return running.server.server_state.connections


def test_requests_in_progress_on_every_connection_get_503(crowded):
    refused = metric(crowded.metrics(), "swiftformer_errors_total", kind="busy")
    busy = []
    try:
        for _ in range(6):  # each sends its headers and part of its body: a request in progress each
            sock = connect(crowded.port)
            sock.sendall(request_head("POST", "/predict", content_length="100") + b"\0")
            busy.append(sock)
        wait_for(lambda: _inflight(crowded) == 600, "six requests in progress")
        with connect(crowded.port) as sock:
            sock.sendall(request_head("GET", "/v2/health/live"))
            status, headers, body = read_response(sock)
        assert status == 503 and headers["retry-after"] == "1" and one_json_error(body)["kind"] == "busy"
        assert all(closed_within(sock, 0.1)[0] is False for sock in busy)  # none of them was closed for it
    finally:
        for sock in busy:
            sock.close()
    wait_for(lambda: _inflight(crowded) == 0 and not _connections(crowded), "the requests to end")
    assert metric(crowded.metrics(), "swiftformer_errors_total", kind="busy") == refused + 1


# ------------------------------------------------------------------------------ disconnects
class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_client_disconnecting_mid_upload_is_one_log_line_not_a_500(server):
    records = _Records()
    loggers = [logging.getLogger(name) for name in ("swiftformer.serving", "uvicorn.error", "uvicorn")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.addHandler(records)
        log.setLevel(logging.INFO)
    before = server.metrics()
    try:
        with connect(server.port) as sock:
            sock.sendall(request_head("POST", "/predict", content_length="100000") + b"\0" * 1000)
            wait_for(lambda: _inflight(server) == 100000, "the upload to start", timeout=BODY_TIMEOUT)
        wait_for(lambda: _inflight(server) == 0, "the request to end", timeout=BODY_TIMEOUT)
    finally:
        for log, level in zip(loggers, levels):
            log.removeHandler(records)
            log.setLevel(level)
    lines = [r.getMessage() for r in records.records]
    assert lines == ["client disconnected during POST /predict (1000 bytes of its body received)"], lines
    assert not any(r.exc_info for r in records.records)
    after = server.metrics()
    for name, labels in (("swiftformer_requests_total", {"status": "500"}), ("swiftformer_errors_total", {})):
        assert metric(after, name, **labels) == metric(before, name, **labels)
    disconnects = [
        metric(text, "swiftformer_requests_total", endpoint="/predict", status="499") for text in (before, after)
    ]
    assert disconnects[1] == disconnects[0] + 1


# ------------------------------------------------------------------------------ non-finite results
@pytest.fixture(scope="module")
def poisoned(model_dir) -> Iterator[tuple[RunningServer, dict]]:
    """A server whose model returns ``poison["value"]`` in every logit of the second image of a batch."""
    poison = {"value": math.nan}

    def prepare(backend) -> None:
        forward = backend.classifier.forward

        def poisoned_forward(pixels):
            logits = forward(pixels).clone()  # inference tensors are read-only
            if backend.batcher.ready.is_set() and len(logits) > 1:  # requests, not the warm-up
                if poison["value"] == "raise":
                    raise RuntimeError("a bug in <mylib.Model object at 0x7f00deadbeef>")
                logits[1] = poison["value"]
            return logits

        backend.classifier.forward = poisoned_forward

    running = start_server(settings_for(model_dir, max_batch_size=4, max_wait_ms=30_000), prepare)
    yield running, poison
    running.close()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("api", ["predict", "v2"])
def test_a_non_finite_result_is_a_clear_error_in_valid_json(poisoned, images_8bit, api, value):
    from swiftformer.batch.tasks import NON_FINITE_LOGITS

    running, poison = poisoned
    poison["value"] = value
    good, other = images_8bit["L"][0], images_8bit["RGB"][0]
    if api == "predict":
        files = [("file", ("good.png", good)), ("file", ("bad.png", other))]
        response = httpx.post(f"{running.base_url}/predict", files=files, timeout=TIMEOUT)
        where = "bad.png"
    else:
        import base64

        data = [base64.b64encode(b).decode() for b in (good, other)]
        body = {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [2], "data": data}]}
        response = httpx.post(f"{running.base_url}/v2/models/{NAME}/infer", json=body, timeout=TIMEOUT)
        where = "images[1]"
    assert response.status_code == 500
    assert one_json_error(response.content) == {"error": f"{where}: {NON_FINITE_LOGITS}", "kind": "non_finite"}


def test_a_bug_is_a_json_500_logged_by_the_server_not_by_uvicorn(poisoned, images_8bit):
    running, poison = poisoned
    poison["value"] = "raise"
    records = _Records()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(records)
    try:
        files = [("file", ("a.png", images_8bit["L"][0])), ("file", ("b.png", images_8bit["RGB"][0]))]
        response = httpx.post(f"{running.base_url}/predict", files=files, timeout=TIMEOUT)
    finally:
        uvicorn_log.removeHandler(records)
    assert response.status_code == 500 and one_json_error(response.content) == {
        "error": "internal error: RuntimeError: a bug in a Model object",
        "kind": "internal",
    }
    assert records.records == []  # uvicorn's "Exception in ASGI application" (a second traceback) is gone


def test_v2_responses_are_strict_json():
    from swiftformer.serving.v2 import OutputSpec, encode_infer_response

    values = np.array([[0.0, math.nan]], dtype=np.float32)
    with pytest.raises(ValueError):  # never a bare NaN on the wire, even if a caller forgot to check
        encode_infer_response(NAME, "1", None, [OutputSpec("logits", False, None)], values, values, ["a", "b"])


# ------------------------------------------------------------------------------ v2 parameters, messages, /docs
def _v2_body(request_parameters=None, output_parameters=None) -> dict:
    body: dict = {"inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": [1, 3, 64, 64]}]}
    body["inputs"][0]["data"] = [0.0] * (3 * 64 * 64)
    if request_parameters is not None:
        body["parameters"] = request_parameters
    if output_parameters is not None:
        body["outputs"] = [{"name": "probabilities", "parameters": output_parameters}]
    return body


V2_PARAMETERS = [
    ("binary_data_output 'false'", {"binary_data_output": "false"}, None, 400),
    ("binary_data_output 'true'", {"binary_data_output": "true"}, None, 400),
    ("binary_data_output 1", {"binary_data_output": 1}, None, 400),
    ("binary_data_output null", {"binary_data_output": None}, None, 400),
    ("binary_data 'false'", None, {"binary_data": "false"}, 400),
    ("binary_data 0", None, {"binary_data": 0}, 400),
    ("classification '3'", None, {"classification": "3"}, 400),
    ("binary_data_output false", {"binary_data_output": False}, None, 200),
    ("binary_data true", None, {"binary_data": True}, 200),
]


@pytest.mark.parametrize(("case", "request_parameters", "output_parameters", "status"), V2_PARAMETERS)
def test_v2_parameters_are_strictly_typed(server, case, request_parameters, output_parameters, status):
    body = _v2_body(request_parameters, output_parameters)
    response = httpx.post(f"{server.base_url}/v2/models/{NAME}/infer", json=body, timeout=TIMEOUT)
    assert response.status_code == status, response.text
    if status == 400:
        error = one_json_error(response.content)
        assert error["kind"] == "bad_request" and (
            "binary_data" in error["error"] or "classification" in error["error"]
        )
    elif output_parameters:  # binary, as asked
        assert int(response.headers["inference-header-content-length"]) < len(response.content)
    else:
        assert response.json()["outputs"][0]["data"]


def test_messages_never_show_an_object_repr(server):
    response = httpx.post(f"{server.base_url}/predict", content=b"hello, not an image", timeout=TIMEOUT)
    assert response.status_code == 400
    assert "a BytesIO object" in one_json_error(response.content)["error"]


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_are_not_served_from_a_cdn(server, path):
    response = httpx.get(f"{server.base_url}{path}", timeout=TIMEOUT)
    assert response.status_code == 404
    assert "/openapi.json" in one_json_error(response.content)["error"]
    assert httpx.get(f"{server.base_url}/openapi.json", timeout=TIMEOUT).json()["paths"]


# ------------------------------------------------------------------------------ 16-bit images
def _png(array: np.ndarray) -> bytes:
    """A PNG of ``array``: (H, W) uint8 or uint16 grayscale, or (H, W, 3) uint8 or uint16 RGB."""
    height, width = array.shape[:2]
    if array.dtype == np.uint8 or array.ndim == 2:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, "PNG")
        return buffer.getvalue()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in array)  # PIL writes no 48-bit PNG
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def images_8bit() -> dict[str, tuple[bytes, bytes]]:
    """(8-bit PNG, the same pixels in a 16-bit PNG) in grayscale and RGB."""
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (70, 90), dtype=np.uint8)
    rgb = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    return {
        "L": (_png(gray), _png(gray.astype(np.uint16) * 257)),
        "RGB": (_png(rgb), _png(rgb.astype(np.uint16) * 257)),
    }


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_a_16_bit_png_is_served_as_its_8_bit_version(server, model_dir, images_8bit, mode):
    from swiftformer import SwiftFormerImageProcessor
    from swiftformer.serving.images import prepare

    eight, sixteen = images_8bit[mode]
    assert Image.open(io.BytesIO(sixteen)).mode == ("I;16" if mode == "L" else "RGB")  # PIL's own modes
    processor = SwiftFormerImageProcessor.from_pretrained(model_dir)
    assert torch.equal(prepare(sixteen, processor, 10**6), prepare(eight, processor, 10**6))
    answers = [
        httpx.post(f"{server.base_url}/predict", params={"top_k": 4}, content=data, timeout=TIMEOUT).json()
        for data in (eight, sixteen)
    ]
    assert answers[0] == answers[1]


def test_a_16_bit_image_decodes_in_bounded_memory():
    """A 3000×3000 16-bit PNG: the Python-side memory of its conversion to 8 bits (every numpy array and bytes
    object; tracemalloc sees them) stays under 3 bytes a pixel — the 8-bit result, its copy into PIL and one strip
    — where the float64 conversion took over 18 (a uint16 copy, then float64 copies of 8 bytes a pixel)."""
    from swiftformer.image_processing import _pil_to_rgb

    side = 3000
    ramp = (np.arange(side, dtype=np.uint32) * 65535 // (side - 1)).astype(np.uint16)
    image = Image.open(io.BytesIO(_png(np.tile(ramp, (side, 1)))))
    image.load()
    assert image.mode == "I;16"
    tracemalloc.start()
    try:
        rgb = _pil_to_rgb(image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * side * side, f"{peak / side / side:.1f} bytes a pixel"
    assert rgb.mode == "RGB" and rgb.getpixel((side - 1, 0)) == (255, 255, 255) and rgb.getpixel((0, 0)) == (0, 0, 0)


def _whole_array_rule(image: Image.Image) -> np.ndarray:
    """The 8-bit pixels by the rules of the whole-array conversion this replaced (float64 for 16 bits)."""
    from swiftformer.image_processing import _to_uint8

    array = np.asarray(image)
    if image.mode.startswith("I;16") or (image.mode == "I" and 255 < array.max() <= 65535 and array.min() >= 0):
        return np.rint(array.astype(np.float64) / 257).astype(np.uint8)
    return _to_uint8(array)


_RNG = np.random.default_rng(5)
WIDE_IMAGES = {
    "16-bit": _RNG.integers(0, 65536, (301, 70), dtype=np.uint16),
    "32-bit over 255": _RNG.integers(0, 65536, (301, 70)).astype(np.int32),
    "32-bit within 255": _RNG.integers(0, 256, (301, 70)).astype(np.int32),
    "float levels": _RNG.integers(0, 256, (301, 70)).astype(np.float32),
    "float fractions": _RNG.random((301, 70)).astype(np.float32),
    "32-bit negative": _RNG.integers(-5, 256, (301, 70)).astype(np.int32),
    "float over 1, not levels": (_RNG.random((301, 70)) * 3).astype(np.float32),
    "float NaN in the last strip": np.concatenate([np.zeros((300, 70)), np.full((1, 70), np.nan)]).astype(np.float32),
}


@pytest.mark.parametrize("case", list(WIDE_IMAGES))
def test_the_strip_conversion_follows_the_whole_array_rules(case, monkeypatch):
    """Across strip boundaries (strips of 1000 pixels here: 14 rows, the last one short) the pixels, and the
    refusals, are those of the whole-array rules."""
    import swiftformer.image_processing as ip

    monkeypatch.setattr(ip, "STRIP_PIXELS", 1000)
    image = Image.fromarray(WIDE_IMAGES[case])
    try:
        expected: object = _whole_array_rule(image)
    except ValueError as err:
        expected = str(err)
    try:
        got: object = ip._wide_to_uint8(image)
    except ValueError as err:
        got = str(err)
    if isinstance(expected, str):
        assert got == expected
    else:
        assert isinstance(got, np.ndarray) and got.dtype == np.uint8 and np.array_equal(got, expected)


# ------------------------------------------------------------------------------ the command's flags
LIMIT_FLAGS = [
    (["--max-connections", "0"], "--max-connections must be at least 1"),
    (["--header-timeout", "0"], "--header-timeout must be positive"),
    (["--body-timeout", "-1"], "--body-timeout must be positive"),
    (["--max-inflight-mb", "10"], "--max-inflight-mb (10) must be at least --max-upload-mb (20)"),
]


@pytest.mark.parametrize(("argv", "message"), LIMIT_FLAGS, ids=[a[0] for a, _ in LIMIT_FLAGS])
def test_limit_flags_are_checked(argv, message, capsys):
    assert main(["serve", "--model", "m", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_limit_flags_reach_the_settings(monkeypatch):
    seen = []
    monkeypatch.setattr("swiftformer.serving.serve", lambda settings: seen.append(settings) or 0)
    argv = ["--max-inflight-mb", "50", "--max-connections", "9", "--header-timeout", "2", "--body-timeout", "7"]
    assert main(["serve", "--model", "m", *argv, "--allowed-host", "a.example", "--allowed-host", "b"]) == 0
    assert main(["serve", "--model", "m"]) == 0
    (given, default) = seen
    assert (given.max_inflight_mb, given.max_connections, given.header_timeout, given.body_timeout) == (50, 9, 2, 7)
    assert given.allowed_hosts == ("a.example", "b") and default.allowed_hosts == ()
    assert (default.max_inflight_mb, default.max_connections, default.header_timeout, default.body_timeout) == (
        100,
        256,
        10,
        60,
    )


def test_docs_name_the_limits():
    text = (Path(__file__).parents[1] / "docs" / "serving.md").read_text(encoding="utf-8")
    for name in ("max_inflight_mb", "max_connections", "header_timeout", "body_timeout", "allowed_hosts"):
        assert name in text, name
