"""Exports to the mobile and server runtimes, each verified in its runtime before it is written.

- :mod:`.pytorch` — :func:`export`: a PyTorch classifier to ONNX, OpenVINO, ExecuTorch, Core ML,
  AOTInductor, and (through the Keras classes) TFLite and SavedModel, compared with the eager model
- :mod:`.keras` — SavedModel and TFLite from the Keras 3 classes, compared with the Keras model
- :mod:`.common` — what both share: :class:`ExportReport`, the output-path rules, staging and atomic
  placement, the comparison, the export size, :func:`load_calibration_images`
"""

from ..errors import ExportError, ExportVerificationError
from .common import EXTENSIONS, FORMAT_PRECISIONS, FORMATS, PRECISIONS, ExportReport, load_calibration_images
from .pytorch import export

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
