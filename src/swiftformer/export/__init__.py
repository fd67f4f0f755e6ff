"""Exports to the mobile and server runtimes, each verified in its runtime against the PyTorch model.

- :mod:`.pytorch` — :func:`export`: ONNX, OpenVINO, ExecuTorch, CoreML, AOTInductor (and TFLite /
  SavedModel through the Keras classes)
- :mod:`.keras` — SavedModel and TFLite from the Keras 3 classes, checked in LiteRT
"""

from ..errors import ExportError, ExportVerificationError
from .pytorch import EXTENSIONS, FORMAT_PRECISIONS, FORMATS, PRECISIONS, ExportReport, export, load_calibration_images

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
