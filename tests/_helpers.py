"""Shared test helpers: perturbed weights that expose bugs the default init would hide, and the small models,
model folders and images the test modules build (tests/conftest.py wraps them as fixtures).

The default init scales every attention/MLP branch by ``layer_scale_init_value`` (1e-5), so a wrong
branch changes the output by ~1e-5 and slips through any tolerance. Perturbed weights make every
branch matter: random BatchNorm statistics, layer scales around 0.5, weights at fan-in scale.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification, SwiftFormerImageProcessor


def perturb_state_dict(state_dict: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """A new state dict with the same keys and shapes, randomized so that every branch matters."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state_dict.items():
        if not value.is_floating_point():
            out[key] = value.clone()
            continue
        shape = value.shape
        if key.endswith("running_var"):
            new = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith("running_mean"):
            new = torch.randn(shape, generator=gen) * 0.2
        elif "layer_scale" in key:
            new = torch.rand(shape, generator=gen) * 0.5 + 0.25  # ~0.5
        elif (
            key.endswith("norm.weight")
            or ".norm1.weight" in key
            or "patch_embedding.1.weight" in key
            or "patch_embedding.4.weight" in key
        ):
            new = torch.rand(shape, generator=gen) + 0.5  # BatchNorm gamma
        elif key.endswith("bias"):
            new = torch.randn(shape, generator=gen) * 0.1
        else:
            fan_in = value[0].numel() if value.ndim > 1 else value.numel()
            new = torch.randn(shape, generator=gen) / fan_in**0.5
        out[key] = new.to(value.dtype)
    return out


def perturb_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb ``model``'s weights in place (see :func:`perturb_state_dict`); returns the model."""
    model.load_state_dict(perturb_state_dict(model.state_dict(), seed))
    return model


def assert_close_rel(
    actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5, what: str = "", atol: float = 0.0
) -> None:
    """``max|actual - expected| <= max(rel * max|expected|, atol)`` (the parity criterion of the project)."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    scale = expected.abs().max()
    err = (actual - expected).abs().max()
    assert err <= max(rel * scale, atol), (
        f"{what}: max|diff| {err.item():.3e} > {rel:g} x max|value| {scale.item():.3e}"
    )


# The two model sizes the suite builds: TINY has every stage distinct (depths and widths differ), for the model and
# parity tests; SMALLEST is the cheapest model with one block per stage, for the command-line, serving and batch tests.
TINY = {"depths": [2, 1, 2, 1], "embed_dims": [8, 12, 16, 24], "num_labels": 5}
SMALLEST = {"depths": [1, 1, 1, 1], "embed_dims": [8, 8, 16, 16]}
LABELS = {0: "cat", 1: "dog", 2: "bird", 3: "fish"}


def tiny_classifier(seed: int = 0, **overrides) -> SwiftFormerForImageClassification:
    """A perturbed :data:`TINY` classifier (``overrides`` change config fields) in eval mode."""
    torch.manual_seed(seed)
    return perturb_(SwiftFormerForImageClassification(SwiftFormerConfig(**{**TINY, **overrides})), seed).eval()


def make_model_dir(path: Path, size: int = 64, **overrides) -> Path:
    """A model folder as users have them: a perturbed :data:`SMALLEST` classifier labelled :data:`LABELS` and an
    image processor resizing to ``size``², both saved to ``path``."""
    torch.manual_seed(0)
    config = SwiftFormerConfig(**{**SMALLEST, "id2label": LABELS, **overrides})
    perturb_(SwiftFormerForImageClassification(config)).save_pretrained(path)
    SwiftFormerImageProcessor(size={"height": size, "width": size}).save_pretrained(path)
    return path


def make_images(folder: Path, shapes: dict[str, tuple[int, ...]] | None = None, seed: int = 0) -> list[Path]:
    """Random-noise images written to ``folder`` as ``{file name: array shape}`` (the format follows the name);
    by default a PNG and a JPEG of different sizes and aspect ratios."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, shape in (shapes or {"a.png": (80, 60, 3), "b.jpg": (50, 90, 3)}).items():
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / name)
        paths.append(folder / name)
    return paths


def bundle_images(folder: Path, size: int) -> np.ndarray:
    """What an app feeds a bundle: real image files at the input size (PNG and JPEG, decoded by PIL), seeded
    random pixels and a black image, as (N, size, size, 3) uint8."""
    paths = make_images(folder, {"a.png": (size, size, 3), "b.jpg": (size, size, 3)}, seed=3)
    files = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    noise = np.random.default_rng(5).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    return np.concatenate([np.stack(files), noise, np.zeros((1, size, size, 3), np.uint8)])


def processor_probabilities(model_dir: Path, images: np.ndarray) -> torch.Tensor:
    """The eager model's softmax on the folder's own processor applied to ``images`` (already at its size)."""
    from swiftformer.image_processing import load_processor
    from swiftformer.inference import load_model

    model = load_model(str(model_dir))
    processor, _ = load_processor(model_dir)
    with torch.no_grad():
        return model(processor(list(images), return_tensors="pt")["pixel_values"]).logits.softmax(-1)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a ``python -m swiftformer`` subprocess: one thread, offline, unbuffered, and none of
    this process's torchrun or kill-point variables (``extra`` sets a kill point: io.files.crash_point)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SWIFTFORMER_KILL_AT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **extra)
    return env


def run_process(args: list, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python ARGS`` (e.g. ``["-m", "swiftformer", "train", ...]``) to completion, output captured."""
    return subprocess.run(
        [sys.executable, *[str(a) for a in args]],
        env=env or subprocess_env(),
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,  # callers assert on the status and print the output
    )


def free_port() -> int:
    """A TCP port free on the loopback interface now (a rendezvous of torch.distributed, a server given a port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
