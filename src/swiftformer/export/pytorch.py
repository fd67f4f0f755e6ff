"""The exporters of a PyTorch SwiftFormer classifier: for each format of :mod:`.formats`, one function that
writes the artifact and one that runs it in its runtime.

Every exporter converts the exact reparameterized model of :func:`swiftformer.inference.fuse`
(BatchNorms, layer scales and the two heads folded away: fewer, larger ops), whose single input is
``pixel_values`` (B, 3, H, W) float32 (normalized, as :class:`~swiftformer.SwiftFormerImageProcessor`
makes them) and single output ``logits`` (B, num_labels) float32.

An exporter takes an :class:`ExportContext`, writes ``ctx.staged`` (a path in a staging folder that
:func:`swiftformer.export.export` verifies, then moves into place) and returns :class:`Exported`: notes
for the report and the input shape read from the artifact. A runner opens ``ctx.staged`` in the format's
runtime and returns a function from (N, C, H, W) float32 arrays to logits, or ``None`` where the
runtime cannot run (Core ML off macOS). Neither checks arguments or compares numbers: the pipeline
(:mod:`.pipeline`) does both, the same way for every format. The formats, their shapes, runtimes and
measured figures: ``docs/export.md``.

TFLite and SavedModel are written by :mod:`.keras` from the Keras classes holding the same weights.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ExportError, ExportVerificationError
from ..perf import time_calls

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..modeling import SwiftFormerForImageClassification
    from .bundle import BundleSpec
    from .formats import ExportFormat

Runner = Callable[["np.ndarray"], "np.ndarray"]  # pixel_values (N, C, H, W) float32 -> logits (N, num_labels)


class Exported(NamedTuple):
    """What an exporter tells the report: ``notes`` (runtime version, precision, delegation, ...) and the
    artifact's ``input_shape`` as read from it, a name for each dynamic dimension; a bundle's exporter also
    the entries it adds to (or overrides in) ``manifest.json`` (:func:`~.bundle.manifest`)."""

    notes: list[str]
    input_shape: list[Any]
    manifest: Mapping[str, Any] = MappingProxyType({})


@dataclass
class ExportContext:
    """Everything an exporter and a runner need."""

    format: ExportFormat
    model: SwiftFormerForImageClassification  # the original classifier (eval, float32, CPU)
    fused: Any  # inference.fuse(model)
    precision: str
    size: tuple[int, int]  # the export's (height, width)
    opset: int
    staged: Path  # where the artifact is written, and read from by the runner
    verify_inputs: torch.Tensor  # (N, C, H, W) float32; a bundle: (N, H, W, 3) uint8
    calibration: torch.Tensor | None = None  # for int8: (N, C, H, W) float32; a bundle: (N, H, W, 3) uint8
    bundle: BundleSpec | None = None  # a bundle: uint8 (N, H, W, 3) images in, probabilities out (.bundle)

    @property
    def channels(self) -> int:
        return self.model.config.num_channels

    def example(self, batch: int) -> torch.Tensor:
        import torch

        gen = torch.Generator().manual_seed(1234)
        return torch.randn(batch, self.channels, *self.size, generator=gen)

    def example_images(self, batch: int) -> torch.Tensor:
        """``batch`` seeded random (H, W, 3) uint8 images at the export size: a bundle's example input."""
        import torch

        gen = torch.Generator().manual_seed(1234)
        return torch.randint(0, 256, (batch, *self.size, 3), dtype=torch.uint8, generator=gen)

    def dims(self, spatial: bool) -> dict[int, Any]:
        from ..inference import export_dims

        return export_dims(self.model.config, self.size, spatial)  # static H, W below the minimum size

    def int8_calibration(self) -> torch.Tensor:
        """The calibration images of an int8 export (the pipeline always sets them for one)."""
        if self.calibration is None:
            raise ValueError("an int8 export needs calibration images")
        return self.calibration

    def static_shape(self) -> str:
        return f"(1, {self.channels}, {self.size[0]}, {self.size[1]})"


# ------------------------------------------------------------------------------------------- helpers
def _import(module: str, ctx: ExportContext) -> Any:
    """``module``, or an ImportError naming the format's extra (the pipeline checked it is installed;
    this catches one that is installed but broken)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"exporting to {ctx.format.name} needs {module.split('.')[0]} ({err}): {ctx.format.install_hint}"
        ) from None


def _with_precision(fused: Any, precision: str) -> Any:
    """``pixel_values (float32) -> logits (float32)`` around weights and arithmetic in ``precision``."""
    import torch
    from torch import nn

    if precision == "fp32":
        return fused
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]

    class Cast(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner.to(dtype)

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.inner(pixel_values.to(dtype)).float()

    return Cast(copy.deepcopy(fused)).eval()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the deprecation and version chatter of the converters (not errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _silence_logging() -> Iterator[None]:
    """onnxruntime's quantizer logs advice through the root logger; keep it off the user's terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _named_shape(dims: list[int | None]) -> list[Any]:
    """An artifact's input shape as reported: each dynamic dimension (``None``) by its name."""
    names = ("batch", "channels", "height", "width")
    return [names[i] if d is None else int(d) for i, d in enumerate(dims)]


