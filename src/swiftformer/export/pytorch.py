"""Export a SwiftFormer classifier to deployment formats, verified against the PyTorch model.

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
onnx       one ``.onnx`` file        dynamic batch, height, width   onnxruntime (CPU)
openvino   ``DIR/model.xml`` + .bin  dynamic batch, height, width   OpenVINO (CPU, explicit hint)
executorch ``.pte`` (XNNPACK)        static (1, 3, size, size)      ExecuTorch Python runtime
coreml     ``.mlpackage``            static (1, 3, size, size)      spec reload (predict: macOS)
aoti       ``.pt2`` (AOTInductor)    dynamic batch, static H×W      ``aoti_load_package``
tflite     ``.tflite``               static (1, 3, size, size)      LiteRT (via ``export_tf``)
savedmodel ``DIR/`` (TF SavedModel)  dynamic batch, height, width   TensorFlow (reloaded)
========== ========================= ============================== =============================

``int8`` (ONNX: onnxruntime's static QDQ quantization, per-channel weights; TFLite: full-integer ops)
is calibrated on ``calibration`` images; without them, on the verification inputs (random unless
given), which is only good for checking the pipeline.

Each artifact is written to a temporary path beside the target, verified there against the logits of
the *original* eager model on ``verify_inputs``, and only then moved into place (``os.replace``; a
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
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ExportError, ExportVerificationError
from ..runtime import median_ms

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..modeling import SwiftFormerForImageClassification

FORMATS = ("onnx", "openvino", "executorch", "coreml", "aoti", "tflite", "savedmodel")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# Precisions each format can produce (fp16/bf16: weights and arithmetic; int8: static quantization
# calibrated on images; input and output stay float32).
FORMAT_PRECISIONS: dict[str, tuple[str, ...]] = {
    "onnx": ("fp32", "fp16", "int8"),
    "openvino": ("fp32", "fp16", "bf16"),
    "executorch": ("fp32",),
    "coreml": ("fp32", "fp16"),
    "aoti": ("fp32", "bf16"),
    "tflite": ("fp32", "fp16", "int8"),
    "savedmodel": ("fp32",),
}
# What the output path gets when it has no suffix ("" = a directory).
EXTENSIONS = {
    "onnx": ".onnx",
    "openvino": "",
    "executorch": ".pte",
    "coreml": ".mlpackage",
    "aoti": ".pt2",
    "tflite": ".tflite",
    "savedmodel": "",
}
DIRECTORY_FORMATS = ("openvino", "coreml", "savedmodel")
# Default tolerance on max|Δlogit| / max|logit| against the eager float32 model. float32 runtimes that
# compute the same graph agree to ~1e-6; ExecuTorch's XNNPACK and TFLite use other kernels (1e-4).
# Reduced precisions are only checked for gross errors (layout, NaN): read their top-1 agreement.
FP32_TOLERANCE = {
    "onnx": 1e-5,
    "openvino": 1e-5,
    "aoti": 1e-5,
    "executorch": 1e-4,
    "coreml": 1e-4,
    "tflite": 1e-4,
    "savedmodel": 1e-4,
}
REDUCED_TOLERANCE = {"fp16": 5e-2, "bf16": 1e-1, "int8": 2.5e-1}
INSTALL_HINT = "pip install .[export]  (or: pip install 'swiftformer[export]')"
TF_INSTALL_HINT = "pip install .[tf]  (or: pip install 'swiftformer[tf]')"
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


@dataclass
class ExportReport:
    """What an export wrote and how it compares with the eager PyTorch model.

    ``max_abs_diff`` is max |exported − eager| over the logits of the verification inputs (eager: the
    original, unfused float32 model), ``max_rel_diff`` that divided by max |eager logit|,
    ``top1_agreement`` the fraction of inputs whose arg-max class agrees, ``latency_ms`` the median
    batch-1 time in the target runtime (``None`` where it cannot run here, e.g. Core ML off macOS).
    The diffs are ``None`` when the artifact cannot be executed here.
    """

    path: str
    format: str
    precision: str
    size_mb: float
    max_abs_diff: float | None
    max_rel_diff: float | None
    top1_agreement: float | None
    latency_ms: float | None
    notes: list[str] = field(default_factory=list)
    tolerance: float | None = None
    input_shape: list[Any] = field(default_factory=list)
    num_verify_inputs: int = 0

    @property
    def passed(self) -> bool:
        """Within tolerance (NaN fails), or not executable here (nothing to compare)."""
        if self.max_rel_diff is None or self.tolerance is None:
            return True
        return self.max_rel_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}

    def summary(self) -> str:
        def num(value: float | None, fmt: str) -> str:
            return "n/a" if value is None else format(value, fmt)

        shape = "x".join(str(d) for d in self.input_shape)
        lines = [
            f"{self.format} ({self.precision}) -> {self.path}  [{self.size_mb:.2f} MB]",
            f"  input pixel_values {shape} float32 -> logits",
            f"  vs eager PyTorch fp32 on {self.num_verify_inputs} inputs: max|diff| {num(self.max_abs_diff, '.3g')}, "
            f"relative {num(self.max_rel_diff, '.3g')} (tolerance {num(self.tolerance, 'g')}), "
            "top-1 agreement " + ("n/a" if self.top1_agreement is None else f"{100 * self.top1_agreement:.1f}%"),
            f"  latency (batch 1, median): {num(self.latency_ms, '.2f')} ms",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        lines.append("  verification: " + ("passed" if self.passed else "FAILED"))
        return "\n".join(lines)


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


def _image_size(model: Any, image_size: Any, verify_inputs: Any) -> tuple[int, int]:
    if image_size is None and verify_inputs is not None:
        return int(verify_inputs.shape[-2]), int(verify_inputs.shape[-1])
    size = model.config.image_size if image_size is None else image_size
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    return size  # type: ignore[return-value]


def _size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    return path.stat().st_size / 1e6


@contextlib.contextmanager
def _staging(target: Path, name: str) -> Iterator[Path]:
    """A fresh temporary folder beside ``target`` holding the path ``name`` to write the artifact to.

    The folder (and whatever is left in it) is deleted when the block exits; :func:`_place` moves the
    artifact out of it first on success.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield folder / name
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# The file that marks a directory as an earlier export of that format (anything else is never replaced).
DIRECTORY_MARKERS = {"openvino": "model.xml", "coreml": "Manifest.json", "savedmodel": "saved_model.pb"}


