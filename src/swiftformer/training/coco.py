"""COCO-format detection data (``instances_*.json`` + an image folder) and COCO mAP, through pycocotools.

The layout is COCO's own::

    DATA/annotations/instances_train2017.json    DATA/train2017/*.jpg
    DATA/annotations/instances_val2017.json      DATA/val2017/*.jpg

(any suffix: ``instances_train.json`` + ``train/`` works the same). :func:`open_coco` reads one split and
checks all of it before training starts, so that a bad file is one clear line and nothing is written:
an image file that is missing, an annotation of an image or category id not listed, a box or polygon
outside its image, a mask (RLE) of another size, a split without any annotation. An image without
annotations is allowed (a background-only image: its targets are empty); crowd annotations
(``iscrowd=1``) are left out of the training targets and kept for evaluation, as COCO does.

Categories map to contiguous labels ``1..K`` in the order of their ids (0 is the background);
``dataset.category_ids[label - 1]`` is the id a label stands for. Items are ``(image, target)``:
image (3, H, W) float32 in [0, 1], target ``{"boxes": (N, 4) xyxy float32, "labels": (N,) int64,
"masks": (N, H, W) uint8, "image_id": int}``, torchvision's detection format.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..detection.model import coco_results
from ..image_processing import load_image
from ..io.files import display_path
from . import distributed

# How far (pixels) a box or polygon may reach past its image's border: COCO's own boxes touch it.
_EDGE_TOLERANCE = 1.0
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval's first six stats, in order


def _quiet() -> contextlib.AbstractContextManager:
    """pycocotools prints its progress; the reports are ours."""
    return contextlib.redirect_stdout(io.StringIO())


def find_split(data_dir: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """The annotation file ``DATA/annotations/instances_<split>*.json`` and its image folder ``DATA/<split>*``."""
    root = Path(data_dir)
    pattern = str(root / "annotations" / f"instances_{glob.escape(split)}*.json")
    files = sorted(glob.glob(pattern))
    if len(files) != 1:
        found = "none" if not files else ", ".join(Path(f).name for f in files)
        raise FileNotFoundError(
            f"{display_path(root)} needs exactly one annotations/instances_{split}*.json (COCO's layout), found {found}"
        )
    annotation_file = Path(files[0])
    images = root / annotation_file.stem.removeprefix("instances_")
    if not images.is_dir():
        raise FileNotFoundError(f"the images of {annotation_file.name} belong in {display_path(images)}, not a folder")
    return annotation_file, images


class CocoDetection(torch.utils.data.Dataset):
    """One split of a COCO-format dataset, checked whole on opening (see the module's docstring).

    ``hflip``: the probability of flipping an item left-right (image, boxes and masks; training only).
    ``category_ids``: the categories (ids, in label order) the labels must mean, e.g. the training split's
    for the validation split, or a detector's; a split whose categories differ is refused.
    """

    def __init__(
        self,
        annotation_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        *,
        hflip: float = 0.0,
        category_ids: list[int] | None = None,
    ) -> None:
        from pycocotools.coco import COCO

        self.annotation_file, self.image_dir, self.hflip = Path(annotation_file), Path(image_dir), hflip
        where = display_path(self.annotation_file)
        data = _read_annotations(self.annotation_file)
        self.coco = COCO()
        self.coco.dataset = data
        with _quiet():
            self.coco.createIndex()
        self.category_ids = sorted(self.coco.cats)
        self.classes = [str(self.coco.cats[c]["name"]) for c in self.category_ids]
        if category_ids is not None and list(category_ids) != self.category_ids:
            raise ValueError(
                f"{where}: its categories {self.category_ids[:8]} differ from the ones expected (the training "
                f"split's, or the detector's) {list(category_ids)[:8]}"
            )
        self.label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        self.image_ids = sorted(self.coco.imgs)
        _check_annotations(self.coco, where)
        _check_image_files(self.coco, self.image_dir, where)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        image = load_image(self.image_dir / info["file_name"])
        if image.size != (info["width"], info["height"]):
            raise ValueError(
                f"{display_path(self.image_dir / info['file_name'])} is {image.size[0]}×{image.size[1]}, "
                f"but {self.annotation_file.name} says {info['width']}×{info['height']}"
            )
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255
        target = self._target(image_id, info["height"], info["width"])
        if self.hflip and torch.rand(()) < self.hflip:  # seeded per epoch and rank by the trainer
            pixels, target = _flip(pixels, target)
        return pixels, target

    def _target(self, image_id: int, height: int, width: int) -> dict[str, Any]:
        annotations = [a for a in self.coco.imgToAnns[image_id] if not a.get("iscrowd", 0)]
        boxes = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh → xyxy
        with warnings.catch_warnings():  # pycocotools' decoder warns under numpy 2 (its __array__ signature): harmless
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
            masks = np.stack([self.coco.annToMask(a) for a in annotations]) if annotations else None
        return {
            "boxes": boxes,
            "labels": torch.tensor([self.label_of[a["category_id"]] for a in annotations], dtype=torch.int64),
            "masks": torch.from_numpy(masks) if masks is not None else torch.zeros(0, height, width, dtype=torch.uint8),
            "image_id": image_id,
        }


def _flip(pixels: torch.Tensor, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    width = pixels.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    return pixels.flip(-1), {**target, "boxes": boxes, "masks": target["masks"].flip(-1)}


def _read_annotations(path: Path) -> dict[str, Any]:
    import json

    where = display_path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise OSError(f"cannot read {where}: {getattr(err, 'strerror', None) or err}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{where} is not valid JSON: {err.msg} (line {err.lineno})") from None
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data, dict) or key not in data]
    if missing:
        raise ValueError(f"{where} is not COCO instances JSON: no {', '.join(repr(k) for k in missing)}")
    if not data["categories"]:
        raise ValueError(f"{where} lists no categories")
    if not data["annotations"]:
        raise ValueError(
            f"{where} has no annotations at all: a detector needs objects to learn (images without any are "
            "fine as long as others have some)"
        )
    return data


def _check_annotations(coco: Any, where: str) -> None:
    """Every annotation: a listed image and category, a box and a mask inside the image."""
    for ann in coco.dataset["annotations"]:
        what = f"{where}: annotation {ann.get('id')} (image {ann.get('image_id')})"
        if ann.get("image_id") not in coco.imgs:
            raise ValueError(f"{what} refers to an image id not in the images list")
        if ann.get("category_id") not in coco.cats:
            raise ValueError(
                f"{what} has category_id {ann.get('category_id')}, not in the categories list {sorted(coco.cats)[:10]}"
            )
        image = coco.imgs[ann["image_id"]]
        height, width = image["height"], image["width"]
        _check_box(ann.get("bbox"), width, height, what)
        _check_segmentation(ann.get("segmentation"), width, height, what)


def _check_box(box: Any, width: int, height: int, what: str) -> None:
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        raise ValueError(f"{what}: bbox must be [x, y, width, height], got {box!r}")
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise ValueError(f"{what}: bbox {box} is empty (width and height must be positive)")
    t = _EDGE_TOLERANCE
    if x < -t or y < -t or x + w > width + t or y + h > height + t:
        raise ValueError(f"{what}: bbox {box} reaches outside its {width}×{height} image")


def _check_segmentation(segmentation: Any, width: int, height: int, what: str) -> None:
    if segmentation is None:
        raise ValueError(f"{what} has no segmentation (Mask R-CNN needs a polygon or RLE mask per object)")
    if isinstance(segmentation, dict):  # RLE
        if list(segmentation.get("size", [])) != [height, width]:
            raise ValueError(
                f"{what}: its RLE mask is {segmentation.get('size')} (height, width), the image {[height, width]}"
            )
        return
    if not isinstance(segmentation, list) or not segmentation:
        raise ValueError(f"{what}: segmentation must be polygons [[x1, y1, x2, y2, ...], ...] or an RLE dict")
    t = _EDGE_TOLERANCE
    for polygon in segmentation:
        points = np.asarray(polygon, dtype=np.float64)
        if points.ndim != 1 or len(points) < 6 or len(points) % 2:
            raise ValueError(f"{what}: a polygon needs at least three x, y points, got {len(points)} numbers")
        xs, ys = points[0::2], points[1::2]
        if xs.min() < -t or ys.min() < -t or xs.max() > width + t or ys.max() > height + t:
            raise ValueError(f"{what}: a polygon reaches outside its {width}×{height} image")


def _check_image_files(coco: Any, image_dir: Path, where: str) -> None:
    missing = [info["file_name"] for info in coco.imgs.values() if not (image_dir / info["file_name"]).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{where}: image file {display_path(image_dir / missing[0])} is missing{more}")


def open_coco(
    data_dir: str | os.PathLike, split: str, *, hflip: float = 0.0, category_ids: list[int] | None = None
) -> CocoDetection:
    """The ``split`` (``"train"``, ``"val"``, ``"val2017"`` ...) of a COCO-layout folder, checked."""
    annotation_file, image_dir = find_split(data_dir, split)
    return CocoDetection(annotation_file, image_dir, hflip=hflip, category_ids=category_ids)


def collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Lists, as torchvision's detection models take them (images differ in size)."""
    images, targets = zip(*batch)
    return list(images), list(targets)


# ------------------------------------------------------------------------------------------ evaluation
def _batches(dataset: CocoDetection, indices: list[int], batch_size: int, workers: int) -> Iterator[Any]:
    subset = torch.utils.data.Subset(dataset, indices)
    yield from torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=workers, collate_fn=collate)


