"""The FastAPI application: the endpoints, the request-size guard, errors as JSON, metrics.

:func:`create_app` takes a :class:`~swiftformer.serving.repository.ModelRepository`: the models by name and
version, each with a *backend*, the object that runs it. ``swiftformer serve`` gives each model a
:class:`~swiftformer.serving.batching.BatchingBackend` (dynamic batching on the shared model workers);
``swiftformer serve --ray`` serves one model, each Ray Serve replica being its backend (``@serve.batch``).
A backend has:

* ``classifier`` — the :class:`~swiftformer.serving.model.Classifier` (labels, input size, name);
* ``metrics`` — the model's :class:`~swiftformer.serving.metrics.ModelMetrics`;
* ``ready`` — whether requests are taken (warmed up, not stopping);
* ``admission(n)`` — a context manager reserving ``n`` images or raising ServeError 503;
* ``async classify(pixel_values_list) -> logits_list`` — one (C, H, W) tensor in, one (num_labels,) out;
  cancelled when the client goes away (queued images are dropped);
* ``start()`` / ``stop()`` — called on the app's startup and shutdown (and by load / unload).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import zlib
from collections.abc import AsyncIterator, Awaitable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qs

import numpy as np
import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..io.files import printable
from .auth import AccessGuard, KeyCheck
from .errors import ServeError
from .explain import SERVED_METHODS
from .images import FORMATS, prepare
from .limits import CLOSE, ByteBudget, allowed_hosts, check_host
from .metrics import endpoint_label
from .page import render_page
from .protocol import (
    ErrorResponse,
    HealthStatus,
    ImagePrediction,
    InferRequest,
    InferResponse,
    ModelMetadata,
    Prediction,
    ServerMetadata,
    TensorMetadata,
)
from .repository import ModelRepository, ServedModel
from .settings import ServeSettings
from .v2 import HEADER_LENGTH, IMAGES, PIXELS, ParsedInfer, encode_infer_response, parse_infer_request

logger = logging.getLogger("swiftformer.serving")
T = TypeVar("T")

ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (400, 404, 413, 503)}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("swiftformer")
    except Exception:
        return "0"


class _Guard:
    """Pure ASGI middleware: what a request may cost is checked before its body is read — its ``Host``
    (400), its size (413; from Content-Length before reading, else while reading), the bytes of bodies in
    flight and, for a POST, room for an image (503 + Retry-After) — and its body must arrive within
    ``body_timeout`` (408). A client that disconnects is one log line. Every request is timed and counted by
    route and status (499: the client went away)."""

    def __init__(
        self, app: ASGIApp, *, settings: ServeSettings, repository: ModelRepository, routes: list[Any]
    ) -> None:
        self.app, self.limit, self.repository, self.routes = app, settings.max_upload_bytes, repository, routes
        self.metrics = repository.metrics
        self.hosts = allowed_hosts(settings.host, settings.allowed_hosts)
        self.budget = ByteBudget(int(settings.max_inflight_mb * 1024 * 1024))
        self.body_timeout = settings.body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 0  # no response yet

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed = f"{(time.perf_counter() - start) * 1000:.2f}".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"x-process-time-ms", elapsed)]}
            await send(message)

        body = _Body(receive, self.limit, self.budget, self.body_timeout)

        try:
            body.reserved = await self._admit(scope, receive)
            await self.app(scope, body.receive, timed_send)
        except ServeError as error:  # refused before the app ran
            self.metrics.count_error(error.kind, _model_label(scope, self.repository))
            error.headers.setdefault("Connection", "close")
            await _error_response(error)(scope, receive, timed_send)
        except ClientDisconnect:
            status = 499
            where = printable(f"{scope['method']} {scope['path']}")
            logger.info("client disconnected during %s (%d bytes of its body received)", where, body.received)
        except Exception as err:  # a bug: logged once with its traceback, answered as JSON (uvicorn would log it again)
            if status:
                raise
            logger.error("%s failed", printable(f"{scope['method']} {scope['path']}"), exc_info=err)
            self.metrics.count_error("internal", _model_label(scope, self.repository))
            await _error_response(ServeError(500, "internal", f"internal error: {type(err).__name__}: {err}"))(
                scope, receive, timed_send
            )
        finally:
            self.budget.give_back(body.reserved)
            endpoint, model = endpoint_label(scope, self.routes), _model_label(scope, self.repository)
            self.metrics.requests.labels(endpoint, str(status or 500), model).inc()
            self.metrics.latency.labels(endpoint, model).observe(time.perf_counter() - start)

    async def _admit(self, scope: Scope, receive: Receive) -> int:
        """Check the request before its body is read; the body bytes reserved (its Content-Length)."""
        declared = _content_length(scope)
        check_host(scope.get("headers", []), self.hosts)
        if declared is not None and declared > self.limit:
            # Read and drop a moderately larger body, so that the client (still sending) sees the 413
            # and not a reset connection; a much larger one is answered at once and the connection closed.
            if declared <= 4 * self.limit + (1 << 20):
                with suppress(asyncio.TimeoutError):  # a slow client gets its 413 at the body deadline
                    await asyncio.wait_for(_drain(receive), self.body_timeout)
            raise _too_large(self.limit)
        self.budget.take(declared or 0)
        try:
            served = _target_model(scope, self.repository)
            if scope["method"] == "POST" and served is not None:  # images: refused at once when none would be admitted
                with served.backend.admission(1):
                    pass
        except BaseException:  # whatever ends the request here, the bytes it reserved go back
            self.budget.give_back(declared or 0)
            raise
        return declared or 0


# The paths of one model: /v2/models/NAME[/versions/V][/infer|/ready] (starlette's path is percent-decoded).
_MODEL_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(?:/infer|/ready)?/?$")


def _target(scope: Scope) -> tuple[str | None, str | None] | None:
    """``(model name, version)`` a request is for (None for the default model, the latest version), or None
    when its path is not about one model."""
    path = scope.get("path", "")
    if path in ("/predict", "/explain"):
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return query.get("model", [None])[-1], query.get("version", [None])[-1]  # the last, as FastAPI's Query
    match = _MODEL_PATH.match(path)
    return (match[1], match[2]) if match else None


def _target_model(scope: Scope, repository: ModelRepository) -> ServedModel | None:
    """The served model a request is for; None when it names none or one not served (the app answers 404)."""
    target = _target(scope)
    if target is None:
        return None
    try:
        return repository.get(*target)
    except ServeError:
        return None


def _model_label(scope: Scope, repository: ModelRepository) -> str:
    """The ``model`` metric label of a request: a known model's name, else ``""``."""
    target = _target(scope)
    return "" if target is None else repository.label(target[0])


