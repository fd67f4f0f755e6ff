"""``swiftformer export``: the fused model to any format of :data:`swiftformer.export.FORMATS` (ONNX,
OpenVINO, ExecuTorch, Core ML, AOTInductor, TFLite, SavedModel), verified in its runtime. The choices and
the help texts are read from the format records."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from ..errors import ExportError, ExportVerificationError
from ..export.common import NUM_CALIBRATION
from ..export.formats import ARTIFACT_PRECISIONS, FORMATS, bundle_formats, precision_formats
from .common import add_hub_arguments, hub_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``swiftformer export --model M --format F --output PATH [--precision P] [--image-size N] ...``"""
    parser.add_argument(
        "--model", required=True, help="model folder or hub id, or a variant name (xs, s, l1, l3) with random weights"
    )
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="target format")
    files = [f.extension for f in FORMATS.values() if not f.is_directory]
    directories = [f.name + (f" {f.extension}" if f.extension else "") for f in FORMATS.values() if f.is_directory]
    parser.add_argument(
        "--output",
        required=True,
        help=f"file ({', '.join(files)}; added to a new path without a suffix) or directory "
        f"({', '.join(directories)}); only an earlier export of the format is replaced",
    )
    reduced = [f"{p}: {', '.join(names)}" for p, names in precision_formats().items() if p != "fp32"]
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=ARTIFACT_PRECISIONS,
        help=f"fp32 (default); {'; '.join(reduced)} (calibrated on --calibration)",
    )
    parser.add_argument(
        "--calibration",
        metavar="DIR",
        help="folder of images to calibrate int8 on (searched recursively, every class folder sampled), "
        "normalized with the model's mean/std",
    )
    parser.add_argument(
        "--num-calibration",
        type=int,
        default=NUM_CALIBRATION,
        metavar="N",
        help=f"calibration images to use (default {NUM_CALIBRATION})",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        metavar="N",
        help="input size N x N (static formats; verification images); default: the model's",
    )
    parser.add_argument(
        "--opset",
        type=int,
        help="ONNX opset, at least 18 (default: swiftformer.inference.ONNX_OPSET, the first with a native Gelu)",
    )
    parser.add_argument(
        "--bundle",
        action="store_true",
        help="an app-ready bundle ("
        + ", ".join(f"{name}: {'/'.join(precisions)}" for name, precisions in bundle_formats().items())
        + "): 8-bit RGB in at the processor's size (uint8 (batch, H, W, 3); Core ML: an image), normalization "
        "folded in, probabilities out, labels inside (ONNX metadata, Core ML classifier); labels.txt and "
        "manifest.json beside it",
    )
    parser.add_argument(
        "--bundle-info",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a bundle's metadata, repeatable: name, description, version, license, author "
        "(e.g. --bundle-info license=Apache-2.0)",
    )
    parser.add_argument(
        "--verify-images",
        metavar="DIR",
        help="a bundle is verified on up to --num-verify images of this folder (warped to its input size) instead "
        "of random pixels",
    )
    parser.add_argument("--num-verify", type=int, default=8, help="random verification images (default 8)")
    parser.add_argument("--latency-runs", type=int, default=20, help="timed batch-1 runs (default 20; 0: skip)")
    parser.add_argument("--tolerance", type=float, help="max relative logit difference (default: per format)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_hub_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Load, export, verify, print the report; 0 on success, 1 when verification fails, 2 on errors."""
    hub = hub_options(args)
    if args.num_verify < 1:
        print("swiftformer: error: --num-verify must be at least 1", file=sys.stderr)
        return 2
    try:
        from ..export import export
        from ..inference import load_model

        model = load_model(args.model, hub)
        options = _bundle_options(args, model, hub) if args.bundle else _tensor_options(args, model, hub)
        # Converters print progress; with --json stdout must hold the JSON object only.
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            report = export(
                model,
                args.output,
                args.format,
                precision=args.precision,
                opset=args.opset,
                tolerance=args.tolerance,
                latency_runs=args.latency_runs,
                **options,
            )
    except (ImportError, ExportError, ValueError, OSError) as err:
        return _failed(args, err)
    return _print(args, report)


def _tensor_options(args: argparse.Namespace, model: Any, hub: dict[str, Any]) -> dict[str, Any]:
    """A plain export's inputs: seeded random ``pixel_values`` at the export size to verify on, and the
    calibration images of ``--calibration``."""
    given = [
        flag for flag, value in (("--bundle-info", args.bundle_info), ("--verify-images", args.verify_images)) if value
    ]
    if given:
        raise ValueError(f"{' and '.join(given)} apply to --bundle only")
    import torch

    from ..export import load_calibration_images
    from ..export.common import export_image_size

    size = export_image_size(model, args.image_size)
    gen = torch.Generator().manual_seed(0)
    options: dict[str, Any] = {
        "image_size": size,
        "verify_inputs": torch.randn(args.num_verify, model.config.num_channels, *size, generator=gen),
    }
    if args.calibration:
        options["calibration"] = load_calibration_images(args.calibration, size, args.num_calibration, args.model, hub)
    return options


def _bundle_options(args: argparse.Namespace, model: Any, hub: dict[str, Any]) -> dict[str, Any]:
    """``--bundle``: the model folder's image processor decides the input size and normalization; seeded random
    uint8 images at that size to verify on, and for int8 the images of ``--calibration`` as uint8 pixels."""
    import numpy as np

    from ..export.bundle import bundle_spec
    from ..export.common import export_image_size, load_calibration_pixels
    from ..export.formats import get_format
    from ..image_processing import load_processor

    get_format(args.format).check_bundle(args.precision)
    if args.calibration and args.precision != "int8":
        raise ValueError(f"--calibration calibrates int8; this bundle is {args.precision}")
    info = dict(_key_value(item) for item in args.bundle_info)
    loaded, note = load_processor(args.model, **hub)
    processor = None if note else loaded  # no preprocessor_config.json: the defaults, noted in the report
    size = None if args.image_size is None else export_image_size(model, args.image_size)
    spec = bundle_spec(model, processor, size, info)  # checks the info before any work
    if args.verify_images:
        images = load_calibration_pixels(args.verify_images, spec.size, args.num_verify)
    else:
        images = np.random.default_rng(0).integers(0, 256, (args.num_verify, *spec.size, 3), dtype=np.uint8)
    options = {
        "image_size": size,
        "verify_inputs": images,
        "bundle": True,
        "image_processor": processor,
        "bundle_info": info,
    }
    if args.calibration:
        options["calibration"] = load_calibration_pixels(args.calibration, spec.size, args.num_calibration)
    return options


def _key_value(item: str) -> tuple[str, str]:
    """``KEY=VALUE`` of ``--bundle-info`` as a pair (the keys are checked by the bundle)."""
    key, sep, value = item.partition("=")
    if not sep:
        raise ValueError(f"--bundle-info takes KEY=VALUE, got {item!r}")
    return key.strip(), value


def _failed(args: argparse.Namespace, err: Exception) -> int:
    if isinstance(err, ExportVerificationError):
        if args.json:
            print(json.dumps(err.report.to_dict(), indent=2))
        else:
            print(err.report.summary())
        print(f"swiftformer: error: {err}", file=sys.stderr)
        return 1
    print(f"swiftformer: error: {err}", file=sys.stderr)
    return 2


def _print(args: argparse.Namespace, report: Any) -> int:
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0