def _check_replaceable(target: Path, format: str) -> None:
    """Refuse to overwrite anything but an earlier export of ``format``: a typo in ``--output`` must not
    replace a model folder, a folder of other files, or a weights file."""
    if not target.exists():
        return
    if format in DIRECTORY_FORMATS:
        if not (target / DIRECTORY_MARKERS[format]).is_file():
            raise ValueError(
                f"{target} exists and is not an earlier {format} export (it has no "
                f"{DIRECTORY_MARKERS[format]}); refusing to replace it: delete it or choose another output"
            )
    elif target.suffix.lower() != EXTENSIONS[format]:
        raise ValueError(
            f"{target} exists and is not a {EXTENSIONS[format]} file; refusing to overwrite it with the "
            f"{format} export: delete it or choose another output"
        )


def _fsync_tree(path: Path) -> None:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())


def _place(staged: Path, target: Path) -> None:
    """Move a verified artifact over ``target`` atomically (a file by ``os.replace``; a directory by
    renaming the old one away, renaming the new one in, then deleting the old one)."""
    from ..io.files import replace_path

    _fsync_tree(staged)
    replace_path(staged, target)


def _compare(expected: torch.Tensor, actual: Any) -> tuple[float, float, float]:
    import numpy as np
    import torch

    actual = torch.as_tensor(np.asarray(actual, dtype=np.float32)).reshape(expected.shape).double()
    expected = expected.double()
    max_abs = (actual - expected).abs().max().item()
    if math.isnan(max_abs):
        max_abs = math.inf
    rel = max_abs / max(expected.abs().max().item(), 1e-30)
    top1 = (actual.argmax(-1) == expected.argmax(-1)).double().mean().item()
    return max_abs, rel, top1


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


def _dynamic_shape(ctx: _Context) -> list[Any]:
    """The input shape of a dynamic export as reported: named dims, or the size when it had to be static."""
    return ["batch", ctx.channels, *(("height", "width") if 2 in ctx.dims(spatial=True) else ctx.size)]


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
    return (lambda x: session.run(["logits"], {"pixel_values": x})[0]), None, notes, _dynamic_shape(ctx)


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
    compiled = core.compile_model(
        core.read_model(os.fspath(ctx.staged / "model.xml")), "CPU", {"INFERENCE_PRECISION_HINT": hint}
    )
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

    return run, None, notes, _dynamic_shape(ctx)


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
    first = torch.from_numpy(ctx.example(1).numpy())
    start = time.perf_counter()
    runner = torch._inductor.aoti_load_package(os.fspath(ctx.staged))
    with torch.inference_mode():
        runner(first)
    cold = time.perf_counter() - start
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
    """(swiftformer.export.keras, the Keras classifier holding ``ctx.model``'s weights)."""
    if importlib.util.find_spec("swiftformer.export.keras") is None:
        raise ImportError(f"exporting to {fmt} needs the TensorFlow exporter and TensorFlow: {TF_INSTALL_HINT}")
    import torch._dynamo  # noqa: F401 - before TensorFlow (see _import_coremltools)

    try:
        export_tf = importlib.import_module(".keras", __package__)
        modeling_tf = importlib.import_module("..keras.models", __package__)
        export_tf._require_tf()
    except ImportError as err:
        raise ImportError(
            f"exporting to {fmt} needs TensorFlow, Keras 3 and LiteRT ({err}): {TF_INSTALL_HINT}"
        ) from None
    tf_model = modeling_tf.TFSwiftFormerForImageClassification(ctx.model.config)
    tf_model.load_state_dict(ctx.model.state_dict(), source="the PyTorch model")
    return export_tf, tf_model


