"""``swiftformer bench``: latency, throughput, memory and first-call time of every inference path.

    swiftformer bench --model xs                         # every mode whose package is installed
    swiftformer bench --model xs --reference --json      # + transformers' model, ratios against it
    swiftformer bench --model l3 --modes fp32 bf16 --image-size 256 --batch-size 64
    swiftformer bench --model xs --modes fp32 onnxruntime openvino openvino-bf16   # exported runtimes

Each mode runs in a fresh subprocess (so peak memory, compile caches and allocator state are its own)
on the same weights and inputs: batch-1 latency (median and p90 over ``--iterations`` calls after
``--warmup``), batch-N throughput (median), peak resident memory, the first call's time (which holds
compilation; for the runtime modes the export happens before, untimed), and agreement with the eager model (max |Δlogit| / max |logit|, top-1 agreement).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from typing import Any

MODES = ("reference", "eager", "fused", "fp32", "bf16", "int8", "onnxruntime", "openvino", "openvino-bf16")
# Everything but the reference; modes whose package is missing are left out.
DEFAULT_MODES = ("eager", "fused", "fp32", "bf16", "int8", "onnxruntime", "openvino", "openvino-bf16")
# onnxruntime times the `swiftformer export` ONNX file; openvino / openvino-bf16 are
# optimize_for_inference(backend="openvino"), the same OpenVINO model as `swiftformer export --format openvino`.


def available(mode: str) -> bool:
    """Whether the package a mode needs is installed."""
    import importlib.util

    need = {
        "reference": "transformers",
        "int8": "torchao",
        "onnxruntime": "onnxruntime",
        "openvino": "openvino",
        "openvino-bf16": "openvino",
    }.get(mode)
    return need is None or importlib.util.find_spec(need) is not None


def _onnxruntime(model: Any, folder: str):
    """Export ``model`` to ONNX in ``folder`` (:func:`swiftformer.export.export`) and return a
    ``pixel_values -> logits`` callable running it in onnxruntime (dynamic batch and size)."""
    import onnxruntime as ort
    import torch

    from .export.pytorch import export

    path = os.path.join(folder, "model.onnx")
    export(model, path, "onnx", latency_runs=0)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(["logits"], {"pixel_values": x.numpy()})[0])


def _build(mode: str, model: Any, calibration: Any, folder: str):
    from .inference import fuse, optimize_for_inference

    if mode == "reference":
        import transformers

        c = model.config
        ref = transformers.SwiftFormerForImageClassification(
            transformers.SwiftFormerConfig(
                depths=c.depths,
                embed_dims=c.embed_dims,
                num_labels=c.num_labels,
                hidden_act=c.hidden_act,
                mlp_ratio=c.mlp_ratio,
                downsamples=c.downsamples,
                use_layer_scale=c.use_layer_scale,
            )
        )
        ref.load_state_dict(model.state_dict())
        return lambda x: ref.eval()(x).logits
    if mode == "eager":
        return lambda x: model(x).logits
    if mode == "fused":
        return fuse(model)
    if mode == "onnxruntime":
        return _onnxruntime(model, folder)
    if mode in ("openvino", "openvino-bf16"):
        return optimize_for_inference(
            model, precision="bf16" if mode == "openvino-bf16" else "fp32", backend="openvino"
        )
    return optimize_for_inference(model, precision=mode, calibration=calibration if mode == "int8" else None)


def measure_mode(args: argparse.Namespace) -> dict[str, Any]:
    """One mode's figures (``args.worker``), measured in this process: the body of a ``--worker`` subprocess."""
    import torch

    from .inference import load_model
    from .runtime import tune_malloc

    tuned = tune_malloc() if not args.no_tune_malloc else False
    model = load_model(args.model)  # a folder / hub id, or a variant name with random weights (seed 0)
    size = args.image_size or (
        model.config.image_size if isinstance(model.config.image_size, int) else model.config.image_size[0]
    )
    gen = torch.Generator().manual_seed(1)
    x1 = torch.randn(1, 3, size, size, generator=gen)
    xn = torch.randn(args.batch_size, 3, size, size, generator=gen)
    folder = tempfile.mkdtemp(prefix="swiftformer-bench-")
    with torch.inference_mode():
        expected = model(xn).logits
        calibration = torch.randn(32, 3, size, size, generator=gen)
    try:
        run = _build(args.worker, model, calibration, folder)
        return _measure(args, run, x1, xn, expected, tuned)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _measure(args: argparse.Namespace, run: Any, x1: Any, xn: Any, expected: Any, tuned: bool) -> dict[str, Any]:
    import torch

    from .runtime import time_calls

    with torch.inference_mode():
        start = time.perf_counter()
        run(x1)
        first_call = time.perf_counter() - start

        lat = sorted(time_calls(lambda: run(x1), args.iterations, warmup=args.warmup))
        out = run(xn).float()  # also the first batch-N call (compiles that shape)
        thr = time_calls(lambda: run(xn), max(3, args.iterations // 10), warmup=max(1, args.warmup // 4))
    diff = ((out - expected).abs().max() / expected.abs().max()).item()
    return {
        "mode": args.worker,
        "image_size": x1.shape[-1],
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "malloc_tuned": tuned,
        "latency_ms_median": 1e3 * statistics.median(lat),
        "latency_ms_p90": 1e3 * lat[int(0.9 * (len(lat) - 1))],
        "throughput_img_s": args.batch_size / statistics.median(thr),
        "first_call_s": first_call,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "max_rel_diff": diff,
        "top1_agreement": (out.argmax(-1) == expected.argmax(-1)).float().mean().item(),
    }