# ------------------------------------------------------------------------------------------- ONNX
def export_onnx(ctx: ExportContext) -> Exported:
    from ..inference import export_onnx_graph  # (imports torch) the one ONNX export, also the onnxruntime backend's

    onnx = _import("onnx", ctx)
    ort = _import("onnxruntime", ctx)
    if ctx.bundle is not None:
        return _export_onnx_bundle(ctx, ctx.bundle, onnx, ort)
    module = _with_precision(ctx.fused, "fp32" if ctx.precision == "int8" else ctx.precision)  # int8: quantized below
    proto = export_onnx_graph(module, ctx.example(2), ctx.dims(spatial=True), ctx.opset)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "swiftformer.config", ctx.model.config.to_json_string()
    # One self-contained file: weights inline, never an external-data file beside it.
    onnx.save(proto, os.fspath(ctx.staged), save_as_external_data=False)
    strays = [p.name for p in ctx.staged.parent.iterdir() if p != ctx.staged]
    if strays:
        raise ExportError(f"the ONNX export wrote unexpected extra files {strays}")
    onnx.checker.check_model(os.fspath(ctx.staged))
    if ctx.precision == "int8":
        _quantize_onnx(ctx, "pixel_values")
    ops = sorted({n.op_type for n in proto.graph.node})
    notes = [
        f"opset {ctx.opset}; onnxruntime {ort.__version__} CPUExecutionProvider; {len(proto.graph.node)} nodes"
        + ("; native Gelu" if "Gelu" in ops else "")
    ]
    if "Gelu" not in ops:  # read from the graph: opsets before 20 have no Gelu
        notes.append(f"opset {ctx.opset}: Gelu is decomposed into elementary ops (slower in onnxruntime)")
    if ctx.precision == "fp16":
        notes.append("fp16 weights and arithmetic; pixel_values and logits stay float32 (casts at the ends)")
    if ctx.precision == "int8":
        notes.append(_onnx_int8_note(ctx))
    # The shape as exported: height and width are static below the dynamic minimum size (inference.export_dims).
    return Exported(notes, _named_shape(_onnx_input_dims(proto)))


def _onnx_input_dims(proto: Any) -> list[int | None]:
    """The ONNX graph's input shape, each dynamic dimension ``None``."""
    return [d.dim_value if d.HasField("dim_value") else None for d in proto.graph.input[0].type.tensor_type.shape.dim]


def _onnx_int8_note(ctx: ExportContext) -> str:
    return (
        "int8: onnxruntime static quantization (QDQ, per-channel int8 weights, uint8 activations), "
        f"calibrated on {len(ctx.int8_calibration())} images"
    )


