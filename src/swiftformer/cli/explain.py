"""``swiftformer explain``: heatmaps of where a classifier looks, written as overlay PNGs (and ``.npy``)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from .common import add_hub_arguments, fail, hub_options

# As swiftformer.explain.METHODS; repeated here so that `--help` answers without importing torch.
METHODS = ("gradcam", "gradcam++", "eigencam", "scorecam", "ablationcam", "attention")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files")
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


def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^\w.+-]+", "_", text).strip("_.")
    return slug[:limit].rstrip("_.") or "class"


def run(args: argparse.Namespace) -> int:  # noqa: C901, PLR0912
    import torch

    from .. import explain as ex
    from ..image_processing import load_image, load_processor
    from ..inference import load_model
    from ..io.files import display_path

    hub = hub_options(args)
    model = load_model(args.model, hub)
    config = model.config

    # Everything the command line asks for is checked before anything is read or written.
    if args.method == "attention" and config.attention_variant != "l2":
        return fail(
            f"--method attention needs an 'l2' attention model; {args.model} is {config.attention_variant!r}, where "
            "every token weight is exactly 1 (nothing to show): use a CAM method such as --method gradcam"
        )
    stages = list(config.stage_names)
    choices = stages[1:] if args.method == "attention" else stages
    try:
        if args.layer is None:  # the default: one stage, or for attention every stage's map averaged into one
            groups = [tuple(ex.resolve_layers(model, None, args.method))]
        else:
            requested = choices if "all" in args.layer else args.layer
            groups = list(dict.fromkeys((ex.resolve_layers(model, layer, args.method)[0],) for layer in requested))
    except ValueError as err:
        return fail(f"--{err}")
    try:
        targets: list[int | None] = (
            list(dict.fromkeys(ex.resolve_target(config, t) for t in args.target)) if args.target else [None]
        )
    except ValueError as err:
        return fail(f"--{err}")
    if args.method == "attention" and args.target:
        print("note: attention weights do not depend on the class; --target only changes the caption", file=sys.stderr)

    output = Path(args.output)
    if output.exists() and not output.is_dir():
        return fail(f"--output {display_path(output)} is a file, not a folder")
    images = list(dict.fromkeys(args.images))
    inputs = {Path(os.path.abspath(path)) for path in images}
    planned: dict[Path, str] = {}  # output file -> the image it is for
    jobs: dict[tuple[str, tuple[str, ...], int | None], Path] = {}  # (image, stages, target) -> file, no suffix
    for path in images:
        for layer in groups:
            for target in targets:
                name = f"{Path(path).stem}_{args.method.replace('++', 'pp')}_{'+'.join(layer)}"
                if target is not None:
                    name += f"_{target}-{_slug(ex.label_of(config, target))}"
                base = output / name
                for suffix in (".png", ".npy") if args.save_raw else (".png",):
                    file = base.with_name(base.name + suffix)
                    if file in planned:
                        return fail(
                            f"{planned[file]} and {path} would both be explained into {display_path(file)}; "
                            "give images of different names, or run them into different --output folders"
                        )
                    planned[file] = path
                    if Path(os.path.abspath(file)) in inputs:
                        return fail(f"{display_path(file)} is one of the input images; choose another --output")
                    if (file.exists() or file.is_symlink()) and not args.overwrite:
                        return fail(
                            f"{display_path(file)} already exists; pass --overwrite to replace it, or choose "
                            "another --output"
                        )
                jobs[path, layer, target] = base

    processor, note = load_processor(args.model, **hub)
    if note:
        print(f"note: {note}", file=sys.stderr)
    pixels: dict[str, Any] = {}
    failed = False
    for path in images:
        try:
            pixels[path] = processor(load_image(path), return_tensors="pt")["pixel_values"][0]
        except (OSError, ValueError) as err:
            print(f"{path}: error: {err}", file=sys.stderr)
            failed = True
    readable = [path for path in images if path in pixels]
    output.mkdir(parents=True, exist_ok=True)

    for layer in groups:
        for target in targets:
            # Batches of consecutive images of equal preprocessed size (a shortest-edge resize keeps aspect ratios).
            start = 0
            while start < len(readable):
                end = start + 1
                while (
                    end < len(readable)
                    and end - start < args.batch_size
                    and pixels[readable[end]].shape == pixels[readable[start]].shape
                ):
                    end += 1
                batch = readable[start:end]
                start = end
                x = torch.stack([pixels[path] for path in batch])
                result = ex.explain_with_scores(model, x, target=target, method=args.method, layer=list(layer))
                for i, path in enumerate(batch):
                    base = jobs[path, layer, target]
                    cls = result.targets[i]
                    label = ex.label_of(config, cls)
                    caption = ex.caption_for(label, cls, result.scores[i], args.method, layer)
                    picture = ex.overlay(ex.model_view(pixels[path], processor), result.maps[i], caption)
                    written = ex.save_overlay(base, picture, result.maps[i] if args.save_raw else None)
                    print(f"{path}: {label} ({cls}) {result.scores[i]:.4f} -> {', '.join(map(display_path, written))}")
    return 1 if failed else 0