async def _drain(receive: Receive) -> None:
    while (await receive()).get("more_body", False):
        pass


class _Body:
    """The request's ``receive``, bounded: the upload limit (413), the bytes in flight (chunked bodies are
    reserved as they arrive; 503), and ``body_timeout`` for the whole body (408, the connection closed)."""

    def __init__(self, receive: Receive, limit: int, budget: ByteBudget, timeout: float) -> None:
        self._receive, self.limit, self.budget, self.timeout = receive, limit, budget, timeout
        self.deadline = time.monotonic() + timeout
        self.received = self.reserved = 0
        self.done = False

    async def receive(self) -> Message:
        if self.done:  # the body is in: what follows is the disconnect, whenever it comes
            return await self._receive()
        try:
            message = await asyncio.wait_for(self._receive(), max(0.0, self.deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise ServeError(
                408,
                "timeout",
                f"the request body did not arrive within the server's body_timeout ({self.timeout:g} s)",
                dict(CLOSE),
            ) from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.done = not message.get("more_body", False)
            if self.received > self.limit:
                raise _too_large(self.limit)
            if self.received > self.reserved:  # a chunked body (or more than declared): counted as it arrives
                self.budget.take(self.received - self.reserved)
                self.reserved = self.received
        return message


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _decompressed(body: bytes, encoding: str, settings: ServeSettings) -> bytes:
    """A v2 request body as sent with ``Content-Encoding`` gzip or deflate (tritonclient's
    ``request_compression_algorithm``; Triton accepts both), decompressed to at most ``max_upload_mb``."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise ServeError(415, "unsupported_encoding", f"Content-Encoding {encoding!r}: expected gzip, deflate or none")
    limit = settings.max_upload_bytes
    inflater = zlib.decompressobj(31 if encoding == "gzip" else 15)  # 31: the gzip wrapper; 15: HTTP's zlib deflate
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise ServeError(400, "bad_request", f"the {encoding} request body is corrupt ({err})") from None
    if len(plain) > limit:  # a small upload that inflates past the limit: the same 413 as a large one
        raise _too_large(limit)
    if not inflater.eof:
        raise ServeError(400, "bad_request", f"the {encoding} request body is truncated")
    return plain


def _too_large(limit: int) -> ServeError:
    """413, and the connection closed: the rest of a body still arriving must not be read as the next request."""
    return ServeError(
        413,
        "too_large",
        f"the request body is over the server's max_upload_mb ({limit / 1024 / 1024:g} MB)",
        dict(CLOSE),
    )


def _error_response(error: ServeError) -> JSONResponse:
    return JSONResponse({"error": error.message, "kind": error.kind}, status_code=error.status, headers=error.headers)


# The request bodies the OpenAPI schema documents (FastAPI cannot infer them: the endpoints read the request).
_IMAGES_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                },
                "required": ["file"],
            }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}
_INFER_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary"},
            "description": f"binary tensor data extension: a JSON header of {HEADER_LENGTH} bytes, then the tensors",
        },
    },
}
_INFER_DOC: dict[str, Any] = dict(
    response_model=InferResponse,
    responses=ERRORS,
    openapi_extra={"requestBody": _INFER_BODY},
    summary="Inference (v2)",
    description=f"Input `{PIXELS}` (FP32 [N, 3, H, W], preprocessed) or `{IMAGES}` (BYTES [N], encoded "
    "image files; base64 in JSON). Outputs `logits`, `probabilities`, `labels` (top-k as "
    "'score:index:label'). JSON, or the binary tensor data extension.",
)


class _Service:
    """What the endpoints share: the models, the limits, the decoding and explaining threads. The endpoints
    themselves only translate HTTP to these methods."""

    def __init__(self, repository: ModelRepository, settings: ServeSettings) -> None:
        self.repository, self.settings = repository, settings
        self.executor = ThreadPoolExecutor(max_workers=settings.decode_threads, thread_name_prefix="swiftformer-decode")
        repository.metrics.decode_threads.labels(model="").set(settings.decode_threads)
        self.explain_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swiftformer-explain")

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        self.repository.start()
        grpc_server = None
        try:
            if self.settings.grpc_port is not None:
                grpc_server = await self.start_grpc(app)
            yield
        finally:
            if grpc_server is not None:  # its RPCs in flight are answered while the model workers still run
                from .grpc_v2 import GRACE_SECONDS

                await grpc_server.stop(GRACE_SECONDS)
            await asyncio.to_thread(self.repository.stop)  # queued images are answered first
            self.executor.shutdown(wait=False)
            self.explain_executor.shutdown(wait=False)

    async def start_grpc(self, app: FastAPI) -> Any:
        """The v2 gRPC service on this event loop, sharing the models' queues (``app.state.grpc_port``: its port)."""
        from .grpc_v2 import start_grpc_server  # grpcio: only when --grpc-port asks for it

        server, port = await start_grpc_server(self, self.settings, version=app.version)
        app.state.grpc_port = port
        scheme = "TLS" if self.settings.ssl_certfile else "plaintext"
        logger.info("v2 gRPC service on %s:%d (%s)", self.settings.host, port, scheme)
        return server

    async def decode(
        self, served: ServedModel, uploads: list[tuple[str, bytes]], request: Request | None = None
    ) -> list[torch.Tensor]:
        """Decode and preprocess for ``served`` in the thread pool (in parallel with the forward passes). When the
        client of ``request`` disconnects first, the uploads still waiting for a decoding thread are never decoded:
        ServeError 499 ``cancelled``, its images counted in ``swiftformer_cancelled_total`` (without a request,
        gRPC, the caller's task being cancelled does the same, the answer being the call's cancellation)."""
        loop = asyncio.get_running_loop()
        processor, max_pixels = served.classifier.processor, self.settings.max_image_pixels
        fast = self.settings.fast_decode
        jobs = [
            loop.run_in_executor(self.executor, partial(prepare, data, processor, max_pixels, label, fast))
            for label, data in uploads
        ]
        decoded = asyncio.gather(*jobs, return_exceptions=True)  # cancelled: the jobs not yet started never start
        results = await _unless_disconnected(request, decoded, "decoded", served, len(uploads))
        pixels = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            pixels.append(result)
        return pixels

    async def classify(self, served: ServedModel, request: Request | None, pixels: list[torch.Tensor]) -> torch.Tensor:
        """Logits (n, num_labels) float32 of ``pixels``; when the client of ``request`` disconnects first, its images
        still queued are dropped (``swiftformer_cancelled_total``) and the answer is 499 ``cancelled``. Without a
        request (gRPC) the caller's task being cancelled does the same."""
        logits = await _unless_disconnected(request, served.backend.classify(pixels), "classified")
        return torch.stack(logits).float()

    async def predict(
        self, request: Request, top_k: int | None, model: str | None, version: str | None
    ) -> list[ImagePrediction]:
        """The ``top_k`` classes of each uploaded image (``swiftformer predict --json``'s schema)."""
        served = self.repository.get(model, version)
        classifier = served.classifier
        k = min(top_k or self.settings.default_top_k, classifier.num_labels)
        uploads = await _read_uploads(request, self.settings.max_queue)
        with served.backend.admission(len(uploads)):
            await _still_connected(request, served, len(uploads))
            pixels = await self.decode(served, uploads, request)
            logits = _finite(await self.classify(served, request, pixels), [name for name, _ in uploads])
        probs = logits.softmax(dim=-1)
        scores, indices = probs.topk(k, dim=-1)
        labels = classifier.labels
        return [
            ImagePrediction(
                image=label,
                predictions=[Prediction(label=labels[i], index=i, score=s) for s, i in zip(row_scores, row_indices)],
            )
            for (label, _), row_scores, row_indices in zip(uploads, scores.tolist(), indices.tolist())
        ]

    async def explain(
        self,
        request: Request,
        method: str,
        layer: str | None,
        target: str | None,
        model: str | None,
        version: str | None,
    ) -> Response:
        """The overlay PNG of the one uploaded image, and the headers that describe it."""
        served = self.repository.get(model, version)
        checked = served.explainer.check(method, layer, target)
        uploads = await _read_uploads(request, self.settings.max_queue)
        if len(uploads) != 1:
            raise ServeError(400, "bad_request", f"/explain takes one image per request, got {len(uploads)}")
        with served.backend.admission(1):
            (pixels,) = await self.decode(served, uploads, request)
            loop = asyncio.get_running_loop()
            render = partial(served.explainer.render, pixels, *checked)
            png, headers = await loop.run_in_executor(self.explain_executor, render)
        return Response(png, media_type="image/png", headers=headers)

    @staticmethod
    def readiness(ready: bool) -> JSONResponse:  # 200 when ready, 400 otherwise (the v2 protocol asks for a 4xx)
        return JSONResponse({"ready": ready}, status_code=200 if ready else 400)

    def model_metadata(self, served: ServedModel) -> ModelMetadata:
        classifier = served.classifier
        h, w = classifier.input_size or (-1, -1)
        labels = classifier.num_labels
        return ModelMetadata(
            name=served.name,
            versions=[str(v) for v in self.repository.versions(served.name)],
            platform="pytorch_swiftformer",
            inputs=[
                TensorMetadata(name=PIXELS, datatype="FP32", shape=[-1, classifier.num_channels, h, w]),
                TensorMetadata(name=IMAGES, datatype="BYTES", shape=[-1]),
            ],
            outputs=[
                TensorMetadata(name="logits", datatype="FP32", shape=[-1, labels]),
                TensorMetadata(name="probabilities", datatype="FP32", shape=[-1, labels]),
                TensorMetadata(name="labels", datatype="BYTES", shape=[-1, -1]),
            ],
            parameters={
                **classifier.metadata(),
                "version": str(served.version),
                "decode": "fast" if self.settings.fast_decode else "exact",
            },
        )

    async def infer(self, request: Request, model_name: str, version: str | None) -> Response:
        """A v2 inference request, in JSON or the binary tensor data extension, answered in the same."""
        served = self.repository.get(model_name, version)
        classifier = served.classifier
        body = _decompressed(await request.body(), request.headers.get("content-encoding", ""), self.settings)
        parsed = parse_infer_request(
            body,
            request.headers.get(HEADER_LENGTH),
            num_channels=classifier.num_channels,
            input_size=classifier.input_size,
            default_top_k=self.settings.default_top_k,
        )
        logits, probabilities = await self.run(served, parsed, request)
        content, headers = encode_infer_response(
            served.name, str(served.version), parsed.id, parsed.outputs, logits, probabilities, classifier.labels
        )
        return Response(content, headers=headers)

    async def run(
        self, served: ServedModel, parsed: ParsedInfer, request: Request | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits and probabilities (n, num_labels) of a checked v2 request (HTTP or gRPC) for ``served``, through its
        queue; ServeError 500 ``non_finite`` rather than a NaN served. ``request``: the HTTP request whose client's
        disconnect drops its queued images (gRPC cancels the call's task instead, which does the same)."""
        with served.backend.admission(parsed.count):
            await _still_connected(request, served, parsed.count)
            if parsed.images is not None:
                uploads = [(f"{IMAGES}[{i}]", data) for i, data in enumerate(parsed.images)]
                pixels = await self.decode(served, uploads, request)
            else:
                pixels = list(torch.from_numpy(parsed.pixels))
            logits = await self.classify(served, request, pixels)
        _finite(logits, [f"{IMAGES if parsed.images is not None else PIXELS}[{i}]" for i in range(len(logits))])
        return logits.numpy(), logits.softmax(dim=-1).numpy()

    async def load(self, request: Request, model_name: str) -> JSONResponse:
        """``POST /v2/repository/models/{name}/load``: ``{"parameters": {"path", "precision", "backend",
        "compile"}}``, all optional (no path: the folder the name was served from)."""
        parameters = _repository_parameters(await request.body())
        model = self.repository.settings_for_load(model_name, parameters)
        loaded = await self.repository.load(model_name, model)
        return JSONResponse({"name": model_name, "versions": [str(served.version) for served in loaded]})


async def _still_connected(request: Request | None, served: ServedModel, images: int) -> None:
    """ServeError 499 ``cancelled`` when the client of ``request`` went away while its body was read or it waited
    for admission: its images are neither decoded nor queued (counted in ``swiftformer_cancelled_total``)."""
    if request is not None and await request.is_disconnected():
        served.backend.metrics.cancelled.inc(images)
        raise ServeError(499, "cancelled", "the client disconnected before its images were decoded")


async def _unless_disconnected(
    request: Request | None, work: Awaitable[T], what: str, served: ServedModel | None = None, images: int = 0
) -> T:
    """``work``'s result, unless the client of ``request`` disconnects first: then ``work`` is cancelled and the
    answer is ServeError 499 ``cancelled`` (the client disconnected before its images were ``what``), ``images``
    counted in ``served``'s ``swiftformer_cancelled_total``. Without a request (gRPC), the caller's task being
    cancelled cancels ``work`` and counts the same."""
    if request is None:
        try:
            return await work
        except asyncio.CancelledError:
            if served is not None:
                served.backend.metrics.cancelled.inc(images)
            raise
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        abandoned = not task.done()  # not task.cancelled(): a cancelled gather ends with a CancelledError instead
        if abandoned:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
    if abandoned:
        if served is not None:
            served.backend.metrics.cancelled.inc(images)
        raise ServeError(499, "cancelled", f"the client disconnected before its images were {what}")
    return task.result()


async def _disconnected(request: Request) -> None:
    """Return when the client has gone away (the body is read: what ``receive`` brings next is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _repository_parameters(body: bytes) -> dict[str, Any]:
    """The ``parameters`` object of a repository request body (empty body: none), or ServeError 400."""
    if not body.strip():
        return {}
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ServeError(400, "bad_request", "the request body is not JSON") from None
    if not isinstance(request, dict) or not isinstance(request.get("parameters", {}), dict):
        raise ServeError(400, "bad_request", 'the request body must be {"parameters": {...}}')
    return request.get("parameters", {})


# The wording of `swiftformer predict` (swiftformer.batch.tasks.NON_FINITE_LOGITS) for the same failure.
NON_FINITE_LOGITS = "the model's logits for this image are not finite (NaN or inf)"


def _finite(logits: torch.Tensor, names: list[str]) -> torch.Tensor:
    """``logits`` (n, num_labels), or ServeError 500 ``non_finite`` naming the first image whose row holds NaN or
    infinity: a result is never served from them (``score: null``, or ``NaN``, which is not JSON)."""
    finite = torch.isfinite(logits).all(dim=-1).tolist()
    if not all(finite):
        bad = [name for name, ok in zip(names, finite) if not ok]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ServeError(500, "non_finite", f"{bad[0]}: {NON_FINITE_LOGITS}{more}")
    return logits


def create_app(repository: ModelRepository, settings: ServeSettings) -> FastAPI:
    """The FastAPI app serving ``repository``'s models with the limits of ``settings``."""
    service = _Service(repository, settings)
    app = FastAPI(
        title="SwiftFormer inference server",
        version=_version(),
        description="`POST /predict?model=NAME` for image files, `POST /explain` for a heatmap of where the model "
        "looks, the Open Inference Protocol v2 under `/v2` (with the model repository extension under "
        "`/v2/repository`), Prometheus metrics at `/metrics`, a demo page at `/`. See docs/serving.md and "
        "docs/explain.md.",
        lifespan=service.lifespan,
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN: blank offline (NO_DOCS)
        redoc_url=None,
    )
    routes = app.router.routes  # filled below: the middlewares label what they refuse by the route it was for
    app.add_middleware(_Guard, settings=settings, repository=repository, routes=routes)
    # Added last, so outermost: a request without its key is refused before its Host, size or body are looked at.
    check = KeyCheck(settings.api_keys, settings.admin_keys, settings.protect_health)
    app.add_middleware(AccessGuard, check=check, metrics=repository.metrics, routes=routes)
    app.state.repository, app.state.service = repository, service
    _add_error_handlers(app, repository)
    _add_image_routes(app, service)
    _add_v2_routes(app, service)
    _add_repository_routes(app, service)
    _add_metrics_and_page(app, service)
    app.openapi = partial(_openapi, app)  # type: ignore[method-assign]  # FastAPI's documented way to extend it
    return app


def _add_error_handlers(app: FastAPI, repository: ModelRepository) -> None:
    """Every error as JSON (``{"error", "kind"}``, :func:`_error_response`), counted by kind and model."""

    def error(request: Request, err: ServeError) -> JSONResponse:
        repository.metrics.count_error(err.kind, _model_label(request.scope, repository))
        return _error_response(err)

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, err: ServeError) -> JSONResponse:
        return error(request, err)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "bad_request")
        return error(request, ServeError(err.status_code, kind, str(err.detail), dict(err.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in err.errors()[:5])
        return error(request, ServeError(400, "bad_request", problems or "invalid request"))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=err)
        return error(request, ServeError(500, "internal", f"internal error: {type(err).__name__}: {err}"))


_MODEL_QUERY = Query(None, description="the model's name (default: the first model the server was started with)")
_VERSION_QUERY = Query(None, description="the model's version (default: its latest)")


def _add_image_routes(app: FastAPI, service: _Service) -> None:
    """``POST /predict`` and ``POST /explain``: image files in."""

    @app.post(
        "/predict",
        response_model=list[ImagePrediction],
        responses=ERRORS,
        openapi_extra={"requestBody": _IMAGES_BODY},
        summary="Classify images",
        description="One or more `file` fields of a multipart form, or one image as the raw body "
        f"({', '.join(FORMATS)}). One result per image, in order: the schema of `swiftformer predict --json`.",
    )
    async def predict(
        request: Request,
        top_k: int | None = Query(None, ge=1, description="labels per image (default 5)"),
        model: str | None = _MODEL_QUERY,
        version: str | None = _VERSION_QUERY,
    ) -> list[ImagePrediction]:
        return await service.predict(request, top_k, model, version)

    @app.post(
        "/explain",
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}}, "description": "the overlay PNG"},
            **ERRORS,
            501: {"model": ErrorResponse},
        },
        openapi_extra={"requestBody": _IMAGES_BODY},
        summary="Where the model looks",
        description="One image, as for `/predict`. Returns a PNG: the heatmap over the image as the model saw it, "
        "with the class, its probability, the method and the stage written under it; the headers "
        "`X-Explain-Index`, `X-Explain-Label` (percent-encoded), `X-Explain-Score`, `X-Explain-Method` and "
        "`X-Explain-Layer` say the same. See docs/explain.md.",
    )
    async def explain(
        request: Request,
        method: str = Query("gradcam", description=f"one of {', '.join(SERVED_METHODS)}"),
        layer: str | None = Query(None, description="stage: stem, stage1 .. stage4 (default stage3; eigencam stage2)"),
        target: str | None = Query(None, description="class to explain, label or index (default: the top class)"),
        model: str | None = _MODEL_QUERY,
        version: str | None = _VERSION_QUERY,
    ) -> Response:
        return await service.explain(request, method, layer, target, model, version)


