"""Export a PyTorch SwiftFormer classifier to any format of :data:`~swiftformer.export.formats.FORMATS`,
verified against the eager model before it is written.

    swiftformer export --model MBZUAI/swiftformer-xs --format onnx --output xs.onnx
    swiftformer export --model runs/xs/best --format openvino --output xs-openvino --precision fp16
    swiftformer export --model xs --format executorch --output xs.pte --json      # random weights
    swiftformer export --model runs/xs/best --format tflite --precision int8 --calibration DATA/train --output xs.tflite

One pipeline for every format: check the arguments against the format's record, compute the reference
logits of the *original* eager model, write the artifact with the format's exporter into a staging
folder beside the target, run it there with the format's runner, compare, and only then move it into
place (:mod:`.common`: a directory is swapped with the old one, which is then deleted). A failed export
or a failed verification never leaves a partial artifact behind, nor replaces a good one.

``int8`` is calibrated on ``calibration`` images; without them, on the verification inputs (random
unless given), which is only good for checking the pipeline.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import ExportError
from .common import ExportReport, checked_report, compare, export_image_size, place, staging, target_path
from .formats import ExportFormat, get_format
from .pytorch import ExportContext, Exported, Runner

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..image_processing import SwiftFormerImageProcessor
    from ..modeling import SwiftFormerForImageClassification
    from .bundle import BundleSpec

REFERENCE = "eager PyTorch model (fp32)"
REFERENCE_BUNDLE = "softmax of the eager PyTorch model (fp32) on the image processor's preprocessing"
MIN_OPSET = 18  # torch.onnx's exporter


def _convert(fmt: ExportFormat, ctx: ExportContext) -> tuple[Exported, Runner | None]:
    """Write the artifact to ``ctx.staged`` and open it: (what the exporter says, its runner)."""
    try:
        exported = fmt.exporter(ctx)
        return exported, fmt.runner(ctx)
    except (ImportError, ValueError, ExportError):
        raise
    except Exception as err:  # one line for the CLI; the cause keeps the converter's traceback
        message = (str(err).strip().splitlines() or [""])[0][:500]
        raise ExportError(f"exporting to {fmt.name} failed: {type(err).__name__}: {message}") from err


def _batched(run: Runner, inputs: np.ndarray, batch: int | None) -> np.ndarray:
    """Run ``inputs`` whole (``batch=None``: dynamic batch) or ``batch`` samples at a time."""
    import numpy as np

    if batch is None:
        return np.asarray(run(inputs))
    return np.concatenate([np.asarray(run(inputs[i : i + batch])) for i in range(0, len(inputs), batch)])


def export(
    model: SwiftFormerForImageClassification,
    output: str | os.PathLike,
    format: str,
    *,
    precision: str = "fp32",
    image_size: int | tuple[int, int] | None = None,
    verify_inputs: torch.Tensor | np.ndarray | None = None,
    calibration: torch.Tensor | None = None,
    opset: int | None = None,
    tolerance: float | None = None,
    latency_runs: int = 20,
    bundle: bool = False,
    image_processor: SwiftFormerImageProcessor | None = None,
    bundle_info: dict[str, str] | None = None,
) -> ExportReport:
    """Export the reparameterized ``model`` as ``format``, verify it, then write ``output`` atomically.

    Args:
        model: A classifier (left unchanged; its weights are copied).
        output: The file (``.onnx``, ``.pte``, ``.pt2``, ``.tflite``) or directory (OpenVINO: holds
            ``model.xml`` and ``model.bin``; Core ML: the ``.mlpackage``; SavedModel). A path without a
            suffix gets the format's (``digits`` → ``digits.onnx``), unless ``digits`` exists. Only an
            earlier export of ``format`` is ever replaced (:func:`~swiftformer.export.common.target_path`).
        format: A name of :data:`~swiftformer.export.formats.FORMATS`.
        precision: ``"fp32"``, or one of the format's ``precisions``: ``"fp16"`` / ``"bf16"`` / ``"int8"``.
        image_size: The export's input size (static formats) and the size of the default verification
            images: an int or (height, width); default the size of ``verify_inputs``, else the config's.
        verify_inputs: (N, C, H, W) float32 pixel values to compare on; default 8 seeded random images.
        calibration: (N, C, H, W) float32 pixel values of real images to calibrate ``int8`` on (a few
            dozen to a few hundred; a folder's: :func:`~swiftformer.export.load_calibration_images`);
            default the verification inputs, with a note in the report.
        opset: ONNX opset, at least 18; default :data:`swiftformer.inference.ONNX_OPSET` (the first with a
            native ``Gelu``).
        tolerance: Largest allowed max|Δlogit| / max|logit|; default the format's ``tolerance`` for fp32,
            :data:`~swiftformer.export.formats.REDUCED_TOLERANCE` for the others.
        latency_runs: Timed batch-1 runs for ``latency_ms`` (0: skip).
        bundle: Write a bundle (:mod:`.bundle`; formats whose record has ``bundle``, in the precisions it
            lists): input ``images`` (batch, H, W, 3) uint8 RGB at ``image_processor``'s size (``image_size``
            overrides it; Core ML: an RGB image), the normalization folded in, output ``probabilities`` (Core
            ML: a classifier's label and probabilities), the labels inside (not in an ExecuTorch ``.pte``);
            ``labels.txt`` and ``manifest.json`` beside it, and for ONNX its ORT-format copy ``NAME.ort``
            (verified in ONNX Runtime against the ``.onnx``); a TFLite bundle is batch 1, carries TFLite Metadata
            for MediaPipe (:mod:`.tflite_bundle`) and, for int8, a uint8 output to dequantize with its scale and
            zero point (in the manifest). ``verify_inputs`` (and ``calibration``) are then
            uint8 (N, H, W, 3) images (default 8 seeded random ones), compared as probabilities with the eager
            model's softmax on ``image_processor``'s preprocessing of the same pixels.
        image_processor: The model's processor (:func:`~swiftformer.image_processing.load_processor`);
            ``None``: the ImageNet defaults, with a note in the report.
        bundle_info: ``name``, ``description``, ``version``, ``license``, ``author`` for the bundle's metadata.

    Raises:
        ValueError: Unknown format or precision, bad sizes, or ``output`` is not an earlier export.
        ImportError: The format's package is missing (names the ``pip install`` extra).
        ExportError: The conversion failed; :class:`ExportVerificationError` (with ``.report``) when
            the exported model disagrees beyond ``tolerance`` — in both cases nothing is written.
    """
    import torch

    from ..inference import ONNX_OPSET, fuse
    from ..modeling import SwiftFormerForImageClassification

    fmt = get_format(format)
    fmt.check_precision(precision)
    if not isinstance(model, SwiftFormerForImageClassification):
        raise TypeError(f"expected a SwiftFormerForImageClassification, got {type(model).__name__}")
    opset = ONNX_OPSET if opset is None else opset
    if fmt.name == "onnx" and opset < MIN_OPSET:
        raise ValueError(
            f"opset must be at least {MIN_OPSET} (torch.onnx's exporter; 20 and later have a native Gelu), got {opset}"
        )
    if bundle:
        fmt.check_bundle(precision)
    fmt.require(bundle)
    target = target_path(output, fmt)
    from .bundle import check_not_bundled, check_sidecars

    if bundle:
        check_sidecars(target)
    else:
        check_not_bundled(target)

    # A float32 CPU copy in eval mode (the caller's model keeps its mode, dtype and device).
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in model.parameters()) or model.training:
        model = copy.deepcopy(model).float().cpu().eval()
    if bundle:
        job = _bundle_job(model, precision, image_size, verify_inputs, calibration, image_processor, bundle_info)
    else:
        job = _tensor_job(model, fmt, precision, image_size, verify_inputs, calibration)
    with torch.no_grad():
        fused = fuse(model)
    if tolerance is None:
        tolerance = fmt.default_tolerance(precision)

    config_json = model.config.to_json_string()
    with staging(target, fmt) as staged:
        ctx = ExportContext(
            fmt, model, fused, precision, job.size, opset, staged, job.inputs, job.calibration, job.spec
        )
        inputs = job.inputs.numpy()
        with torch.no_grad():
            exported, run = _convert(fmt, ctx)
            actual = None if run is None else _batched(run, inputs, fmt.batch)
            report = checked_report(
                staged,
                target,
                None if actual is None else compare(job.expected, actual),
                None if run is None else partial(run, inputs[:1].copy()),
                latency_runs,
                format=fmt.name,
                precision=precision,
                input_shape=exported.input_shape,
                num_verify_inputs=len(inputs),
                reference=job.reference,
                tolerance=tolerance,
                notes=exported.notes + job.notes,
                bundle=bundle,
            )
            del run  # release the runtime's handles on the staged artifact before moving it
        if job.spec is None:
            place(staged, target)
            return report
        from .bundle import manifest, write_labels, write_manifest

        ort = (
            None
            if fmt.name != "onnx" or actual is None
            else _ort_copy(staged, target, inputs, job.expected, actual, report)
        )
        data = manifest(job.spec, staged, fmt.name, precision, config_json)
        data["artifact"] = target.name
        data["verification"] = {
            "inputs": f"{len(inputs)} uint8 images",
            "reference": job.reference,
            "max_abs_diff": report.max_abs_diff,
            "top1_agreement": report.top1_agreement,
            "executed": actual is not None,  # False: the format's runtime cannot run here (Core ML off macOS)
        }
        data.update(exported.manifest)
        if ort is not None:
            data["ort"] = ort[1]
        place(staged, target)
        for staged_file, placed in ort[0] if ort is not None else ():
            place(staged_file, placed)
    write_labels(target, job.spec)
    write_manifest(target, data)  # last: a manifest names a complete bundle
    return report


@dataclass
class _Job:
    """What an export runs on: its size, the verification inputs and the reference's answers to them, the
    calibration images (int8), the bundle's spec (``None``: a plain export) and notes for the report."""

    size: tuple[int, int]
    inputs: torch.Tensor  # (N, C, H, W) float32 pixel values; a bundle: (N, H, W, 3) uint8 images
    expected: torch.Tensor  # the reference's logits; a bundle: its probabilities
    reference: str
    calibration: torch.Tensor | None = None  # in the inputs' form
    spec: BundleSpec | None = None
    notes: list[str] = field(default_factory=list)


def _tensor_job(
    model: SwiftFormerForImageClassification,
    fmt: ExportFormat,
    precision: str,
    image_size: int | tuple[int, int] | None,
    verify_inputs: Any,
    calibration: Any,
) -> _Job:
    """A plain export: ``pixel_values`` in, compared as logits with the eager model's."""
    import torch

    channels = model.config.num_channels
    size = export_image_size(model, image_size, verify_inputs)
    if min(model.stage_shapes(*size)[-1]) < 1:
        raise ValueError(f"an input of {size[0]}x{size[1]} is too small for this model's downsampling")
    inputs = _verify_inputs(verify_inputs, channels, size)
    from ..inference.fuse import min_spatial_size

    small = min(size) < min_spatial_size(model.config)  # exported with a static height and width (export_dims)
    if (fmt.static_size or small) and tuple(inputs.shape[2:]) != size:
        why = f" (below {min_spatial_size(model.config)} pixels an export's size is static)" if small else ""
        raise ValueError(
            f"{fmt.name} has a fixed input size {size[0]}x{size[1]}{why}; verify_inputs are "
            f"{inputs.shape[2]}x{inputs.shape[3]}"
        )
    job = _Job(size, inputs, torch.empty(0), REFERENCE)
    if precision == "int8":
        if calibration is None:
            calibration = inputs
            job.notes.append(_CALIBRATED_ON_VERIFY)
        job.calibration = _calibration(calibration, channels, size)
    with torch.no_grad():
        job.expected = model(inputs).logits.float()
    return job


def _bundle_job(
    model: SwiftFormerForImageClassification,
    precision: str,
    image_size: int | tuple[int, int] | None,
    images: Any,
    calibration: Any,
    image_processor: SwiftFormerImageProcessor | None,
    info: dict[str, str] | None,
) -> _Job:
    """A bundle: uint8 images in, compared as probabilities with the eager model's softmax on the processor's
    preprocessing of the same pixels."""
    import torch

    from .bundle import bundle_spec, reference_probabilities, verify_images

    size = None if image_size is None else export_image_size(model, image_size)
    spec = bundle_spec(model, image_processor, size, info)
    if min(model.stage_shapes(*spec.size)[-1]) < 1:
        raise ValueError(f"an input of {spec.size[0]}x{spec.size[1]} is too small for this model's downsampling")
    inputs = verify_images(images, spec, model.config.num_channels)
    job = _Job(
        spec.size,
        torch.from_numpy(inputs),
        reference_probabilities(model, spec, inputs),
        REFERENCE_BUNDLE,
        spec=spec,
    )
    if precision == "int8":
        if calibration is None:
            calibration = inputs
            job.notes.append(_CALIBRATED_ON_VERIFY)
        job.calibration = torch.from_numpy(verify_images(calibration, spec, 3, what="calibrated"))
    return job


_CALIBRATED_ON_VERIFY = (
    "int8 calibrated on the verification inputs: pass calibration images (calibration=, "
    "swiftformer export --calibration DIR) for a model that keeps its accuracy"
)


def _ort_copy(
    staged: Any, target: Any, inputs: np.ndarray, expected: Any, onnx_probs: np.ndarray, report: ExportReport
) -> tuple[list[tuple[Any, Any]], dict[str, Any]]:
    """Convert the staged, verified ``.onnx`` bundle to ORT format (beside it, in the staging folder) and
    verify the copy in ONNX Runtime on the same images: its probabilities within the bundle's tolerance of the
    ``.onnx``'s and top-1 equal, else :class:`ExportVerificationError` (nothing is written). Returns the staged
    files with their places (the ``.ort`` and its ``required_operators.config``) and the manifest entry; adds a
    note to ``report``."""
    from ..errors import ExportVerificationError
    from ..io.files import display_path
    from .bundle import convert_to_ort, ort_config_path, ort_path, ort_runner, sha256_file

    name = ort_path(target).name
    try:
        staged_ort, staged_config, how = convert_to_ort(staged)
    except (ImportError, ValueError, ExportError):
        raise
    except Exception as err:
        message = (str(err).strip().splitlines() or [""])[0][:500]
        raise ExportError(f"converting the bundle to ORT format failed: {type(err).__name__}: {message}") from err
    import numpy as np

    run = ort_runner(staged_ort)
    ort_probs = np.asarray(run(inputs))
    del run  # release the session's handle on the staged file before it is moved
    inputs_note = f"{len(inputs)} uint8 images"
    vs_onnx = compare(onnx_probs, ort_probs)
    vs_eager = compare(expected, ort_probs)
    tolerance = report.tolerance
    if (tolerance is not None and vs_onnx[1] > tolerance) or vs_onnx[2] != 1.0:
        raise ExportVerificationError(
            f"the ORT-format copy {name} disagrees with the .onnx in ONNX Runtime: max|diff| {vs_onnx[0]:.3g}, "
            f"relative {vs_onnx[1]:.3g} (tolerance {tolerance:g}), top-1 agreement {100 * vs_onnx[2]:.1f}%; "
            f"nothing written to {display_path(target)}",
            report,
        )
    report.notes.append(
        f"ORT-format copy {name} ({how['optimization_style']} optimization style, level "
        f"{how['optimization_level']}) verified in ONNX Runtime on the same {inputs_note}: max|diff| "
        f"{vs_onnx[0]:.3g} vs the .onnx, {vs_eager[0]:.3g} vs the eager model; top-1 agreement "
        f"{100 * vs_onnx[2]:.0f}%"
    )
    files = [(staged_ort, ort_path(target)), (staged_config, ort_config_path(target))]
    return files, {
        "file": name,
        "sha256": sha256_file(staged_ort),
        "required_operators": ort_config_path(target).name,
        **how,
        "verification": {
            "inputs": inputs_note,
            "reference": "the .onnx bundle in ONNX Runtime",
            "max_abs_diff": vs_onnx[0],
            "top1_agreement": vs_onnx[2],
            "max_abs_diff_eager": vs_eager[0],
            "top1_agreement_eager": vs_eager[2],
        },
    }


def _verify_inputs(verify_inputs: Any, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """``verify_inputs`` as an (N, C, H, W) float32 CPU tensor; default 8 seeded random images of ``size``."""
    import torch

    if verify_inputs is None:
        gen = torch.Generator().manual_seed(0)
        verify_inputs = torch.randn(8, channels, *size, generator=gen)
    verify_inputs = torch.as_tensor(verify_inputs).detach().float().cpu()
    if verify_inputs.ndim == 3:
        verify_inputs = verify_inputs[None]
    if verify_inputs.ndim != 4 or verify_inputs.shape[1] != channels or len(verify_inputs) == 0:
        raise ValueError(f"verify_inputs must have shape (N, {channels}, H, W), got {tuple(verify_inputs.shape)}")
    return verify_inputs


def _calibration(calibration: Any, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """``calibration`` as an (N, C, H, W) float32 CPU tensor at the export ``size``."""
    import torch

    calibration = torch.as_tensor(calibration).detach().float().cpu()
    if calibration.ndim != 4 or tuple(calibration.shape[1:]) != (channels, *size) or len(calibration) == 0:
        raise ValueError(
            f"calibration must have shape (N, {channels}, {size[0]}, {size[1]}), got {tuple(calibration.shape)}"
        )
    return calibration


__all__ = ["REFERENCE", "REFERENCE_BUNDLE", "export"]
