"""``swiftformer predict`` on a semantic segmentation model: one index PNG per image (and colour overlays).

    from swiftformer.batch.segmentation import predict_masks

    written = predict_masks("runs/ade/best", ["photos/"], "masks/", overlays=True)

Each mask is a palette PNG (mode ``P``) at the image's own size whose pixel values are the model's class
indices (``config.id2label``), so that programs read classes and viewers show colours; with ``overlays`` a
``NAME.overlay.png`` beside it blends those colours over the image. Files are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..image_processing import load_image, load_processor
from ..io.files import atomic_write
from ..modeling_segmentation import SwiftFormerForSemanticSegmentation
from .inputs import expand_inputs

MAX_MASK_CLASSES = 256  # what a palette PNG holds


def palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours, distinct and fixed (seeded), the same in masks and overlays."""
    colours = np.random.default_rng(0).integers(0, 256, (max(num_classes, 1), 3), dtype=np.uint8)
    return colours


def mask_image(classes: np.ndarray, colours: np.ndarray) -> Image.Image:
    """(H, W) class indices → a palette PNG image (mode P, pixel = class index)."""
    image = Image.fromarray(classes.astype(np.uint8), mode="P")
    image.putpalette(colours.reshape(-1).tolist())
    return image


def overlay_image(image: Image.Image, classes: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The image with each pixel's class colour blended in at ``alpha``."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    blended = (1 - alpha) * pixels + alpha * colours[classes].astype(np.float32)
    return Image.fromarray(blended.round().astype(np.uint8))


@torch.inference_mode()
def segment(model: SwiftFormerForSemanticSegmentation, pixel_values: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(1, 3, h, w) processed pixels → (H, W) int64 class indices at the original ``size`` (H, W)."""
    logits = model(pixel_values).logits  # (1, K, h, w)
    logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
    return logits.argmax(1)[0].numpy()


def predict_masks(
    model_ref: str | os.PathLike,
    inputs: Iterable[str],
    output: str | os.PathLike,
    *,
    overlays: bool = False,
    hub: dict | None = None,
    on_error: Callable[[str, str], None] | None = None,
) -> list[Path]:
    """Segment every image of ``inputs`` (files, folders, globs, ``@LIST``: :func:`expand_inputs`) with the
    segmentation model folder ``model_ref``; write ``OUTPUT/STEM.png`` (and ``STEM.overlay.png``). An image
    that cannot be read is reported through ``on_error(path, message)`` and skipped. Returns the masks written.
    """
    model = SwiftFormerForSemanticSegmentation.from_pretrained(model_ref, **(hub or {})).eval()
    if model.num_labels > MAX_MASK_CLASSES:
        raise ValueError(f"the model has {model.num_labels} classes; an index PNG holds at most {MAX_MASK_CLASSES}")
    processor, _ = load_processor(model_ref, **(hub or {}))
    colours = palette(model.num_labels)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in expand_inputs(inputs):
        try:
            image = load_image(path)
        except OSError as err:
            if on_error is not None:
                on_error(path, str(err))
            continue
        pixel_values = processor(image, return_tensors="pt")["pixel_values"]  # (1, 3, h, w)
        classes = segment(model, pixel_values, (image.height, image.width))
        target = out / (Path(path).stem + ".png")
        with atomic_write(target) as handle:
            mask_image(classes, colours).save(handle, format="PNG")
        if overlays:
            with atomic_write(out / (Path(path).stem + ".overlay.png")) as handle:
                overlay_image(image, classes, colours).save(handle, format="PNG")
        written.append(target)
    return written
