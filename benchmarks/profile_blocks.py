"""Where the time of the optimized model goes, block by block, measured by the wall clock.

    python benchmarks/profile_blocks.py --model xs --precision fp32 --batch-size 32
    python benchmarks/profile_blocks.py --model xs --precision bf16 --batch-size 1 --gelu-cost --perturbed

Each block of the fused model (stem convs, ConvEncoders, the attention block of each stage, the
downsampling convs; see ``swiftformer.inference.fuse``) is compiled on its own, as
``optimize_for_inference`` compiles the model (inductor, weight freezing, channels-last), and timed
(median) at the batch it runs at there: micro-batches of ``--micro-batch`` images for the stem and the
first stage, the whole batch for the rest. Per block it prints the time per batch, its share, its
GFLOP and the GFLOP/s it reaches, then the sum against the whole model timed in the same run (the
difference is the cost of cutting the graph). Unlike ``profile_ops.py`` (torch.profiler), nothing here
adds overhead inside the timed calls.

``--gelu-cost`` also times the first stage's widest 1×1 conv (C → 4C at 56×56) with and without the
erf GELU that follows it: the activation is a large part of the first stage's time.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from swiftformer import optimize_for_inference
from swiftformer.inference import AUTO_MICRO_BATCH, fuse, load_model
from swiftformer.perf import median_ms, tune_malloc


def gflop(module: nn.Module, x: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() / 1e9


def name_of(module: nn.Module, x: torch.Tensor, in_stem: bool) -> str:
    if isinstance(module, nn.Conv2d):
        return f"{'stem' if in_stem else 'downsample'} conv {module.in_channels}->{module.out_channels}"
    kind = {"FusedConvEncoder": "ConvEncoder", "FusedEncoderBlock": "attention block"}[type(module).__name__]
    return f"{kind} {x.shape[1]}ch {x.shape[2]}x{x.shape[3]}"


def gelu_cost(dtype: torch.dtype, channels: int, batch: int, side: int, runs: int) -> None:
    """The first stage's C -> 4C 1×1 conv without and with the erf GELU (fused by oneDNN), compiled alike."""
    print(f"\n1x1 conv {channels}->{4 * channels} at {side}x{side}, batch {batch}, {dtype}: activation cost")
    x = torch.randn(batch, channels, side, side).to(dtype).contiguous(memory_format=torch.channels_last)
    for name, act in (("none", nn.Identity()), ("gelu (erf)", nn.GELU())):
        module = nn.Sequential(nn.Conv2d(channels, 4 * channels, 1), act).to(dtype).eval()
        compiled = torch.compile(module.to(memory_format=torch.channels_last))
        ms = median_ms(partial(compiled, x), runs)
        print(f"  {name:11s} {ms:7.3f} ms  {x.numel() * 4 / ms / 1e6:6.2f} G outputs/s")
        torch._dynamo.reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="xs", help="variant (xs, s, l1, l3; random weights) or model folder")
    parser.add_argument(
        "--perturbed",
        action="store_true",
        help="perturb the weights (random BN statistics, layer scales ~0.5, fan-in scale) so that "
        "activations are the size of a trained model's; some kernels' speed depends on them",
    )
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--micro-batch", type=int, help="default: optimize_for_inference's for the precision (0: off)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--gelu-cost", action="store_true")
    args = parser.parse_args()
    tune_malloc()
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    torch._dynamo.config.cache_size_limit = 64  # one compiled graph per block shape
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    model = load_model(args.model)
    if args.perturbed:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from _helpers import perturb_

        model = perturb_(model).eval()
    fused = fuse(model).to(dtype)
    if args.micro_batch is None:
        args.micro_batch = AUTO_MICRO_BATCH[args.precision]
    micro = args.micro_batch or args.batch_size
    pieces = -(-args.batch_size // micro) if args.batch_size > micro else 1
    first_batch = min(micro, args.batch_size)

    rows = []
    x = (
        torch.randn(first_batch, 3, args.image_size, args.image_size)
        .to(dtype)
        .contiguous(memory_format=torch.channels_last)
    )
    with torch.no_grad():  # (FlopCounterMode counts nothing under inference_mode)
        for index, block in enumerate(fused.features):
            if isinstance(block, nn.ReLU):
                continue  # compiled with the stem conv before it
            if index == fused.first_stage_end:  # from here on, the whole batch
                x = x[:1].expand(args.batch_size, *x.shape[1:]).contiguous(memory_format=torch.channels_last)
            followed_by_relu = index + 1 < len(fused.features) and isinstance(fused.features[index + 1], nn.ReLU)
            part = nn.Sequential(block, nn.ReLU()) if followed_by_relu else block
            compiled = torch.compile(part)
            calls = pieces if index < fused.first_stage_end else 1
            ms = calls * median_ms(partial(compiled, x), args.runs)
            in_stem = index < fused.first_stage_end and isinstance(block, nn.Conv2d)
            rows.append((name_of(block, x, in_stem), tuple(x.shape), ms, calls * gflop(part, x)))
            x = compiled(x)
        fast = optimize_for_inference(
            model, precision=args.precision, backend="inductor", micro_batch=args.micro_batch or None
        )
        pixels = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
        whole = median_ms(lambda: fast(pixels), args.runs)

    total = sum(ms for _, _, ms, _ in rows)
    print(
        f"{args.model} {args.precision}, batch {args.batch_size} (first stage in micro-batches of {first_batch}), "
        f"{args.image_size}x{args.image_size}, {torch.get_num_threads()} threads"
    )
    print(f"{'block':28s} {'input':>20s} {'ms':>8s} {'share':>6s} {'GFLOP':>7s} {'GFLOP/s':>8s}")
    for name, shape, ms, flops in rows:
        print(f"{name:28s} {shape!s:>20s} {ms:8.2f} {100 * ms / total:5.1f}% {flops:7.2f} {flops / ms * 1e3:8.0f}")
    flops = sum(f for *_, f in rows)
    print(f"{'sum of blocks':28s} {'':>20s} {total:8.2f} {'':6s} {flops:7.2f} {flops / total * 1e3:8.0f}")
    print(f"{'whole model (optimize_for_inference)':49s} {whole:8.2f} ms = {args.batch_size / whole * 1e3:.1f} img/s")
    if args.gelu_cost:
        dim = model.config.embed_dims[0]
        side = args.image_size // 4
        gelu_cost(dtype, dim, first_batch, side, args.runs)


if __name__ == "__main__":
    main()