def _add_v2_routes(app: FastAPI, service: _Service) -> None:
    """The Open Inference Protocol v2 under ``/v2``: metadata, health, inference."""
    repository = service.repository

    @app.get("/v2", response_model=ServerMetadata, summary="Server metadata")
    async def server_metadata() -> ServerMetadata:
        return ServerMetadata(
            name="swiftformer",
            version=app.version,
            extensions=["binary_tensor_data", "classification", "model_repository"],
        )

    @app.get("/v2/health/live", response_model=HealthStatus, summary="Liveness")
    async def live() -> HealthStatus:
        return HealthStatus(live=True)

    @app.get("/v2/health/ready", response_model=HealthStatus, summary="Readiness (every model warmed up)")
    async def ready() -> JSONResponse:
        return service.readiness(repository.ready)

    @app.get("/v2/models/{model_name}", response_model=ModelMetadata, responses=NOT_FOUND, summary="Model metadata")
    async def metadata(model_name: str) -> ModelMetadata:
        return service.model_metadata(repository.get(model_name))

    @app.get("/v2/models/{model_name}/versions/{version}", response_model=ModelMetadata, responses=NOT_FOUND)
    async def metadata_version(model_name: str, version: str) -> ModelMetadata:
        return service.model_metadata(repository.get(model_name, version))

    @app.get("/v2/models/{model_name}/ready", response_model=HealthStatus, responses=NOT_FOUND)
    async def model_ready(model_name: str) -> JSONResponse:
        return service.readiness(repository.get(model_name).backend.ready)

    @app.get("/v2/models/{model_name}/versions/{version}/ready", response_model=HealthStatus, responses=NOT_FOUND)
    async def model_ready_version(model_name: str, version: str) -> JSONResponse:
        return service.readiness(repository.get(model_name, version).backend.ready)

    @app.post("/v2/models/{model_name}/infer", **_INFER_DOC)
    async def infer_latest(request: Request, model_name: str) -> Response:
        return await service.infer(request, model_name, None)

    @app.post("/v2/models/{model_name}/versions/{version}/infer", **_INFER_DOC)
    async def infer_version(request: Request, model_name: str, version: str) -> Response:
        return await service.infer(request, model_name, version)


