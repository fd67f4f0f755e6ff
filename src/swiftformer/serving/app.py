"""The FastAPI application: the endpoints, the request-size guard, errors as JSON, metrics.

:func:`create_app` takes a *backend*: the object that runs the model. ``swiftformer serve`` passes a
:class:`~swiftformer.serving.batching.BatchingBackend` (a model worker thread with dynamic batching);
``swiftformer serve --ray`` passes each Ray Serve replica (``@serve.batch``). Both have:

* ``classifier`` — the :class:`~swiftformer.serving.model.Classifier` (labels, input size, name);
* ``metrics`` — the :class:`~swiftformer.serving.metrics.ServeMetrics`;
* ``ready`` — whether requests are taken (warmed up, not stopping);
* ``admission(n)`` — a context manager reserving ``n`` images or raising ServeError 503;
* ``async classify(pixel_values_list) -> logits_list`` — one (C, H, W) tensor in, one (num_labels,) out;
* ``start()`` / ``stop()`` — called on the app's startup and shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any

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
from .explain import SERVED_METHODS, Explainer
from .images import FORMATS, prepare
from .limits import CLOSE, ByteBudget, allowed_hosts, check_host
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
from .settings import ServeSettings
from .v2 import HEADER_LENGTH, IMAGES, PIXELS, ParsedInfer, encode_infer_response, parse_infer_request

logger = logging.getLogger("swiftformer.serving")

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

    def __init__(self, app: ASGIApp, *, settings: ServeSettings, backend: Any) -> None:
        self.app, self.limit, self.backend, self.metrics = app, settings.max_upload_bytes, backend, backend.metrics
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
            self.metrics.errors.labels(error.kind).inc()
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
            self.metrics.errors.labels("internal").inc()
            await _error_response(ServeError(500, "internal", f"internal error: {type(err).__name__}: {err}"))(
                scope, receive, timed_send
            )
        finally:
            self.budget.give_back(body.reserved)
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(endpoint, str(status or 500)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

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
            if scope["method"] == "POST":  # every POST brings images: refused at once when none would be admitted
                with self.backend.admission(1):
                    pass
        except ServeError:
            self.budget.give_back(declared or 0)
            raise
        return declared or 0


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


def _too_large(limit: int) -> ServeError:
    return ServeError(
        413, "too_large", f"the request body is over the server's max_upload_mb ({limit / 1024 / 1024:g} MB)"
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
    """What the endpoints share: the backend and its model, the limits, the decoding and explaining threads.
    The endpoints themselves only translate HTTP to these methods."""

    def __init__(self, backend: Any, settings: ServeSettings) -> None:
        self.backend, self.settings = backend, settings
        self.classifier = backend.classifier
        self.name: str = self.classifier.name
        self.executor = ThreadPoolExecutor(max_workers=settings.decode_threads, thread_name_prefix="swiftformer-decode")
        backend.metrics.decode_threads.set(settings.decode_threads)
        self.explainer = Explainer(self.classifier)
        self.explain_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swiftformer-explain")

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        self.backend.start()
        grpc_server = None
        try:
            if self.settings.grpc_port is not None:
                grpc_server = await self.start_grpc(app)
            yield
        finally:
            if grpc_server is not None:  # its RPCs in flight are answered while the model worker still runs
                from .grpc_v2 import GRACE_SECONDS

                await grpc_server.stop(GRACE_SECONDS)
            await asyncio.to_thread(self.backend.stop)  # queued images are answered first
            self.executor.shutdown(wait=False)
            self.explain_executor.shutdown(wait=False)

    async def start_grpc(self, app: FastAPI) -> Any:
        """The v2 gRPC service on this event loop, sharing the model's queue (``app.state.grpc_port``: its port)."""
        from .grpc_v2 import start_grpc_server  # grpcio: only when --grpc-port asks for it

        server, port = await start_grpc_server(
            self.lookup,
            self.settings,
            server_ready=lambda: self.ready,
            version=app.version,
            metrics=self.backend.metrics,
        )
        app.state.grpc_port = port
        scheme = "TLS" if self.settings.ssl_certfile else "plaintext"
        logger.info("v2 gRPC service on %s:%d (%s)", self.settings.host, port, scheme)
        return server

    async def decode(self, uploads: list[tuple[str, bytes]]) -> list[torch.Tensor]:
        """Decode and preprocess in the thread pool (in parallel with the model's forward pass)."""
        loop = asyncio.get_running_loop()
        processor, max_pixels = self.classifier.processor, self.settings.max_image_pixels
        fast = self.settings.fast_decode
        jobs = [
            loop.run_in_executor(self.executor, partial(prepare, data, processor, max_pixels, label, fast))
            for label, data in uploads
        ]
        pixels = []
        for result in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
            pixels.append(result)
        return pixels

    def check_model(self, model_name: str, version: str | None = None) -> None:
        if model_name != self.name:
            raise ServeError(404, "not_found", f"unknown model '{model_name}'; this server serves '{self.name}'")
        if version not in (None, "", "1"):
            raise ServeError(404, "not_found", f"model '{self.name}' has version 1 only, not '{version}'")

    async def predict(self, request: Request, top_k: int | None) -> list[ImagePrediction]:
        """The ``top_k`` classes of each uploaded image (``swiftformer predict --json``'s schema)."""
        k = min(top_k or self.settings.default_top_k, self.classifier.num_labels)
        uploads = await _read_uploads(request, self.settings.max_queue)
        with self.backend.admission(len(uploads)):
            pixels = await self.decode(uploads)
            logits = _finite(torch.stack(await self.backend.classify(pixels)).float(), [name for name, _ in uploads])
        probs = logits.softmax(dim=-1)
        scores, indices = probs.topk(k, dim=-1)
        labels = self.classifier.labels
        return [
            ImagePrediction(
                image=label,
                predictions=[Prediction(label=labels[i], index=i, score=s) for s, i in zip(row_scores, row_indices)],
            )
            for (label, _), row_scores, row_indices in zip(uploads, scores.tolist(), indices.tolist())
        ]

    async def explain(self, request: Request, method: str, layer: str | None, target: str | None) -> Response:
        """The overlay PNG of the one uploaded image, and the headers that describe it."""
        checked = self.explainer.check(method, layer, target)
        uploads = await _read_uploads(request, self.settings.max_queue)
        if len(uploads) != 1:
            raise ServeError(400, "bad_request", f"/explain takes one image per request, got {len(uploads)}")
        with self.backend.admission(1):
            (pixels,) = await self.decode(uploads)
            loop = asyncio.get_running_loop()
            render = partial(self.explainer.render, pixels, *checked)
            png, headers = await loop.run_in_executor(self.explain_executor, render)
        return Response(png, media_type="image/png", headers=headers)

    def readiness(self) -> JSONResponse:  # 200 when ready, 400 otherwise (the v2 protocol asks for a 4xx)
        return JSONResponse({"ready": self.ready}, status_code=200 if self.ready else 400)

    def model_metadata(self) -> ModelMetadata:
        classifier = self.classifier
        h, w = classifier.input_size or (-1, -1)
        labels = classifier.num_labels
        return ModelMetadata(
            name=self.name,
            versions=["1"],
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
            parameters={**classifier.metadata(), "decode": "fast" if self.settings.fast_decode else "exact"},
        )

    def lookup(self, model_name: str, version: str = "") -> _Service:
        """The served model called ``model_name`` (``version`` "" for the latest), or ServeError 404: what the gRPC
        service is given to find models (one today)."""
        self.check_model(model_name, version)
        return self

    @property
    def ready(self) -> bool:
        return bool(self.backend.ready)

    async def infer(self, request: Request, model_name: str, version: str | None) -> Response:
        """A v2 inference request, in JSON or the binary tensor data extension, answered in the same."""
        self.check_model(model_name, version)
        classifier = self.classifier
        parsed = parse_infer_request(
            await request.body(),
            request.headers.get(HEADER_LENGTH),
            num_channels=classifier.num_channels,
            input_size=classifier.input_size,
            default_top_k=self.settings.default_top_k,
        )
        logits, probabilities = await self.run(parsed)
        content, headers = encode_infer_response(
            self.name, parsed.id, parsed.outputs, logits, probabilities, classifier.labels
        )
        return Response(content, headers=headers)

    async def run(self, parsed: ParsedInfer) -> tuple[np.ndarray, np.ndarray]:
        """Logits and probabilities (n, num_labels) of a checked v2 request (HTTP or gRPC), through the one queue;
        ServeError 500 ``non_finite`` rather than a NaN served."""
        with self.backend.admission(parsed.count):
            if parsed.images is not None:
                pixels = await self.decode([(f"{IMAGES}[{i}]", data) for i, data in enumerate(parsed.images)])
            else:
                pixels = list(torch.from_numpy(parsed.pixels))
            logits = torch.stack(await self.backend.classify(pixels)).float()
        _finite(logits, [f"{IMAGES if parsed.images is not None else PIXELS}[{i}]" for i in range(len(logits))])
        return logits.numpy(), logits.softmax(dim=-1).numpy()


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


