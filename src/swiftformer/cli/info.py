"""``swiftformer info``: parameters, MACs, stage shapes and attention variant of a model."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import add_hub_arguments, hub_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="variant (xs, s, l1, l3), model folder or hub id")
    p.add_argument("--image-size", type=int, nargs="+", metavar="SIZE", help="input size: one value or height width")
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
    stages = [
        {"stage": i, "depth": d, "channels": c, "height": h, "width": w, "stride": round(height / h) if h else None}
        for i, (d, c, (h, w)) in enumerate(zip(config.depths, config.embed_dims, model.stage_shapes(height, width)))
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


def run(args: argparse.Namespace) -> int:
    report = describe(args.model, hub_options(args), args.image_size)
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
    return 0
