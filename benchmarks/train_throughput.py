"""Training throughput (forward + backward + AdamW step), this library vs transformers' SwiftFormer.

    python benchmarks/train_throughput.py                    # XS, 224², batch 64, all modes
    python benchmarks/train_throughput.py --variant l1 --steps 5 --modes ours-fp32 ours-bf16-cl

Every mode trains the same architecture on the same random batch for ``--warmup`` untimed steps and
``--steps`` timed ones and reports the median step as images/s, plus the ratio to transformers'
model trained with a plain loop (eager, fp32) measured in the same run. glibc malloc tuning
(``swiftformer.perf.tune_malloc``) is on unless ``--no-tune-malloc``; say which when quoting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification
from swiftformer.perf import time_calls, tune_malloc

MODES = ["reference-fp32", "ours-fp32", "ours-fp32-cl", "ours-bf16", "ours-bf16-cl", "ours-bf16-cl-compile"]


def build(mode: str, variant: str) -> torch.nn.Module:
    config = SwiftFormerConfig.from_variant(variant, num_labels=1000)
    if mode.startswith("reference"):
        import transformers

        kwargs = {"depths": config.depths, "embed_dims": config.embed_dims, "num_labels": 1000}
        return transformers.SwiftFormerForImageClassification(transformers.SwiftFormerConfig(**kwargs))
    return SwiftFormerForImageClassification(config)


def measure(mode: str, variant: str, batch: int, size: int, warmup: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = build(mode, variant).train()
    channels_last = "-cl" in mode
    bf16 = "bf16" in mode
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.025)
    step_model = torch.compile(model) if "compile" in mode else model
    x = torch.randn(batch, 3, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = step_model(x).logits
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    times = time_calls(step, steps, warmup=warmup)
    median = statistics.median(times)
    return {
        "mode": mode,
        "images_per_second": batch / median,
        "median_step_s": median,
        "p90_step_s": sorted(times)[int(0.9 * (len(times) - 1))],
        "first_step_s": first,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="xs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    parser.add_argument("--no-tune-malloc", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tuned = False if args.no_tune_malloc else tune_malloc()

    rows = [measure(m, args.variant, args.batch_size, args.image_size, args.warmup, args.steps) for m in args.modes]
    reference = next((r["images_per_second"] for r in rows if r["mode"] == "reference-fp32"), None)
    for r in rows:
        r["vs_reference"] = r["images_per_second"] / reference if reference else None
    if args.json:
        print(
            json.dumps(
                {
                    "variant": args.variant,
                    "batch_size": args.batch_size,
                    "image_size": args.image_size,
                    "malloc_tuned": tuned,
                    "threads": torch.get_num_threads(),
                    "rows": rows,
                },
                indent=2,
            )
        )
        return
    print(
        f"SwiftFormer-{args.variant.upper()} training, {args.image_size}², batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, malloc tuned: {tuned}, median of {args.steps} steps"
    )
    print(f"{'mode':24s} {'img/s':>8s} {'step s':>8s} {'p90 s':>8s} {'first s':>8s} {'vs ref':>7s}")
    for r in rows:
        ratio = f"{r['vs_reference']:.2f}x" if r["vs_reference"] else "-"
        print(
            f"{r['mode']:24s} {r['images_per_second']:8.1f} {r['median_step_s']:8.3f} {r['p90_step_s']:8.3f} "
            f"{r['first_step_s']:8.1f} {ratio:>7s}"
        )


if __name__ == "__main__":
    main()
