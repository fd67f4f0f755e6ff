"""The fused model exported in memory and run by ONNX Runtime or OpenVINO, and the one ONNX graph export.

:func:`export_onnx_graph` (at :data:`ONNX_OPSET`) and :func:`openvino_model` are also what ``swiftformer
export --format onnx`` / ``--format openvino`` write, so the ``onnxruntime`` and ``openvino`` backends run the
exported graphs. :class:`ONNXRuntimeClassifier` and :class:`OpenVINOClassifier` take and return float32 torch
tensors, like every backend of :func:`~swiftformer.inference.optimize_for_inference`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any

import torch
from torch import nn

from ..configuration import SwiftFormerConfig
from .fuse import FusedSwiftFormer, check_pixel_values, export_dims

ONNX_OPSET = 20  # the first opset with a native Gelu (onnxruntime runs it as one kernel)
_OPENVINO_PRECISIONS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


class PrecisionNotHonouredWarning(RuntimeWarning):
    """A backend computes at another precision than the one requested (e.g. OpenVINO's CPU plugin runs f32 when
    asked for bf16 on a CPU without native bf16): the result is correct, but not what was asked for."""


def runtime_example(config: SwiftFormerConfig) -> tuple[torch.Tensor, dict[int, Any]]:
    """(example ``pixel_values`` (2, C, H, W), dynamic dims) with which the fused model is converted for a
    runtime backend: batch 2 at the config's image size H × W (a batch of 1 would be exported as a constant),
    and dynamic batch, height and width (:func:`~.fuse.export_dims`)."""
    height, width = (config.image_size,) * 2 if isinstance(config.image_size, int) else config.image_size
    example = torch.randn(2, config.num_channels, height, width, generator=torch.Generator().manual_seed(0))
    return example, export_dims(config, (height, width), spatial=True)


# ------------------------------------------------------------------------------ ONNX
def export_onnx_graph(
    module: nn.Module,
    example: torch.Tensor,
    dims: dict[int, Any],
    opset: int = ONNX_OPSET,
    names: tuple[str, str] = ("pixel_values", "logits"),
) -> Any:
    """An ``onnx.ModelProto`` of ``module`` (input ``pixel_values`` (B, C, H, W), output ``logits``
    (B, num_labels); other ``names`` for a bundle's (B, H, W, 3) ``images``), exported in memory with the dynamic ``dims`` of :func:`~.fuse.export_dims` (keys 0, 2, 3:
    batch, height, width; a missing key is static at ``example``'s size). The exporter's progress lines,
    INFO logs and warnings are kept off stdout and stderr. The one ONNX export of the package: the
    ``onnxruntime`` backend and ``swiftformer export --format onnx`` both call it.

    torch's TorchScript exporter (``dynamo=False``) first, the ``torch.export``-based one (``dynamo=True``)
    when it is unavailable (a later torch removes it) or refuses the graph. Both give graphs with the same
    outputs and the same ONNX Runtime speed on this model, but the TorchScript exporter takes a fraction of the
    time (the timings are in docs/performance.md), which the first call of ``predict`` and ``serve`` and every
    ``export`` would otherwise wait for.
    """
    import onnx

    chatty = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [log.level for log in chatty]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.ExitStack() as restore:
        warnings.simplefilter("ignore")
        for log, level in zip(chatty, levels):  # their INFO lines (one per rewrite) would drown the caller's log
            log.setLevel(max(level, logging.WARNING))
            restore.callback(log.setLevel, level)
        dim_names = {0: "batch", 2: "height", 3: "width"}
        input_name, output_name = names
        try:
            buffer = io.BytesIO()
            torch.onnx.export(
                module,
                (example,),
                buffer,  # type: ignore[arg-type]  # a file object is accepted; torch annotates a path
                dynamo=False,
                opset_version=opset,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: {i: dim_names[i] for i in dims}, output_name: {0: "batch"}},
            )
            return onnx.load_from_string(buffer.getvalue())
        except Exception:  # the TorchScript exporter is gone or refused the graph: the torch.export-based one
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_shapes=(dims,),
                verbose=False,
            )
            assert program is not None  # None only without dynamo=True
            return program.model_proto


class ONNXRuntimeClassifier(nn.Module):
    """``pixel_values (B, 3, H, W) -> logits (B, num_labels)`` (float32 torch tensors) of a
    :class:`~.fuse.FusedSwiftFormer` exported to ONNX in memory (:func:`export_onnx_graph`: the graph
    ``swiftformer export --format onnx`` writes) and run by ONNX Runtime's CPU provider, all graph
    optimizations on, with as many intra-op threads as torch uses (``torch.get_num_threads()``). fp32 only."""

    def __init__(self, fused: FusedSwiftFormer, config: SwiftFormerConfig) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("backend='onnxruntime' needs onnxruntime: pip install .[export]") from None
        self.num_channels = config.num_channels
        example, dims = runtime_example(config)
        proto = export_onnx_graph(fused, example, dims)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1  # one graph at a time: parallelism is within the ops
        self.session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.threads = options.intra_op_num_threads
        self.precision, self.backend = "fp32", "onnxruntime"
        self.reason = "fp32; onnxruntime"  # what optimize_for_inference reports: set there

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.num_channels)
        array = pixel_values.detach().float().cpu().contiguous().numpy()
        return torch.from_numpy(self.session.run(["logits"], {"pixel_values": array})[0])


# ------------------------------------------------------------------------------ OpenVINO
def openvino_model(fused: nn.Module, example: torch.Tensor, dims: dict[int, Any]) -> tuple[Any, list[str]]:
    """(an ``openvino.Model`` of ``fused``, notes): through ``torch.export`` with dynamic ``dims``, else
    OpenVINO's own tracing (batch, height and width dynamic). Input ``pixel_values``, output ``logits``."""
    import openvino as ov

    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ov_model = ov.convert_model(torch.export.export(fused, (example,), dynamic_shapes=(dims,)))
        except Exception as err:
            notes.append(f"converted by tracing (torch.export route failed: {type(err).__name__})")
            ov_model = ov.convert_model(
                fused, example_input=example, input=[ov.PartialShape([-1, example.shape[1], -1, -1])]
            )
    ov_model.inputs[0].get_tensor().set_names({"pixel_values"})
    ov_model.outputs[0].get_tensor().set_names({"logits"})
    return ov_model, notes


def openvino_inference_precision(compiled: Any) -> str:
    """The element type an OpenVINO compiled model computes in (``"f32"``, ``"bf16"``, ``"f16"``): its
    ``INFERENCE_PRECISION_HINT`` property as read back from the compiled model, not the hint passed in."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(name, name)


class OpenVINOClassifier(nn.Module):
    """``pixel_values (B, 3, H, W) -> logits (B, num_labels)`` (float32 torch tensors) run by OpenVINO's
    CPU plugin, with the precision hint made explicit (OpenVINO defaults to bf16 on AMX CPUs).

    ``hint`` is what was asked (``"f32"`` or ``"bf16"``); ``inference_precision`` is what the compiled model
    reports it runs (its ``INFERENCE_PRECISION_HINT`` property, read back after compiling: the CPU plugin
    silently runs f32 where the CPU has no bf16), and ``precision`` the same in this library's names.
    """

    def __init__(
        self,
        fused: FusedSwiftFormer,
        config: SwiftFormerConfig,
        precision: str,
        reason: str | None = None,
        stacklevel: int = 2,
    ) -> None:
        """``reason``: the line to report when the precision was honoured (default: ``precision``);
        ``stacklevel``: that of the :class:`PrecisionNotHonouredWarning`."""
        super().__init__()
        try:
            import openvino as ov
        except ImportError:
            raise ImportError("backend='openvino' needs openvino: pip install .[export]") from None
        self.num_channels = config.num_channels
        example, dims = runtime_example(config)
        ov_model, _ = openvino_model(fused, example, dims)
        self.hint = "bf16" if precision == "bf16" else "f32"
        self.compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": self.hint})
        self.inference_precision = openvino_inference_precision(self.compiled)
        self.precision = _OPENVINO_PRECISIONS.get(self.inference_precision, self.inference_precision)
        self.backend = "openvino"
        self.reason = reason or f"{precision}; openvino"
        requested = "fp32" if self.hint == "f32" else "bf16"
        if self.precision != requested:
            self.reason = (
                f"{self.precision}: OpenVINO's CPU plugin runs {self.inference_precision} although {self.hint} was "
                "requested" + (" (this CPU has no native bf16)" if requested == "bf16" else "") + "; openvino"
            )
            warnings.warn(
                f"backend='openvino' was asked for {requested} but the compiled model runs "
                f"{self.inference_precision} (its INFERENCE_PRECISION_HINT): results and speed are those of "
                f"{self.precision}" + (": this CPU has no native bf16" if requested == "bf16" else ""),
                PrecisionNotHonouredWarning,
                stacklevel=stacklevel,
            )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.num_channels)
        array = pixel_values.detach().float().cpu().contiguous().numpy()
        return torch.from_numpy(self.compiled(array)[0].copy())