def create_app(backend: Any, settings: ServeSettings) -> FastAPI:
    """The FastAPI app serving ``backend``'s model with the limits of ``settings``."""
    service = _Service(backend, settings)
    app = FastAPI(
        title="SwiftFormer inference server",
        version=_version(),
        description=f"Model `{service.name}`: `POST /predict` for image files, `POST /explain` for a heatmap of "
        "where the model looks, the Open Inference Protocol v2 under `/v2`, Prometheus metrics at `/metrics`, a demo "
        "page at `/`. See docs/serving.md and docs/explain.md.",
        lifespan=service.lifespan,
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN: blank offline (NO_DOCS)
        redoc_url=None,
    )
    app.add_middleware(_Guard, settings=settings, backend=backend)
    # Added last, so outermost: a request without its key is refused before its Host, size or body are looked at.
    check = KeyCheck(settings.api_keys, settings.admin_keys, settings.protect_health)
    app.add_middleware(AccessGuard, check=check, metrics=backend.metrics)
    app.state.backend, app.state.service = backend, service
    _add_error_handlers(app, backend.metrics)
    _add_image_routes(app, service)
    _add_v2_routes(app, service)
    _add_metrics_and_page(app, service)
    app.openapi = partial(_openapi, app)  # type: ignore[method-assign]  # FastAPI's documented way to extend it
    return app


