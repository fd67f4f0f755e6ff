"""The fast inference path: exact reparameterization, then torch.compile, bf16 or int8, or an exported runtime.

:func:`optimize_for_inference` turns a trained :class:`~swiftformer.SwiftFormerForImageClassification` into a
module whose forward takes ``pixel_values`` (B, 3, H, W) and returns logits (B, num_labels). Its parts, each
importing only those listed after it:

* :mod:`.auto`: the precision and backend policy behind ``"auto"`` (from the CPU's facts,
  :mod:`swiftformer.hardware`), :func:`optimize_for_inference` and :class:`AutoBackend`;
* :mod:`.inductor`: micro-batching of the first stage, bf16, int8 (torchao PT2E) and ``torch.compile``;
* :mod:`.runtimes`: ONNX Runtime and OpenVINO, and the one ONNX graph export (shared with
  :mod:`swiftformer.export`);
* :mod:`.fuse`: the exact reparameterization (BatchNorm and layer-scale folding, head merging) every backend and
  export runs, and the shapes it is exported at.
"""

from ..modeling import load_model
from .auto import (
    BACKEND_PRECISIONS,
    BACKENDS,
    RUN_PRECISIONS,
    SMALL_BATCH_MAX,
    AutoBackend,
    BackendChoice,
    PrecisionChoice,
    SlowPrecisionWarning,
    describe_hardware,
    optimize_for_inference,
    resolve_backend,
    resolve_precision,
    small_batch_max,
)
from .fuse import (
    MAX_DIM,
    FusedConvEncoder,
    FusedEncoderBlock,
    FusedSwiftFormer,
    bn_scale_shift,
    export_dims,
    fuse,
    min_spatial_size,
    pointwise_conv,
)
from .inductor import AUTO_MICRO_BATCH, MicroBatched, inductor_module
from .runtimes import (
    ONNX_OPSET,
    ONNXRuntimeClassifier,
    OpenVINOClassifier,
    PrecisionNotHonouredWarning,
    export_onnx_graph,
    openvino_inference_precision,
    openvino_model,
    runtime_example,
)

__all__ = [
    "AUTO_MICRO_BATCH",
    "BACKENDS",
    "BACKEND_PRECISIONS",
    "MAX_DIM",
    "ONNX_OPSET",
    "RUN_PRECISIONS",
    "SMALL_BATCH_MAX",
    "AutoBackend",
    "BackendChoice",
    "FusedConvEncoder",
    "FusedEncoderBlock",
    "FusedSwiftFormer",
    "MicroBatched",
    "ONNXRuntimeClassifier",
    "OpenVINOClassifier",
    "PrecisionChoice",
    "PrecisionNotHonouredWarning",
    "SlowPrecisionWarning",
    "bn_scale_shift",
    "describe_hardware",
    "export_dims",
    "export_onnx_graph",
    "fuse",
    "inductor_module",
    "load_model",
    "min_spatial_size",
    "openvino_inference_precision",
    "openvino_model",
    "optimize_for_inference",
    "pointwise_conv",
    "resolve_backend",
    "resolve_precision",
    "runtime_example",
    "small_batch_max",
]
