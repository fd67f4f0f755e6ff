"""What describes a detector folder, readable without torch: :class:`DetectorConfig`, :func:`is_detector`."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DETECTOR_CONFIG_NAME = "detector_config.json"
WEIGHTS_NAME = "model.safetensors"
TASK = "instance-segmentation"


def is_detector(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a detector folder (it holds ``detector_config.json``)."""
    return (Path(path) / DETECTOR_CONFIG_NAME).is_file()


def dense_model_problem(path: str | os.PathLike, command: str) -> str | None:
    """The one line a classification-only ``command`` (serve, explain, embed, bench, export) answers for a
    detector or a semantic segmentation model folder; None for anything else (a classifier, a hub id)."""
    from ..modeling_segmentation import is_segmentation_folder

    if is_detector(path):
        return f"{path} is a detection model: {command} is classification-only"
    if is_segmentation_folder(path):
        return (
            f"{command} is for classification models only; {path} is a semantic segmentation model "
            "(swiftformer predict --masks DIR writes its masks)"
        )
    return None


@dataclass
class DetectorConfig:
    """What builds a detector: the backbone's config, the labels, and the Mask R-CNN sizes that differ from
    torchvision's defaults (the rest are torchvision's, as in the paper's mmdetection config)."""

    backbone: dict[str, Any]  # a SwiftFormerConfig as a dict
    id2label: dict[int, str]  # 1..K; 0 is the background
    category_ids: list[int] = field(default_factory=list)  # COCO category id of label 1..K; default 1..K
    min_size: int = 800  # the shorter image side after resizing (the paper: 1333 × 800)
    max_size: int = 1333
    fpn_channels: int = 256
    rpn_post_nms_top_n_train: int = 2000  # proposals kept per image in training
    rpn_post_nms_top_n_test: int = 1000
    box_batch_size_per_image: int = 512  # RoIs sampled per image for the box and mask losses
    box_detections_per_img: int = 100
    task: str = TASK

    def __post_init__(self) -> None:
        self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
        if sorted(self.id2label) != list(range(1, len(self.id2label) + 1)):
            raise ValueError(f"detector labels must be 1..K (0 is the background), got {sorted(self.id2label)}")
        if not self.category_ids:
            self.category_ids = list(range(1, len(self.id2label) + 1))
        if len(self.category_ids) != len(self.id2label):
            raise ValueError(f"{len(self.category_ids)} category ids for {len(self.id2label)} labels")

    @property
    def num_classes(self) -> int:
        """Including the background."""
        return len(self.id2label) + 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "detector config") -> DetectorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown or data.get("task", TASK) != TASK:
            raise ValueError(f"{source} is not a swiftformer detector config (unknown keys {unknown})")
        try:
            return cls(**data)
        except TypeError as err:
            raise ValueError(f"{source} is incomplete: {err}") from None
