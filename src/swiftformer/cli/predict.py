"""``swiftformer predict``: classify images, print the top-k labels (or JSON lines)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import add_hub_arguments, fail, hub_options, load_processor


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", required=True, help="model folder or hub id, e.g. MBZUAI/swiftformer-xs")
    p.add_argument("--top-k", type=int, default=5, help="labels per image (default 5)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--no-optimize", action="store_true", help="run the model as loaded, not the fused fast path")
    p.add_argument("--compile", action="store_true", help="also torch.compile the fast path (pays off for many images)")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="fp32 (default; the model's own results) or bf16 (on CPUs with AMX 1.5x faster, 2x with --compile; "
        "logits within ~1e-2 relative)",
    )
    p.add_argument(
        "--backend",
        choices=("inductor", "openvino"),
        default="inductor",
        help="openvino: run the fast path in OpenVINO's CPU plugin (lowest latency per image, no compile "
        "wait; pip install .[export])",
    )
    add_hub_arguments(p)


def check(args: argparse.Namespace) -> str | None:
    """The conflicting-options message, or None."""
    if args.no_optimize and (args.precision != "fp32" or args.backend != "inductor" or args.compile):
        return "--no-optimize runs the model as loaded (fp32, eager): drop --precision, --backend and --compile"
    if args.backend == "openvino" and args.compile:
        return "--compile is for the default backend; --backend openvino compiles the model itself"
    return None


def run(args: argparse.Namespace) -> int:
    problem = check(args)
    if problem:
        return fail(problem)
    import torch

    from ..image_processing import load_image
    from ..modeling import SwiftFormerForImageClassification

    hub = hub_options(args)
    model = SwiftFormerForImageClassification.from_pretrained(args.model, **hub).eval()
    processor = load_processor(args.model, hub)
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
    from ..inference import optimize_for_inference

    if args.backend == "openvino":
        return optimize_for_inference(model, args.precision, backend="openvino")
    return optimize_for_inference(model, args.precision, compile=args.compile)
