"""``task="detection"``: Mask R-CNN training on COCO-format data, with the classification trainer's machinery.

:class:`DetectionTrainer` is :class:`~swiftformer.training.trainer.Trainer` with the task's steps replaced:
the data (:mod:`swiftformer.training.coco`), the model (:func:`swiftformer.detection.swiftformer_maskrcnn`,
its backbone from ``init``, a classification model folder), the loss (torchvision's Mask R-CNN losses, summed),
a step schedule (``lr_steps``) and COCO box/mask AP as the validation metrics. Checkpoints, exact resume after
a kill, torchrun DDP, gradient accumulation, EMA, logs and the output folder are the base trainer's.

Outputs: ``best/`` and ``last/`` are detector folders (``detector_config.json`` + ``model.safetensors``);
``metrics.jsonl`` holds ``val_bbox_AP``, ``val_bbox_AP50`` ... ``val_segm_APl`` (percent) per evaluated epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from ..configuration import SwiftFormerConfig
from ..detection.model import describe_missing, load_backbone_weights, swiftformer_maskrcnn
from ..io.files import display_path
from . import coco
from .trainer import Trainer, _bare_model


class DetectionBatch(NamedTuple):
    images: list[torch.Tensor]  # each (3, H, W) in [0, 1]
    targets: list[dict[str, Any]]  # torchvision's: boxes (N, 4) xyxy, labels (N,), masks (N, H, W)
    unreadable: list[str]  # always empty: a detection split is checked whole when it is opened


def collate(items: list[tuple[torch.Tensor, dict[str, Any]]]) -> DetectionBatch:
    images, targets = coco.collate(items)
    return DetectionBatch(images, targets, [])


class DetectionTrainer(Trainer):
    """Trains :class:`~swiftformer.detection.SwiftFormerForInstanceSegmentation` (see the module's docstring)."""

    score_name = "val_bbox_AP"

    def _open_data(self) -> None:
        c = self.config
        assert c.data_dir is not None  # checked by Trainer
        self.train_set = coco.open_coco(c.data_dir, "train", hflip=c.hflip)
        self.classes = list(self.train_set.classes)
        self.val_set = coco.open_coco(c.data_dir, "val", category_ids=self.train_set.category_ids)

    def _build_model(self) -> nn.Module:  # type: ignore[override]
        c = self.config
        options: dict[str, Any] = dict(
            category_ids=self.train_set.category_ids,
            min_size=c.image_size,
            max_size=c.max_size,
            fpn_channels=c.fpn_channels,
            rpn_post_nms_top_n_train=c.rpn_proposals,
            box_batch_size_per_image=c.roi_batch_size,
            box_detections_per_img=c.detections_per_image,
        )
        id2label = dict(enumerate(self.classes, start=1))
        overrides: dict[str, Any] = {"drop_path_rate": c.drop_path_rate}
        if c.attention_variant is not None:
            overrides["attention_variant"] = c.attention_variant
        if c.init:  # the paper starts from ImageNet: a classification model folder or hub id
            backbone = SwiftFormerConfig.from_pretrained(c.init, **overrides)
        else:
            backbone = SwiftFormerConfig.from_variant(c.variant, **overrides)
        model = swiftformer_maskrcnn(backbone, id2label, **options)
        if c.init:
            missing = load_backbone_weights(model, c.init)
            self._log(f"note: backbone weights from {display_path(c.init)}: {describe_missing(missing)}")
        return model.train()

    def _build_scheduler(self):
        c = self.config
        if c.lr_steps is None:
            return super()._build_scheduler()
        from timm.scheduler import MultiStepLRScheduler

        steps = len(self.sampler)
        # timm applies a milestone m after update m - 1: +1 makes the drop start after the epoch's last update.
        return MultiStepLRScheduler(
            self.optimizer,
            decay_t=[round(epoch * steps) + 1 for epoch in c.lr_steps],
            decay_rate=0.1,
            warmup_t=round(c.warmup_epochs * steps),
            warmup_lr_init=c.warmup_lr,
            warmup_prefix=False,
            t_in_epochs=False,
        )

    def _build_mixup(self):
        return None  # refused by the config check for detection

    def _collate_fn(self) -> Callable[[list[Any]], DetectionBatch]:
        return collate

    def _train_step(self, batch: DetectionBatch) -> tuple[float, int]:
        """One optimizer step: each micro-batch's Mask R-CNN losses (RPN, box, mask), summed."""
        accum = min(self.config.grad_accum_steps, len(batch.images))
        size = -(-len(batch.images) // accum)
        chunks = [(batch.images[i : i + size], batch.targets[i : i + size]) for i in range(0, len(batch.images), size)]
        loss = self._accumulate_and_step([lambda x=x, y=y: self._loss(x, y) for x, y in chunks])
        return loss * len(batch.images), len(batch.images)

    def _loss(self, images: list[torch.Tensor], targets: list[dict[str, Any]]) -> torch.Tensor:  # type: ignore[override]
        device = self.device
        images = [image.to(device) for image in images]
        targets = [{k: v.to(device) for k, v in t.items() if k != "image_id"} for t in targets]
        with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            losses = self.train_model(images, targets)
        return sum(value.float() for value in losses.values())

    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        results = coco.predict_coco(
            _bare_model(model),
            self.val_set,
            device=self.device,
            batch_size=self.config.batch_size,
            workers=self.config.workers,
            autocast_dtype=self.amp_dtype,
        )
        return {f"val_{k}": v for k, v in coco.coco_metrics(self.val_set, results).items()}

    def _save_model_folder(self, model: nn.Module, name: str) -> None:
        _bare_model(model).save_pretrained(self.output / name)

    def _val_summary(self, metrics: dict[str, Any]) -> tuple[str, str]:
        val = (
            f"  val box AP {metrics['val_bbox_AP']:.2f}  AP50 {metrics['val_bbox_AP50']:.2f}  "
            f"mask AP {metrics['val_segm_AP']:.2f}"
            if "val_bbox_AP" in metrics
            else ""
        )
        ema = f"  ema box AP {metrics['ema_val_bbox_AP']:.2f}" if "ema_val_bbox_AP" in metrics else ""
        return val, ema