def _export_tflite(ctx: _Context, inputs: torch.Tensor) -> tuple[Callable, int | None, list[str], list[Any]]:
    export_tf, tf_model = _keras_model(ctx, "tflite")
    quantization = {"fp32": "float32", "fp16": "float16", "int8": "int8"}[ctx.precision]
    calibration = ctx.calibration.numpy() if ctx.precision == "int8" else None
    with _quiet():
        try:
            report = export_tf.export_tflite(
                tf_model,
                ctx.staged,
                quantization=quantization,
                image_size=ctx.size,
                representative_data=calibration,
                verify_inputs=inputs.numpy(),
                latency_runs=0,
            )
        except export_tf.ExportError as err:  # LiteRT disagrees with the Keras model
            raise ExportError(str(err)) from err
    runner = export_tf.TFLiteRunner(ctx.staged)
    notes = [
        f"converted from the Keras model (swiftformer.modeling_tf); LiteRT vs Keras: relative {report.rel_diff:.3g}",
        f"static input shape {_static(ctx)}",
    ]
    if calibration is not None:
        notes.append(f"int8: full-integer ops (float32 input and output), calibrated on {len(calibration)} images")
    return runner, 1, notes, [1, ctx.channels, *ctx.size]


def _export_savedmodel(ctx: _Context, inputs: torch.Tensor) -> tuple[Callable, int | None, list[str], list[Any]]:
    export_tf, tf_model = _keras_model(ctx, "savedmodel")
    import tensorflow as tf

    with _quiet():
        try:
            export_tf.export_saved_model(
                tf_model, ctx.staged, image_size=ctx.size, verify_inputs=inputs.numpy(), latency_runs=0
            )
        except export_tf.ExportError as err:
            raise ExportError(str(err)) from err
    serve = tf.saved_model.load(os.fspath(ctx.staged)).signatures["serving_default"]
    notes = [
        (
            "converted from the Keras model (swiftformer.modeling_tf); signature serving_default: "
            "pixel_values [None, C, None, None] float32 -> {'logits'}"
        )
    ]
    return (
        (lambda x: serve(pixel_values=tf.constant(x))["logits"].numpy()),
        None,
        notes,
        ["batch", ctx.channels, "height", "width"],
    )


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