def _add_repository_routes(app: FastAPI, service: _Service) -> None:
    """The v2 model repository extension under ``/v2/repository`` (Triton's): index, load, unload."""
    repository = service.repository

    @app.post("/v2/repository/index", summary="Models and their state (READY, LOADING, UNAVAILABLE)")
    async def index() -> JSONResponse:
        return JSONResponse(repository.index())

    @app.post(
        "/v2/repository/models/{model_name}/load",
        responses={**ERRORS, 501: {"model": ErrorResponse}},
        summary="Load (or reload) a model",
        description='Body (optional): `{"parameters": {"path": FOLDER, "precision": ..., "backend": ..., '
        '"compile": false}}`; without `path`, the folder the model was served from. Answers once it is warmed up.',
    )
    async def load(request: Request, model_name: str) -> JSONResponse:
        return await service.load(request, model_name)

    @app.post(
        "/v2/repository/models/{model_name}/unload",
        responses={**NOT_FOUND, 501: {"model": ErrorResponse}},
        summary="Unload a model",
        description="New requests for it get 404 at once; answers once the requests it admitted are answered.",
    )
    async def unload(model_name: str) -> JSONResponse:
        await repository.unload(model_name)
        return JSONResponse({"name": model_name, "state": "UNAVAILABLE"})


