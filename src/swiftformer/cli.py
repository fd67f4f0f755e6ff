"""The ``swiftformer`` command line.

    swiftformer predict cat.jpg dog.png --model MBZUAI/swiftformer-xs --top-k 5 [--json]
    swiftformer info --model xs            # or a folder, or a hub id
    swiftformer train --data-dir DATA --variant xs --recipe paper --output runs/xs
    swiftformer eval --data-dir DATA/val --model runs/xs/best [--json]
    swiftformer convert SwiftFormer_XS_ckpt.pth --to swiftformer-xs [--attention-variant softmax]

Heavy imports (torch) happen inside the commands, so ``swiftformer --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def add_hub_arguments(parser: argparse.ArgumentParser) -> None:
    """``--revision``, ``--cache-dir``, ``--local-files-only``: huggingface_hub options for ``--model``."""
    parser.add_argument("--revision", help="hub revision (branch, tag or commit)")
    parser.add_argument("--cache-dir", help="hub cache folder")
    parser.add_argument("--local-files-only", action="store_true", help="never use the network")


def _hub_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"revision": args.revision, "local_files_only": args.local_files_only, "cache_dir": args.cache_dir}


def _fail(message: str) -> int:
    print(f"swiftformer: error: {message}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------------------------------ predict
def _load_processor(model_ref: str, hub: dict[str, Any]):
    from .hub import PREPROCESSOR_NAME, resolve_file
    from .image_processing import SwiftFormerImageProcessor

    if resolve_file(model_ref, PREPROCESSOR_NAME, missing_ok=True, **hub) is None:
        print(f"note: {model_ref} has no {PREPROCESSOR_NAME}; using the ImageNet defaults", file=sys.stderr)
        return SwiftFormerImageProcessor()
    return SwiftFormerImageProcessor.from_pretrained(model_ref, **hub)


def predict(args: argparse.Namespace) -> int:
    import torch

    from .image_processing import load_image
    from .modeling import SwiftFormerForImageClassification

    hub = _hub_options(args)
    model = SwiftFormerForImageClassification.from_pretrained(args.model, **hub).eval()
    processor = _load_processor(args.model, hub)
    classify = (lambda x: model(x).logits) if args.no_optimize else _fast_classifier(model, args)
    top_k = max(1, min(args.top_k, model.config.num_labels))

    results: dict[str, dict[str, Any]] = {}
    ready: list[tuple[str, Any]] = []  # (path, pixel_values (3, H, W))
    for path in args.images:
        try:
            ready.append((path, processor(load_image(path), return_tensors="pt")["pixel_values"][0]))
        except (OSError, ValueError) as err:
            results[path] = {"image": path, "error": str(err)}

    # Batches of consecutive images with equal preprocessed sizes (a shortest-edge resize without a
    # crop keeps each image's aspect ratio, so sizes may differ).
    start = 0
    while start < len(ready):
        end = start + 1
        while end < len(ready) and end - start < args.batch_size and ready[end][1].shape == ready[start][1].shape:
            end += 1
        batch = ready[start:end]
        start = end
        with torch.inference_mode():
            probs = classify(torch.stack([pixels for _, pixels in batch])).float().softmax(dim=-1)
        scores, indices = probs.topk(top_k, dim=-1)
        for (path, _), row_scores, row_indices in zip(batch, scores.tolist(), indices.tolist()):
            results[path] = {
                "image": path,
                "predictions": [
                    {"label": model.config.id2label.get(i, str(i)), "index": i, "score": s}
                    for s, i in zip(row_scores, row_indices)
                ],
            }

    for path in args.images:  # in the order given
        result = results[path]
        if args.json:
            print(json.dumps(result))
        elif "error" in result:
            print(f"{path}: error: {result['error']}", file=sys.stderr)
        else:
            print(path)
            for p in result["predictions"]:
                print(f"  {p['score']:8.4f}  {p['label']} ({p['index']})")
    return 1 if any("error" in r for r in results.values()) else 0


def _fast_classifier(model, args: argparse.Namespace):
    """The reparameterized, micro-batched model in ``--precision`` (no warm-up), optionally compiled
    (worth it for many images), or OpenVINO's CPU plugin with ``--backend openvino``."""
    from .inference import optimize_for_inference

    if args.backend == "openvino":
        return optimize_for_inference(model, args.precision, backend="openvino")
    return optimize_for_inference(model, args.precision, compile=args.compile)


