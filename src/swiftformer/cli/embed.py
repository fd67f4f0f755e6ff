"""``swiftformer embed``: pooled last-stage features (``embed_dims[-1]`` floats) per image, as JSON lines on
stdout or rows of a file (``--output``: JSON lines, CSV or Parquet, resumable; docs/batch-inference.md)."""

from __future__ import annotations

import argparse
import json

from .common import add_hub_arguments, fail, hub_options
from .predict import FLAGS as PREDICT_FLAGS
from .predict import INPUTS_HELP, add_batch_arguments, check_batch, run_job

# How the batch library's messages name what these flags set (cli.main shows them as the flags).
FLAGS = {name: flag for name, flag in PREDICT_FLAGS.items() if name != "logits"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help=INPUTS_HELP)
    p.add_argument("--model", required=True, help="model folder or hub id, e.g. MBZUAI/swiftformer-xs")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--normalize", action="store_true", help="L2-normalize each embedding (for cosine similarity)")
    p.add_argument(
        "--no-optimize",
        action="store_true",
        help="run the model as loaded (eager fp32), not the fused fast path (same values within 1e-5)",
    )
    add_batch_arguments(p)
    add_hub_arguments(p)


def run(args: argparse.Namespace) -> int:
    problem = check_batch(args)
    if problem:
        return fail(problem)
    from ..batch import JobSpec

    spec = JobSpec("embed", args.model, hub_options(args), normalize=args.normalize, optimize=not args.no_optimize)

    def print_row(path: str, row: dict) -> None:
        print(json.dumps(row if row["error"] is not None else {"image": row["image"], "embedding": row["embedding"]}))

    return run_job(args, spec, print_row=None if args.output else print_row)
