"""The Open Inference Protocol v2 (KServe v2, Triton's HTTP API): parsing infer requests and writing
responses, in JSON and with the binary tensor data extension.

With the extension (what ``tritonclient.http`` sends by default) the body is a JSON header of
``Inference-Header-Content-Length`` bytes followed by the tensors' raw bytes, in the order of the
inputs whose ``parameters.binary_data_size`` says how many bytes are theirs. FP32 is little-endian;
BYTES elements are each a 4-byte little-endian length and the bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from .errors import ServeError
from .protocol import InferRequest, RequestInput

HEADER_LENGTH = "Inference-Header-Content-Length"
PIXELS, IMAGES = "pixel_values", "images"
OUTPUTS = ("logits", "probabilities", "labels")
MIN_SIDE, MAX_SIDE = 32, 4096  # height and width a pixel_values tensor may have when the size is free


def _bad(message: str) -> ServeError:
    return ServeError(400, "bad_request", message)


@dataclass(frozen=True)
class OutputSpec:
    name: str
    binary: bool
    classification: int | None  # top-k as 'score:index:label' strings


@dataclass
class ParsedInfer:
    id: str | None
    pixels: np.ndarray | None  # (N, C, H, W) float32, or
    images: list[bytes] | None  # N encoded image files
    outputs: list[OutputSpec]

    @property
    def count(self) -> int:
        return len(self.pixels) if self.pixels is not None else len(self.images or [])


def parse_infer_request(
    body: bytes,
    header_length: str | None,
    *,
    num_channels: int,
    input_size: tuple[int, int] | None,
    default_top_k: int,
) -> ParsedInfer:
    """Check and decode an infer request body; ServeError 400 naming what is wrong."""
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise _bad(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 < length <= len(body):
            raise _bad(f"{HEADER_LENGTH} is {length}, the body has {len(body)} bytes")
        header, binary = body[:length], body[length:]
    else:
        header, binary = body, b""
    try:
        request = InferRequest.model_validate_json(header)
    except ValidationError as err:
        raise _bad(f"not a v2 infer request: {_summary(err)}") from None
    offset = 0
    raws: list[bytes | None] = []
    for item in request.inputs:
        size = (item.parameters or {}).get("binary_data_size")
        if size is None:
            raws.append(None)
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise _bad(f"input '{item.name}': binary_data_size {size!r} does not fit the {len(binary)} bytes sent")
        raws.append(binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise _bad(f"{len(binary) - offset} bytes after the JSON header belong to no input")
    return check_infer_request(
        request, raws, num_channels=num_channels, input_size=input_size, default_top_k=default_top_k
    )


def check_infer_request(
    request: InferRequest,
    raws: list[bytes | None],
    *,
    num_channels: int,
    input_size: tuple[int, int] | None,
    default_top_k: int,
) -> ParsedInfer:
    """Check a v2 infer request whatever carried it (HTTP JSON, the binary extension, gRPC): its one input, each
    with its raw bytes or None (its values are in ``data``), and its outputs; ServeError 400 naming the problem."""
    if len(request.inputs) != 1:
        raise _bad(
            f"expected exactly one input, '{PIXELS}' (FP32 [N, {num_channels}, H, W]) or '{IMAGES}' "
            f"(BYTES [N], encoded image files); got {len(request.inputs)}"
        )
    item, raw = request.inputs[0], raws[0]
    pixels = images = None
    if item.name == PIXELS:
        pixels = _pixels(item, raw, num_channels, input_size)
    elif item.name == IMAGES:
        images = _images(item, raw)
    else:
        raise _bad(f"unknown input '{item.name}': expected '{PIXELS}' or '{IMAGES}'")
    return ParsedInfer(request.id, pixels, images, _outputs(request, default_top_k))


def _summary(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {first.get('msg')}{more}"


def _pixels(item: RequestInput, raw: bytes | None, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    if item.datatype != "FP32":
        raise _bad(f"input '{PIXELS}' must have datatype FP32, got {item.datatype}")
    shape = item.shape
    expected = f"[N, {channels}, {size[0]}, {size[1]}]" if size else f"[N, {channels}, H, W]"
    if len(shape) != 4 or shape[0] < 1 or shape[1] != channels:
        raise _bad(f"input '{PIXELS}' must have shape {expected}, got {shape}")
    if size is not None and tuple(shape[2:]) != size:
        raise _bad(f"input '{PIXELS}' must have shape {expected} (the model's preprocessed size), got {shape}")
    if size is None and not all(MIN_SIDE <= side <= MAX_SIDE for side in shape[2:]):
        raise _bad(f"input '{PIXELS}': height and width must be in {MIN_SIDE}..{MAX_SIDE}, got {shape}")
    count = math.prod(shape)
    if raw is not None:
        if len(raw) != 4 * count:
            raise _bad(f"input '{PIXELS}': shape {shape} needs {4 * count} bytes of FP32, got {len(raw)}")
        array = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    else:
        if item.data is None:
            raise _bad(f"input '{PIXELS}' has neither data nor binary_data_size")
        try:
            array = np.asarray(item.data, dtype=np.float32).reshape(-1)
        except (ValueError, TypeError, OverflowError):  # OverflowError: an integer float32 cannot hold
            raise _bad(f"input '{PIXELS}': data must be numbers (flat or nested lists)") from None
        if array.size != count:
            raise _bad(f"input '{PIXELS}': shape {shape} needs {count} values, got {array.size}")
    if not np.isfinite(array).all():
        raise _bad(f"input '{PIXELS}' contains NaN or infinite values")
    return array.reshape(shape)


def _images(item: RequestInput, raw: bytes | None) -> list[bytes]:
    if item.datatype != "BYTES":
        raise _bad(f"input '{IMAGES}' must have datatype BYTES, got {item.datatype}")
    shape = item.shape
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 1:
        raise _bad(f"input '{IMAGES}' must have shape [N] or [N, 1], got {shape}")
    if raw is not None:
        images = deserialize_bytes(raw, f"input '{IMAGES}'")
    else:
        if item.data is None:
            raise _bad(f"input '{IMAGES}' has neither data nor binary_data_size")
        images = []
        for value in _flatten(item.data):
            if isinstance(value, bytes):  # gRPC's bytes_contents: the files themselves
                images.append(value)
                continue
            if not isinstance(value, str):
                raise _bad(f"input '{IMAGES}': JSON data must be base64 strings of image files")
            try:
                images.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                raise _bad(f"input '{IMAGES}': an element is not valid base64") from None
    if len(images) != shape[0]:
        raise _bad(f"input '{IMAGES}': shape {shape} says {shape[0]} images, got {len(images)}")
    return images


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in data:
        out.extend(_flatten(value) if isinstance(value, list) else [value])
    return out


def _outputs(request: InferRequest, default_top_k: int) -> list[OutputSpec]:
    binary_default = _flag(request.parameters, "binary_data_output", False, "the request")
    if not request.outputs:  # none asked for (absent or empty): every output, as KServe and Triton answer
        return [OutputSpec(name, binary_default, default_top_k if name == "labels" else None) for name in OUTPUTS]
    specs, seen = [], set()
    for output in request.outputs:
        if output.name not in OUTPUTS:
            raise _bad(f"unknown output '{output.name}': expected one of {', '.join(OUTPUTS)}")
        if output.name in seen:
            raise _bad(f"output '{output.name}' requested twice")
        seen.add(output.name)
        params = output.parameters or {}
        binary = _flag(params, "binary_data", binary_default, f"output '{output.name}'")
        k = params.get("classification", default_top_k if output.name == "labels" else None)
        if k is not None and (
            isinstance(k, bool) or not isinstance(k, int) or k < (1 if output.name == "labels" else 0)
        ):
            raise _bad(f"output '{output.name}': classification must be a positive integer, got {k!r}")
        specs.append(OutputSpec(output.name, binary, k or None))
    return specs


def _flag(parameters: dict[str, Any] | None, name: str, default: bool, where: str) -> bool:
    """A boolean protocol parameter: JSON true or false only (the string "false" is not false, and not true)."""
    value = (parameters or {}).get(name, default)
    if not isinstance(value, bool):
        raise _bad(f"{where}: parameter {name} must be true or false (a JSON boolean), got {json.dumps(value)[:40]}")
    return value


def deserialize_bytes(raw: bytes, what: str = "BYTES tensor") -> list[bytes]:
    """Elements of a binary BYTES tensor (each a uint32 little-endian length, then the bytes)."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise _bad(f"{what}: truncated element length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise _bad(f"{what}: an element claims {length} bytes, {len(raw) - offset} are left")
        items.append(raw[offset : offset + length])
        offset += length
    return items


