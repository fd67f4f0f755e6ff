"""The pointing game of docs/explain.md ("Which stage"): trains small SwiftFormers on canvases with one pattern
in a random quadrant and counts, for every method at every stage and on each background, how often the
heatmap's maximum falls in the pattern's quadrant. The tables of docs/explain.md come from its output.

    .venv/bin/python benchmarks/pointing_game.py l2 softmax --seeds 0 1 2 3 4 5 --methods gradcam attention
    .venv/bin/python benchmarks/pointing_game.py l2 --seeds 0 --methods gradcam --backgrounds mixed   # a quick look

Each trained model's rows go to stderr as JSON lines as they come (one per method, stage and background:
hits, correctly classified canvases, accuracy); at the end stdout gets one JSON object, ``"VARIANT
BACKGROUND METHOD STAGE"`` → [hits, correctly classified canvases] summed over the seeds (stage ``None``:
the method's default, for ``attention`` the mean of every stage). The canvases, the training and the score
are tests/_pointing_game.py's, the ones the suite's ≥ 90 % tests use (why they live there: its docstring).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _pointing_game import BACKGROUNDS, pointing_game, train_on_canvases
from swiftformer.explain import CAM_METHODS, METHODS, PER_CHANNEL_METHODS

VARIANTS = ("softmax", "l2")


def measure(
    variants: tuple[str, ...] = VARIANTS,
    seeds: tuple[int, ...] = (0, 1),
    canvases: int = 200,
    methods: tuple[str, ...] | None = None,
    backgrounds: tuple[str, ...] = tuple(BACKGROUNDS),
) -> dict[str, list[int]]:
    """Every method (or those of ``methods``) at every stage, on each background of ``backgrounds``:
    [hits, correctly classified canvases] summed over the models trained with ``seeds``, per attention
    variant (Score-CAM and Ablation-CAM, a forward pass per channel, on a quarter of the canvases). Each
    model's rows go to stderr as JSON lines as they come."""
    table: dict[str, list[int]] = {}
    for variant in variants:
        for seed in seeds:
            start = time.perf_counter()
            model = train_on_canvases(variant, seed=seed)
            print(f"# {variant} seed {seed}: trained in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            available = [*CAM_METHODS, "attention"] if variant == "l2" else CAM_METHODS
            for background in backgrounds:
                for method in [m for m in available if methods is None or m in methods]:
                    stages = model.config.stage_names[1:] if method == "attention" else model.config.stage_names
                    n = canvases // 4 if method in PER_CHANNEL_METHODS else canvases  # seconds per canvas
                    for stage in [*stages, None] if method == "attention" else stages:  # None: the default (all)
                        hits, total, accuracy = pointing_game(
                            model, method, stage, n=n, seed=100 + seed, noise=BACKGROUNDS[background]
                        )
                        row = dict(variant=variant, seed=seed, background=background, method=method, stage=stage)
                        print(json.dumps({**row, "hits": hits, "total": total, "accuracy": accuracy}), file=sys.stderr)
                        key = f"{variant} {background} {method} {stage}"
                        table[key] = [a + b for a, b in zip(table.get(key, [0, 0]), [hits, total])]
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Checked below, not with choices=: argparse checks an empty list (no variant given) against them as one value.
    p.add_argument("variants", nargs="*", metavar="VARIANT", help="softmax, l2 or both (default: both)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="one model per seed and variant (default 0 1)")
    p.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=None,
        metavar="METHOD",
        help=f"default: every method ({', '.join(METHODS)}; attention on l2 models only)",
    )
    p.add_argument(
        "--backgrounds",
        nargs="+",
        choices=list(BACKGROUNDS),
        default=list(BACKGROUNDS),
        help="default: blank mixed strong",
    )
    p.add_argument("--canvases", type=int, default=200, help="held-out canvases per model and background (default 200)")
    args = p.parse_args(argv)
    if unknown := [v for v in args.variants if v not in VARIANTS]:
        p.error(f"unknown attention variant(s) {unknown}: choose from {', '.join(VARIANTS)}")
    args.variants = args.variants or list(VARIANTS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    methods = None if args.methods is None else tuple(args.methods)
    table = measure(tuple(args.variants), tuple(args.seeds), args.canvases, methods, tuple(args.backgrounds))
    print(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
