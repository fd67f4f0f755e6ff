"""``swiftformer info``: parameters, MACs, stage shapes and attention variant of a model; ``--hardware``: the CPU
and what ``precision="auto"`` / ``backend="auto"`` pick on it."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import add_hub_arguments, fail, hub_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="variant (xs, s, l1, l3), model folder or hub id (required without --hardware)")
    p.add_argument("--image-size", type=int, nargs="+", metavar="SIZE", help="input size: one value or height width")
    p.add_argument(
        "--hardware",
        action="store_true",
        help="the CPU (model, ISA features, threads) and what precision/backend 'auto' picks on it",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_hub_arguments(p)


def describe(model_ref: str, hub: dict[str, Any], image_size: Sequence[int] | None = None) -> dict[str, Any]:
    """Parameters, MACs, stage shapes and attention variant of a variant name, folder or hub id."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..configuration import VARIANTS, SwiftFormerConfig
    from ..modeling import SwiftFormerForImageClassification

    key = model_ref.lower().replace("swiftformer", "").strip("-_ ")
    if key in VARIANTS and not Path(model_ref).exists():
        config = SwiftFormerConfig.from_variant(key, num_labels=1000)
    else:
        config = SwiftFormerConfig.from_pretrained(model_ref, **hub)
    variant = next(
        (name for name, v in VARIANTS.items() if v["depths"] == config.depths and v["embed_dims"] == config.embed_dims),
        None,
    )
    size = config.image_size if image_size is None else image_size
    height, width = (size, size) if isinstance(size, int) else (size[0], size[-1])

    with torch.device("meta"):  # shapes and counts only: no memory, no weight init
        model = SwiftFormerForImageClassification(config).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.empty(1, config.num_channels, height, width))
    backbone = model.swiftformer.num_parameters()
    # The stride is the network's (stem 4, x down_stride per downsampling), not H / h: 97 px make 25 at stride 4.
    strides = [info["reduction"] for info in model.feature_info]
    stages = [
        {"stage": i, "depth": d, "channels": c, "height": h, "width": w, "stride": stride}
        for i, (d, c, (h, w), stride) in enumerate(
            zip(config.depths, config.embed_dims, model.stage_shapes(height, width), strides)
        )
    ]
    return {
        "model": model_ref,
        "variant": variant,
        "attention_variant": config.attention_variant,
        "parameters": model.num_parameters(),
        "backbone_parameters": backbone,
        "head_parameters": model.num_parameters() - backbone,
        "input_size": [height, width],
        "macs": counter.get_total_flops() // 2,  # a multiply-add is two flops
        "num_labels": config.num_labels,
        "hidden_act": config.hidden_act,
        "stages": stages,
    }


def check_image_size(sizes: Sequence[int] | None) -> str | None:
    """What is wrong with ``--image-size`` (one value, or height and width, each 1 to the config's limit), or None."""
    from ..configuration import LIMITS

    if sizes is None:
        return None
    limit = LIMITS["image_size"]
    if len(sizes) > 2 or any(not 1 <= size <= limit for size in sizes):
        given = " ".join(map(str, sizes))
        return f"--image-size takes one size or a height and a width, each from 1 to {limit} pixels; got {given}"
    return None


def run(args: argparse.Namespace) -> int:
    if not args.model and not args.hardware:
        return fail("--model is required (or --hardware for this machine's CPU alone)")
    from ..inference import describe_hardware

    hardware = describe_hardware() if args.hardware else None
    if not args.model:
        assert hardware is not None  # --hardware (checked above)
        if args.json:
            print(json.dumps(hardware, indent=2))
        else:
            _print_hardware(hardware)
        return 0
    problem = check_image_size(args.image_size)
    if problem:
        return fail(problem)
    from ..detection.config import is_detector
    from ..modeling_segmentation import is_segmentation_folder

    for kind, found in (("detection", is_detector), ("semantic segmentation", is_segmentation_folder)):
        if found(args.model):  # read as a classifier, its head would be left out of every figure
            return fail(f"{args.model} is a {kind} model; info describes image classifiers (variants, model folders)")
    report = describe(args.model, hub_options(args), args.image_size)
    if hardware is not None:
        report["hardware"] = hardware
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    h, w = report["input_size"]
    rows = [
        ("model", report["model"] + (f"  (SwiftFormer-{report['variant'].upper()})" if report["variant"] else "")),
        ("attention variant", report["attention_variant"]),
        (
            "parameters",
            (
                f"{report['parameters'] / 1e6:.2f} M  (backbone {report['backbone_parameters'] / 1e6:.2f} M, "
                f"heads {report['head_parameters'] / 1e6:.2f} M, {report['num_labels']} labels)"
            ),
        ),
        (f"MACs at {h}x{w}", f"{report['macs'] / 1e9:.3f} G"),
    ]
    for name, value in rows:
        print(f"{name + ':':20s}{value}")
    print("stages:")
    for s in report["stages"]:
        print(
            f"  {s['stage']}: {s['depth']:2d} blocks  {s['channels']:4d} x {s['height']} x {s['width']}  (stride {s['stride']})"
        )
    if hardware is not None:
        _print_hardware(hardware)
    return 0


def _print_hardware(hw: dict[str, Any]) -> None:
    """The ``--hardware`` report as aligned lines."""
    threads = hw["torch_threads"] if hw["torch_threads"] is not None else "unknown (no torch)"
    rows = [
        ("cpu", f"{hw['cpu']} ({hw['vendor']})"),
        ("isa", ", ".join(hw["isa"]) or "no AVX2/AVX-512"),
        ("cores", f"{hw['cores']} usable by this process; torch threads {threads}"),
        ("torch capability", hw["torch_capability"] or "unknown"),
        ("native bf16 / int8", f"{'yes' if hw['native_bf16'] else 'no'} / {'yes' if hw['native_int8'] else 'no'}"),
        ("auto precision", hw["auto_precision_reason"]),
        ("  with calibration", hw["auto_precision_with_calibration_reason"]),
        ("auto backend", f"batch 1: {hw['auto_backend_batch_1_reason']}"),
        ("", f"batch 32: {hw['auto_backend_batch_32_reason']}"),
        ("installed backends", ", ".join(hw["installed_backends"])),
    ]
    print("hardware:")
    for name, value in rows:
        print(f"  {name + ':' if name else '':20s}{value}")
