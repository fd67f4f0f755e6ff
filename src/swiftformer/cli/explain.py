"""``swiftformer explain``: heatmaps of where a classifier looks, written as overlay PNGs (and ``.npy``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_hub_arguments, as_flags, classification_only, fail, hub_options
from .predict import INPUTS_HELP

# As swiftformer.explain.METHODS; repeated here so that `--help` answers without importing torch.
METHODS = ("gradcam", "gradcam++", "eigencam", "scorecam", "ablationcam", "attention")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help=INPUTS_HELP)
    p.add_argument("--model", required=True, help="model folder or hub id, e.g. MBZUAI/swiftformer-xs")
    p.add_argument("--output", required=True, help="folder for the overlay PNGs (created if missing)")
    p.add_argument(
        "--target",
        action="append",
        metavar="LABEL_OR_INDEX",
        help="class to explain: a label name ('tabby cat') or an index; repeat for several (one file each). "
        "Default: each image's top class",
    )
    p.add_argument(
        "--method",
        choices=METHODS,
        default="gradcam",
        help="gradcam (default), gradcam++, eigencam, scorecam, ablationcam (class activation maps), or "
        "attention (the model's own token weights; 'l2' attention models only)",
    )
    p.add_argument(
        "--layer",
        nargs="+",
        metavar="STAGE",
        help="stage(s) to explain at, by the backbone's names: stem, stage1 .. stage4, or 'all' (one file "
        "each). Default (measured, docs/explain.md): stage3 (eigencam: stage2); with --method attention the mean "
        "of every stage",
    )
    p.add_argument("--save-raw", action="store_true", help="also write each map as .npy (H, W) float32 in [0, 1]")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--batch-size", type=int, default=8, help="images per pass (default 8)")
    add_hub_arguments(p)


# How the overlay writer's messages name what these flags set.
FLAGS = {"replace": "--overwrite", "folder": "--output"}


def run(args: argparse.Namespace) -> int:
    """The images through :func:`~swiftformer.batch.runner.run_batch`: the eager model's top class per image (or
    each ``--target``), an overlay per class and stage group by :class:`~swiftformer.batch.overlays.ExplainOverlays`."""
    from ..batch import JobSpec, run_batch
    from ..batch.inputs import check_inputs, expand_inputs
    from ..batch.overlays import ExplainOverlays
    from ..inference import load_model
    from ..io.files import display_path, printable

    classification_only(args.model, "explain")
    hub = hub_options(args)
    model = load_model(args.model, hub)
    config = model.config

    # Everything the command line asks for is checked before anything is read or written.
    if args.method == "attention" and config.attention_variant != "l2":
        return fail(
            f"--method attention needs an 'l2' attention model; {args.model} is {config.attention_variant!r}, where "
            "every token weight is exactly 1 (nothing to show): use a CAM method such as --method gradcam"
        )
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        return fail(f"--output {display_path(output)} is a file, not a folder")
    check_inputs(args.images)
    # A few images to look at, not a million: the list is held, so that every file is checked up front.
    images = list(dict.fromkeys(expand_inputs(args.images)))
    # The eager model classifies (its top class is what an overlay explains without --target), fp32 as the maps.
    spec = JobSpec("predict", args.model, hub, top_k=1, optimize=False)
    task, processor, notes = spec.build(model)
    if args.layer is None:
        layers: list[str | None] = [None]  # one stage, or for attention every stage's map averaged into one
    elif "all" in args.layer:
        stages = list(config.stage_names)
        layers = list(stages[1:] if args.method == "attention" else stages)  # the stem has no attention
    else:
        layers = list(args.layer)

    def report(path: str, index: int, label: str, score: float, files: list) -> None:
        print(
            f"{display_path(path)}: {printable(label)} ({index}) {score:.4f} -> {', '.join(map(display_path, files))}"
        )

    def problem(path: str, message: str) -> None:
        print(f"{display_path(path)}: error: {as_flags(message, FLAGS)}", file=sys.stderr)

    try:
        overlays = ExplainOverlays(
            model,
            processor,
            output,
            method=args.method,
            layers=layers,
            targets=args.target or [None],
            save_raw=args.save_raw,
            replace=args.overwrite,
            protect=images,
            on_problem=problem,
            on_written=report,
        )
    except ValueError as err:  # an unknown --layer or --target: the message starts with the parameter's name
        return fail(f"--{err}")
    try:
        overlays.check(images)
    except (ValueError, FileExistsError) as err:
        return fail(as_flags(str(err), FLAGS))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.method == "attention" and args.target:
        print("note: attention weights do not depend on the class; --target only changes the caption", file=sys.stderr)

    def unreadable(path: str, row: dict) -> None:
        if row["error"] is not None:
            print(f"{display_path(path)}: error: {printable(row['error'])}", file=sys.stderr)

    summary = run_batch(  # exact decoding: the heatmaps of docs/explain.md were measured on exactly these pixels
        images,
        task,
        processor,
        batch_size=args.batch_size,
        progress=False,
        fast_decode=False,
        on_row=unreadable,
        on_results=overlays,
    )
    if summary.interrupted:
        print(f"swiftformer: interrupted after {summary.images} images", file=sys.stderr)
        return 130
    return 1 if summary.errors or overlays.problems else 0
