"""Where the time of the optimized model goes: a torch.profiler breakdown by kind of operation.

    python benchmarks/profile_ops.py --model xs --precision fp32 --batch-size 1
    python benchmarks/profile_ops.py --model xs --precision bf16 --batch-size 32 --top 15

Profiles :func:`swiftformer.optimize_for_inference` (compiled, after warm-up) and groups the CPU time of
each kernel: 1×1 convolutions / linears (the matrix products; by stage resolution), 3×3 depth-wise
convolutions, the stem and downsampling 3×3 convolutions, and inductor's generated kernels (the fused
element-wise work: GELU, normalize, reductions, residual adds, layout copies), plus the MACs of the
matrix-product groups and the GFLOP/s they reach.

Use it to see which kernels run, not for how long: under the profiler some kernels of the batch-32
graph showed 10x their wall-clock time. ``profile_blocks.py`` times blocks without the profiler.
"""

from __future__ import annotations

import argparse
import collections
import math

import torch
from torch.profiler import ProfilerActivity, profile

from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification, optimize_for_inference
from swiftformer.perf import tune_malloc


def kind_of(name: str, shapes: list, batch_size: int) -> tuple[str, float]:
    """(group, MACs) of one profiled op from its name and input shapes. The fused-add variants
    (``_convolution_pointwise_``, binary ``_linear_pointwise``) take the tensor to add second."""
    if not shapes or not shapes[0]:
        return ("generated element-wise kernels" if "CompiledFxGraph" in name else "other"), 0.0
    x = shapes[0]
    if "convolution" in name:
        weight = (
            shapes[2] if len(shapes) > 2 and shapes[1] and shapes[1][0] == x[0] and len(shapes[2]) == 4 else shapes[1]
        )
        out_ch, in_per_group, kh, kw = weight
        if kh == 1 and kw == 1:
            return f"1x1 conv {x[2]}x{x[3]}", float(x[0] * x[2] * x[3] * out_ch * in_per_group)
        if in_per_group == 1:
            return "3x3 depth-wise conv", float(x[0] * x[2] * x[3] * out_ch * kh * kw)
        return "3x3 stem / downsampling conv", float(x[0] * x[2] * x[3] * out_ch * in_per_group * kh * kw) / 4
    if "linear" in name:
        rows = math.prod(x[:-1])
        side = round(math.sqrt(rows / batch_size))
        # weight (out, in): the first 2-D shape after the input whose second dim is the input's features
        # and which is not the (rows, C) tensor of a fused add; mkl's packed weight is (N, 1).
        candidates = [s for s in shapes[1:] if len(s) == 2 and s[1] == x[-1] and s[0] != rows]
        out_features = candidates[0][0] if candidates else 0
        return f"linear (tokens {side}x{side})", float(rows * x[-1] * out_features)
    return "other", 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="xs")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    tune_malloc()
    torch.manual_seed(0)
    model = SwiftFormerForImageClassification(SwiftFormerConfig.from_variant(args.model)).eval()
    fast = optimize_for_inference(model, precision=args.precision, backend="inductor")
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    with torch.inference_mode():
        for _ in range(5):
            fast(x)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(args.runs):
                fast(x)
    groups: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    total = 0.0
    for event in prof.key_averages(group_by_input_shape=True):
        self_us = event.self_cpu_time_total
        if self_us <= 0 or event.key.startswith(("Torch-Compiled", "TorchDynamo", "AOTDispatcher", "Pregraph")):
            total += max(self_us, 0)
            continue
        group, macs = kind_of(event.key, event.input_shapes, args.batch_size)
        groups[group][0] += self_us
        groups[group][1] += macs * event.count
        total += self_us
    per_call = {g: (us / args.runs / 1e3, macs / args.runs) for g, (us, macs) in groups.items()}
    total_ms = total / args.runs / 1e3
    print(
        f"{args.model} {args.precision}, batch {args.batch_size}, {args.image_size}x{args.image_size}, "
        f"{torch.get_num_threads()} threads: {total_ms:.2f} ms per call under the profiler"
    )
    print(f"{'group':34s} {'ms':>7s} {'share':>6s} {'GMAC':>7s} {'GFLOP/s':>8s}")
    for group, (ms, macs) in sorted(per_call.items(), key=lambda item: -item[1][0]):
        rate = f"{2 * macs / ms / 1e6:8.0f}" if macs else f"{'':8s}"
        print(f"{group:34s} {ms:7.2f} {100 * ms / total_ms:5.1f}% {macs / 1e9:7.3f} {rate}")


if __name__ == "__main__":
    main()
