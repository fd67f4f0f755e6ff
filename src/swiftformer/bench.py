"""``swiftformer bench``: latency, throughput, memory and first-call time of every inference path.

    swiftformer bench --model xs                         # every mode whose package is installed
    swiftformer bench --model xs --reference --json      # + transformers' model, ratios against it
    swiftformer bench --model l3 --modes fp32 bf16 --image-size 256 --batch-size 64
    swiftformer bench --model xs --modes fp32 onnxruntime openvino openvino-bf16   # exported runtimes
    swiftformer bench --model xs --modes auto                     # what optimize_for_inference() picks here

Each mode runs in a fresh subprocess (so peak memory, compile caches and allocator state are its own)
on the same weights and inputs: batch-1 latency (median and p90 over ``--iterations`` calls after
``--warmup``), batch-N throughput (median), peak resident memory, the first call's time (which holds
compilation; for the runtime modes the export happens before, untimed), and agreement with the eager model (max |Δlogit| / max |logit|, top-1 agreement).
Every row also says what ran (``precision``, ``backend``: what the module reports, e.g. OpenVINO's actual
precision) and the malloc setting; the report names the CPU (:func:`swiftformer.inference.describe_hardware`).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from typing import Any

MODES = ("reference", "eager", "fused", "fp32", "bf16", "int8", "onnxruntime", "openvino", "openvino-bf16", "auto")
# Everything but the reference; modes whose package is missing are left out.
DEFAULT_MODES = ("eager", "fused", "fp32", "bf16", "int8", "onnxruntime", "openvino", "openvino-bf16", "auto")
# fp32 / bf16 / int8 are optimize_for_inference(backend="inductor"); onnxruntime, openvino and openvino-bf16 are
# optimize_for_inference(backend=...): the graphs `swiftformer export --format onnx / openvino` write, run with
# torch's thread count; auto is optimize_for_inference() with its defaults (precision and backend "auto": its
# batch-1 latency and batch-N throughput may come from different backends, named in the row).


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


def _build(mode: str, model: Any, calibration: Any):
    from .inference import fuse, optimize_for_inference

    if mode == "reference":
        import transformers

        c = model.config
        ref = transformers.SwiftFormerForImageClassification(
            transformers.SwiftFormerConfig(
                depths=c.depths,
                embed_dims=c.embed_dims,
                num_labels=c.num_labels,  # type: ignore[call-arg]  # taken by PreTrainedConfig's **kwargs
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
    if mode == "auto":
        return optimize_for_inference(model)
    if mode == "onnxruntime":
        return optimize_for_inference(model, precision="fp32", backend="onnxruntime")
    if mode in ("openvino", "openvino-bf16"):
        return optimize_for_inference(
            model, precision="bf16" if mode == "openvino-bf16" else "fp32", backend="openvino"
        )
    return optimize_for_inference(
        model, precision=mode, backend="inductor", calibration=calibration if mode == "int8" else None
    )


def measure_mode(args: argparse.Namespace) -> dict[str, Any]:
    """One mode's figures (``args.worker``), measured in this process: the body of a ``--worker`` subprocess."""
    import torch

    from .inference import load_model
    from .perf import tune_malloc

    tuned = tune_malloc() if not args.no_tune_malloc else False
    model = load_model(args.model)  # a folder / hub id, or a variant name with random weights (seed 0)
    size = args.image_size or (
        model.config.image_size if isinstance(model.config.image_size, int) else model.config.image_size[0]
    )
    gen = torch.Generator().manual_seed(1)
    x1 = torch.randn(1, 3, size, size, generator=gen)
    xn = torch.randn(args.batch_size, 3, size, size, generator=gen)
    with torch.inference_mode():
        expected = model(xn).logits
        calibration = torch.randn(32, 3, size, size, generator=gen)
    run = _build(args.worker, model, calibration)
    return _measure(args, run, x1, xn, expected, tuned)


def _measure(args: argparse.Namespace, run: Any, x1: Any, xn: Any, expected: Any, tuned: bool) -> dict[str, Any]:
    import torch

    from .perf import time_calls

    with torch.inference_mode():
        start = time.perf_counter()
        run(x1)
        first_call = time.perf_counter() - start

        lat = sorted(time_calls(lambda: run(x1), args.iterations, warmup=args.warmup))
        out = run(xn).float()  # also the first batch-N call (compiles that shape)
        thr = time_calls(lambda: run(xn), max(3, args.iterations // 10), warmup=max(1, args.warmup // 4))
    diff = ((out - expected).abs().max() / expected.abs().max()).item()
    ran = {"precision": getattr(run, "precision", "fp32"), "backend": getattr(run, "backend", args.worker)}
    if hasattr(run, "backend_for"):  # backend="auto": which backend each figure came from
        ran["backend_batch_1"] = run.backend_for(1, tuple(x1.shape[2:]))
        ran["backend_batch_n"] = run.backend_for(xn.shape[0], tuple(xn.shape[2:]))
    if hasattr(run, "reason"):
        ran["reason"] = run.reason
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
        **ran,
    }
