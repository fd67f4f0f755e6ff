"""The export formats: one :class:`ExportFormat` record each, the one place that says what a format is.

A record holds a format's facts — its file extension or directory marker, the precisions it can
produce, the default verification tolerance, which input dimensions stay dynamic, the packages it needs
— and the two functions that do the work: the ``exporter`` that writes the artifact and the ``runner``
that opens it in its runtime for the verification. :func:`swiftformer.export.export` runs every format
through the same steps (:mod:`.pipeline`); the CLI's ``--format`` and ``--precision`` choices, the
output-path rules (:mod:`.common`), the Keras exporters (:mod:`.keras`) and the format table of
``docs/export.md`` (checked by ``tests/test_export_formats.py``) all read :data:`FORMATS`.

Adding a format is one record here and one exporter (with its runner) in :mod:`.pytorch`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import pytorch
from .pytorch import ExportContext, Exported, Runner

ARTIFACT_PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# Reduced precisions are only checked for gross errors (a wrong layout, NaN): their top-1 agreement on
# real images is what to judge them by. Why these values: docs/export.md, "What is verified".
REDUCED_TOLERANCE = {"fp16": 5e-2, "bf16": 1e-1, "int8": 2.5e-1}


@dataclass(frozen=True)
class ExportFormat:
    """What one export format is, and the functions that write and run it.

    ``extension`` is the suffix a path without one gets (``""``: a directory named as given);
    ``marker`` the file that makes a directory an earlier export of this format (``None``: the
    artifact is one file). Only an earlier export of the format — a file with its extension, or a
    directory holding its marker — is ever replaced. ``tolerance`` is the default largest
    max|Δlogit| / max|logit| of a float32 export against the eager model (reduced precisions:
    :data:`REDUCED_TOLERANCE`). ``dynamic`` names the dimensions of ``pixel_values`` (B, C, H, W) the
    artifact leaves free (``"batch"``, ``"height"``, ``"width"``); the others are fixed at batch 1 and
    the export size. ``requires`` lists (module, pip name) pairs, installed by the ``extra``. ``bundle``:
    the precisions of the bundles the format can carry (:mod:`.bundle`: uint8 images in, probabilities out,
    labels inside; empty: none); ``bundle_requires`` the packages a bundle needs besides ``requires``.
    """

    name: str
    extension: str
    marker: str | None
    precisions: tuple[str, ...]
    tolerance: float
    dynamic: tuple[str, ...]
    requires: tuple[tuple[str, str], ...]
    extra: str
    exporter: Callable[[ExportContext], Exported]  # writes ctx.staged; its notes and input shape
    runner: Callable[[ExportContext], Runner | None]  # ctx.staged in its runtime; None: cannot run here
    bundle: tuple[str, ...] = ()  # the precisions of its bundles (preprocessing, softmax and labels inside)
    bundle_requires: tuple[tuple[str, str], ...] = ()  # (module, pip name) a bundle needs besides ``requires``

    @property
    def is_directory(self) -> bool:
        return self.marker is not None

    @property
    def static_size(self) -> bool:
        """Height and width are fixed at the export size."""
        return "height" not in self.dynamic

    @property
    def batch(self) -> int | None:
        """The batch the artifact runs (``None``: any)."""
        return None if "batch" in self.dynamic else 1

    @property
    def install_hint(self) -> str:
        return f"pip install .[{self.extra}]  (or: pip install 'swiftformer[{self.extra}]')"

    def check_precision(self, precision: str) -> None:
        """A ValueError naming the precisions of this format, unless it makes ``precision``."""
        if precision not in self.precisions:
            raise ValueError(
                f"precision for {self.name} must be one of {', '.join(self.precisions)}, got {precision!r}"
                + ("" if precision in ARTIFACT_PRECISIONS else f" (known precisions: {', '.join(ARTIFACT_PRECISIONS)})")
            )

    def check_bundle(self, precision: str = "fp32") -> None:
        """A ValueError naming the formats that can carry a bundle, unless this one can, in ``precision``."""
        if not self.bundle:
            can = ", ".join(f"{f.name} ({'/'.join(f.bundle)})" for f in FORMATS.values() if f.bundle)
            raise ValueError(f"{self.name} cannot carry a bundle yet; --bundle works with: {can}")
        if precision not in self.bundle:
            raise ValueError(f"{self.name} bundles are {', '.join(self.bundle)}, got precision {precision!r}")

    def default_tolerance(self, precision: str) -> float:
        return self.tolerance if precision == "fp32" else REDUCED_TOLERANCE[precision]

    def require(self, bundle: bool = False) -> None:
        """One clear ImportError naming the extra, before any heavy work (``bundle``: also ``bundle_requires``)."""
        needed = self.requires + (self.bundle_requires if bundle else ())
        missing = [pip for module, pip in needed if importlib.util.find_spec(module) is None]
        if missing:
            raise ImportError(f"exporting to {self.name} needs {', '.join(missing)}: {self.install_hint}")

    def is_earlier_export(self, path: Path) -> bool:
        """A typo in the output path must not replace a model folder, a folder of other files or a weights
        file: only a directory holding the marker, or a file with the extension, is an earlier export."""
        if self.marker is not None:
            return path.is_dir() and (path / self.marker).is_file()
        return path.is_file() and path.suffix.lower() == self.extension


_ONNX = (("onnx", "onnx"), ("onnxscript", "onnxscript"), ("onnxruntime", "onnxruntime"))
_TF = (("tensorflow", "tensorflow"), ("keras", "keras"))

# float32 tolerances: 1e-5 where the runtime computes the same graph in float32, 1e-4 where it uses
# kernels of its own (docs/export.md, "What is verified", has the measured differences).
_RECORDS = (
    ExportFormat(
        name="onnx",
        extension=".onnx",
        marker=None,
        precisions=("fp32", "fp16", "int8"),
        tolerance=1e-5,
        dynamic=("batch", "height", "width"),
        requires=_ONNX,
        extra="export",
        exporter=pytorch.export_onnx,
        runner=pytorch.load_onnx,
        bundle=("fp32", "fp16", "int8"),
    ),
    ExportFormat(
        name="openvino",
        extension="",
        marker="model.xml",
        precisions=("fp32", "fp16", "bf16"),
        tolerance=1e-5,
        dynamic=("batch", "height", "width"),
        requires=(("openvino", "openvino"),),
        extra="export",
        exporter=pytorch.export_openvino,
        runner=pytorch.load_openvino,
    ),
    ExportFormat(
        name="executorch",
        extension=".pte",
        marker=None,
        precisions=("fp32",),
        tolerance=1e-4,
        dynamic=(),
        requires=(("executorch", "executorch"),),
        extra="export",
        exporter=pytorch.export_executorch,
        runner=pytorch.load_executorch,
        bundle=("fp32",),
    ),
    ExportFormat(
        name="coreml",
        extension=".mlpackage",
        marker="Manifest.json",
        precisions=("fp32", "fp16"),
        tolerance=1e-4,
        dynamic=(),
        requires=(("coremltools", "coremltools"),),
        extra="export",
        exporter=pytorch.export_coreml,
        runner=pytorch.load_coreml,
        bundle=("fp32", "fp16"),
    ),
    ExportFormat(
        name="aoti",
        extension=".pt2",
        marker=None,
        precisions=("fp32", "bf16"),
        tolerance=1e-5,
        dynamic=("batch",),
        requires=(),
        extra="export",
        exporter=pytorch.export_aoti,
        runner=pytorch.load_aoti,
    ),
    ExportFormat(
        name="tflite",
        extension=".tflite",
        marker=None,
        precisions=("fp32", "fp16", "int8"),
        tolerance=1e-4,
        dynamic=(),
        requires=(*_TF, ("ai_edge_litert", "ai-edge-litert")),
        extra="tf",
        exporter=pytorch.export_tflite,
        runner=pytorch.load_tflite,
        bundle=("fp32", "fp16", "int8"),
        # the TFLite Metadata schema's Python bindings ship with MediaPipe (mediapipe.tasks.metadata)
        bundle_requires=(("mediapipe", "mediapipe"),),
    ),
    ExportFormat(
        name="savedmodel",
        extension="",
        marker="saved_model.pb",
        precisions=("fp32",),
        tolerance=1e-4,
        dynamic=("batch", "height", "width"),
        requires=_TF,
        extra="tf",
        exporter=pytorch.export_savedmodel,
        runner=pytorch.load_savedmodel,
    ),
)
FORMATS: dict[str, ExportFormat] = {record.name: record for record in _RECORDS}


def get_format(name: str) -> ExportFormat:
    """The record of ``name``; a ValueError listing the formats when there is none."""
    if name not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {name!r}")
    return FORMATS[name]


def bundle_formats() -> dict[str, tuple[str, ...]]:
    """The formats that can carry a bundle, each with the precisions of its bundles."""
    return {f.name: f.bundle for f in FORMATS.values() if f.bundle}


def precision_formats() -> dict[str, list[str]]:
    """Each precision with the formats that produce it (for help texts)."""
    return {p: [f.name for f in FORMATS.values() if p in f.precisions] for p in ARTIFACT_PRECISIONS}


__all__ = [
    "ARTIFACT_PRECISIONS",
    "FORMATS",
    "REDUCED_TOLERANCE",
    "ExportFormat",
    "bundle_formats",
    "get_format",
    "precision_formats",
]
