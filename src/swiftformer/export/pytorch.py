"""Export a PyTorch SwiftFormer classifier to deployment formats, verified against the eager model.

    swiftformer export --model MBZUAI/swiftformer-xs --format onnx --output xs.onnx
    swiftformer export --model runs/xs/best --format openvino --output xs-openvino --precision fp16
    swiftformer export --model xs --format executorch --output xs.pte --json      # random weights
    swiftformer export --model runs/xs/best --format tflite --precision int8 --calibration DATA/train --output xs.tflite

Every format exports the exact reparameterized model of :func:`swiftformer.inference.fuse` (BatchNorms,
layer scales and the two heads folded away: fewer, larger ops), whose single input is ``pixel_values``
(B, 3, H, W) float32 (normalized, as :class:`~swiftformer.SwiftFormerImageProcessor` makes them) and
single output ``logits`` (B, num_labels) float32.

========== ========================= ============================== =============================
format     artifact                  shapes                         verified in
========== ========================= ============================== =============================
onnx       one ``.onnx`` file        dynamic batch, height, width*  onnxruntime (CPU)
openvino   ``DIR/model.xml`` + .bin  dynamic batch, height, width   OpenVINO (CPU, explicit hint)
executorch ``.pte`` (XNNPACK)        static (1, 3, size, size)      ExecuTorch Python runtime
coreml     ``.mlpackage``            static (1, 3, size, size)      spec reload (predict: macOS)
aoti       ``.pt2`` (AOTInductor)    dynamic batch, static H×W      ``aoti_load_package``
tflite     ``.tflite``               static (1, 3, size, size)      LiteRT (via :mod:`.keras`)
savedmodel ``DIR/`` (TF SavedModel)  dynamic batch, height, width   TensorFlow (via :mod:`.keras`)
========== ========================= ============================== =============================

(*) ONNX fixes height and width for an export size below :func:`~swiftformer.inference.min_spatial_size`
(33 px with four stages: a 1×1 last stage specializes the graph); OpenVINO's IR stays dynamic. The
report's ``input_shape`` is read from the artifact.

``int8`` (ONNX: onnxruntime's static QDQ quantization, per-channel weights; TFLite: full-integer ops)
is calibrated on ``calibration`` images; without them, on the verification inputs (random unless
given), which is only good for checking the pipeline.

Each artifact is written to a temporary path beside the target, verified there against the logits of
the *original* eager model on ``verify_inputs``, and only then moved into place (:mod:`.common`: a
directory is swapped with the old one, which is then deleted): a failed export or a failed verification
never leaves a partial artifact behind, nor replaces a good one.

The optional runtimes are the ``export`` extra (``pip install .[export]``); TFLite needs ``.[tf]``.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ExportError, ExportVerificationError
from ..perf import time_calls
from .common import (
    FORMAT_PRECISIONS,
    FORMATS,
    FP32_TOLERANCE,
    PRECISIONS,
    REDUCED_TOLERANCE,
    TF_INSTALL_HINT,
    ExportReport,
    checked_report,
    compare,
    export_image_size,
    place,
    staging,
    target_path,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..modeling import SwiftFormerForImageClassification

INSTALL_HINT = "pip install .[export]  (or: pip install 'swiftformer[export]')"
# The package each format needs (import name, pip name).
_REQUIREMENTS = {
    "onnx": [("onnx", "onnx"), ("onnxscript", "onnxscript"), ("onnxruntime", "onnxruntime")],
    "openvino": [("openvino", "openvino")],
    "executorch": [("executorch", "executorch")],
    "coreml": [("coremltools", "coremltools")],
    "aoti": [],
    "tflite": [],
    "savedmodel": [],
}
STATIC_FORMATS = ("executorch", "coreml", "tflite", "aoti")  # fixed height and width
REFERENCE = "eager PyTorch model (fp32)"


# ------------------------------------------------------------------------------------------- helpers
def _require(fmt: str) -> None:
    """One clear ImportError naming the extra, before any heavy work."""
    missing = [pip for module, pip in _REQUIREMENTS[fmt] if importlib.util.find_spec(module) is None]
    if missing:
        raise ImportError(f"exporting to {fmt} needs {', '.join(missing)}: {INSTALL_HINT}")


def _import(module: str, fmt: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"exporting to {fmt} needs {module.split('.')[0]} ({err}): {INSTALL_HINT}") from None


def _batched(run: Callable[[np.ndarray], Any], inputs: np.ndarray, batch: int | None) -> np.ndarray:
    """Run ``inputs`` whole (``batch=None``: dynamic batch) or ``batch`` samples at a time."""
    import numpy as np

    if batch is None:
        return np.asarray(run(inputs))
    return np.concatenate([np.asarray(run(inputs[i : i + batch])) for i in range(0, len(inputs), batch)])


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


# ------------------------------------------------------------------------------------------- formats
@dataclass
class _Context:
    """Everything a format's exporter needs; it returns ``(run, batch, notes, input_shape)``."""

    model: Any  # the original classifier (eval, float32, CPU)
    fused: Any  # inference.fuse(model)
    precision: str
    size: tuple[int, int]
    opset: int
    staged: Path
    channels: int
    calibration: torch.Tensor | None = None  # (N, C, H, W) float32, for int8

    def example(self, batch: int) -> torch.Tensor:
        import torch

        gen = torch.Generator().manual_seed(1234)
        return torch.randn(batch, self.channels, *self.size, generator=gen)

    def dims(self, spatial: bool) -> dict[int, Any]:
        from ..inference import export_dims

        return export_dims(self.model.config, self.size, spatial)  # static H, W below the minimum size


