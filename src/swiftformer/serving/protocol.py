"""The request and response models of the endpoints (they are also the OpenAPI schema at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


# ------------------------------------------------------------------------------ /predict
class Prediction(BaseModel):
    label: str = Field(description="the class name (config.id2label)")
    index: int = Field(description="the class index")
    score: float = Field(description="softmax probability")


class ImagePrediction(BaseModel):
    """One image's result: the schema of ``swiftformer predict --json``."""

    image: str = Field(description="the upload's file name, or 'body' for a raw image body")
    predictions: list[Prediction] = Field(description="the top-k classes, best first")


class ErrorResponse(BaseModel):
    error: str = Field(description="what was wrong")
    kind: str = Field(description="a machine-readable kind, e.g. bad_image, queue_full (docs/serving.md)")


# ------------------------------------------------------------------------------ Open Inference Protocol v2
class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for a dimension of any size")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata] = Field(description="alternatives: a request has exactly one of these inputs")
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(default_factory=dict)


class HealthStatus(BaseModel):
    live: bool | None = None
    ready: bool | None = None


class RequestInput(BaseModel):
    name: str = Field(description="'pixel_values' (FP32 [N, 3, H, W]) or 'images' (BYTES [N]: encoded image files)")
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = Field(
        default=None, description="binary_data_size: the tensor's bytes follow the JSON (binary extension)"
    )
    data: list[Any] | None = Field(
        default=None, description="the values, flat or nested, row-major; BYTES as base64 strings"
    )


class RequestOutput(BaseModel):
    name: str = Field(description="'logits', 'probabilities' or 'labels'")
    parameters: dict[str, Any] | None = Field(
        default=None,
        description="binary_data: true for the binary extension; classification: k for the top-k as "
        "'score:index:label' strings",
    )


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        default=None, description="binary_data_output: true for every output in binary"
    )
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = Field(default=None, description="default: all three outputs, in JSON")


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]