def _add_error_handlers(app: FastAPI, metrics: Any) -> None:
    """Every error as JSON (``{"error", "kind"}``, :func:`_error_response`), counted by kind."""

    def error(err: ServeError) -> JSONResponse:
        metrics.errors.labels(err.kind).inc()
        return _error_response(err)

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, err: ServeError) -> JSONResponse:
        return error(err)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "bad_request")
        return error(ServeError(err.status_code, kind, str(err.detail), dict(err.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in err.errors()[:5])
        return error(ServeError(400, "bad_request", problems or "invalid request"))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=err)
        return error(ServeError(500, "internal", f"internal error: {type(err).__name__}: {err}"))


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
        request: Request, top_k: int | None = Query(None, ge=1, description="labels per image (default 5)")
    ) -> list[ImagePrediction]:
        return await service.predict(request, top_k)

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
    ) -> Response:
        return await service.explain(request, method, layer, target)


def _add_v2_routes(app: FastAPI, service: _Service) -> None:
    """The Open Inference Protocol v2 under ``/v2``: metadata, health, inference."""

    @app.get("/v2", response_model=ServerMetadata, summary="Server metadata")
    async def server_metadata() -> ServerMetadata:
        return ServerMetadata(
            name="swiftformer", version=app.version, extensions=["binary_tensor_data", "classification"]
        )

    @app.get("/v2/health/live", response_model=HealthStatus, summary="Liveness")
    async def live() -> HealthStatus:
        return HealthStatus(live=True)

    @app.get("/v2/health/ready", response_model=HealthStatus, summary="Readiness (warmed up)")
    async def ready() -> JSONResponse:
        return service.readiness()

    @app.get("/v2/models/{model_name}", response_model=ModelMetadata, responses=NOT_FOUND, summary="Model metadata")
    async def metadata(model_name: str) -> ModelMetadata:
        service.check_model(model_name)
        return service.model_metadata()

    @app.get("/v2/models/{model_name}/versions/{version}", response_model=ModelMetadata, responses=NOT_FOUND)
    async def metadata_version(model_name: str, version: str) -> ModelMetadata:
        service.check_model(model_name, version)
        return service.model_metadata()

    @app.get("/v2/models/{model_name}/ready", response_model=HealthStatus, responses=NOT_FOUND)
    async def model_ready(model_name: str) -> JSONResponse:
        service.check_model(model_name)
        return service.readiness()

    @app.get("/v2/models/{model_name}/versions/{version}/ready", response_model=HealthStatus, responses=NOT_FOUND)
    async def model_ready_version(model_name: str, version: str) -> JSONResponse:
        service.check_model(model_name, version)
        return service.readiness()

    @app.post("/v2/models/{model_name}/infer", **_INFER_DOC)
    async def infer_latest(request: Request, model_name: str) -> Response:
        return await service.infer(request, model_name, None)

    @app.post("/v2/models/{model_name}/versions/{version}/infer", **_INFER_DOC)
    async def infer_version(request: Request, model_name: str, version: str) -> Response:
        return await service.infer(request, model_name, version)


def _add_metrics_and_page(app: FastAPI, service: _Service) -> None:
    """``GET /metrics`` (Prometheus) and the demo page at ``/``."""
    metrics = service.backend.metrics

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/docs", include_in_schema=False)
    @app.get("/redoc", include_in_schema=False)
    async def no_docs() -> Response:
        raise ServeError(404, "not_found", NO_DOCS)

    settings = service.settings
    page = render_page(
        service.name,
        service.classifier.num_labels,
        settings.max_upload_mb,
        bool(settings.api_keys or settings.admin_keys),
    )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)


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
    content_type = request.headers.get("content-type", "")
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
