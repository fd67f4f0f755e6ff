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
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

MODES = ("reference", "eager", "fused", "fp32", "bf16", "int8", "onnxruntime", "openvino", "openvino-bf16")
# Everything but the reference; modes whose package is missing are left out.
DEFAULT_MODES = ("eager", "fused", "fp32", "bf16", "int8", "onnxruntime", "openvino", "openvino-bf16")
# onnxruntime times the `swiftformer export` ONNX file; openvino / openvino-bf16 are
# optimize_for_inference(backend="openvino"), the same OpenVINO model as `swiftformer export --format openvino`.


def _available(mode: str) -> bool:
    import importlib.util

    need = {"reference": "transformers", "int8": "torchao", "onnxruntime": "onnxruntime",
            "openvino": "openvino", "openvino-bf16": "openvino"}.get(mode)
    return need is None or importlib.util.find_spec(need) is not None


def _onnxruntime(model: Any, folder: str):
    """Export ``model`` to ONNX in ``folder`` (:func:`swiftformer.export.export`) and return a
    ``pixel_values -> logits`` callable running it in onnxruntime (dynamic batch and size)."""
    import onnxruntime as ort
    import torch

    from .export import export

    path = os.path.join(folder, "model.onnx")
    export(model, path, "onnx", latency_runs=0)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(["logits"], {"pixel_values": x.numpy()})[0])


def _build(mode: str, model: Any, calibration: Any, folder: str):
    from .inference import fuse, optimize_for_inference

    if mode == "reference":
        import transformers

        c = model.config
        ref = transformers.SwiftFormerForImageClassification(transformers.SwiftFormerConfig(
            depths=c.depths, embed_dims=c.embed_dims, num_labels=c.num_labels, hidden_act=c.hidden_act,
            mlp_ratio=c.mlp_ratio, downsamples=c.downsamples, use_layer_scale=c.use_layer_scale))
        ref.load_state_dict(model.state_dict())
        return lambda x: ref.eval()(x).logits
    if mode == "eager":
        return lambda x: model(x).logits
    if mode == "fused":
        return fuse(model)
    if mode == "onnxruntime":
        return _onnxruntime(model, folder)
    if mode in ("openvino", "openvino-bf16"):
        return optimize_for_inference(model, precision="bf16" if mode == "openvino-bf16" else "fp32", backend="openvino")
    return optimize_for_inference(model, precision=mode, calibration=calibration if mode == "int8" else None)


def _worker(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from .export import load_model
    from .runtime import tune_malloc

    tuned = tune_malloc() if not args.no_tune_malloc else False
    model = load_model(args.model)  # a folder / hub id, or a variant name with random weights (seed 0)
    size = args.image_size or (model.config.image_size if isinstance(model.config.image_size, int) else model.config.image_size[0])
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
        "mode": args.worker, "image_size": x1.shape[-1], "batch_size": args.batch_size, "threads": torch.get_num_threads(),
        "malloc_tuned": tuned,
        "latency_ms_median": 1e3 * statistics.median(lat), "latency_ms_p90": 1e3 * lat[int(0.9 * (len(lat) - 1))],
        "throughput_img_s": args.batch_size / statistics.median(thr),
        "first_call_s": first_call,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "max_rel_diff": diff, "top1_agreement": (out.argmax(-1) == expected.argmax(-1)).float().mean().item(),
    }


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="xs", help="variant (xs, s, l1, l3; random weights) or model folder / hub id")
    parser.add_argument("--modes", nargs="+", choices=MODES, help=f"default: {' '.join(DEFAULT_MODES)} (those installed)")
    parser.add_argument("--reference", action="store_true", help="add transformers' model and ratios against it")
    parser.add_argument("--image-size", type=int, help="default: the model's image_size")
    parser.add_argument("--batch-size", type=int, default=32, help="batch for the throughput figure (default 32)")
    parser.add_argument("--iterations", type=int, default=100, help="timed batch-1 calls (default 100)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls before timing (default 20)")
    parser.add_argument("--no-tune-malloc", action="store_true", help="keep glibc's malloc defaults")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)


def run_bench(args: argparse.Namespace) -> int:
    if args.worker:  # inside the subprocess of one mode
        print(json.dumps(_worker(args)))
        return 0
    modes = list(args.modes or [m for m in DEFAULT_MODES if _available(m)])
    if args.reference and "reference" not in modes:
        modes.insert(0, "reference")
    rows = []
    for mode in modes:
        if not _available(mode):
            rows.append({"mode": mode, "error": "not installed (pip install .[export] / .[reference])"})
            continue
        command = [sys.executable, "-m", "swiftformer", "bench", "--worker", mode, "--model", args.model,
                   "--batch-size", str(args.batch_size), "--iterations", str(args.iterations), "--warmup", str(args.warmup)]
        command += ["--image-size", str(args.image_size)] if args.image_size else []
        command += ["--no-tune-malloc"] if args.no_tune_malloc else []
        if not args.json:
            print(f"running {mode} ...", file=sys.stderr, flush=True)
        result = subprocess.run(command, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr.strip().splitlines() or ["failed"])[-1]
            rows.append({"mode": mode, "error": tail})
            continue
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    base = next((r for r in rows if r["mode"] == "reference" and "error" not in r), None)
    for r in rows:
        if base and "error" not in r:
            r["latency_speedup"] = base["latency_ms_median"] / r["latency_ms_median"]
            r["throughput_speedup"] = r["throughput_img_s"] / base["throughput_img_s"]
    if args.json:
        print(json.dumps({"model": args.model, "rows": rows}, indent=2))
        return 0
    ok = [r for r in rows if "error" not in r]
    if ok:
        r0 = ok[0]
        print(f"model {args.model}, {r0['image_size']}x{r0['image_size']}, {r0['threads']} threads, "
              f"malloc tuned: {r0['malloc_tuned']}; batch-1 latency over {args.iterations} calls, throughput at batch {args.batch_size}")
    print(f"{'mode':10s} {'lat ms':>8s} {'p90 ms':>8s} {'img/s':>8s} {'first s':>8s} {'peak MB':>8s} {'rel diff':>9s} {'top1':>6s}"
          + (f" {'lat x':>6s} {'thr x':>6s}" if base else ""))
    for r in rows:
        if "error" in r:
            print(f"{r['mode']:10s} error: {r['error']}")
            continue
        line = (f"{r['mode']:10s} {r['latency_ms_median']:8.2f} {r['latency_ms_p90']:8.2f} {r['throughput_img_s']:8.1f} "
                f"{r['first_call_s']:8.1f} {r['peak_rss_mb']:8.0f} {r['max_rel_diff']:9.1e} {100 * r['top1_agreement']:5.1f}%")
        if base:
            line += f" {r['latency_speedup']:5.2f}x {r['throughput_speedup']:5.2f}x"
        print(line)
    return 0