# --------------------------------------------------------------------------------------------- info
def describe(model_ref: str, hub: dict[str, Any], image_size: Sequence[int] | None = None) -> dict[str, Any]:
    """Parameters, MACs, stage shapes and attention variant of a variant name, folder or hub id."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .configuration import VARIANTS, SwiftFormerConfig
    from .modeling import SwiftFormerForImageClassification

    key = model_ref.lower().replace("swiftformer", "").strip("-_ ")
    if key in VARIANTS and not Path(model_ref).exists():
        config = SwiftFormerConfig.from_variant(key, num_labels=1000)
    else:
        config = SwiftFormerConfig.from_pretrained(model_ref, **hub)
    variant = next((name for name, v in VARIANTS.items() if v["depths"] == config.depths and v["embed_dims"] == config.embed_dims), None)
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


def info(args: argparse.Namespace) -> int:
    report = describe(args.model, _hub_options(args), args.image_size)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    h, w = report["input_size"]
    rows = [
        ("model", report["model"] + (f"  (SwiftFormer-{report['variant'].upper()})" if report["variant"] else "")),
        ("attention variant", report["attention_variant"]),
        ("parameters", (f"{report['parameters'] / 1e6:.2f} M  (backbone {report['backbone_parameters'] / 1e6:.2f} M, "
                        f"heads {report['head_parameters'] / 1e6:.2f} M, {report['num_labels']} labels)")),
        (f"MACs at {h}x{w}", f"{report['macs'] / 1e9:.3f} G"),
    ]
    for name, value in rows:
        print(f"{name + ':':20s}{value}")
    print("stages:")
    for s in report["stages"]:
        print(f"  {s['stage']}: {s['depth']:2d} blocks  {s['channels']:4d} x {s['height']} x {s['width']}  (stride {s['stride']})")
    return 0


# ------------------------------------------------------------------------------------------ convert
def convert(args: argparse.Namespace) -> int:
    from .convert import FORMAT_NAMES, convert_checkpoint, describe_architecture

    result = convert_checkpoint(
        args.src, args.to, attention_variant=args.attention_variant, variant=args.variant, ema=args.ema
    )
    attention = result.attention_variant
    if result.attention_source == "override":
        attention += " (--attention-variant)"
    elif result.attention_source == "config.json":
        attention += " (from config.json)"
    elif result.source_format == "original":
        attention += (
            " (default for original checkpoints: the current release, since July 2023; "
            "pass --attention-variant softmax for a first-release file of March 2023)"
        )
    elif result.source_format == "timm":
        attention += " (timm computes l2)"
    else:
        attention += " (transformers' attention; no config.json)"
    rows = [
        ("source", result.source + ("  (EMA weights)" if args.ema else "")),
        ("format", FORMAT_NAMES[result.source_format]),
        ("variant", describe_architecture(result.config)),
        ("attention variant", attention),
        ("num_labels", f"{result.num_labels} ({result.labels})" if result.num_labels else "0 (no heads)"),
        ("class", result.architecture),
        *(("note", note) for note in result.notes),
        ("output", str(result.output_dir)),
    ]
    for name, value in rows:
        print(f"{name + ':':20s}{value}")
    return 0


# ------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swiftformer", description="SwiftFormer image classification.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="classify images", description="Classify images; prints the top-k labels.")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", required=True, help="model folder or hub id, e.g. MBZUAI/swiftformer-xs")
    p.add_argument("--top-k", type=int, default=5, help="labels per image (default 5)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--no-optimize", action="store_true", help="run the model as loaded, not the fused fast path")
    p.add_argument("--compile", action="store_true", help="also torch.compile the fast path (pays off for many images)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="fp32 (default; the model's own results) or bf16 (on CPUs with AMX 1.5x faster, 2x with --compile; "
                        "logits within ~1e-2 relative)")
    p.add_argument("--backend", choices=("inductor", "openvino"), default="inductor",
                   help="openvino: run the fast path in OpenVINO's CPU plugin (lowest latency per image, no compile "
                        "wait; pip install .[export])")
    add_hub_arguments(p)
    p.set_defaults(func=predict)

    p = sub.add_parser("info", help="describe a model", description="Parameters, MACs, stage shapes, attention variant.")
    p.add_argument("--model", required=True, help="variant (xs, s, l1, l3), model folder or hub id")
    p.add_argument("--image-size", type=int, nargs="+", metavar="SIZE", help="input size: one value or height width")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_hub_arguments(p)
    p.set_defaults(func=info)
    from .train_config import add_train_arguments, run_train  # no torch at import

    p = sub.add_parser("train", help="train or fine-tune", description="Train or fine-tune a SwiftFormer (see docs/training.md).")
    add_train_arguments(p)
    p.set_defaults(func=run_train)

    from .bench import add_bench_arguments, run_bench  # no torch at import
    from .evaluate import add_eval_arguments, run_eval
    from .export import add_export_arguments, run_export

    p = sub.add_parser("eval", help="evaluate on a labelled image folder",
                       description="Top-1/top-5, loss, per-class accuracy, confusion matrix on DATA/CLASS/*.jpg.")
    add_eval_arguments(p)
    p.set_defaults(func=run_eval)

    p = sub.add_parser("bench", help="measure inference speed", description="Latency, throughput, memory, first-call "
                       "time and agreement of each inference path (docs/performance.md).")
    add_bench_arguments(p)
    p.set_defaults(func=run_bench)

    p = sub.add_parser("export", help="export to ONNX, OpenVINO, ExecuTorch, CoreML, AOTInductor, TFLite or SavedModel",
                       description="Export the fused model and verify the result in its runtime (docs/export.md).")
    add_export_arguments(p)
    p.set_defaults(func=run_export)

    from .configuration import ATTENTION_VARIANTS, VARIANTS  # no torch at import

    p = sub.add_parser(
        "convert",
        help="convert an original-repository, timm or transformers checkpoint",
        description="Convert a checkpoint of the original repository (Amshaker/SwiftFormer), timm or transformers "
        "into a model folder; the architecture is read from the tensor shapes (docs/checkpoints.md).",
    )
    p.add_argument("src", help=".pth/.pt/.bin/.safetensors file, model folder or hub id")
    p.add_argument("--to", required=True, metavar="DIR", help="output model folder")
    p.add_argument(
        "--attention-variant",
        choices=ATTENTION_VARIANTS,
        help="default: l2 for original-repository checkpoints (the current release; pass softmax for "
        "first-release files of March 2023) and timm; for transformers checkpoints the folder's "
        "config.json, else softmax",
    )
    p.add_argument("--variant", choices=list(VARIANTS), help="fail unless the checkpoint is this variant")
    p.add_argument("--ema", action="store_true", help="take the EMA weights (model_ema) of a training checkpoint")
    p.set_defaults(func=convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for option in ("top_k", "batch_size"):
        if getattr(args, option, 1) < 1:
            return _fail(f"--{option.replace('_', '-')} must be at least 1, got {getattr(args, option)}")
    if args.command == "predict":
        if args.no_optimize and (args.precision != "fp32" or args.backend != "inductor" or args.compile):
            return _fail("--no-optimize runs the model as loaded (fp32, eager): drop --precision, --backend and --compile")
        if args.backend == "openvino" and args.compile:
            return _fail("--compile is for the default backend; --backend openvino compiles the model itself")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logging.getLogger("swiftformer").addHandler(handler)  # our warnings only; other libraries log their own
    warnings.simplefilter("default")
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `swiftformer info ... | head`
        sys.stderr.close()
        return 0
    except (OSError, ValueError, TypeError, ImportError) as err:  # clear one-line errors, no stack trace
        return _fail(str(err))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
