"""What the batch-job tests share (tests/test_batch.py, test_batch_ray.py): the options that keep runs exact, a tree
of images, the command run as a user runs it, and row comparisons."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FAST = ("--precision", "fp32", "--backend", "inductor", "--batch-size", "8")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the suite shares few cores; fewer threads, steadier timing


def make_image_tree(folder: Path, count: int, seed: int = 0, side: int = 24) -> list[Path]:
    """``count`` small images in nested folders (jpg and png), in the order a folder walk yields them."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        sub = folder / f"d{i % 3}" / ("nested" if i % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"img{i:04d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (side, side + 4, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return sorted(paths, key=lambda p: (p.parent.parts, p.name))


def swiftformer(*argv, env=None, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "swiftformer", *map(str, argv)],
        capture_output=True,
        text=True,
        env=env or ENV,
        timeout=600,
        check=False,
    )
    if check:
        assert result.returncode in (0, 1), result.stderr[-3000:]
    return result


def by_image(rows) -> dict[str, dict]:
    rows = list(rows)
    images = [r["image"] for r in rows]
    assert len(images) == len(set(images)), "an image appears twice"
    return {r["image"]: r for r in rows}


def assert_same_predictions(a: dict[str, dict], b: dict[str, dict], exact: bool = True) -> None:
    assert set(a) == set(b)
    for key in a:
        ra, rb = a[key], b[key]
        assert (ra["error"] is None) == (rb["error"] is None), key
        if ra["error"] is not None:
            continue
        assert ra["indices"] == rb["indices"] and ra["labels"] == rb["labels"] and ra["label"] == rb["label"]
        if exact:
            assert ra["scores"] == rb["scores"] and ra["score"] == rb["score"]
        else:  # other batch compositions: float round-off
            assert ra["scores"] == pytest.approx(rb["scores"], rel=1e-5, abs=1e-7)