@torch.no_grad()
def predict_coco(
    model: torch.nn.Module,
    dataset: CocoDetection,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 2,
    workers: int = 0,
    autocast_dtype: torch.dtype | None = None,
) -> list[dict[str, Any]]:
    """COCO results (bbox and RLE segmentation) of ``model`` on ``dataset``; under torchrun each process runs
    its shard and every process gets all the results."""
    from .evaluate import shard_indices

    info = distributed.current()
    device = torch.device(device)
    was_training = model.training
    model.eval()
    results: list[dict[str, Any]] = []
    category_ids = dataset.category_ids
    for images, targets in _batches(
        dataset, shard_indices(len(dataset), info.rank, info.world_size), batch_size, workers
    ):
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            outputs = model([image.to(device) for image in images])
        for output, target in zip(outputs, targets):
            output = {k: v.float() if v.is_floating_point() else v for k, v in output.items()}
            results.extend(coco_results(output, target["image_id"], category_ids))
    model.train(was_training)
    return [r for part in distributed.all_gather_objects(results) for r in part]


def coco_metrics(dataset: CocoDetection, results: list[dict[str, Any]]) -> dict[str, float]:
    """COCOeval's box and mask figures, in percent: ``bbox_AP``, ``bbox_AP50``, ``bbox_AP75``, ``bbox_APs``,
    ``bbox_APm``, ``bbox_APl`` and the same for ``segm_``. No detection at all scores 0."""
    from pycocotools.cocoeval import COCOeval

    metrics: dict[str, float] = {}
    for kind in ("bbox", "segm"):
        # Copies: loadRes adds fields; a mask result without its box is scored (and sized) by its mask.
        usable = [
            {k: v for k, v in r.items() if kind == "bbox" or k != "bbox"}
            for r in results
            if kind == "bbox" or "segmentation" in r
        ]
        if not usable:
            metrics.update({f"{kind}_{name}": 0.0 for name in METRICS})
            continue
        with _quiet():
            evaluation = COCOeval(dataset.coco, dataset.coco.loadRes(usable), kind)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        # COCOeval writes -1 where a size range has no ground truth: reported as 0.
        metrics.update({f"{kind}_{name}": max(0.0, float(v)) * 100 for name, v in zip(METRICS, evaluation.stats)})
    return metrics
