"""Session options of the two exported runtimes on this CPU: ONNX Runtime (graph optimization level, thread
spinning) and OpenVINO (performance hint), on the fused fp32 model; batch-1 latency and batch-N throughput,
medians. Shows whether the settings ``inference.ONNXRuntimeClassifier`` / ``OpenVINOClassifier`` use are the
best here (docs/performance.md).

    .venv/bin/python benchmarks/runtime_options.py --model xs --runs 30
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import numpy as np
import torch

from swiftformer.hardware import hardware_line
from swiftformer.inference import export_onnx_graph, fuse, load_model, openvino_model, runtime_example
from swiftformer.perf import time_calls, tune_malloc


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="xs", help="variant name or model folder (default xs)")
    p.add_argument("--runs", type=int, default=30, help="timed batch-1 calls (batch-N: a sixth of them)")
    p.add_argument("--batch-size", type=int, default=32)
    return p.parse_args(argv)


def report(name: str, run: Callable[[np.ndarray], object], size: int, batch_size: int, runs: int) -> None:
    x1 = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    xn = np.random.default_rng(1).standard_normal((batch_size, 3, size, size), dtype=np.float32)
    latency = statistics.median(time_calls(lambda: run(x1), runs, warmup=5))
    throughput = batch_size / statistics.median(time_calls(lambda: run(xn), max(3, runs // 6), warmup=1))
    print(f"{name:<28} batch 1 {1e3 * latency:7.1f} ms   batch {batch_size} {throughput:7.1f} img/s", flush=True)


def main(argv=None) -> int:
    import onnxruntime as ort
    import openvino as ov

    args = parse_args(argv)
    tune_malloc()
    threads = torch.get_num_threads()
    print(f"CPU: {hardware_line()}; {threads} threads")
    model = load_model(args.model)
    fused = fuse(model)
    example, dims = runtime_example(model.config)
    size = example.shape[-1]
    proto = export_onnx_graph(fused, example, dims).SerializeToString()
    for name, level, spinning in [
        ("onnxruntime ALL", ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "1"),
        ("onnxruntime ALL, no spinning", ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "0"),
        ("onnxruntime EXTENDED", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "1"),
    ]:
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        session = ort.InferenceSession(proto, options, providers=["CPUExecutionProvider"])
        report(name, lambda a, s=session: s.run(["logits"], {"pixel_values": a}), size, args.batch_size, args.runs)
    ov_model, _ = openvino_model(fused, example, dims)
    for hint in (None, "LATENCY", "THROUGHPUT"):
        properties = {"INFERENCE_PRECISION_HINT": "f32", **({"PERFORMANCE_HINT": hint} if hint else {})}
        compiled = ov.Core().compile_model(ov_model, "CPU", properties)
        name = f"openvino {hint or 'default'} ({compiled.get_property('NUM_STREAMS')} stream(s))"
        report(name, lambda a, c=compiled: c(a)[0], size, args.batch_size, args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