def _named_shape(dims: list[int | None]) -> list[Any]:
    """An artifact's input shape as reported: each dynamic dimension (``None``) by its name."""
    names = ("batch", "channels", "height", "width")
    return [names[i] if d is None else int(d) for i, d in enumerate(dims)]


def _static(ctx: _Context) -> str:
    return f"(1, {ctx.channels}, {ctx.size[0]}, {ctx.size[1]})"


def _export_onnx(ctx: _Context) -> tuple[Callable, int | None, list[str], list[Any]]:
    import torch

    onnx = _import("onnx", "onnx")
    ort = _import("onnxruntime", "onnx")
    module = _with_precision(ctx.fused, "fp32" if ctx.precision == "int8" else ctx.precision)  # int8: quantized below
    with _quiet(), contextlib.redirect_stdout(sys.stderr):  # the exporter's progress lines stay off stdout
        program = torch.onnx.export(
            module,
            (ctx.example(2),),
            dynamo=True,
            opset_version=ctx.opset,
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_shapes={"pixel_values": ctx.dims(spatial=True)},
            verbose=False,
        )
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = "swiftformer.config", ctx.model.config.to_json_string()
    # One self-contained file: weights inline, never an external-data file beside it.
    onnx.save(proto, os.fspath(ctx.staged), save_as_external_data=False)
    strays = [p.name for p in ctx.staged.parent.iterdir() if p != ctx.staged]
    if strays:
        raise ExportError(f"the ONNX export wrote unexpected extra files {strays}")
    onnx.checker.check_model(os.fspath(ctx.staged))
    if ctx.precision == "int8":
        _quantize_onnx(ctx)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(os.fspath(ctx.staged), options, providers=["CPUExecutionProvider"])
    ops = sorted({n.op_type for n in proto.graph.node})
    notes = [
        f"opset {ctx.opset}; onnxruntime {ort.__version__} CPUExecutionProvider; {len(proto.graph.node)} nodes"
        + ("; native Gelu" if "Gelu" in ops else "")
    ]
    if ctx.opset < 20:
        notes.append("opset < 20: Gelu is decomposed into elementary ops (slower in onnxruntime)")
    if ctx.precision == "fp16":
        notes.append("fp16 weights and arithmetic; pixel_values and logits stay float32 (casts at the ends)")
    if ctx.precision == "int8":
        notes.append(
            f"int8: onnxruntime static quantization (QDQ, per-channel int8 weights, uint8 activations), "
            f"calibrated on {len(ctx.calibration)} images"
        )
    # The shape as exported: height and width are static below the dynamic minimum size (inference.export_dims).
    dims = [d.dim_value if d.HasField("dim_value") else None for d in proto.graph.input[0].type.tensor_type.shape.dim]
    return (lambda x: session.run(["logits"], {"pixel_values": x})[0]), None, notes, _named_shape(dims)