def _verify(
    run: Callable | None, batch: int | None, verify_inputs: torch.Tensor, expected: torch.Tensor, latency_runs: int
) -> tuple[float | None, float | None, float | None, float | None]:
    """(max_abs_diff, max_rel_diff, top1_agreement, latency_ms), all None when ``run`` is None."""
    if run is None:
        return None, None, None, None
    inputs = verify_inputs.numpy()
    max_abs, rel, top1 = _compare(expected, _batched(run, inputs, batch))
    one = inputs[:1].copy()
    return max_abs, rel, top1, median_ms(lambda: run(one), latency_runs)


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
            ``model.xml`` and ``model.bin``; Core ML: the ``.mlpackage``). Without a suffix, the
            format's usual one is added.
        format: One of :data:`FORMATS`.
        precision: ``"fp32"``, or per :data:`FORMAT_PRECISIONS` ``"fp16"`` / ``"bf16"`` / ``"int8"``.
        image_size: The export's input size (static formats) and the size of the default verification
            images: an int or (height, width); default the size of ``verify_inputs``, else the config's.
        verify_inputs: (N, C, H, W) float32 pixel values to compare on; default 8 seeded random images.
        calibration: (N, C, H, W) float32 pixel values of real images to calibrate ``int8`` on (a few
            dozen to a few hundred); default the verification inputs, with a note in the report.
        opset: ONNX opset (at least 18; 20 and later have a native ``Gelu``).
        tolerance: Largest allowed max|Δlogit| / max|logit|; default per format and precision
            (:data:`FP32_TOLERANCE`, :data:`REDUCED_TOLERANCE`).
        latency_runs: Timed batch-1 runs for ``latency_ms`` (0: skip).

    Raises:
        ValueError: Unknown format or precision, or bad sizes.
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
    target = Path(output)
    if EXTENSIONS[format] and not target.suffix:
        target = target.with_name(target.name + EXTENSIONS[format])
    if format == "openvino" and target.suffix == ".xml":
        raise ValueError(f"the OpenVINO export is a directory (holding model.xml and model.bin), got {target}")
    if target.exists() and target.is_dir() != (format in DIRECTORY_FORMATS):
        raise ValueError(
            f"{target} exists and is a {'directory' if target.is_dir() else 'file'}; {format} writes a "
            f"{'directory' if format in DIRECTORY_FORMATS else 'file'}"
        )
    _check_replaceable(target, format)

    # A float32 CPU copy in eval mode (the caller's model keeps its mode, dtype and device).
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in model.parameters()) or model.training:
        model = copy.deepcopy(model).float().cpu().eval()
    channels = model.config.num_channels
    size = _image_size(model, image_size, verify_inputs)
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
    static = format in ("executorch", "coreml", "tflite", "aoti")  # fixed height and width
    if static and tuple(verify_inputs.shape[2:]) != size:
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

    staged_name = "artifact" + (EXTENSIONS[format] or ".dir")
    with _staging(target, staged_name) as staged:
        ctx = _Context(model, fused, precision, size, opset, staged, channels, calibration)
        with torch.no_grad():
            run, batch, format_notes, shape = _convert(format, ctx, verify_inputs)
            notes = format_notes + notes
            max_abs, rel, top1, latency = _verify(run, batch, verify_inputs, expected, latency_runs)
            run = None  # release the runtime's handles on the staged artifact before moving it
        report = ExportReport(
            path=str(target),
            format=format,
            precision=precision,
            size_mb=_size_mb(staged),
            max_abs_diff=max_abs,
            max_rel_diff=rel,
            top1_agreement=top1,
            latency_ms=latency,
            notes=notes,
            tolerance=tolerance,
            input_shape=shape,
            num_verify_inputs=len(verify_inputs),
        )
        if not report.passed:
            raise ExportVerificationError(
                f"the {format} ({precision}) export disagrees with the PyTorch model: max|diff| {max_abs:.3g}, "
                f"relative {rel:.3g} > tolerance {tolerance:g} (top-1 agreement {100 * top1:.1f}%); "
                f"nothing written to {target}",
                report,
            )
        _place(staged, target)
    return report


def load_calibration_images(
    folder: str | os.PathLike,
    size: tuple[int, int],
    limit: int,
    model_ref: str | None = None,
    hub: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Up to ``limit`` images found under ``folder`` (sorted, spread over the whole listing), resized to
    ``size`` and normalized with the model folder's image processor (mean/std), as (N, C, H, W) float32.
    Unreadable images are skipped; none readable is a ValueError."""
    import torch

    from ..configuration import variant_key
    from ..image_processing import IMAGE_EXTENSIONS, SwiftFormerImageProcessor, load_image
    from ..io.hub import PREPROCESSOR_NAME, resolve_file

    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"--calibration {root} is not a folder of images")
    if limit < 1:
        raise ValueError(f"the number of calibration images must be at least 1, got {limit}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise ValueError(f"--calibration {root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    paths = [paths[i * len(paths) // min(limit, len(paths))] for i in range(min(limit, len(paths)))]  # every class
    mean_std: dict[str, Any] = {}
    if (
        model_ref
        and (Path(model_ref).exists() or variant_key(model_ref) is None)
        and resolve_file(model_ref, PREPROCESSOR_NAME, missing_ok=True, **(hub or {})) is not None
    ):
        own = SwiftFormerImageProcessor.from_pretrained(model_ref, **(hub or {}))
        mean_std = {"image_mean": own.image_mean, "image_std": own.image_std}
    processor = SwiftFormerImageProcessor(size={"height": size[0], "width": size[1]}, **mean_std)
    images = []
    for path in paths:
        try:
            images.append(processor(load_image(path), return_tensors="pt")["pixel_values"])
        except (OSError, ValueError):
            continue
    if not images:
        raise ValueError(f"none of the {len(paths)} calibration images under {root} could be read")
    return torch.cat(images)


__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "FORMAT_PRECISIONS",
    "PRECISIONS",
    "ExportError",
    "ExportReport",
    "ExportVerificationError",
    "export",
    "load_calibration_images",
]
