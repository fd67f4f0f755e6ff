"""Regenerate docs/explain_example.png: one canvas of the pointing game (tests/_pointing_game.py) and its
overlays from a small ``l2`` SwiftFormer trained on such canvases: Grad-CAM at stages 2, 3 and 4, and the
model's attention weights at their default stage(s). About a minute on 2 CPU cores.

    python scripts/make_explain_example.py [OUTPUT.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from _pointing_game import canvases, train_on_canvases
from swiftformer import SwiftFormerImageProcessor
from swiftformer.explain import caption_for, explain_with_scores, model_view, overlay

LABELS = {0: "checkerboard", 1: "horizontal stripes", 2: "vertical stripes", 3: "diagonal stripes"}
GAP = 8


def main(output: Path) -> None:
    model = train_on_canvases("l2", seed=0)
    model.config.id2label = dict(LABELS)
    x, y, quadrants = canvases(64, seed=7)
    with torch.no_grad():
        predicted = model(x).logits.argmax(-1)
    # The first canvas with horizontal stripes in the lower left quadrant that the model gets right.
    index = next(i for i in range(len(y)) if y[i] == 1 and quadrants[i] == 2 and predicted[i] == 1)
    image = x[index : index + 1]
    view = model_view(image[0], SwiftFormerImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3))
    panels = [view.resize((256, 256), Image.Resampling.NEAREST)]
    for method, layer in [("gradcam", "stage2"), ("gradcam", "stage3"), ("gradcam", "stage4"), ("attention", None)]:
        result = explain_with_scores(model, image, target=1, method=method, layer=layer)
        caption = caption_for(LABELS[1], 1, result.scores[0], method, result.layers)
        panels.append(overlay(view, result.maps[0], caption))
    height = max(p.height for p in panels)
    sheet = Image.new("RGB", (sum(p.width for p in panels) + GAP * (len(panels) - 1), height), (255, 255, 255))
    left = 0
    for panel in panels:
        sheet.paste(panel, (left, 0))
        left += panel.width + GAP
    sheet.save(output, optimize=True)
    print(f"{output}: canvas {index}, {sheet.width} x {sheet.height}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", type=Path, default=ROOT / "docs" / "explain_example.png")
    main(parser.parse_args().output)
