"""Detection and instance segmentation: torchvision's Mask R-CNN on a SwiftFormer feature pyramid.

The paper's COCO experiments (Table 3) put SwiftFormer under Mask R-CNN with an FPN. Nothing of Mask R-CNN
is re-written here: :class:`SwiftFormerForInstanceSegmentation` *is* torchvision's ``MaskRCNN`` (RPN, RoI
heads, its resize-and-normalize transform), given :class:`SwiftFormerFPN` as its backbone::

    images (list of (3, H, W) in [0, 1])
      → GeneralizedRCNNTransform: resize (shorter side ``min_size``, longer ≤ ``max_size``), ImageNet mean/std
      → SwiftFormerBackbone: stage1..stage4, strides 4, 8, 16, 32, each BatchNorm-ed (``backbone_norm``)
      → FeaturePyramidNetwork: "0".."3" + "pool" (stride 64), ``fpn_channels`` wide
      → RPN → RoIAlign → box head (2 × fc ``4·fpn_channels``) + mask head (4 × conv ``fpn_channels``)

    from swiftformer.detection.model import swiftformer_maskrcnn, SwiftFormerForInstanceSegmentation

    model = swiftformer_maskrcnn("l1", {1: "person", 2: "car"}, backbone_weights="MODEL_FOLDER")
    model.save_pretrained("detector")                  # detector_config.json + model.safetensors
    model = SwiftFormerForInstanceSegmentation.from_pretrained("detector")

Labels are contiguous, ``1..K`` (0 is the background, as torchvision counts); ``category_ids[label - 1]``
is the COCO category id a label stands for (:func:`coco_results` writes those). Needs torchvision
(``pip install .[train]``); :func:`coco_results` needs pycocotools (``.[dense]``).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from ..configuration import SwiftFormerConfig
from ..io.checkpoints import load_state_dict_file, save_state_dict_file
from ..io.files import atomic_write, display_path, read_json
from ..modeling import SwiftFormerBackbone
from .config import DETECTOR_CONFIG_NAME, WEIGHTS_NAME, DetectorConfig, is_detector

STAGES = ["stage1", "stage2", "stage3", "stage4"]


class SwiftFormerFPN(nn.Module):
    """SwiftFormerBackbone + torchvision's FeaturePyramidNetwork, like torchvision's ``BackboneWithFPN``.

    (B, 3, H, W) → OrderedDict ``"0"``..``"3"`` (strides 4, 8, 16, 32) and ``"pool"`` (stride 64), each
    (B, out_channels, ⌈H/stride⌉, ⌈W/stride⌉): the names and levels torchvision's detection models
    expect by default (five anchor sizes, RoI pooling on ``"0"``..``"3"``).
    """

    def __init__(self, backbone: SwiftFormerBackbone, out_channels: int = 256) -> None:
        super().__init__()
        self.body = backbone
        self.fpn = FeaturePyramidNetwork(backbone.channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels  # read by torchvision's detection models

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feature_maps = self.body(images).feature_maps
        return self.fpn(OrderedDict((str(i), fmap) for i, fmap in enumerate(feature_maps)))


def backbone_config(config: SwiftFormerConfig) -> SwiftFormerConfig:
    """``config`` as a detection backbone: the four stage maps, each with its own BatchNorm (as the original
    repository's ``fork_feat`` backbone)."""
    return SwiftFormerConfig.from_dict(config.to_dict(), out_features=STAGES, backbone_norm=True)


class SwiftFormerForInstanceSegmentation(MaskRCNN):
    """torchvision's ``MaskRCNN`` on :class:`SwiftFormerFPN`, described by a :class:`DetectorConfig`.

    Training: ``model(images, targets)`` with images a list of (3, H, W) floats in [0, 1] and targets a list
    of ``{"boxes": (N, 4) xyxy pixels, "labels": (N,) int64 in 1..K, "masks": (N, H, W) uint8}`` returns
    torchvision's loss dict. Inference: ``model(images)`` returns per image ``boxes`` (D, 4), ``labels``
    (D,), ``scores`` (D,) and ``masks`` (D, 1, H, W) probabilities, in the input image's pixels.
    """

    def __init__(self, config: DetectorConfig) -> None:
        backbone = SwiftFormerBackbone(backbone_config(SwiftFormerConfig.from_dict(config.backbone)))
        width = config.fpn_channels
        representation = 4 * width  # 1024 at torchvision's 256
        super().__init__(
            SwiftFormerFPN(backbone, width),
            num_classes=None,
            min_size=config.min_size,
            max_size=config.max_size,
            rpn_post_nms_top_n_train=config.rpn_post_nms_top_n_train,
            rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
            box_batch_size_per_image=config.box_batch_size_per_image,
            box_detections_per_img=config.box_detections_per_img,
            box_head=TwoMLPHead(width * 7 * 7, representation),  # RoIAlign's 7 × 7 boxes
            box_predictor=FastRCNNPredictor(representation, config.num_classes),
            mask_head=MaskRCNNHeads(width, (width,) * 4, 1),
            mask_predictor=MaskRCNNPredictor(width, width, config.num_classes),
        )
        self.config = config

    @property
    def swiftformer(self) -> SwiftFormerBackbone:
        """The SwiftFormer backbone inside the FPN."""
        return self.backbone.body

    def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
        """Recompute the backbone's blocks in the backward pass (the heads are small)."""
        self.swiftformer.gradient_checkpointing_enable(**kwargs)

    # -------------------------------------------------------------- saving and loading
    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``detector_config.json`` and ``model.safetensors`` (each atomically) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_state_dict_file(self.state_dict(), folder / WEIGHTS_NAME)
        with atomic_write(folder / DETECTOR_CONFIG_NAME, "w") as handle:
            handle.write(json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> SwiftFormerForInstanceSegmentation:
        """The detector saved in ``folder`` by :meth:`save_pretrained`, in eval mode (no pickle is read).

        Raises:
            FileNotFoundError: ``folder`` holds no detector.
            ValueError: its config or weights do not describe one detector.
        """
        folder = Path(folder)
        if not is_detector(folder):
            raise FileNotFoundError(
                f"{display_path(folder)} is not a detector folder (no {DETECTOR_CONFIG_NAME}; train one with "
                "swiftformer train --task detection)"
            )
        config = DetectorConfig.from_dict(read_json(folder / DETECTOR_CONFIG_NAME), display_path(folder))
        model = cls(config)
        state = load_state_dict_file(folder / WEIGHTS_NAME)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{display_path(folder / WEIGHTS_NAME)} does not fit its {DETECTOR_CONFIG_NAME}: "
                f"{len(missing)} weight(s) missing (e.g. {missing[:1]}), {len(unexpected)} unexpected "
                f"(e.g. {unexpected[:1]})"
            )
        return model.eval()


def swiftformer_maskrcnn(
    variant: str | SwiftFormerConfig,
    id2label: dict[int, str],
    *,
    backbone_weights: str | os.PathLike | None = None,
    **options: Any,
) -> SwiftFormerForInstanceSegmentation:
    """A Mask R-CNN on a SwiftFormer ``variant`` (a name such as ``"l1"``, or a config) for labels ``id2label``
    (1..K); ``options`` are :class:`DetectorConfig` fields (``min_size``, ``fpn_channels``, ``category_ids`` ...).

    ``backbone_weights``: a classification (or backbone) model folder or hub id whose SwiftFormer weights start
    the backbone, as the paper starts from ImageNet (:func:`load_backbone_weights`; its variant wins).
    """
    if backbone_weights is not None:
        variant = SwiftFormerConfig.from_pretrained(backbone_weights)
    config = variant if isinstance(variant, SwiftFormerConfig) else SwiftFormerConfig.from_variant(variant)
    backbone = {k: v for k, v in config.to_dict().items() if k not in ("id2label", "label2id")}
    model = SwiftFormerForInstanceSegmentation(DetectorConfig(backbone=backbone, id2label=id2label, **options))
    if backbone_weights is not None:
        load_backbone_weights(model, backbone_weights)
    return model


def load_backbone_weights(model: SwiftFormerForInstanceSegmentation, source: str | os.PathLike) -> list[str]:
    """Copy the SwiftFormer weights of a model folder or hub id into ``model``'s backbone; returns the
    backbone's weights it did not hold (the four output BatchNorms, which a classifier lacks, start fresh).
    A classifier's ``norm``/``head``/``dist_head`` are ignored. Raises CheckpointError when none match."""
    loaded, info = SwiftFormerBackbone.from_pretrained(
        source, out_features=STAGES, backbone_norm=True, output_loading_info=True
    )
    model.swiftformer.load_state_dict(loaded.state_dict())
    return sorted(info.get("missing_keys", []))


def describe_missing(missing: list[str]) -> str:
    """One line about the backbone weights a checkpoint did not hold."""
    if not missing:
        return "every backbone weight loaded"
    heads = sorted({name.split(".")[1] for name in missing if name.startswith("hidden_states_norms.")})
    other = [name for name in missing if not name.startswith("hidden_states_norms.")]
    parts = [f"the output norms of {', '.join(heads)} start fresh"] if heads else []
    if other:
        parts.append(f"{len(other)} other weight(s) start fresh (e.g. {other[0]})")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------ COCO results
def coco_results(
    output: dict[str, torch.Tensor], image_id: int, category_ids: list[int], mask_threshold: float = 0.5
) -> list[dict[str, Any]]:
    """One image's detections (the model's output dict) as COCO results: ``bbox`` [x, y, w, h], ``score``,
    ``category_id`` (the COCO id of the label) and ``segmentation`` (RLE, counts as text) when masks are given."""
    from pycocotools import mask as mask_utils

    boxes = output["boxes"].detach().float().cpu()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    scores, labels = output["scores"].tolist(), output["labels"].tolist()
    rles: list[Any] = [None] * len(scores)
    if "masks" in output and len(scores):
        binary = (output["masks"][:, 0] > mask_threshold).to(torch.uint8).cpu().numpy()  # (D, H, W)
        rles = mask_utils.encode(binary.transpose(1, 2, 0).copy(order="F"))
    results = []
    for box, score, label, rle in zip(xywh, scores, labels, rles):
        result: dict[str, Any] = {
            "image_id": image_id,
            "category_id": category_ids[label - 1],
            "bbox": [round(v, 2) for v in box],
            "score": round(float(score), 5),
        }
        if rle is not None:
            result["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
        results.append(result)
    return results


@torch.no_grad()
def predict_files(
    model: SwiftFormerForInstanceSegmentation,
    paths: list[str],
    *,
    batch_size: int = 4,
    score_threshold: float = 0.05,
    on_error: Callable[[str, str], None] | None = None,
) -> list[dict[str, Any]]:
    """COCO results of ``model`` on image files: per detection ``image_id`` (the file's position in ``paths``),
    ``file_name``, ``category_id``, ``bbox`` [x, y, w, h], ``score`` and ``segmentation`` (RLE). Detections scoring
    under ``score_threshold`` are left out (COCO's evaluation keeps 100 per image: 0.05 is torchvision's). An image
    that cannot be read is reported through ``on_error(path, message)`` and skipped (without ``on_error``, its
    OSError is raised)."""
    from ..image_processing import load_image

    model.eval()
    device = next(model.parameters()).device
    results: list[dict[str, Any]] = []
    for start in range(0, len(paths), batch_size):
        batch: list[tuple[int, str, torch.Tensor]] = []
        for index, name in enumerate(paths[start : start + batch_size], start):
            try:
                batch.append((index, name, _to_tensor(load_image(name)).to(device)))
            except OSError as err:
                if on_error is None:
                    raise
                on_error(name, str(err))
        outputs = model([image for _, _, image in batch]) if batch else []
        for (index, name, _), output in zip(batch, outputs):
            keep = output["scores"] >= score_threshold
            kept = {k: v[keep] for k, v in output.items()}
            for result in coco_results(kept, index, model.config.category_ids):
                results.append({**result, "file_name": name})
    return results


def _to_tensor(image: Any) -> torch.Tensor:
    """A PIL RGB image as (3, H, W) float32 in [0, 1], what torchvision's detection models take."""
    import numpy as np

    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255
