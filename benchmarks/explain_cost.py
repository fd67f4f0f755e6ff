"""What an explanation costs: milliseconds per image of every ``swiftformer.explain`` method at the default
stage (``attention``: every stage), against the eager forward pass alone, at batch 1 and batch N; medians
(docs/explain.md, "Cost"). Random weights of a published variant, ``attention_variant="l2"`` so that every
method runs; Score-CAM and Ablation-CAM (a forward pass per channel) only at batch 1, on fewer runs.

    .venv/bin/python benchmarks/explain_cost.py --model xs --runs 9
"""

from __future__ import annotations

import argparse

import torch

from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification
from swiftformer.explain import DEFAULT_LAYER, METHODS, PER_CHANNEL_METHODS, explain_with_scores
from swiftformer.hardware import hardware_line
from swiftformer.perf import median_ms


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="xs", help="variant: xs, s, l1, l3 (default xs)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=8, help="the second column's batch (default 8)")
    p.add_argument("--runs", type=int, default=9, help="timed calls per cell (gradient-free methods: a third)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.manual_seed(0)
    model = SwiftFormerForImageClassification(SwiftFormerConfig.from_variant(args.model, attention_variant="l2"))
    model.eval()
    size = args.image_size
    x1 = torch.randn(1, 3, size, size)
    xn = torch.randn(args.batch_size, 3, size, size)
    print(f"# {hardware_line()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"# SwiftFormer-{args.model.upper()} {size}x{size}, eager fp32, default stage {DEFAULT_LAYER}; ms per image")
    print(f"{'method':<12} {'batch 1':>9} {f'batch {args.batch_size}':>9}")

    def forward(x: torch.Tensor):
        with torch.inference_mode():
            return model(x)

    rows = [("forward", forward)] + [
        (method, lambda x, method=method: explain_with_scores(model, x, method=method)) for method in args.methods
    ]
    for name, run in rows:
        runs = max(1, args.runs // 3) if name in PER_CHANNEL_METHODS else args.runs
        one = median_ms(lambda run=run: run(x1), runs, warmup=1)
        many = None if name in PER_CHANNEL_METHODS else median_ms(lambda run=run: run(xn), max(1, runs // 2), warmup=1)
        cell = "—" if many is None else f"{many / args.batch_size:9.1f}"
        print(f"{name:<12} {one:9.1f} {cell:>9}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
