"""Exports to the mobile and server runtimes, each verified in its runtime before it is written.

- :mod:`.formats` — :data:`FORMATS`: one :class:`ExportFormat` record per format (extension or directory
  marker, precisions, tolerance, dynamic dimensions, packages, exporter and runner)
- :mod:`.pipeline` — :func:`export`: a PyTorch classifier to any format, compared with the eager model
- :mod:`.pytorch` — the exporters and runners the records name (ONNX, OpenVINO, ExecuTorch, Core ML,
  AOTInductor; TFLite and SavedModel through the Keras classes)
- :mod:`.bundle` — bundles: uint8 images in, probabilities out, labels inside (``export(..., bundle=True)``)
- :mod:`.keras` — SavedModel and TFLite from the Keras 3 classes, compared with the Keras model
- :mod:`.common` — what all share: :class:`ExportReport`, the output-path rules, staging and atomic
  placement, the comparison, the export size, :func:`load_calibration_images`
"""

from ..errors import ExportError, ExportVerificationError
from .common import ExportReport, load_calibration_images
from .formats import ARTIFACT_PRECISIONS, FORMATS, ExportFormat
from .pipeline import export

__all__ = [
    "ARTIFACT_PRECISIONS",
    "FORMATS",
    "ExportError",
    "ExportFormat",
    "ExportReport",
    "ExportVerificationError",
    "export",
    "load_calibration_images",
]
