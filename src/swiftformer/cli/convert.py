"""``swiftformer convert``: original-repository, timm or transformers checkpoints → a model folder."""

from __future__ import annotations

import argparse

# How convert_checkpoint's messages name what these flags set (cli.main shows them as the flags).
FLAGS = {"overwrite": "--overwrite", "output_dir": "--to"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..configuration import ATTENTION_VARIANTS, VARIANTS  # torch-free

    p.add_argument("src", help=".pth/.pt/.bin/.safetensors file, model folder or hub id")
    p.add_argument("--to", required=True, metavar="DIR", help="output model folder (must be new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --to folder")
    p.add_argument(
        "--attention-variant",
        choices=ATTENTION_VARIANTS,
        help="default: l2 for original-repository checkpoints (the current release; pass softmax for "
        "first-release files of March 2023) and timm; for transformers checkpoints the folder's "
        "config.json, else softmax",
    )
    p.add_argument("--variant", choices=list(VARIANTS), help="fail unless the checkpoint is this variant")
    p.add_argument("--ema", action="store_true", help="take the EMA weights (model_ema) of a training checkpoint")


def run(args: argparse.Namespace) -> int:
    from ..convert import FORMAT_NAMES, convert_checkpoint, describe_architecture
    from ..io.files import display_path

    result = convert_checkpoint(
        args.src,
        args.to,
        attention_variant=args.attention_variant,
        variant=args.variant,
        ema=args.ema,
        overwrite=args.overwrite,
    )
    attention = result.attention_variant
    if result.attention_source == "override":
        attention += " (--attention-variant)"
    elif result.attention_source == "config.json":
        attention += " (from config.json)"
    elif result.source_format == "original":
        attention += (
            " (default for original checkpoints: the current release, since July 2023; "
            "pass --attention-variant softmax for a first-release file of March 2023)"
        )
    elif result.source_format == "timm":
        attention += " (timm computes l2)"
    else:
        attention += " (transformers' attention; no config.json)"
    rows = [
        ("source", display_path(result.source) + ("  (EMA weights)" if args.ema else "")),
        ("format", FORMAT_NAMES[result.source_format]),
        ("variant", describe_architecture(result.config)),
        ("attention variant", attention),
        ("num_labels", f"{result.num_labels} ({result.labels})" if result.num_labels else "0 (no heads)"),
        ("class", result.architecture),
        *(("note", note) for note in result.notes),
        ("output", display_path(result.output_dir)),
    ]
    for name, value in rows:
        print(f"{name + ':':20s}{value}")
    return 0
