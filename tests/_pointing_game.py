"""The pointing game of docs/explain.md: canvases with one pattern (its class) in a random quadrant, a tiny
SwiftFormer trained on them on the CPU, and the score (does the heatmap's maximum fall in the pattern's
quadrant?).

Two users: the suite's ≥ 90 % tests (tests/test_explain.py) and the longer measurement behind the tables of
docs/explain.md (benchmarks/pointing_game.py). The code lives here, beside tests/_helpers.py, because the
tests are what holds the library to the game: they must run from a plain ``pytest`` (which puts tests/ on
``sys.path``) without reaching into benchmarks/, while the benchmark and scripts/make_explain_example.py
already reach tests/ for ``_helpers`` by adding it to ``sys.path``. So the dependency runs one way,
benchmarks and scripts → tests, and no test module imports another.
"""

from __future__ import annotations

import numpy as np
import torch

from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification
from swiftformer.explain import explain_with_scores

SIZE = 96  # canvas side; the pattern is a quarter of it
PATCH = SIZE // 4
STEPS = 400  # training steps of 32 canvases
NOISE = 0.8  # the strongest background noise (the patterns are ±1)
TRAIN_CONFIG = dict(depths=[1, 1, 1, 1], embed_dims=[16, 24, 48, 64], num_labels=4)
# The backgrounds of docs/explain.md: the range the noise amplitude of each canvas is drawn from.
BACKGROUNDS = {"blank": (0.0, 0.0), "mixed": (0.0, NOISE), "strong": (NOISE, NOISE)}


def _pattern(cls: int, rng: np.random.Generator) -> np.ndarray:
    """PATCH × PATCH in {-1, 1}: checkerboard, horizontal, vertical or diagonal stripes (period 8, random phase)."""
    y, x = np.mgrid[0:PATCH, 0:PATCH]
    phase = rng.integers(0, 4)
    if cls == 0:
        on = ((x + phase) // 4 + y // 4) % 2
    elif cls == 1:
        on = ((y + phase) // 4) % 2
    elif cls == 2:
        on = ((x + phase) // 4) % 2
    else:
        on = ((x + y + phase) // 4) % 2
    return on.astype(np.float32) * 2 - 1


def canvases(
    n: int, seed: int, noise: tuple[float, float] = BACKGROUNDS["mixed"]
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(pixel_values (n, 3, SIZE, SIZE) with one pattern each, labels (n,), quadrants (n,): 0 top left, 1 top
    right, 2 bottom left, 3 bottom right). The background is uniform noise in ±a, a drawn per canvas in
    ``noise`` (default: from blank to strong noise; (0, 0): blank)."""
    rng = np.random.default_rng(seed)
    amplitude = rng.uniform(*noise, (n, 1, 1, 1))
    pixels = (rng.uniform(-1, 1, (n, 3, SIZE, SIZE)) * amplitude).astype(np.float32)
    labels, quadrants = rng.integers(0, 4, n), rng.integers(0, 4, n)
    half = SIZE // 2
    for i in range(n):
        qy, qx = divmod(int(quadrants[i]), 2)
        top = qy * half + rng.integers(0, half - PATCH + 1)
        left = qx * half + rng.integers(0, half - PATCH + 1)
        pixels[i, :, top : top + PATCH, left : left + PATCH] = _pattern(int(labels[i]), rng)
    return torch.from_numpy(pixels), torch.from_numpy(labels), quadrants


def train_on_canvases(attention_variant: str, steps: int = STEPS, seed: int = 0) -> SwiftFormerForImageClassification:
    """A tiny SwiftFormer trained on :func:`canvases` (one-cycle AdamW; about a minute on 2 idle cores)."""
    torch.manual_seed(seed)
    config = SwiftFormerConfig(**TRAIN_CONFIG, attention_variant=attention_variant)
    model = SwiftFormerForImageClassification(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    # Decayed to the end: at a constant rate the models' maps varied far more from seed to seed.
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    for step in range(steps):
        x, y, _ = canvases(32, seed=1000 * (seed + 1) + step)
        loss = model(x, labels=y).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


def quadrant_of_max(maps: torch.Tensor) -> np.ndarray:
    """The quadrant (as in :func:`canvases`) of each (H, W) map's maximum; ``maps`` is (B, H, W)."""
    _, height, width = maps.shape
    index = maps.flatten(1).argmax(1)
    row, col = index // width, index % width
    return ((row >= height // 2).long() * 2 + (col >= width // 2).long()).numpy()


def pointing_game(
    model: SwiftFormerForImageClassification,
    method: str,
    layer: str | None,
    n: int = 128,
    seed: int = 7,
    noise: tuple[float, float] = BACKGROUNDS["mixed"],
) -> tuple[int, int, float]:
    """(hits, correctly classified canvases, accuracy) on ``n`` fresh canvases: a hit is a correctly classified
    canvas whose map for the true class (``method`` at ``layer``, None: its default) has its maximum in the
    pattern's quadrant. Chance is 25 %."""
    x, y, quadrants = canvases(n, seed, noise)
    with torch.no_grad():
        correct = (model(x).logits.argmax(-1) == y).numpy()
    heat = explain_with_scores(model, x[correct], target=y[correct].tolist(), method=method, layer=layer).maps
    hits = int((quadrant_of_max(heat) == quadrants[correct]).sum())
    return hits, int(correct.sum()), float(correct.mean())