def _quantize_onnx(ctx: _Context) -> None:
    """Replace the float32 model at ``ctx.staged`` by its int8 QDQ version, calibrated on ``ctx.calibration``."""
    _import("onnxruntime.quantization", "onnx")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Images(CalibrationDataReader):
        def __init__(self, images: np.ndarray) -> None:
            self.batches = iter([{"pixel_values": images[i : i + 8]} for i in range(0, len(images), 8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    float_model = ctx.staged.with_name("float32.onnx")
    ctx.staged.replace(float_model)
    with _quiet(), _silence_logging():
        quantize_static(
            os.fspath(float_model),
            os.fspath(ctx.staged),
            Images(ctx.calibration.numpy()),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    float_model.unlink()


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


def _export_openvino(ctx: _Context) -> tuple[Callable, int | None, list[str], list[Any]]:
    from ..inference import openvino_model

    ov = _import("openvino", "openvino")
    with _quiet():  # from torch.export (no TorchScript): dynamic batch, height and width
        ov_model, notes = openvino_model(ctx.fused, ctx.example(2), ctx.dims(spatial=True))
    ctx.staged.mkdir()
    ov.save_model(ov_model, os.fspath(ctx.staged / "model.xml"), compress_to_fp16=ctx.precision == "fp16")
    core = ov.Core()
    default_hint = core.get_property("CPU", "INFERENCE_PRECISION_HINT")
    default_hint = default_hint.get_type_name() if hasattr(default_hint, "get_type_name") else str(default_hint)
    hint = "bf16" if ctx.precision == "bf16" else "f32"
    saved = core.read_model(os.fspath(ctx.staged / "model.xml"))
    compiled = core.compile_model(saved, "CPU", {"INFERENCE_PRECISION_HINT": hint})
    # The IR's own shape: OpenVINO keeps height and width dynamic even where torch.export fixed them.
    dims = [None if d.is_dynamic else d.get_length() for d in saved.inputs[0].get_partial_shape()]
    request = compiled.create_infer_request()
    notes.append(
        f"OpenVINO {ov.get_version().split('-')[0]} CPU, compiled with INFERENCE_PRECISION_HINT={hint} "
        f"(this CPU's default is {default_hint}: pass the hint explicitly when loading)"
    )
    if ctx.precision == "fp16":
        notes.append("fp16-compressed weights (decompressed to f32 at load on CPU)")
    if ctx.precision == "bf16":
        notes.append("the IR holds f32 weights; bf16 is the runtime hint {'INFERENCE_PRECISION_HINT': 'bf16'}")

    def run(x: np.ndarray) -> np.ndarray:
        return request.infer({0: x})[0].copy()

    return run, None, notes, _named_shape(dims)


def _sum_spatial(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 1, 1), the sum over positions as H·W × a spatial mean (XNNPACK has a mean, no sum)."""
    return x.mean(dim=(2, 3), keepdim=True) * (x.shape[2] * x.shape[3])


def _xnnpack_model(fused: Any) -> Any:
    """The fused model rewritten so that XNNPACK takes every op (one delegated graph, no portable kernels).

    The same function in real arithmetic: the query/key conv is split into two convs (no split op),
    L2 norms over channels are a 1×1 conv with a row of ones then sqrt (no pow/sum), token sums and the
    final pooling are keep-dim spatial means (no sum, no 2-D mean), and there is no channels-last copy
    at the input.
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
            self.query = pointwise_conv(block.qk.weight[:d], block.qk.bias[:d])
            self.key = pointwise_conv(block.qk.weight[d:], block.qk.bias[d:])
            self.w_g = pointwise_conv(block.w_g.reshape(1, d, 1, 1), None)
            self.sum_sq = pointwise_conv(torch.ones(1, d, 1, 1), None)

        def normalize(self, x: torch.Tensor) -> torch.Tensor:  # F.normalize(x, dim=1), eps 1e-12
            return x / torch.sqrt(torch.clamp(self.sum_sq(x * x), min=1e-24))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.local(x)
            query, key = self.normalize(self.query(x)), self.normalize(self.key(x))
            if self.l2:  # token weights (q·w_g) L2-normalized over the tokens
                scores = self.w_g(query)  # (B, 1, H, W)
                weights = scores / torch.sqrt(torch.clamp(_sum_spatial(scores * scores), min=1e-24))
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


def _export_executorch(ctx: _Context) -> tuple[Callable, int | None, list[str], list[Any]]:
    import torch

    exir = _import("executorch.exir", "executorch")
    xnnpack = _import("executorch.backends.xnnpack.partition.xnnpack_partitioner", "executorch")
    runtime = _import("executorch.runtime", "executorch")
    notes = []
    try:
        module = _xnnpack_model(copy.deepcopy(ctx.fused))
    except (AttributeError, TypeError) as err:  # the fused layers changed shape: lower them as they are
        notes.append(f"exported the fused model as is (XNNPACK rewrite unavailable: {err})")
        # XNNPACK's layout pass wants NCHW-contiguous weights (fuse() makes them channels-last).
        module = copy.deepcopy(ctx.fused).to(memory_format=torch.contiguous_format)
    with _quiet():
        exported = torch.export.export(module, (ctx.example(1),))
        edge = exir.to_edge_transform_and_lower(exported, partitioner=[xnnpack.XnnpackPartitioner()])
        with contextlib.suppress(Exception):
            from executorch.devtools.backend_debug import get_delegation_info

            info = get_delegation_info(edge.exported_program().graph_module)
            notes.append(
                f"XNNPACK runs {info.num_delegated_nodes} ops in {info.num_delegated_subgraphs} graph(s); "
                f"{info.num_non_delegated_nodes} ops outside (portable kernels, constants)"
            )
        program = edge.to_executorch()
    with open(ctx.staged, "wb") as handle:
        program.write_to_file(handle)
    method = runtime.Runtime.get().load_program(ctx.staged).load_method("forward")
    notes.append(f"static input shape {_static(ctx)}: batch 1 at the export size")

    def run(x: np.ndarray) -> np.ndarray:
        return method.execute([torch.from_numpy(x)])[0].numpy()

    return run, 1, notes, [1, ctx.channels, *ctx.size]


def _import_coremltools() -> Any:
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
            return _import("coremltools", "coreml")
    finally:
        logger.setLevel(level)
        if hide and sys.modules.get("tensorflow", 0) is None:
            del sys.modules["tensorflow"]


def _export_coreml(ctx: _Context) -> tuple[Callable | None, int | None, list[str], list[Any]]:
    import torch

    ct = _import_coremltools()
    fused = copy.deepcopy(ctx.fused).to(memory_format=torch.contiguous_format)
    example = ctx.example(1)
    precision = ct.precision.FLOAT16 if ctx.precision == "fp16" else ct.precision.FLOAT32
    with _quiet():
        exported = torch.export.export(fused, (example,)).run_decompositions({})
        try:
            mlmodel = ct.convert(
                exported,
                convert_to="mlprogram",
                compute_precision=precision,
                inputs=[ct.TensorType(name="pixel_values", shape=tuple(example.shape))],
                outputs=[ct.TensorType(name="logits")],
            )
        except Exception as err:
            raise ExportError(
                f"coremltools {ct.__version__} could not convert the model: {type(err).__name__}: {err}"
            ) from err
    mlmodel.short_description = "SwiftFormer image classifier: normalized pixel_values (NCHW) -> logits"
    mlmodel.user_defined_metadata["swiftformer.config"] = ctx.model.config.to_json_string()
    mlmodel.save(os.fspath(ctx.staged))
    # Prediction needs macOS; everywhere else check that the saved package reloads and describe it.
    reloaded = ct.models.MLModel(os.fspath(ctx.staged), skip_model_load=sys.platform != "darwin")
    spec = reloaded.get_spec()

    def describe(feature: Any) -> str:
        array = feature.type.multiArrayType
        dtype = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType).lower()
        return f"{feature.name} {dtype} {list(array.shape)}"

    compute = "float16" if ctx.precision == "fp16" else "float32"
    notes = [
        f"coremltools {ct.__version__}, mlprogram (spec version {spec.specificationVersion}), compute precision {compute}",
        "inputs: " + ", ".join(describe(f) for f in spec.description.input),
        "outputs: " + ", ".join(describe(f) for f in spec.description.output),
        f"static input shape {_static(ctx)}",
    ]
    if sys.platform != "darwin":
        notes.append("not executed: Core ML prediction needs macOS (the saved spec was reloaded and checked)")
        return None, 1, notes, [1, ctx.channels, *ctx.size]

    def run(x: np.ndarray) -> np.ndarray:
        return reloaded.predict({"pixel_values": x})["logits"]

    return run, 1, notes, [1, ctx.channels, *ctx.size]


def _export_aoti(ctx: _Context) -> tuple[Callable, int | None, list[str], list[Any]]:
    import torch
    import torch._inductor

    module = _with_precision(ctx.fused, ctx.precision)
    with _quiet():
        exported = torch.export.export(module, (ctx.example(2),), dynamic_shapes=(ctx.dims(spatial=False),))
        # freezing constant-folds the weights into prepacked oneDNN layouts, as optimize_for_inference
        # does: 1.5x the batch-1 speed and 1.4x the batch-32 throughput of the unfrozen package here.
        torch._inductor.aoti_compile_and_package(
            exported, package_path=os.fspath(ctx.staged), inductor_configs={"freezing": True}
        )
    # The point of AOTInductor: nothing compiles at load time. Measure load + first call.
    first = ctx.example(1)
    loaded = []

    def load_and_call() -> None:
        loaded.append(torch._inductor.aoti_load_package(os.fspath(ctx.staged)))
        with torch.inference_mode():
            loaded[-1](first)

    (cold,) = time_calls(load_and_call, 1)
    runner = loaded[0]
    notes = [
        f"load + first call: {1e3 * cold:.0f} ms (no compilation at load)",
        f"dynamic batch; height and width fixed at {ctx.size[0]}x{ctx.size[1]}; needs this torch version and CPU type",
    ]
    if ctx.precision == "bf16":
        notes.append("bf16 weights and arithmetic; pixel_values and logits stay float32")

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return runner(torch.from_numpy(x)).numpy()

    return run, None, notes, ["batch", ctx.channels, *ctx.size]


def _keras_model(ctx: _Context, fmt: str) -> tuple[Any, Any]:
    """(:mod:`swiftformer.export.keras`, the Keras classifier holding ``ctx.model``'s weights)."""
    if importlib.util.find_spec("swiftformer.export.keras") is None:
        raise ImportError(f"exporting to {fmt} needs the TensorFlow exporter and TensorFlow: {TF_INSTALL_HINT}")
    import torch._dynamo  # noqa: F401 - before TensorFlow (see _import_coremltools)

    try:
        keras_export = importlib.import_module(".keras", __package__)
        keras_models = importlib.import_module("..keras.models", __package__)
        keras_export._require_tf()
    except ImportError as err:
        raise ImportError(
            f"exporting to {fmt} needs TensorFlow, Keras 3 and LiteRT ({err}): {TF_INSTALL_HINT}"
        ) from None
    tf_model = keras_models.TFSwiftFormerForImageClassification(ctx.model.config)
    tf_model.load_state_dict(ctx.model.state_dict(), source="the PyTorch model")
    return keras_export, tf_model


def _via_keras(ctx: _Context, fmt: str, write: Callable[[Any, Any], ExportReport]) -> tuple[Any, ExportReport]:
    """Write ``ctx.staged`` with ``write(keras_export, tf_model)`` (an exporter of :mod:`.keras`, which
    checks the artifact against the Keras model); its disagreement is a conversion failure here."""
    keras_export, tf_model = _keras_model(ctx, fmt)
    with _quiet():
        try:
            return keras_export, write(keras_export, tf_model)
        except ExportVerificationError as err:  # its report describes a staged file that is gone
            raise ExportError(
                f"the {fmt} artifact disagrees with the Keras model it was converted from: relative "
                f"{err.report.max_rel_diff:.3g} > {err.report.tolerance:g}"
            ) from err


def _export_tflite(ctx: _Context, inputs: torch.Tensor) -> tuple[Callable, int | None, list[str], list[Any]]:
    calibration = ctx.calibration.numpy() if ctx.precision == "int8" else None
    keras_export, report = _via_keras(
        ctx,
        "tflite",
        lambda keras_export, tf_model: keras_export.export_tflite(
            tf_model,
            ctx.staged,
            quantization=ctx.precision,
            image_size=ctx.size,
            representative_data=calibration,
            verify_inputs=inputs.numpy(),
            latency_runs=0,
        ),
    )
    notes = [
        f"converted from the Keras model (swiftformer.keras.models); LiteRT vs Keras: relative {report.max_rel_diff:.3g}",
        f"static input shape {_static(ctx)}",
    ]
    if calibration is not None:
        notes.append(f"int8: full-integer ops (float32 input and output), calibrated on {len(calibration)} images")
    return keras_export.TFLiteRunner(ctx.staged), 1, notes, report.input_shape


def _export_savedmodel(ctx: _Context, inputs: torch.Tensor) -> tuple[Callable, int | None, list[str], list[Any]]:
    _, report = _via_keras(
        ctx,
        "savedmodel",
        lambda keras_export, tf_model: keras_export.export_saved_model(
            tf_model, ctx.staged, image_size=ctx.size, verify_inputs=inputs.numpy(), latency_runs=0
        ),
    )
    import tensorflow as tf

    serve = tf.saved_model.load(os.fspath(ctx.staged)).signatures["serving_default"]
    notes = [
        "converted from the Keras model (swiftformer.keras.models); signature serving_default: "
        "pixel_values [None, C, None, None] float32 -> {'logits'}",
        f"reloaded SavedModel vs Keras, at two input sizes: relative {report.max_rel_diff:.3g}",
    ]
    return (lambda x: serve(pixel_values=tf.constant(x))["logits"].numpy()), None, notes, report.input_shape


def _convert(
    format: str, ctx: _Context, verify_inputs: torch.Tensor
) -> tuple[Callable | None, int | None, list[str], list[Any]]:
    """Write the artifact to ``ctx.staged``; return its runner, batch (None: any), notes, input shape."""
    try:
        if format == "tflite":
            return _export_tflite(ctx, verify_inputs)
        if format == "savedmodel":
            return _export_savedmodel(ctx, verify_inputs)
        exporter = {
            "onnx": _export_onnx,
            "openvino": _export_openvino,
            "executorch": _export_executorch,
            "coreml": _export_coreml,
            "aoti": _export_aoti,
        }[format]
        return exporter(ctx)
    except (ImportError, ValueError, ExportError):
        raise
    except Exception as err:  # one line for the CLI; the cause keeps the converter's traceback
        message = (str(err).strip().splitlines() or [""])[0][:500]
        raise ExportError(f"exporting to {format} failed: {type(err).__name__}: {message}") from err


# ------------------------------------------------------------------------------------------- the API
def export(
    model: SwiftFormerForImageClassification,
    output: str | os.PathLike,
    format: str,
    *,
    precision: str = "fp32",
    image_size: int | tuple[int, int] | None = None,
    verify_inputs: torch.Tensor | None = None,
    calibration: torch.Tensor | None = None,
    opset: int = 20,
    tolerance: float | None = None,
    latency_runs: int = 20,
) -> ExportReport:
    """Export the reparameterized ``model`` as ``format``, verify it, then write ``output`` atomically.

    Args:
        model: A classifier (left unchanged; its weights are copied).
        output: The file (``.onnx``, ``.pte``, ``.pt2``, ``.tflite``) or directory (OpenVINO: holds
            ``model.xml`` and ``model.bin``; Core ML: the ``.mlpackage``). A path without a suffix gets
            the format's (``digits`` → ``digits.onnx``), unless ``digits`` exists. Only an earlier
            export of ``format`` is ever replaced (:func:`~swiftformer.export.common.target_path`).
        format: One of :data:`FORMATS`.
        precision: ``"fp32"``, or per :data:`FORMAT_PRECISIONS` ``"fp16"`` / ``"bf16"`` / ``"int8"``.
        image_size: The export's input size (static formats) and the size of the default verification
            images: an int or (height, width); default the size of ``verify_inputs``, else the config's.
        verify_inputs: (N, C, H, W) float32 pixel values to compare on; default 8 seeded random images.
        calibration: (N, C, H, W) float32 pixel values of real images to calibrate ``int8`` on (a few
            dozen to a few hundred; a folder's: :func:`~swiftformer.export.load_calibration_images`);
            default the verification inputs, with a note in the report.
        opset: ONNX opset (at least 18; 20 and later have a native ``Gelu``).
        tolerance: Largest allowed max|Δlogit| / max|logit|; default per format and precision
            (:data:`FP32_TOLERANCE`, :data:`REDUCED_TOLERANCE`).
        latency_runs: Timed batch-1 runs for ``latency_ms`` (0: skip).

    Raises:
        ValueError: Unknown format or precision, bad sizes, or ``output`` is not an earlier export.
        ImportError: The format's package is missing (names ``pip install .[export]``).
        ExportError: The conversion failed; :class:`ExportVerificationError` (with ``.report``) when
            the exported model disagrees beyond ``tolerance`` — in both cases nothing is written.
    """
    import torch

    from ..inference import fuse
    from ..modeling import SwiftFormerForImageClassification

    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if precision not in FORMAT_PRECISIONS[format]:
        raise ValueError(
            f"precision for {format} must be one of {', '.join(FORMAT_PRECISIONS[format])}, got {precision!r}"
            + ("" if precision in PRECISIONS else f" (known precisions: {', '.join(PRECISIONS)})")
        )
    if not isinstance(model, SwiftFormerForImageClassification):
        raise TypeError(f"expected a SwiftFormerForImageClassification, got {type(model).__name__}")
    if format == "onnx" and opset < 18:
        raise ValueError(
            f"opset must be at least 18 (torch.onnx's exporter; 20 and later have a native Gelu), got {opset}"
        )
    _require(format)
    target = target_path(output, format)

    # A float32 CPU copy in eval mode (the caller's model keeps its mode, dtype and device).
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in model.parameters()) or model.training:
        model = copy.deepcopy(model).float().cpu().eval()
    channels = model.config.num_channels
    size = export_image_size(model, image_size, verify_inputs)
    if min(model.stage_shapes(*size)[-1]) < 1:
        raise ValueError(f"an input of {size[0]}x{size[1]} is too small for this model's downsampling")
    if verify_inputs is None:
        gen = torch.Generator().manual_seed(0)
        verify_inputs = torch.randn(8, channels, *size, generator=gen)
    verify_inputs = torch.as_tensor(verify_inputs).detach().float().cpu()
    if verify_inputs.ndim == 3:
        verify_inputs = verify_inputs[None]
    if verify_inputs.ndim != 4 or verify_inputs.shape[1] != channels or len(verify_inputs) == 0:
        raise ValueError(f"verify_inputs must have shape (N, {channels}, H, W), got {tuple(verify_inputs.shape)}")
    if format in STATIC_FORMATS and tuple(verify_inputs.shape[2:]) != size:
        raise ValueError(
            f"{format} has a fixed input size {size[0]}x{size[1]}; verify_inputs are "
            f"{verify_inputs.shape[2]}x{verify_inputs.shape[3]}"
        )

    notes: list[str] = []
    if precision == "int8":
        if calibration is None:
            calibration = verify_inputs
            notes.append(
                "int8 calibrated on the verification inputs: pass calibration images (--calibration DIR) "
                "for a model that keeps its accuracy"
            )
        calibration = torch.as_tensor(calibration).detach().float().cpu()
        if calibration.ndim != 4 or tuple(calibration.shape[1:]) != (channels, *size) or len(calibration) == 0:
            raise ValueError(
                f"calibration must have shape (N, {channels}, {size[0]}, {size[1]}), got {tuple(calibration.shape)}"
            )

    with torch.no_grad():
        expected = model(verify_inputs).logits.float()
        fused = fuse(model)
    if tolerance is None:
        tolerance = FP32_TOLERANCE[format] if precision == "fp32" else REDUCED_TOLERANCE[precision]

    with staging(target, format) as staged:
        ctx = _Context(model, fused, precision, size, opset, staged, channels, calibration)
        inputs = verify_inputs.numpy()
        one = inputs[:1].copy()
        with torch.no_grad():
            run, batch, format_notes, shape = _convert(format, ctx, verify_inputs)
            report = checked_report(
                staged,
                target,
                None if run is None else compare(expected, _batched(run, inputs, batch)),
                None if run is None else (lambda: run(one)),
                latency_runs,
                format=format,
                precision=precision,
                input_shape=shape,
                num_verify_inputs=len(inputs),
                reference=REFERENCE,
                tolerance=tolerance,
                notes=format_notes + notes,
            )
            run = None  # release the runtime's handles on the staged artifact before moving it
        place(staged, target)
    return report


__all__ = ["export"]
