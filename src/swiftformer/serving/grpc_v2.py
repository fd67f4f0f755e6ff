"""The Open Inference Protocol v2 over gRPC (KServe's ``grpc_predict_v2.proto``: package ``inference``, service
``GRPCInferenceService``), beside HTTP in the same process (docs/serving.md, "gRPC").

The messages and the servicer base are the ones ``tritonclient.grpc`` ships (``service_pb2``,
``service_pb2_grpc``, generated from Triton's ``grpc_service.proto``, BSD-3-Clause): Triton's service is a superset
of KServe's with the same package, service and message names, so a KServe or Triton client speaks to it, and no
generated code lives here. The methods beyond KServe's six answer UNIMPLEMENTED (the base class does).

The server is a ``grpc.aio`` server on uvicorn's event loop, started and stopped by the app's lifespan. Its
``ModelInfer`` runs the same coroutine as HTTP's infer (``service.run``): the same admission against the
model's ``max_queue``, the same decode threads and the model's queue on the shared model workers, so HTTP and
gRPC requests batch together and one limit bounds both. Nothing blocks the loop: forward passes run on the model
workers. Models are found as HTTP finds them: ``service.repository.get(name, version)`` (ServeError 404 when
there is none), so a model loaded or unloaded over HTTP is seen here at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from .auth import Access, KeyCheck
from .errors import ServeError
from .protocol import InferRequest, ModelMetadata, RequestInput, RequestOutput
from .repository import ModelRepository, ServedModel
from .settings import ServeSettings
from .v2 import ParsedInfer, check_infer_request, output_tensors

logger = logging.getLogger("swiftformer.serving")

GRACE_SECONDS = 30  # in-flight RPCs finish at shutdown, as uvicorn's requests do

# A ServeError's HTTP status → the gRPC status code that means the same.
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.INVALID_ARGUMENT,  # too many images, or one too large: retrying will not help
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,  # queue full, warming up, shutting down: retry later
}

# Which key a method needs (auth.py's groups); the rest of Triton's methods are server control: admin.
_HEALTH_METHODS = {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata"}
_INFERENCE_METHODS = {"ModelMetadata", "ModelInfer", "ModelStreamInfer", "ModelConfig", "ModelStatistics"}

# The typed contents field of each datatype (InferTensorContents).
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class InferenceService(Protocol):
    """What the gRPC service needs of the server (``app._Service``): its settings, its models, and the v2 steps
    HTTP runs too."""

    settings: ServeSettings
    repository: ModelRepository

    def model_metadata(self, served: ServedModel) -> ModelMetadata: ...

    async def run(self, served: ServedModel, parsed: ParsedInfer) -> tuple[np.ndarray, np.ndarray]: ...


def method_access(method: str) -> Access:
    """The key group of a gRPC method, from its full name ``/inference.GRPCInferenceService/ModelInfer``."""
    name = method.rsplit("/", 1)[-1]
    if name in _HEALTH_METHODS:
        return Access.HEALTH
    return Access.INFERENCE if name in _INFERENCE_METHODS else Access.ADMIN


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The six methods of KServe's v2 service over ``service``; every refusal one ServeError message, with the
    status code of :data:`STATUS_CODES`, counted in ``swiftformer_errors_total{kind, model}``."""

    def __init__(self, service: InferenceService, *, version: str) -> None:
        self.service, self.version = service, version
        self.repository = service.repository
        self.metrics = service.repository.metrics

    async def ServerLive(self, request: Any, context: Any) -> Any:
        async def live() -> Any:
            return pb.ServerLiveResponse(live=True)

        return await self._answer("ServerLive", context, live)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        async def ready() -> Any:
            return pb.ServerReadyResponse(ready=self.repository.ready)

        return await self._answer("ServerReady", context, ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        async def metadata() -> Any:
            extensions = ["binary_tensor_data", "classification"]
            return pb.ServerMetadataResponse(name="swiftformer", version=self.version, extensions=extensions)

        return await self._answer("ServerMetadata", context, metadata)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        async def ready() -> Any:
            return pb.ModelReadyResponse(ready=self.repository.get(request.name, request.version).backend.ready)

        return await self._answer("ModelReady", context, ready, request.name)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        async def metadata() -> Any:
            meta = self.service.model_metadata(self.repository.get(request.name, request.version))
            return pb.ModelMetadataResponse(
                name=meta.name,
                versions=meta.versions,
                platform=meta.platform,
                inputs=[_tensor_metadata(t) for t in meta.inputs],
                outputs=[_tensor_metadata(t) for t in meta.outputs],
            )

        return await self._answer("ModelMetadata", context, metadata, request.name)

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        async def infer() -> Any:
            served = self.repository.get(request.model_name, request.model_version)
            classifier = served.classifier
            parsed = check_infer_request(
                _infer_request(request),
                _raw_inputs(request),
                num_channels=classifier.num_channels,
                input_size=classifier.input_size,
                default_top_k=self.service.settings.default_top_k,
            )
            logits, probabilities = await self.service.run(served, parsed)
            response = pb.ModelInferResponse(model_name=served.name, model_version=str(served.version), id=request.id)
            for tensor in output_tensors(parsed.outputs, logits, probabilities, classifier.labels):
                response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
                response.raw_output_contents.append(tensor.raw())  # what tritonclient.grpc reads
            return response

        return await self._answer("ModelInfer", context, infer, request.model_name)

    async def _answer(
        self, method: str, context: Any, work: Callable[[], Awaitable[Any]], model: str | None = None
    ) -> Any:
        """``work()``'s response, or its ServeError as a gRPC status; counted with the ``model`` label of the model
        named (``""``: none, or not one this server knows)."""
        label = "" if model is None else self.repository.label(model)
        try:
            response = await work()
        except asyncio.CancelledError:  # the client cancelled the call: counted as HTTP counts a client gone (499)
            self.metrics.requests.labels(f"grpc:{method}", "499", label).inc()
            self.metrics.count_error("cancelled", label)
            raise
        except ServeError as err:
            error = err
        except Exception as err:  # a bug: logged with its traceback, answered INTERNAL in one line
            logger.error("gRPC %s failed", method, exc_info=err)
            error = ServeError(500, "internal", f"internal error: {type(err).__name__}: {err}")
        else:
            self.metrics.requests.labels(f"grpc:{method}", "200", label).inc()
            return response
        self.metrics.requests.labels(f"grpc:{method}", str(error.status), label).inc()
        self.metrics.count_error(error.kind, label)
        await context.abort(STATUS_CODES.get(error.status, grpc.StatusCode.UNKNOWN), error.message)


def _tensor_metadata(tensor: Any) -> Any:
    return pb.ModelMetadataResponse.TensorMetadata(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)


def _infer_request(request: Any) -> InferRequest:
    """The gRPC request as the HTTP side's model: typed contents become ``data`` (BYTES elements stay bytes)."""
    inputs = []
    for tensor in request.inputs:
        field = _CONTENTS.get(tensor.datatype)
        values = list(getattr(tensor.contents, field)) if field else []
        inputs.append(
            RequestInput(
                name=tensor.name,
                datatype=tensor.datatype,
                shape=list(tensor.shape),
                parameters=_parameters(tensor.parameters),
                data=values or None,
            )
        )
    outputs = [RequestOutput(name=o.name, parameters=_parameters(o.parameters)) for o in request.outputs]
    return InferRequest(id=request.id or None, inputs=inputs, outputs=outputs or None)


def _raw_inputs(request: Any) -> list[bytes | None]:
    """Each input's raw bytes (``raw_input_contents``, one per input when used at all) or None."""
    raws = list(request.raw_input_contents)
    if not raws:
        return [None] * len(request.inputs)
    if len(raws) != len(request.inputs):
        raise ServeError(
            400, "bad_request", f"{len(raws)} raw_input_contents for {len(request.inputs)} inputs: one per input"
        )
    return list(raws)


def _parameters(parameters: Any) -> dict[str, Any] | None:
    """An InferParameter map as plain values (classification: an int, binary_data: a bool)."""
    values = {
        key: getattr(value, value.WhichOneof("parameter_choice") or "string_param") for key, value in parameters.items()
    }
    return values or None


class KeyInterceptor(grpc.aio.ServerInterceptor):
    """The API and admin keys on gRPC: the ``authorization`` metadata (``Bearer KEY``), checked per method as
    :class:`~swiftformer.serving.auth.AccessGuard` checks paths; refused UNAUTHENTICATED or PERMISSION_DENIED."""

    def __init__(self, check: KeyCheck, metrics: Any) -> None:
        self.check, self.metrics = check, metrics

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = await continuation(details)
        metadata = dict(details.invocation_metadata or ())
        problem = self.check.problem(method_access(details.method), metadata.get("authorization"))
        if problem is None or handler is None:
            return handler
        status, kind, message = problem
        self.metrics.count_error(kind)
        method = details.method.rsplit("/", 1)[-1]
        self.metrics.requests.labels(f"grpc:{method}", str(status), "").inc()  # every call is counted

        async def refuse(request: Any, context: Any) -> None:
            await context.abort(STATUS_CODES[status], message)

        make = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(handler.request_streaming, handler.response_streaming)]
        return make(
            refuse, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


def tls_credentials(certfile: str, keyfile: str) -> Any:
    """Server credentials of a PEM certificate (chain) and its private key."""
    return grpc.ssl_server_credentials([(Path(keyfile).read_bytes(), Path(certfile).read_bytes())])


async def start_grpc_server(service: InferenceService, settings: ServeSettings, *, version: str) -> tuple[Any, int]:
    """Start the v2 gRPC service on ``settings.host``:``settings.grpc_port`` (0: a free port) on the running event
    loop, over TLS when the settings have a certificate; the server and its port. OSError when it cannot listen."""
    check = KeyCheck(settings.api_keys, settings.admin_keys, settings.protect_health)
    server = grpc.aio.server(
        interceptors=[KeyInterceptor(check, service.repository.metrics)],
        options=[
            ("grpc.max_receive_message_length", settings.max_upload_bytes),  # the HTTP body limit, for gRPC
            ("grpc.so_reuseport", 0),  # a port in use is an error, not shared with another server
        ],
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(service, version=version), server)
    host = f"[{settings.host}]" if ":" in settings.host and not settings.host.startswith("[") else settings.host
    address = f"{host}:{settings.grpc_port}"
    try:
        if settings.ssl_certfile and settings.ssl_keyfile:
            port = server.add_secure_port(address, tls_credentials(settings.ssl_certfile, settings.ssl_keyfile))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as err:
        raise OSError(f"cannot listen for gRPC on {address}: {err}") from None
    if not port:
        raise OSError(f"cannot listen for gRPC on {address} (in use?)")
    await server.start()
    return server, port
