"""Peak memory of SwiftFormer training steps with and without gradient checkpointing (CPU, fp32).

    python benchmarks/grad_checkpointing_memory.py                       # XS, 224², batch 64, 2 steps
    python benchmarks/grad_checkpointing_memory.py --variant l1 --batch-size 32 --threads 1

Each mode runs in a fresh subprocess, which builds the classifier in training mode and a random batch,
reads its peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``: interpreter, torch,
model, batch), then runs ``--steps`` training steps (forward, cross-entropy, backward; no optimizer)
and reads the peak again. ``step peak`` is the difference: the memory the steps needed on top of the
model and batch (activations kept for backward, gradients, temporaries). The step time is the last
step's (the first one also creates oneDNN primitives). Peak RSS also counts freed memory that glibc
kept, so it is an upper bound on the live tensors; both modes are measured the same way.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

MODES = ["plain", "checkpointed"]


def worker(mode: str, variant: str, batch_size: int, image_size: int, steps: int, threads: int | None) -> dict:
    """One mode, in this (fresh) process."""
    import torch
    import torch.nn.functional as F

    from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = SwiftFormerForImageClassification(SwiftFormerConfig.from_variant(variant, num_labels=1000)).train()
    if mode == "checkpointed":
        model.gradient_checkpointing_enable()
    x = torch.randn(batch_size, 3, image_size, image_size)
    y = torch.randint(0, 1000, (batch_size,))
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        F.cross_entropy(model(x).logits, y).backward()
        times.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "mode": mode,
        "baseline_mib": baseline_kib / 1024,
        "peak_mib": peak_kib / 1024,
        "step_peak_mib": (peak_kib - baseline_kib) / 1024,
        "step_s": times[-1],
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="xs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = (args.variant, args.batch_size, args.image_size, args.steps, args.threads)

    if args.worker:
        print(json.dumps(worker(args.worker, *settings)))
        return

    results = {}
    for mode in MODES:
        command = [sys.executable, __file__, "--worker", mode, "--variant", args.variant,
                   "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
                   "--steps", str(args.steps)] + (["--threads", str(args.threads)] if args.threads else [])  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{mode} failed:\n{done.stderr}")
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])

    plain, checkpointed = results["plain"], results["checkpointed"]
    summary = {
        "variant": args.variant, "batch_size": args.batch_size, "image_size": args.image_size,
        "steps": args.steps, "threads": plain["threads"], "results": results,
        "step_peak_ratio": checkpointed["step_peak_mib"] / plain["step_peak_mib"],
        "peak_ratio": checkpointed["peak_mib"] / plain["peak_mib"],
        "time_ratio": checkpointed["step_s"] / plain["step_s"],
    }  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"SwiftFormer-{args.variant.upper()}, {args.image_size}², batch {args.batch_size}, fp32, "
          f"{args.steps} step(s), {plain['threads']} thread(s)")  # fmt: skip
    print(f"{'mode':<14}{'baseline MiB':>14}{'peak MiB':>10}{'step peak MiB':>15}{'step s':>8}")
    for row in results.values():
        print(f"{row['mode']:<14}{row['baseline_mib']:>14.0f}{row['peak_mib']:>10.0f}"
              f"{row['step_peak_mib']:>15.0f}{row['step_s']:>8.2f}")  # fmt: skip
    print(f"checkpointed / plain: step peak {summary['step_peak_ratio']:.2f}, process peak "
          f"{summary['peak_ratio']:.2f}, step time {summary['time_ratio']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
