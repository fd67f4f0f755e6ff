"""The ``swiftformer`` command line: one module per command, each with ``add_arguments(parser)`` and
``run(args) -> exit status``; this module assembles the parser and turns user errors into one line. The
library's errors name its parameters (``overwrite=True``, ``batch_size``); a command whose flags set some of
them says which in ``FLAGS`` (parameter -> flag), and its errors show the flags.

    swiftformer predict cat.jpg dog.png --model MBZUAI/swiftformer-xs --top-k 5 [--json]
    swiftformer info --model xs            # or a folder, or a hub id
    swiftformer train --data-dir DATA --variant xs --recipe paper --output runs/xs
    swiftformer eval --data-dir DATA/val --model runs/xs/best [--json]
    swiftformer convert SwiftFormer_XS_ckpt.pth --to swiftformer-xs [--attention-variant softmax]
    swiftformer export --model runs/xs/best --format onnx --output xs.onnx
    swiftformer bench --model xs --reference

Commands import torch inside ``run``, so ``swiftformer --help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from . import bench, convert, embed, explain, export, info, predict, serve, train
from . import eval as eval_command
from .common import add_hub_arguments, as_flags, fail, hub_options

__all__ = ["add_hub_arguments", "build_parser", "hub_options", "main"]

# name, module, help, description
COMMANDS = (
    ("predict", predict, "classify images", "Classify images; prints the top-k labels."),
    ("embed", embed, "pooled features of images", "Pooled last-stage features per image (docs/batch-inference.md)."),
    ("info", info, "describe a model", "Parameters, MACs, stage shapes, attention variant."),
    ("train", train, "train or fine-tune", "Train or fine-tune a SwiftFormer (see docs/training.md)."),
    (
        "eval",
        eval_command,
        "evaluate on a labelled image folder",
        "Top-1/top-5, loss, per-class accuracy, confusion matrix on DATA/CLASS/*.jpg.",
    ),
    (
        "bench",
        bench,
        "measure inference speed",
        "Latency, throughput, memory, first-call time and agreement of each inference path (docs/performance.md).",
    ),
    (
        "export",
        export,
        "export to ONNX, OpenVINO, ExecuTorch, CoreML, AOTInductor, TFLite or SavedModel",
        "Export the fused model and verify the result in its runtime (docs/export.md).",
    ),
    (
        "convert",
        convert,
        "convert an original-repository, timm or transformers checkpoint",
        "Convert a checkpoint of the original repository (Amshaker/SwiftFormer), timm or transformers into a model "
        "folder; the architecture is read from the tensor shapes (docs/checkpoints.md).",
    ),
    ("serve", serve, "serve a model over HTTP", "An HTTP inference server with dynamic batching (docs/serving.md)."),
    ("explain", explain, "heatmaps of where the model looks", "CAM or attention overlay PNGs (docs/explain.md)."),
)


# Commands whose --model must be a classifier: a detector folder is refused in one line (predict and eval take
# either; docs/dense.md).
CLASSIFICATION_ONLY = ("serve", "explain", "embed", "bench", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swiftformer", description="SwiftFormer image classification.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module, help_text, description in COMMANDS:
        command = sub.add_parser(name, help=help_text, description=description)
        module.add_arguments(command)
        command.set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for option in ("top_k", "batch_size"):
        value = getattr(args, option, None)  # None: not given, the command's default
        if value is not None and value < 1:
            return fail(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    if args.command in CLASSIFICATION_ONLY and isinstance(getattr(args, "model", None), str):
        from ..detection.config import dense_model_problem

        problem = dense_model_problem(args.model, args.command)  # serve checks each of its --model when it loads
        if problem:
            return fail(problem)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logging.getLogger("swiftformer").addHandler(handler)  # our warnings only; other libraries log their own
    warnings.simplefilter("default")
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `swiftformer info ... | head`
        sys.stderr.close()
        return 0
    # Clear one-line errors, no stack trace. FloatingPointError: a training loss that diverged. The library's
    # errors name its parameters; the command's FLAGS say which of them its flags set (cli.common.as_flags).
    except (OSError, ValueError, TypeError, ImportError, FloatingPointError) as err:
        module = next(module for name, module, *_ in COMMANDS if name == args.command)
        return fail(as_flags(str(err), getattr(module, "FLAGS", {})))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
