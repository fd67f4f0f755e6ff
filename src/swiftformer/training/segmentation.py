"""Training semantic segmentation (``task="segmentation"``): :class:`SegmentationTrainer`.

The classification :class:`~swiftformer.training.trainer.Trainer` with its own data (ADE20K-layout folders,
:mod:`~swiftformer.training.segmentation_data`), model (:class:`SwiftFormerForSemanticSegmentation`, its
backbone from ``init``: an ImageNet classifier folder), loss (per-pixel cross-entropy, unlabelled pixels
ignored) and validation metrics (mIoU, pixel accuracy). Everything else, the sampler, schedule,
checkpoints, exact resume, ``torchrun`` and the logs, is the Trainer's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch

from ..configuration import SwiftFormerConfig, SwiftFormerSegmentationConfig
from ..image_processing import SwiftFormerImageProcessor
from ..io.files import display_path
from ..modeling_segmentation import SwiftFormerForSemanticSegmentation
from . import segmentation_data as data
from .trainer import Trainer


class SegmentationTrainer(Trainer):
    """:class:`Trainer` for ``task="segmentation"``; ``best_top1`` holds the best validation mIoU."""

    score_name = "val_miou"

    def _open_data(self) -> None:
        c = self.config
        assert c.data_dir is not None  # required: checked in __init__
        train_transform = data.SegmentationTrainTransform(
            c.image_size,
            ratio_range=c.resize_ratio,
            cat_max_ratio=c.cat_max_ratio,
            hflip=c.hflip,
            photometric=c.photometric,
            mean=tuple(self.processor.image_mean),
            std=tuple(self.processor.image_std),
        )
        train_set = data.ADE20KDataset(c.data_dir, "train", train_transform, reduce_zero_label=c.reduce_zero_label)
        val_set = data.ADE20KDataset(
            c.data_dir, "val", data.SegmentationEvalTransform(self.processor), reduce_zero_label=c.reduce_zero_label
        )
        if val_set.classes != train_set.classes:  # one class list per folder: cannot differ, but say so if it does
            raise ValueError(f"{display_path(c.data_dir)}: the training and validation classes differ")
        self.train_set, self.val_set, self.classes = train_set, val_set, list(train_set.classes)

    def _collate_fn(self) -> Callable[[list[tuple]], Any]:
        return data.collate_segmentation

    def _eval_processor(self) -> SwiftFormerImageProcessor:
        """Evaluation and ``predict``: the shortest edge to the crop size, the aspect ratio kept (mmseg's ADE20K
        test resize, for images under 4:1), bilinear."""
        return SwiftFormerImageProcessor(size={"shortest_edge": self.config.image_size}, resample=2)

    def _build_model(self) -> SwiftFormerForSemanticSegmentation:
        c = self.config
        overrides: dict[str, Any] = {"id2label": dict(enumerate(self.classes)), "drop_path_rate": c.drop_path_rate}
        overrides["image_size"] = c.image_size
        if c.attention_variant is not None:
            overrides["attention_variant"] = c.attention_variant
        if c.init:  # an ImageNet classifier (the paper's start), or a segmentation model to fine-tune
            return SwiftFormerForSemanticSegmentation.from_pretrained(
                c.init, ignore_mismatched_sizes=True, **overrides
            ).train()
        variant = SwiftFormerConfig.from_variant(c.variant).to_dict()
        return SwiftFormerForSemanticSegmentation(SwiftFormerSegmentationConfig.from_dict(variant, **overrides))

    def _build_mixup(self) -> None:
        return None

    def _loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.train_model(images).logits  # (B, K, H, W)
        model = cast(SwiftFormerForSemanticSegmentation, self.model)
        return model.loss(logits, labels)  # float32 cross-entropy over the labelled pixels

    def evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        """Validation mIoU and pixel accuracy (percent) and the loss; one image per batch (sizes differ)."""
        from .evaluate import evaluate_segmentation, shard_indices

        subset = torch.utils.data.Subset(
            self.val_set, shard_indices(len(self.val_set), self.dist.rank, self.dist.world_size)
        )
        loader = torch.utils.data.DataLoader(
            subset, batch_size=1, num_workers=self.config.workers, collate_fn=data.collate_segmentation
        )
        result = evaluate_segmentation(
            model,
            loader,
            num_classes=len(self.classes),
            class_names=self.classes,
            device=self.device,
            autocast_dtype=self.amp_dtype,
        )
        # Python floats: the history goes into checkpoint.pt, which loads with weights_only (no numpy scalars).
        return {
            "val_miou": float(result.miou),
            "val_pixel_accuracy": float(result.pixel_accuracy),
            "val_loss": float(result.loss),
        }

    def _val_summary(self, metrics: dict[str, Any]) -> tuple[str, str]:
        val = (
            f"  val mIoU {metrics['val_miou']:.2f}  pixel acc {metrics['val_pixel_accuracy']:.2f}"
            if "val_miou" in metrics
            else ""
        )
        ema = f"  ema mIoU {metrics['ema_val_miou']:.2f}" if "ema_val_miou" in metrics else ""
        return val, ema
