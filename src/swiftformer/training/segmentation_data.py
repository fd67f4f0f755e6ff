"""Semantic segmentation data: ADE20K-layout folders, joint image-and-mask transforms, batches.

The layout (ADE20K's ``ADEChallengeData2016``)::

    ROOT/images/training/NAME.jpg         RGB images
    ROOT/annotations/training/NAME.png    index PNGs (mode L or P) of the same size: pixel = class index
    ROOT/images/validation/…, ROOT/annotations/validation/…
    ROOT/objectInfo150.txt or ROOT/classes.txt   the class names (ADE20K's table, or one name per line)

ADE20K's convention, ``reduce_zero_label=True`` (mmseg's name): index 0 is "other" and is ignored (→ 255),
classes 1..150 become 0..149. The training transform is mmseg's ADE20K pipeline, in
:class:`SegmentationTrainTransform`; evaluation resizes the image's shortest edge to the crop size and
scores the logits upsampled to the mask's full size.
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from ..image_processing import IMAGE_EXTENSIONS, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, load_image

IGNORE_INDEX = 255  # unlabelled pixels: left out of the loss and the metrics
SPLITS = {"train": "training", "val": "validation"}
CLASS_FILES = ("objectInfo150.txt", "objectInfo150.csv", "classes.txt")


class SegmentationDataError(ValueError):
    """A bad item of a segmentation dataset, in one line.

    Raised in a DataLoader worker, it comes back to the main process as torch rebuilds it there:
    ``SegmentationDataError("Caught ... in DataLoader worker process N.\\nOriginal Traceback ...")``; the message
    is then the original one again (the traceback's last line), so that the command line still shows one line.
    """

    def __init__(self, message: str) -> None:
        if "\nOriginal Traceback" in message:
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message)


class SegmentationBatch(NamedTuple):
    pixel_values: torch.Tensor | None  # (B, 3, H, W) float32
    labels: torch.Tensor | None  # (B, H, W) int64, IGNORE_INDEX where unlabelled
    unreadable: list[str]  # images that could not be decoded


def read_class_names(root: Path) -> list[str]:
    """The class names of an ADE20K-layout folder: ADE20K's ``objectInfo150`` table (tab- or comma-separated,
    names in the last column, the first of ``;``-separated synonyms) or ``classes.txt`` (one per line)."""
    for name in CLASS_FILES:
        path = root / name
        if not path.is_file():
            continue
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if name != "classes.txt":  # a header, then Idx, Ratio, Train, Val, Name (quoted in the CSV when it has commas)
            rows = csv.reader(lines[1:], delimiter="\t" if "\t" in lines[0] else ",")
            lines = [row[-1].split(";")[0].strip() for row in rows if row]
        if not lines:
            raise ValueError(f"{path} names no classes")
        return lines
    raise FileNotFoundError(f"{root} has no class list: expected one of {', '.join(CLASS_FILES)}")


class ADE20KDataset(torch.utils.data.Dataset):
    """One split of an ADE20K-layout folder (see the module's docs). Items are ``(image, mask, path)`` after
    ``transform(image, mask)``; ``(None, None, path)`` for an image that cannot be decoded.

    ``classes``: the names after ``reduce_zero_label`` (150 for ADE20K). Raises ``ValueError``, one line each,
    for an image without a mask and a mask whose size differs from its image's (checked when opening: file
    headers only), and when an item is read, for a mask holding an index above the classes.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        transform: Callable | None = None,
        *,
        reduce_zero_label: bool = True,
    ) -> None:
        self.root, self.transform, self.reduce_zero_label = Path(root), transform, reduce_zero_label
        folder = SPLITS.get(split, split)
        images, masks = self.root / "images" / folder, self.root / "annotations" / folder
        for path in (images, masks):
            if not path.is_dir():
                raise FileNotFoundError(
                    f"{path} not found: an ADE20K-layout folder has images/{folder}/*.jpg and annotations/{folder}/*.png"
                )
        self.classes = read_class_names(self.root)
        files = sorted(
            p for p in images.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        if not files:
            raise ValueError(f"{images} holds no images")
        self.samples: list[tuple[str, str]] = []
        for image in files:
            mask = masks / (image.stem + ".png")
            if not mask.is_file():
                raise SegmentationDataError(f"image {image} has no mask {mask}")
            with Image.open(image) as a, Image.open(mask) as b:
                if a.size != b.size:
                    raise SegmentationDataError(
                        f"mask {mask} is {b.size[0]}×{b.size[1]}, its image {image.name} {a.size[0]}×{a.size[1]}"
                    )
            self.samples.append((str(image), str(mask)))

    def __len__(self) -> int:
        return len(self.samples)

    def read_mask(self, path: str) -> np.ndarray:
        """The class indices (H, W) uint8 of an index PNG, 0..num_classes-1 or IGNORE_INDEX."""
        with Image.open(path) as image:
            if image.mode not in ("L", "P"):
                raise SegmentationDataError(f"mask {path} is a {image.mode} image: expected an index PNG (mode L or P)")
            mask = np.asarray(image, dtype=np.uint8)
        top = int(mask.max()) if mask.size else 0
        limit = len(self.classes) + (1 if self.reduce_zero_label else 0)  # with the reduction, 0 is "other"
        if top >= limit and top != IGNORE_INDEX:
            raise SegmentationDataError(f"mask {path} holds index {top}, above the {len(self.classes)} classes")
        if self.reduce_zero_label:
            mask = mask - np.uint8(1)  # uint8: 0 ("other") wraps to 255, ignored; 255 stays ignored below
            mask[mask == IGNORE_INDEX - 1] = IGNORE_INDEX
        return mask

    def __getitem__(self, index: int) -> tuple[Any, Any, str]:
        image_path, mask_path = self.samples[index]
        try:
            image = load_image(image_path)
        except OSError:
            return None, None, image_path
        mask = Image.fromarray(self.read_mask(mask_path))
        if self.transform is not None:
            return (*self.transform(image, mask), image_path)
        return image, mask, image_path


def _normalize(image: Image.Image, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """PIL RGB → (3, H, W) float32, ImageNet-normalized."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (pixels - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


class SegmentationTrainTransform:
    """mmseg's ADE20K training pipeline on a PIL image and mask: random resize (the image fitted in
    ``(4·crop, crop)`` times a ratio in ``ratio_range``), random ``crop``×``crop`` crop whose largest class
    covers at most ``cat_max_ratio`` of its labelled pixels (10 tries), horizontal flip (``hflip``),
    photometric distortion (each with probability 0.5: brightness ±32, contrast and saturation ×0.5–1.5, hue
    ±18° of 180), normalization, padding to the crop (image 0, mask ignored).
    Returns ``(pixel_values (3, crop, crop), labels (crop, crop) int64)``."""

    def __init__(
        self,
        crop: int,
        *,
        ratio_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        hflip: float = 0.5,
        photometric: bool = True,
        mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
        std: tuple[float, ...] = IMAGENET_DEFAULT_STD,
    ) -> None:
        self.crop, self.ratio_range, self.cat_max_ratio = crop, ratio_range, cat_max_ratio
        self.hflip, self.photometric, self.mean, self.std = hflip, photometric, tuple(mean), tuple(std)

    def __call__(self, image: Image.Image, mask: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self._resize(image, mask)
        image, mask = self._crop(image, mask)
        if random.random() < self.hflip:
            image, mask = (
                image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
            )
        if self.photometric:
            image = photometric_distortion(image)
        pixels = _normalize(image, self.mean, self.std)  # (3, h, w)
        labels = torch.from_numpy(np.asarray(mask, dtype=np.int64).copy())  # (h, w)
        pad_h, pad_w = self.crop - pixels.shape[1], self.crop - pixels.shape[2]
        if pad_h > 0 or pad_w > 0:
            pixels = torch.nn.functional.pad(pixels, (0, max(pad_w, 0), 0, max(pad_h, 0)))
            labels = torch.nn.functional.pad(labels, (0, max(pad_w, 0), 0, max(pad_h, 0)), value=IGNORE_INDEX)
        return pixels, labels

    def _resize(self, image: Image.Image, mask: Image.Image) -> tuple[Image.Image, Image.Image]:
        ratio = random.uniform(*self.ratio_range)
        long_side, short_side = 4 * self.crop * ratio, self.crop * ratio
        w, h = image.size
        scale = min(long_side / max(w, h), short_side / min(w, h))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return image.resize(size, Image.Resampling.BILINEAR), mask.resize(size, Image.Resampling.NEAREST)

    def _crop(self, image: Image.Image, mask: Image.Image) -> tuple[Image.Image, Image.Image]:
        w, h = image.size
        labels = np.asarray(mask)
        box = (0, 0, w, h)
        for _ in range(10):
            x, y = random.randint(0, max(w - self.crop, 0)), random.randint(0, max(h - self.crop, 0))
            box = (x, y, min(x + self.crop, w), min(y + self.crop, h))
            counts = np.bincount(labels[box[1] : box[3], box[0] : box[2]].ravel(), minlength=256)[:IGNORE_INDEX]
            if self.cat_max_ratio >= 1 or counts.sum() == 0 or counts.max() / counts.sum() < self.cat_max_ratio:
                break
        return image.crop(box), mask.crop(box)


def photometric_distortion(image: Image.Image) -> Image.Image:
    """mmseg's PhotoMetricDistortion, each step with probability 0.5: brightness ±32 (additive), contrast
    ×0.5–1.5, saturation ×0.5–1.5, hue ±18 of OpenCV's 180 (0.1 of the circle)."""
    from torchvision.transforms import functional as TF

    tensor = TF.pil_to_tensor(image)  # (3, H, W) uint8
    if random.random() < 0.5:
        tensor = (tensor.float() + random.uniform(-32, 32)).clamp(0, 255).to(torch.uint8)
    if random.random() < 0.5:
        tensor = TF.adjust_contrast(tensor, random.uniform(0.5, 1.5))
    if random.random() < 0.5:
        tensor = TF.adjust_saturation(tensor, random.uniform(0.5, 1.5))
    if random.random() < 0.5:
        tensor = TF.adjust_hue(tensor, random.uniform(-0.1, 0.1))
    return TF.to_pil_image(tensor)


class SegmentationEvalTransform:
    """Evaluation: the image through the model's processor (shortest edge to the crop size), the mask kept at
    full size (the logits are upsampled to it). Returns ``(pixel_values (3, h, w), labels (H, W) int64)``."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Image.Image, mask: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.processor(image, return_tensors="pt")["pixel_values"][0]
        return pixels, torch.from_numpy(np.asarray(mask, dtype=np.int64).copy())


def collate_segmentation(batch: list[tuple]) -> SegmentationBatch:
    """Stack the readable ``(pixels, labels, path)`` items (one size: training crops, or one image); list the
    unreadable ones."""
    kept = [(x, y) for x, y, _ in batch if x is not None]
    unreadable = [path for x, _, path in batch if x is None]
    if not kept:
        return SegmentationBatch(None, None, unreadable)
    images, labels = zip(*kept)
    return SegmentationBatch(torch.stack(images), torch.stack(labels), unreadable)