def _add_metrics_and_page(app: FastAPI, service: _Service) -> None:
    """``GET /metrics`` (Prometheus) and the demo page at ``/``."""
    metrics = service.repository.metrics

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/docs", include_in_schema=False)
    @app.get("/redoc", include_in_schema=False)
    async def no_docs() -> Response:
        raise ServeError(404, "not_found", NO_DOCS)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:  # the models served now (they may have been loaded or unloaded)
        repository = service.repository
        names = dict.fromkeys(model.name for model in repository.served())
        models = [(name, repository.get(name).classifier.num_labels) for name in names]
        settings = service.settings
        asks_key = bool(settings.api_keys)
        return HTMLResponse(render_page(models, repository.default, settings.max_upload_mb, asks_key))


NO_DOCS = (
    "interactive API docs are not served (Swagger UI would load its scripts from a CDN and be blank offline); "
    "the OpenAPI schema is at /openapi.json, see docs/serving.md"
)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the v2 ``InferRequest`` (whose endpoints read the raw request) among its components."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        extra = InferRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(extra.pop("$defs", {}))
        components["InferRequest"] = extra
        app.openapi_schema = schema
    return app.openapi_schema


async def _read_uploads(request: Request, max_files: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of each ``file`` field of a multipart form, or of the raw body ('body')."""
    content_type = request.headers.get("content-type", "").lower()  # media types are case-insensitive
    if content_type.startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=max_files + 1, max_fields=max_files + 16)
        except HTTPException as err:  # malformed multipart, too many parts
            if "too many" in str(err.detail).lower():
                raise ServeError(
                    413, "too_many_images", f"too many files in one request, over the server's max_queue ({max_files})"
                ) from None
            raise ServeError(400, "bad_request", f"cannot read the multipart form: {err.detail}") from None
        try:
            fields = form.getlist("file")
            if not fields:
                raise ServeError(
                    400, "bad_request", f"the multipart form has no 'file' field (fields: {sorted(set(form.keys()))})"
                )
            uploads = []
            for i, field in enumerate(fields):
                if isinstance(field, str):
                    raise ServeError(400, "bad_request", f"form field 'file' #{i + 1} is text, not a file")
                uploads.append((field.filename or f"file[{i}]", await field.read()))
            return uploads
        finally:
            await form.close()
    # any other type is the image itself (curl --data-binary says application/x-www-form-urlencoded)
    return [("body", await request.body())]
