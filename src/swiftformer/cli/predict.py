"""``swiftformer predict``: classify images, print the top-k labels (or JSON lines)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import add_hub_arguments, fail, hub_options, load_processor

PRECISION_CHOICES = ("auto", "fp32", "bf16")
BACKEND_CHOICES = ("auto", "inductor", "openvino", "onnxruntime")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", required=True, help="model folder or hub id, e.g. MBZUAI/swiftformer-xs")
    p.add_argument("--top-k", type=int, default=5, help="labels per image (default 5)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--no-optimize", action="store_true", help="run the model as loaded, not the fused fast path")
    p.add_argument(
        "--compile",
        action="store_true",
        help="also torch.compile the inductor path (pays off for many images; with --backend auto, batches "
        "above 4 then run on it)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default="auto",
        help="auto (default): bf16 where the CPU computes it natively (AVX512-BF16, AMX), else fp32; fp32: the "
        "model's own results; bf16: logits within ~1e-2 relative, and slow (with a warning) without native bf16",
    )
    p.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="auto (default): per batch size from what is installed (ONNX Runtime or OpenVINO for small "
        "batches, and for all without --compile; inductor for large ones with --compile); inductor: the "
        "fused PyTorch model; openvino / onnxruntime: exported in memory and run there (pip install .[export])",
    )
    add_hub_arguments(p)


def check(args: argparse.Namespace) -> str | None:
    """The conflicting-options message, or None."""
    if args.no_optimize and (args.precision not in ("auto", "fp32") or args.backend != "auto" or args.compile):
        return "--no-optimize runs the model as loaded (fp32, eager): drop --precision, --backend and --compile"
    if args.backend in ("openvino", "onnxruntime") and args.compile:
        return f"--compile is for the inductor backend; --backend {args.backend} compiles the model itself"
    if args.backend == "onnxruntime" and args.precision == "bf16":
        return "--backend onnxruntime runs fp32 only: use --backend openvino or inductor for bf16"
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
            logits = classify(torch.stack([pixels for _, pixels in batch])).float()
        finite = torch.isfinite(logits).all(dim=-1).tolist()
        scores, indices = logits.softmax(dim=-1).topk(top_k, dim=-1)
        for (path, _), ok, row_scores, row_indices in zip(batch, finite, scores.tolist(), indices.tolist()):
            if not ok:  # NaN scores would be invalid JSON and meaningless rankings
                results[path] = {
                    "image": path,
                    "error": "the model's logits for this image are not finite (NaN or inf)",
                }
                continue
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
            print(json.dumps(result, allow_nan=False))
        elif "error" in result:
            print(f"{path}: error: {result['error']}", file=sys.stderr)
        else:
            print(path)
            for p in result["predictions"]:
                print(f"  {p['score']:8.4f}  {p['label']} ({p['index']})")
    return 1 if any("error" in r for r in results.values()) else 0


def _fast_classifier(model, args: argparse.Namespace):
    """The reparameterized model at ``--precision`` on ``--backend`` (each backend built on its first batch),
    optionally compiled; says on stderr (never stdout: --json) which precision and backend, and why."""
    from ..inference import optimize_for_inference

    fast = optimize_for_inference(model, args.precision, compile=args.compile, backend=args.backend)
    print(f"note: {fast.reason}", file=sys.stderr)
    return fast
