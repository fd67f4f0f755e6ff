"""``swiftformer train``: train or fine-tune (flags for every :class:`TrainConfig` field)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from ..training.config import RECIPES, TRAIN_CONFIG_NAME, TrainConfig, resolve_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for every :class:`TrainConfig` field (``--batch-size``, ``--no-model-ema`` ...)."""
    parser.add_argument("--config", dest="config_file", help="YAML or JSON file of settings (flags override it)")
    parser.add_argument("--resume", metavar="OUTPUT", help="continue the run in OUTPUT from its last checkpoint")
    parser.add_argument("--recipe", choices=sorted(RECIPES), help="paper (ImageNet, 300 epochs) or finetune")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("recipe", "config_file"):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        if kind == "bool":
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS)
        elif "tuple" in kind:
            parser.add_argument(flag, dest=f.name, type=float, nargs=2, default=argparse.SUPPRESS)
        else:
            base = int if kind.startswith("int") else float if kind.startswith("float") else str
            parser.add_argument(
                flag,
                dest=f.name,
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
    from ..training.trainer import train  # torch: only when a run starts

    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "resume", "config_file", "recipe")}
    if args.resume:
        saved = Path(args.resume) / TRAIN_CONFIG_NAME
        if not saved.is_file():
            raise FileNotFoundError(f"cannot resume: {saved} does not exist (is {args.resume} a training output?)")
        stored = json.loads(saved.read_text(encoding="utf-8"))
        config_file = stored.pop("config_file", None)  # provenance only: its values are already in `stored`
        config = resolve_config(None, None, **{**stored, **given, "output": args.resume})
        config.config_file = config_file
        result = train(config, resume=True)
    else:
        if not given.get("output"):
            raise ValueError("--output is required (the run's folder)")
        config = resolve_config("paper", args.config_file, recipe=args.recipe, **given)
        result = train(config)
    if int(os.environ.get("RANK", "0")) == 0:  # train() has left the process group: ask torchrun's env
        print(f"best top-1 {result.best_top1:.2f}%  →  {result.output / 'best'}", file=sys.stderr)
    return 0
