"""swiftformer: SwiftFormer (Shaker et al., ICCV 2023) for PyTorch, with transformers-compatible checkpoints.

Public names load lazily, so ``import swiftformer`` is cheap and the CLI starts fast; torch is
imported when a model class is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "SwiftFormerConfig": "configuration",
    "VARIANTS": "configuration",
    "ATTENTION_VARIANTS": "configuration",
    "SwiftFormerModel": "modeling",
    "SwiftFormerForImageClassification": "modeling",
    "SwiftFormerPreTrainedModel": "modeling",
    "SwiftFormerBackbone": "modeling",
    "EfficientAdditiveAttention": "layers",
    "ConvEncoder": "layers",
    "SwiftFormerSegmentationConfig": "configuration",
    "SwiftFormerForSemanticSegmentation": "modeling_segmentation",
    "BaseModelOutputWithNoAttention": "outputs",
    "ImageClassifierOutputWithNoAttention": "outputs",
    "BackboneOutput": "outputs",
    "SemanticSegmenterOutput": "outputs",
    "SwiftFormerImageProcessor": "image_processing",
    "CheckpointError": "errors",
    "CheckpointShapeError": "errors",
    "ExportError": "errors",
    "optimize_for_inference": "inference",
    "convert_checkpoint": "convert",
    "ConversionResult": "convert",
    # Keras 3 (TensorFlow or JAX backend), loaded only when asked for: `pip install .[tf]`.
    "TFSwiftFormerModel": "keras.models",
    "TFSwiftFormerForImageClassification": "keras.models",
}

# `from swiftformer import *` stays free of TensorFlow.
__all__ = [name for name, module in _EXPORTS.items() if not module.startswith("keras")] + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'swiftformer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*sorted(_EXPORTS), "__version__"]


if TYPE_CHECKING:
    from .configuration import ATTENTION_VARIANTS, VARIANTS, SwiftFormerConfig, SwiftFormerSegmentationConfig
    from .convert import ConversionResult, convert_checkpoint
    from .errors import CheckpointError, CheckpointShapeError
    from .image_processing import SwiftFormerImageProcessor
    from .inference import optimize_for_inference
    from .keras.models import TFSwiftFormerForImageClassification, TFSwiftFormerModel
    from .layers import ConvEncoder, EfficientAdditiveAttention
    from .modeling import (
        SwiftFormerBackbone,
        SwiftFormerForImageClassification,
        SwiftFormerModel,
        SwiftFormerPreTrainedModel,
    )
    from .modeling_segmentation import SwiftFormerForSemanticSegmentation
    from .outputs import (
        BackboneOutput,
        BaseModelOutputWithNoAttention,
        ImageClassifierOutputWithNoAttention,
        SemanticSegmenterOutput,
    )