def serialize_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def classification(values: np.ndarray, k: int, labels: list[str]) -> list[list[bytes]]:
    """Per row, the top ``k`` as Triton's classification extension writes them: 'value:index:label'."""
    k = min(k, values.shape[1])
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    return [[f"{float(row[i])}:{int(i)}:{labels[int(i)]}".encode() for i in top] for row, top in zip(values, order)]


@dataclass(frozen=True)
class OutputTensor:
    """One requested output: FP32 ``values`` (n, k), or BYTES ``values`` (the 'score:index:label' elements, row by
    row) of ``shape`` [n, k]."""

    name: str
    datatype: str
    shape: list[int]
    values: np.ndarray | list[bytes]

    def raw(self) -> bytes:
        """The binary form (the HTTP binary extension, gRPC's raw_output_contents)."""
        if isinstance(self.values, np.ndarray):
            return self.values.astype("<f4").tobytes()
        return serialize_bytes(self.values)

    def data(self) -> list[Any]:
        """The JSON form: numbers, or strings."""
        if isinstance(self.values, np.ndarray):
            return self.values.reshape(-1).tolist()
        return [item.decode() for item in self.values]


def output_tensors(
    specs: list[OutputSpec], logits: np.ndarray, probabilities: np.ndarray, labels: list[str]
) -> list[OutputTensor]:
    """The requested outputs of ``logits`` and ``probabilities`` (n, num_labels), in the order asked."""
    tensors = []
    for spec in specs:
        values = logits if spec.name == "logits" else probabilities
        if spec.classification:
            rows = classification(values, spec.classification, labels)
            flat = [item for row in rows for item in row]
            tensors.append(OutputTensor(spec.name, "BYTES", [len(rows), len(rows[0]) if rows else 0], flat))
        else:
            tensors.append(OutputTensor(spec.name, "FP32", list(values.shape), values))
    return tensors


def encode_infer_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    specs: list[OutputSpec],
    logits: np.ndarray,
    probabilities: np.ndarray,
    labels: list[str],
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers (``Inference-Header-Content-Length`` when any output is binary)."""
    outputs, blobs = [], []
    for spec, tensor in zip(specs, output_tensors(specs, logits, probabilities, labels)):
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if spec.binary:
            blob = tensor.raw()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = tensor.data()
        outputs.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": outputs}
    if request_id:
        response["id"] = request_id
    header = json.dumps(response, separators=(",", ":"), allow_nan=False).encode()  # never a bare NaN
    if not blobs:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(blobs), {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
