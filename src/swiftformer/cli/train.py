"""``swiftformer train``: train or fine-tune (flags for every :class:`TrainConfig` field)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from ..io.files import display_path
from ..training.config import RECIPES, TASK_RECIPES, TASKS, TrainConfig, resolve_config
from .common import as_flags, fail

# Flags of this command that are not settings of the run (not saved in train_config.json).
_RUN_FLAGS = ("func", "command", "resume", "config_file", "recipe", "overwrite", "allow_data_change")
# How train()'s messages name what these flags set (its arguments and TrainConfig fields), for
# cli.common.as_flags; resume=True is `--resume OUTPUT` (run() adds the folder).
FLAGS = {
    name: "--" + name.replace("_", "-")
    for name in (
        *("resume", "overwrite", "allow_data_change", "output", "data_dir", "init", "batch_size"),
        *("teacher", "teacher_checkpoint", "no_teacher", "device"),
    )
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for every :class:`TrainConfig` field (``--batch-size``, ``--no-model-ema`` ...)."""
    parser.add_argument("--config", dest="config_file", help="YAML or JSON file of settings (flags override it)")
    parser.add_argument("--resume", metavar="OUTPUT", help="continue the run in OUTPUT from its last checkpoint")
    parser.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        help="paper (the original code's ImageNet settings per variant), finetune, coco-maskrcnn-1x (detection's "
        "1x schedule) or ade20k-fpn (the paper's ADE20K Semantic FPN); default: "
        + ", ".join(f"{recipe} for --task {task}" for task, recipe in TASK_RECIPES.items()),
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a non-empty --output (the old run stays until the new one ends); with --resume: "
        "continue an interrupted --overwrite run",
    )
    parser.add_argument(
        "--allow-data-change",
        action="store_true",
        help="with --resume: continue on another --data-dir or changed image counts (the classes must stay)",
    )
    parser.add_argument(
        "--no-teacher",
        dest="no_teacher",
        action="store_true",
        default=argparse.SUPPRESS,
        help="train without distillation even where the recipe names a teacher (paper: regnety_160.deit_in1k)",
    )
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("recipe", "config_file", "no_teacher"):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        if f.name == "task":
            parser.add_argument(
                flag, dest=f.name, choices=TASKS, default=argparse.SUPPRESS, help="default classification"
            )
        elif kind == "bool":
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS)
        elif "tuple" in kind:
            parser.add_argument(flag, dest=f.name, type=float, nargs=2, default=argparse.SUPPRESS)
        else:
            base = int if kind.startswith("int") else float if kind.startswith("float") else str
            parser.add_argument(
                flag,
                dest=f.name,
                choices=TASKS if f.name == "task" else None,
                type=_optional(base),
                default=argparse.SUPPRESS,
                help=None if "None" not in kind else "'none' for no value",
            )


def _optional(base: type):
    def parse(text: str):
        return None if text.lower() == "none" else base(text)

    parse.__name__ = base.__name__
    return parse


def run(args: argparse.Namespace) -> int:
    from ..training.trainer import TrainingInterrupted, resume_config, train  # torch: only when a run starts

    given = {k: v for k, v in vars(args).items() if k not in _RUN_FLAGS}
    options = {"overwrite": args.overwrite, "allow_data_change": args.allow_data_change}
    run_folder = display_path(args.resume or given.get("output") or "OUTPUT")
    try:
        if args.resume:
            config = resume_config(args.resume, overwrite=args.overwrite, **given)
            result = train(config, resume=True, **options)
        else:
            if args.allow_data_change:
                raise ValueError("--allow-data-change applies to --resume only")
            if not given.get("output"):
                raise ValueError("--output is required (the run's folder)")
            config = resolve_config(TASK_RECIPES, args.config_file, recipe=args.recipe, **given)
            result = train(config, **options)
    except TrainingInterrupted as stop:
        if int(os.environ.get("RANK", "0")) == 0:
            how = f"; continue with: swiftformer train --resume {run_folder}" if stop.resume else ""
            print(f"swiftformer: {stop.where}{how}{' --overwrite' if stop.overwrite else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # cli.main's
    except (OSError, ValueError) as err:  # as cli.main shows them, and resume=True as `--resume OUTPUT`
        return fail(as_flags(str(err), {**FLAGS, "resume": f"--resume {run_folder}"}))
    if int(os.environ.get("RANK", "0")) == 0:  # train() has left the process group: ask torchrun's env
        best = {"val_top1": "top-1", "val_bbox_AP": "box AP", "val_miou": "mIoU"}.get(result.metric, result.metric)
        print(f"best {best} {result.best_top1:.2f}%  →  {display_path(result.output / 'best')}", file=sys.stderr)
    return 0