def _quantize_onnx(ctx: ExportContext, input_name: str) -> None:
    """Replace the float32 model at ``ctx.staged`` by its int8 QDQ version, calibrated on ``ctx.calibration``
    (fed as ``input_name``)."""
    _import("onnxruntime.quantization", ctx)
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Images(CalibrationDataReader):
        def __init__(self, images: np.ndarray) -> None:
            self.batches = iter([{input_name: images[i : i + 8]} for i in range(0, len(images), 8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    float_model = ctx.staged.with_name("float32.onnx")
    ctx.staged.replace(float_model)
    with _quiet(), _silence_logging():
        quantize_static(
            os.fspath(float_model),
            os.fspath(ctx.staged),
            Images(ctx.int8_calibration().numpy()),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    float_model.unlink()


def _export_onnx_bundle(ctx: ExportContext, spec: BundleSpec, onnx: Any, ort: Any) -> Exported:
    """The bundle: uint8 NHWC ``images`` -> ``probabilities``, the labels and the rest of
    :func:`~.bundle.metadata` in ``metadata_props``; dynamic batch, height and width fixed at ``spec.size``."""
    import torch

    from ..inference import export_onnx_graph
    from .bundle import INPUT_NAME, OUTPUT_NAME, bundled_module, metadata

    module = bundled_module(ctx.fused, spec, "fp32" if ctx.precision == "int8" else ctx.precision)
    example = ctx.example_images(2)
    dims = {0: torch.export.Dim("batch", min=1, max=4096)}
    proto = export_onnx_graph(module, example, dims, ctx.opset, names=(INPUT_NAME, OUTPUT_NAME))
    meta = metadata(spec, ctx.model.config.to_json_string())
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.doc_string = "swiftformer", meta["description"]
    onnx.save(proto, os.fspath(ctx.staged), save_as_external_data=False)
    onnx.checker.check_model(os.fspath(ctx.staged))
    if ctx.precision == "int8":
        _quantize_onnx(ctx, INPUT_NAME)
    shape = ["batch" if d is None else int(d) for d in _onnx_input_dims(proto)]
    notes = [
        f"bundle: input {INPUT_NAME} (batch, {spec.size[0]}, {spec.size[1]}, 3) uint8 RGB (NHWC), output "
        f"{OUTPUT_NAME} (softmax); {len(spec.labels)} labels in metadata_props['labels']",
        spec.normalization_note,
        f"opset {ctx.opset}; onnxruntime {ort.__version__} CPUExecutionProvider; {len(proto.graph.node)} nodes",
        *spec.notes,
    ]
    if ctx.precision == "fp16":
        notes.append("fp16 weights and arithmetic; the mean subtraction and the softmax stay float32")
    if ctx.precision == "int8":
        notes.append(_onnx_int8_note(ctx) + "; input uint8 pixels, output float32 probabilities")
    return Exported(notes, shape)


def load_onnx(ctx: ExportContext) -> Runner:
    from .bundle import OrtRunner

    _import("onnxruntime", ctx)
    return OrtRunner(ctx.staged)  # its one input and output: pixel_values -> logits, or a bundle's


# ------------------------------------------------------------------------------------------- OpenVINO
def _openvino_hint(precision: str) -> str:
    return "bf16" if precision == "bf16" else "f32"


def export_openvino(ctx: ExportContext) -> Exported:
    from ..inference import openvino_model

    ov = _import("openvino", ctx)
    with _quiet():  # from torch.export (no TorchScript): dynamic batch, height and width
        ov_model, notes = openvino_model(ctx.fused, ctx.example(2), ctx.dims(spatial=True))
    ctx.staged.mkdir()
    ov.save_model(ov_model, os.fspath(ctx.staged / "model.xml"), compress_to_fp16=ctx.precision == "fp16")
    core = ov.Core()
    default_hint = core.get_property("CPU", "INFERENCE_PRECISION_HINT")
    default_hint = default_hint.get_type_name() if hasattr(default_hint, "get_type_name") else str(default_hint)
    # The IR's own shape: OpenVINO keeps height and width dynamic even where torch.export fixed them.
    saved = core.read_model(os.fspath(ctx.staged / "model.xml"))
    dims = [None if d.is_dynamic else d.get_length() for d in saved.inputs[0].get_partial_shape()]
    notes.append(
        f"OpenVINO {ov.get_version().split('-')[0]} CPU, compiled with INFERENCE_PRECISION_HINT="
        f"{_openvino_hint(ctx.precision)} (this CPU's default is {default_hint}: pass the hint explicitly when loading)"
    )
    if ctx.precision == "fp16":
        notes.append("fp16-compressed weights (decompressed to f32 at load on CPU)")
    if ctx.precision == "bf16":
        notes.append("the IR holds f32 weights; bf16 is the runtime hint {'INFERENCE_PRECISION_HINT': 'bf16'}")
    return Exported(notes, _named_shape(dims))


def load_openvino(ctx: ExportContext) -> Runner:
    ov = _import("openvino", ctx)
    core = ov.Core()
    saved = core.read_model(os.fspath(ctx.staged / "model.xml"))
    compiled = core.compile_model(saved, "CPU", {"INFERENCE_PRECISION_HINT": _openvino_hint(ctx.precision)})
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})[0].copy()


# ------------------------------------------------------------------------------------------- ExecuTorch
L2_EPS = 1e-12  # F.normalize's eps: x / max(||x||, eps)


def _sum_spatial(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 1, 1), the sum over positions as H·W × a spatial mean (XNNPACK has a mean, no sum).
    H·W is a float: an int would be a tensor constant the runtime converts to float on every call."""
    return x.mean(dim=(2, 3), keepdim=True) * float(x.shape[2] * x.shape[3])


def _l2_normalize(x: torch.Tensor, sum_sq: torch.Tensor) -> torch.Tensor:
    """``F.normalize``'s ``x / max(||x||, eps)`` given ``sum_sq`` = Σx² (broadcast against ``x``), as
    ``x * rsqrt(max(Σx², eps²))``: the same in real arithmetic (sqrt is monotonic), with no L2-norm op, no
    division and no broadcast copy (``tile``) of the norm. In Core ML ``rsqrt`` adds its own epsilon 1e-12 to
    Σx², below float32 resolution wherever Σx² > 1e-4."""
    import torch

    return x * torch.rsqrt(torch.clamp(sum_sq, min=L2_EPS * L2_EPS))


def _mobile_model(fused: Any) -> Any:
    """The fused model rewritten with only the ops XNNPACK takes and the Neural Engine runs: the ExecuTorch
    export lowers it (one delegated graph, no portable kernels) and the Core ML bundle converts it.

    The same function in real arithmetic: the query/key conv is split into two convs (no split op); the L2
    normalizations (``F.normalize``, which Core ML converts to ``reduce_l2_norm``, ``maximum``, ``tile``,
    ``real_div``) are :func:`_l2_normalize` with Σx² over channels as a 1×1 conv with a row of ones; token
    sums and the final pooling are keep-dim spatial means (no sum, no 2-D mean); no channels-last copy at the
    input. Shares ``fused``'s modules: pass a copy.
    """
    import torch
    from torch import nn

    from ..inference import FusedEncoderBlock, pointwise_conv

    class Block(nn.Module):
        def __init__(self, block: FusedEncoderBlock) -> None:
            super().__init__()
            d = block.dim
            self.local, self.proj, self.final = block.local, block.proj, block.final
            self.fc1, self.act, self.fc2 = block.fc1, block.act, block.fc2
            self.l2 = block.l2
            qk_bias = block.qk.bias
            assert qk_bias is not None  # the fused query-key projection has one
            self.query = pointwise_conv(block.qk.weight[:d], qk_bias[:d])
            self.key = pointwise_conv(block.qk.weight[d:], qk_bias[d:])
            self.w_g = pointwise_conv(block.w_g.reshape(1, d, 1, 1), None)
            self.sum_sq = pointwise_conv(torch.ones(1, d, 1, 1), None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.local(x)
            query, key = self.query(x), self.key(x)  # (B, C, H, W), L2-normalized over channels per token
            query, key = _l2_normalize(query, self.sum_sq(query * query)), _l2_normalize(key, self.sum_sq(key * key))
            if self.l2:  # token weights (q·w_g) L2-normalized over the tokens
                scores = self.w_g(query)  # (B, 1, H, W)
                weights = _l2_normalize(scores, _sum_spatial(scores * scores))
                global_query = _sum_spatial(weights * query)
            else:
                global_query = _sum_spatial(query)
            x = x + self.final(self.proj(global_query * key) + query)
            return x + self.fc2(self.act(self.fc1(x)))

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                *[Block(m) if isinstance(m, FusedEncoderBlock) else m for m in fused.features]
            )
            self.head = fused.head

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(pixel_values).mean(dim=(2, 3), keepdim=True).flatten(1))

    return Model().to(memory_format=torch.contiguous_format).eval()


# Why an operator stays outside XNNPACK (the partitioner's reasons, in words), by the name get_delegation_info uses.
_NOT_DELEGATED_WHY = {
    "dim_order_ops__to_dim_order_copy_default": (
        "a dtype conversion (the uint8 images to float32): XNNPACK's partitioner takes dim-order copies only "
        "without a dtype change, and its dequantize takes int8/quint8 but not a torch.uint8 input"
    ),
}
_NOT_AN_OP = ("getitem",)  # unpacks the delegate's outputs: a node of the graph, not an operator that computes


def _delegation(graph_module: Any) -> dict[str, Any] | None:
    """What XNNPACK took: ``delegated_ops``, ``subgraphs``, ``not_delegated`` ({operator: count}, ``getitem``
    left out) and ``why`` for each of those; ``None`` where ExecuTorch's devtools cannot tell."""
    try:
        from executorch.devtools.backend_debug import get_delegation_info

        info = get_delegation_info(graph_module)
    except Exception:  # devtools are optional in an ExecuTorch install; the export itself does not need them
        return None
    outside = {
        op: row.non_delegated
        for op, row in sorted(info.delegation_by_operator.items())
        if row.non_delegated and op not in _NOT_AN_OP
    }
    return {
        "delegated_ops": int(info.num_delegated_nodes),
        "subgraphs": int(info.num_delegated_subgraphs),
        "not_delegated": outside,
        "why": {op: _NOT_DELEGATED_WHY.get(op, "not taken by XNNPACK's partitioner") for op in outside},
    }


def export_executorch(ctx: ExportContext) -> Exported:
    """The fused model (pixel_values in), or a bundle (uint8 NHWC images in, probabilities out), lowered to
    XNNPACK; the report and a bundle's manifest name the operators XNNPACK did not take."""
    import torch

    exir = _import("executorch.exir", ctx)
    xnnpack = _import("executorch.backends.xnnpack.partition.xnnpack_partitioner", ctx)
    notes = []
    try:
        module = _mobile_model(copy.deepcopy(ctx.fused))
    except (AttributeError, TypeError) as err:  # the fused layers changed shape: lower them as they are
        notes.append(f"exported the fused model as is (XNNPACK rewrite unavailable: {err})")
        # XNNPACK's layout pass wants NCHW-contiguous weights (fuse() makes them channels-last).
        module = copy.deepcopy(ctx.fused).to(memory_format=torch.contiguous_format)
    example = ctx.example(1)
    if ctx.bundle is not None:
        from .bundle import bundled_module

        module = bundled_module(module, ctx.bundle).to(memory_format=torch.contiguous_format)
        example = ctx.example_images(1)
    with _quiet():
        exported = torch.export.export(module, (example,))
        edge = exir.to_edge_transform_and_lower(exported, partitioner=[xnnpack.XnnpackPartitioner()])
        delegation = _delegation(edge.exported_program().graph_module)
        program = edge.to_executorch()
    with open(ctx.staged, "wb") as handle:
        program.write_to_file(handle)
    if delegation is not None:
        outside = delegation["not_delegated"]
        notes.append(
            f"XNNPACK runs {delegation['delegated_ops']} ops in {delegation['subgraphs']} graph(s); "
            + (
                "outside it: " + "; ".join(f"{op} x{n} ({delegation['why'][op]})" for op, n in outside.items())
                if outside
                else "every op delegated"
            )
        )
    if ctx.bundle is None:
        notes.append(f"static input shape {ctx.static_shape()}: batch 1 at the export size")
        return Exported(notes, [1, ctx.channels, *ctx.size])
    return _executorch_bundle_exported(ctx, ctx.bundle, notes, delegation)


def _executorch_bundle_exported(
    ctx: ExportContext, spec: BundleSpec, notes: list[str], delegation: dict[str, Any] | None
) -> Exported:
    """The report notes and manifest entries of an ExecuTorch bundle (the .pte has no metadata field)."""
    from .bundle import INPUT_NAME, OUTPUT_NAME

    h, w = spec.size
    notes = [
        f"bundle: input {INPUT_NAME} (1, {h}, {w}, 3) uint8 RGB (NHWC), output {OUTPUT_NAME} (softmax); static "
        "batch 1; a .pte has no metadata field: the labels travel in labels.txt and manifest.json beside it",
        spec.normalization_note,
        *notes,
        *spec.notes,
    ]
    from importlib.metadata import version

    entry: dict[str, Any] = {"backend": "XNNPACK", "executorch": version("executorch")}
    if delegation is not None:
        entry["delegation"] = delegation
    manifest = {"labels_in_artifact": False, "executorch": entry}
    return Exported(notes, [1, h, w, 3], manifest)


class ExecuTorchRunner:
    """The ``forward`` method of a ``.pte`` in the ExecuTorch runtime: its input tensor to its first output.

    ``num_threads`` resets ExecuTorch's process-wide threadpool (the one XNNPACK's delegate runs on) through
    ``portable_lib._unsafe_reset_threadpool``, an API ExecuTorch marks experimental; it applies to every
    ExecuTorch method in the process (and stays after). :attr:`num_threads` is the pool's size read back
    (``None``: this ExecuTorch cannot say; one without the reset keeps its default pool, and this says so),
    :attr:`meta` the method's ``MethodMeta`` (input and output shapes, dtypes).
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None) -> None:
        with warnings.catch_warnings():  # its imports' deprecations; the reset's "experimental" (said above)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message="This API is experimental")
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime

            reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)
            if num_threads is not None and reset is not None:
                reset(num_threads)
        count = getattr(portable_lib, "_threadpool_get_thread_count", None)
        self.num_threads: int | None = int(count()) if count is not None else None
        self.method = Runtime.get().load_program(os.fspath(path)).load_method("forward")
        self.meta = self.method.metadata

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        return self.method.execute([torch.from_numpy(x)])[0].numpy()


def load_executorch(ctx: ExportContext) -> Runner:
    _import("executorch.runtime", ctx)
    return ExecuTorchRunner(ctx.staged)


# ------------------------------------------------------------------------------------------- Core ML
def _import_coremltools(ctx: ExportContext) -> Any:
    import torch._dynamo  # noqa: F401 - before TensorFlow: importing triton after TensorFlow crashes here

    # coremltools imports TensorFlow when it is installed (for its TF converters, unused here): several
    # seconds and hundreds of MB. Hide it during the import unless the process already loaded it.
    hide = "tensorflow" not in sys.modules
    if hide:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]
    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)  # untested-version warnings (torch, scikit-learn) at import
    try:
        with _quiet():
            return _import("coremltools", ctx)
    finally:
        logger.setLevel(level)
        if hide and sys.modules.get("tensorflow", 0) is None:
            del sys.modules["tensorflow"]


_COREML_NOT_EXECUTED = "not executed: Core ML prediction needs macOS (the saved spec was reloaded and checked)"


def _coreml_convert(ct: Any, module: Any, example: torch.Tensor, precision: str, **io: Any) -> Any:
    """``module`` (float32, contiguous weights) as an ML Program computing in ``precision``; ``io``: the
    ``inputs``, ``outputs`` or ``classifier_config`` of ``ct.convert``."""
    import torch

    compute = ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32
    with _quiet():
        exported = torch.export.export(module, (example,)).run_decompositions({})
        try:
            return ct.convert(exported, convert_to="mlprogram", compute_precision=compute, **io)
        except Exception as err:
            raise ExportError(
                f"coremltools {ct.__version__} could not convert the model: {type(err).__name__}: {err}"
            ) from err


def export_coreml(ctx: ExportContext) -> Exported:
    import torch

    ct = _import_coremltools(ctx)
    if ctx.bundle is not None:
        return _export_coreml_bundle(ctx, ctx.bundle, ct)
    fused = copy.deepcopy(ctx.fused).to(memory_format=torch.contiguous_format)
    example = ctx.example(1)
    mlmodel = _coreml_convert(
        ct,
        fused,
        example,
        ctx.precision,
        inputs=[ct.TensorType(name="pixel_values", shape=tuple(example.shape))],
        outputs=[ct.TensorType(name="logits")],
    )
    mlmodel.short_description = "SwiftFormer image classifier: normalized pixel_values (NCHW) -> logits"
    mlmodel.user_defined_metadata["swiftformer.config"] = ctx.model.config.to_json_string()
    mlmodel.save(os.fspath(ctx.staged))
    # Check that the saved package reloads and describe it (prediction itself needs macOS: load_coreml).
    spec = ct.models.MLModel(os.fspath(ctx.staged), skip_model_load=True).get_spec()

    def describe(feature: Any) -> str:
        array = feature.type.multiArrayType
        dtype = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType).lower()
        return f"{feature.name} {dtype} {list(array.shape)}"

    compute = "float16" if ctx.precision == "fp16" else "float32"
    notes = [
        f"coremltools {ct.__version__}, mlprogram (spec version {spec.specificationVersion}), compute precision {compute}",
        "inputs: " + ", ".join(describe(f) for f in spec.description.input),
        "outputs: " + ", ".join(describe(f) for f in spec.description.output),
        f"static input shape {ctx.static_shape()}",
    ]
    if sys.platform != "darwin":
        notes.append(_COREML_NOT_EXECUTED)
    return Exported(notes, [1, ctx.channels, *ctx.size])


COREML_IMAGE = "image"  # a Core ML bundle's input: one RGB image
COREML_LABEL = "classLabel"  # its outputs, as Core ML classifiers name them: the top label ...
COREML_PROBABILITIES = "classLabel_probs"  # ... and every label's probability (string -> double)
_NOT_ON_ANE = ("reduce_l2_norm", "l2_norm", "real_div", "tile")  # what F.normalize converts to (docs/export.md)


def _export_coreml_bundle(ctx: ExportContext, spec: BundleSpec, ct: Any) -> Exported:
    """An ML Program classifier: input :data:`COREML_IMAGE`, an RGB image of ``spec.size`` whose ImageType
    preprocessing subtracts the offset (bias ``-offset`` per channel, scale 1; the per-channel scale is folded
    into the stem convolution), the mobile rewrite of the fused model (:func:`_mobile_model`: no L2-norm op),
    a softmax and a ``ClassifierConfig`` with the labels; the metadata of :func:`~.bundle.metadata`. The
    saved package is reloaded (without compiling: Linux can) and its spec checked (:func:`_coreml_bundle_facts`)."""
    import torch

    from .bundle import bundled_module, metadata

    h, w = spec.size
    module = bundled_module(_mobile_model(copy.deepcopy(ctx.fused)), spec, centered=True)
    module = module.to(memory_format=torch.contiguous_format)
    offset = torch.tensor(spec.offset).reshape(1, 3, 1, 1)

    def centered(images: torch.Tensor) -> torch.Tensor:  # uint8 (B, H, W, 3) as the ImageType hands them over
        return (images.permute(0, 3, 1, 2).float() - offset).contiguous()

    example = centered(ctx.example_images(1))
    mlmodel = _coreml_convert(
        ct,
        module,
        example,
        ctx.precision,
        inputs=[
            ct.ImageType(
                name=COREML_IMAGE,
                shape=(1, 3, h, w),
                color_layout=ct.colorlayout.RGB,
                scale=1.0,
                bias=[-o for o in spec.offset],
            )
        ],
        classifier_config=ct.ClassifierConfig(list(spec.labels), predicted_feature_name=COREML_LABEL),
    )
    meta = metadata(spec, ctx.model.config.to_json_string(), image_input=COREML_IMAGE)
    mlmodel.author, mlmodel.license = meta["author"], meta["license"]
    mlmodel.short_description, mlmodel.version = meta["description"], meta["version"]
    for key in ("name", "labels", "input", "normalization", "swiftformer.config"):
        mlmodel.user_defined_metadata[key] = meta[key]
    mlmodel.input_description[COREML_IMAGE] = f"RGB image, {w}x{h} (width x height); no resize inside"
    mlmodel.output_description[COREML_LABEL] = "the most probable label"
    mlmodel.output_description[COREML_PROBABILITIES] = "every label's probability (softmax)"
    mlmodel.save(os.fspath(ctx.staged))
    saved = ct.models.MLModel(os.fspath(ctx.staged), skip_model_load=True).get_spec()
    facts = _coreml_bundle_facts(saved, spec)
    compute = "float16" if ctx.precision == "fp16" else "float32"
    ops = facts["mil_ops"]
    computing = {op: n for op, n in sorted(ops.items()) if op != "const"}
    # What can be checked here of the numbers: the graph handed to coremltools against the pipeline's reference.
    with torch.no_grad():
        converted = module(centered(ctx.verify_inputs))
    from .bundle import reference_probabilities

    reference = reference_probabilities(ctx.model, spec, ctx.verify_inputs.numpy())
    graph_diff = float((converted - reference).abs().max())
    notes = [
        f"bundle: Core ML classifier (ML Program, spec version {saved.specificationVersion}, coremltools "
        f"{ct.__version__}, compute precision {compute}): input {COREML_IMAGE} RGB image {w}x{h}, outputs "
        f"{COREML_LABEL} (string) and {COREML_PROBABILITIES} (string -> double); {len(spec.labels)} labels in the "
        "classifier and in the metadata",
        spec.normalization_note,
        f"MIL ops: {sum(computing.values())} besides {ops['const']} constants "
        f"({', '.join(f'{k} {v}' for k, v in computing.items())}); the L2 normalizations as 1x1 conv + rsqrt + mul: "
        "no " + ", ".join(_NOT_ON_ANE),
        f"the float32 PyTorch graph converted (image minus offset in) vs the reference on the same "
        f"{len(reference)} images: max|diff| {graph_diff:.3g} (Core ML's own answers need macOS)",
        *spec.notes,
    ]
    if sys.platform != "darwin":
        notes.append(_COREML_NOT_EXECUTED)
    manifest = {
        "input": {
            "name": COREML_IMAGE,
            "type": "image",
            "channels": "RGB",
            "height": h,
            "width": w,
            "preprocessing": {"scale": 1.0, "bias": [-o for o in spec.offset]},
        },
        "output": {
            "label": COREML_LABEL,
            "probabilities": COREML_PROBABILITIES,
            "what": "the most probable label, and every label's softmax probability (string -> double)",
        },
        "description": meta["description"],
        "labels_in_artifact": True,
        "coreml": {
            **facts,
            "mil_ops": dict(sorted(ops.items())),
            "compute_precision": compute,
            "converted_graph_max_abs_diff": graph_diff,
        },
    }
    return Exported(notes, [1, h, w, 3], manifest)


def _coreml_bundle_facts(saved: Any, spec: BundleSpec) -> dict[str, Any]:
    """What the saved Core ML bundle's spec says, checked: an RGB image input of ``spec.size``, the label
    (string) and probability (string-keyed dictionary) outputs named as the predicted features, the labels in
    the classify op and the metadata, author/license/description/version set, no op of :data:`_NOT_ON_ANE`.
    An :class:`ExportError` names the first thing that is not so."""
    from collections import Counter

    description = saved.description
    inputs, outputs = list(description.input), {o.name: o for o in description.output}
    image = inputs[0].type.imageType if len(inputs) == 1 and inputs[0].type.HasField("imageType") else None
    probs = outputs.get(COREML_PROBABILITIES)
    ops: Counter[str] = Counter(op.type for op in _mil_operations(saved))
    classes: list[str] = []
    for op in _classify_ops(saved):
        classes = list(op)
    meta = description.metadata
    checks = {
        "one RGB image input of the bundle size": image is not None
        and image.colorSpace == image.RGB
        and (image.height, image.width) == tuple(spec.size),
        f"a string output {COREML_LABEL}": COREML_LABEL in outputs
        and outputs[COREML_LABEL].type.HasField("stringType"),
        f"a string-keyed dictionary output {COREML_PROBABILITIES}": probs is not None
        and probs.type.HasField("dictionaryType")
        and probs.type.dictionaryType.HasField("stringKeyType"),
        "the predicted feature names": (description.predictedFeatureName, description.predictedProbabilitiesName)
        == (COREML_LABEL, COREML_PROBABILITIES),
        "the labels in the classifier": classes == list(spec.labels),
        "author, license, description and version": all(
            (meta.author, meta.license, meta.shortDescription, meta.versionString)
        ),
        "the labels in the metadata": json.loads(meta.userDefined.get("labels", "null")) == list(spec.labels),
        f"no {'/'.join(_NOT_ON_ANE)} op": not any(ops[op] for op in _NOT_ON_ANE),
    }
    failed = [what for what, ok in checks.items() if not ok]
    if failed:
        raise ExportError(f"the saved Core ML bundle lacks {failed[0]}")
    assert image is not None
    return {
        "spec_version": int(saved.specificationVersion),
        "input": {
            "name": inputs[0].name,
            "type": "image",
            "color": "RGB",
            "width": image.width,
            "height": image.height,
        },
        "outputs": {COREML_LABEL: "string", COREML_PROBABILITIES: "dictionary string -> double"},
        "predicted_feature_name": description.predictedFeatureName,
        "predicted_probabilities_name": description.predictedProbabilitiesName,
        "metadata": sorted(["author", "license", "short_description", "version", *meta.userDefined]),
        "mil_ops": ops,
    }


def _mil_operations(saved: Any) -> Iterator[Any]:
    """Every operation of the saved ML Program's functions, block by block."""
    for function in saved.mlProgram.functions.values():
        for block in function.block_specializations.values():
            yield from block.operations


def _classify_ops(saved: Any) -> Iterator[list[str]]:
    """The class labels of each ``classify`` op of the ML Program (its ``classes``: a list of strings inline)."""
    for op in _mil_operations(saved):
        if op.type == "classify" and "classes" in op.inputs:
            (argument,) = op.inputs["classes"].arguments
            items = argument.value.immediateValue.list.values
            yield [label for item in items for label in item.immediateValue.tensor.strings.values]


def load_coreml(ctx: ExportContext) -> Runner | None:
    """The saved package in Core ML (macOS only; elsewhere ``None``). A bundle: uint8 (N, H, W, 3) images fed
    one at a time as PIL images, the probabilities read from the dictionary in label order."""
    if sys.platform != "darwin":
        return None
    ct = _import_coremltools(ctx)
    mlmodel = ct.models.MLModel(os.fspath(ctx.staged))
    spec = ctx.bundle
    if spec is None:
        return lambda x: mlmodel.predict({"pixel_values": x})["logits"]
    import numpy as np
    from PIL import Image

    def run(images: np.ndarray) -> np.ndarray:
        answers = [mlmodel.predict({COREML_IMAGE: Image.fromarray(image)})[COREML_PROBABILITIES] for image in images]
        return np.array([[answer[label] for label in spec.labels] for answer in answers], dtype=np.float32)

    return run


# ------------------------------------------------------------------------------------------- AOTInductor
def export_aoti(ctx: ExportContext) -> Exported:
    import torch
    import torch._inductor

    # From a contiguous copy: frozen from the channels-last fused model, a 1-channel model computed wrong results
    contiguous = copy.deepcopy(ctx.fused).to(memory_format=torch.contiguous_format)
    module = _with_precision(contiguous, ctx.precision)
    with _quiet():
        exported = torch.export.export(module, (ctx.example(2),), dynamic_shapes=(ctx.dims(spatial=False),))
        # freezing constant-folds the weights into prepacked oneDNN layouts, as optimize_for_inference does:
        # faster at batch 1 and at batch 32 than the unfrozen package (docs/export.md, measured figures).
        torch._inductor.aoti_compile_and_package(
            exported, package_path=os.fspath(ctx.staged), inductor_configs={"freezing": True}
        )
    # The point of AOTInductor: nothing compiles at load time. Measure load + first call.
    first = ctx.example(1)

    def load_and_call() -> None:
        runner = torch._inductor.aoti_load_package(os.fspath(ctx.staged))
        with torch.inference_mode():
            runner(first)

    (cold,) = time_calls(load_and_call, 1)
    notes = [
        f"load + first call: {1e3 * cold:.0f} ms (no compilation at load)",
        f"dynamic batch; height and width fixed at {ctx.size[0]}x{ctx.size[1]}; needs this torch version and CPU type",
    ]
    if ctx.precision == "bf16":
        notes.append("bf16 weights and arithmetic; pixel_values and logits stay float32")
    return Exported(notes, ["batch", ctx.channels, *ctx.size])


def load_aoti(ctx: ExportContext) -> Runner:
    import torch
    import torch._inductor

    runner = torch._inductor.aoti_load_package(os.fspath(ctx.staged))

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return runner(torch.from_numpy(x)).numpy()

    return run


# ------------------------------------------------------------------------------------------- through Keras
def _keras_exporter(ctx: ExportContext) -> Any:
    """:mod:`swiftformer.export.keras`, imported here: it is the TensorFlow side, needed by two formats only."""
    import torch._dynamo  # noqa: F401 - before TensorFlow (see _import_coremltools)

    try:
        keras_export = importlib.import_module(".keras", __package__)
        keras_export._require_tf()
    except ImportError as err:
        raise ImportError(
            f"exporting to {ctx.format.name} needs TensorFlow, Keras 3 and LiteRT ({err}): {ctx.format.install_hint}"
        ) from None
    return keras_export


def _keras_model(ctx: ExportContext, state_dict: Mapping[str, Any] | None = None) -> Any:
    """The Keras classifier of ``ctx.model``'s config holding ``state_dict`` (default ``ctx.model``'s weights)."""
    keras_models = importlib.import_module("..keras.models", __package__)
    tf_model = keras_models.TFSwiftFormerForImageClassification(ctx.model.config)
    tf_model.load_state_dict(ctx.model.state_dict() if state_dict is None else state_dict, source="the PyTorch model")
    return tf_model


def _via_keras(ctx: ExportContext, write: Callable[[Any, Any], Any]) -> Any:
    """The report of ``write(keras_export, tf_model)`` (an exporter of :mod:`.keras`, which checks the
    artifact it writes to ``ctx.staged`` against the Keras model, loaded with ``ctx.model``'s weights);
    its disagreement is a conversion failure here."""
    keras_export = _keras_exporter(ctx)
    tf_model = _keras_model(ctx)
    with _quiet():
        try:
            return write(keras_export, tf_model)
        except ExportVerificationError as err:  # its report describes a staged file that is gone
            raise ExportError(
                f"the {ctx.format.name} artifact disagrees with the Keras model it was converted from: relative "
                f"{err.report.max_rel_diff:.3g} > {err.report.tolerance:g}"
            ) from err


def export_tflite(ctx: ExportContext) -> Exported:
    if ctx.bundle is not None:
        return _export_tflite_bundle(ctx, ctx.bundle)
    calibration = ctx.int8_calibration().numpy() if ctx.precision == "int8" else None
    report = _via_keras(
        ctx,
        lambda keras_export, tf_model: keras_export.export_tflite(
            tf_model,
            ctx.staged,
            precision=ctx.precision,
            image_size=ctx.size,
            representative_data=calibration,
            verify_inputs=ctx.verify_inputs.numpy(),
            latency_runs=0,
        ),
    )
    notes = [
        f"converted from the Keras model (swiftformer.keras.models); LiteRT vs Keras: relative {report.max_rel_diff:.3g}",
        f"static input shape {ctx.static_shape()}",
    ]
    if calibration is not None:
        notes.append(f"int8: full-integer ops (float32 input and output), calibrated on {len(calibration)} images")
    return Exported(notes, report.input_shape)


STEM_WEIGHT = "swiftformer.patch_embed.patch_embedding.0.weight"  # the first convolution's, in the state dict


def _export_tflite_bundle(ctx: ExportContext, spec: BundleSpec) -> Exported:
    """The bundle (:mod:`.tflite_bundle`): converted from the Keras model with the normalization's scale in its
    first convolution, the TFLite Metadata and ``labels.txt`` inside (read back here), the GPU analyzer's verdict
    and, for int8, the input's and output's quantization in the manifest."""
    from . import tflite_bundle
    from .bundle import FOLDED_SCALE, INPUT_NAME, OUTPUT_NAME, metadata, scaled_weight

    keras_export = _keras_exporter(ctx)
    state = dict(ctx.model.state_dict())
    state[STEM_WEIGHT] = scaled_weight(state[STEM_WEIGHT], spec).float()
    spec.folded = FOLDED_SCALE  # the stem convolution zero-pads: the offset is subtracted in the graph
    calibration = ctx.int8_calibration().numpy() if ctx.precision == "int8" else None
    with _quiet():
        flatbuffer = keras_export.convert_tflite_bundle(_keras_model(ctx, state), spec, ctx.precision, calibration)
    info = metadata(spec, "")
    if "description" not in spec.info:
        info["description"] = tflite_bundle.description(spec, ctx.precision)
    flatbuffer = tflite_bundle.with_metadata(flatbuffer, spec, info)
    written = tflite_bundle.read_metadata(flatbuffer)  # what an app's reader will find
    packed = tflite_bundle.associated_files(flatbuffer)
    if written["name"] != info["name"] or list(packed) != ["labels.txt"]:
        raise ExportError(f"the TFLite Metadata did not read back: {written['name']!r}, files {list(packed)}")
    ctx.staged.write_bytes(flatbuffer)
    gpu = tflite_bundle.gpu_compatibility(flatbuffer)
    entries: dict[str, Any] = {
        "gpu_compatibility": gpu,
        "tflite_metadata": {
            "entry": tflite_bundle.METADATA_NAME,
            "min_parser_version": written["min_parser_version"],
            "associated_files": list(packed),
        },
    }
    notes = [
        f"bundle: input {INPUT_NAME} (1, {spec.size[0]}, {spec.size[1]}, 3) uint8 RGB (NHWC), output {OUTPUT_NAME} "
        f"(softmax); TFLite Metadata (name, description, version, author, license, RGB image, labels.txt as "
        f"TENSOR_AXIS_LABELS), labels.txt packed inside; converted from the Keras model",
        spec.normalization_note,
        f"GPU delegate ({gpu['analyzer']}): "
        + ("no incompatible op" if gpu["compatible"] else f"{len(gpu['incompatible_ops'])} incompatible op(s)"),
        *spec.notes,
    ]
    if ctx.precision == "fp16":
        notes.append("fp16: float16 weights (dequantized to float32 at load; the GPU delegate runs them in fp16)")
    if calibration is not None:
        found = tflite_bundle.quantization(flatbuffer)
        entries["quantization"] = found
        entries["output"] = {
            "name": OUTPUT_NAME,
            "dtype": "uint8",
            "what": "softmax probabilities, quantized: probability = scale * (value - zero_point)",
            "scale": found["output"]["scale"],
            "zero_point": found["output"]["zero_point"],
        }
        notes.append(
            f"int8: full-integer ops calibrated on {len(calibration)} images; input uint8 scale 1, zero point 0 (raw "
            f"pixels); output uint8 scale {found['output']['scale']:.6g}, zero point {found['output']['zero_point']} "
            "(the verification dequantizes it)"
        )
        if calibration.min() > 0 or calibration.max() < 255:
            notes.append("int8: one calibration image got a black and a white pixel (the input range 0..255)")
    return Exported(notes, [1, *spec.size, 3], entries)


def load_tflite(ctx: ExportContext) -> Runner:
    return _keras_exporter(ctx).TFLiteRunner(ctx.staged)


def export_savedmodel(ctx: ExportContext) -> Exported:
    report = _via_keras(
        ctx,
        lambda keras_export, tf_model: keras_export.export_saved_model(
            tf_model, ctx.staged, image_size=ctx.size, verify_inputs=ctx.verify_inputs.numpy(), latency_runs=0
        ),
    )
    notes = [
        "converted from the Keras model (swiftformer.keras.models); signature serving_default: "
        "pixel_values [None, C, None, None] float32 -> {'logits'}",
        f"reloaded SavedModel vs Keras, at two input sizes: relative {report.max_rel_diff:.3g}",
    ]
    return Exported(notes, report.input_shape)


def load_savedmodel(ctx: ExportContext) -> Runner:
    tf = _keras_exporter(ctx)._require_tf()
    serve = tf.saved_model.load(os.fspath(ctx.staged)).signatures["serving_default"]
    return lambda x: serve(pixel_values=tf.constant(x))["logits"].numpy()


__all__ = [
    "ExecuTorchRunner",
    "ExportContext",
    "Exported",
    "Runner",
    "export_aoti",
    "export_coreml",
    "export_executorch",
    "export_onnx",
    "export_openvino",
    "export_savedmodel",
    "export_tflite",
    "load_aoti",
    "load_coreml",
    "load_executorch",
    "load_onnx",
    "load_openvino",
    "load_savedmodel",
    "load_tflite",
]
