"""Evaluate an image classifier on a labelled image folder: top-1/top-5, loss, confusion matrix.

    swiftformer eval --data-dir val/ --model MBZUAI/swiftformer-xs [--output report/] [--json]

:func:`evaluate` is exact under ``torchrun``: each process evaluates a disjoint shard
(:func:`shard_indices`, no padding, no duplicates) and the counts are summed over processes, so every
rank returns the same global result as one process would. torch is imported inside the functions,
so the CLI can add the ``eval`` options without loading it.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass
class EvalResult:
    """Metrics of one evaluation. Percentages are in [0, 100]; ``loss`` is the mean cross-entropy.

    ``confusion[i, j]`` counts images of dataset class ``i`` predicted as dataset class ``j``.
    Predictions of a model output that maps to no dataset class (see ``label_map`` in
    :func:`evaluate`) are wrong and counted in ``predicted_other[i]`` instead, so the images of
    class ``i`` are ``confusion[i].sum() + predicted_other[i]``.
    """

    top1: float
    top5: float
    loss: float
    images: int
    seconds: float
    images_per_second: float
    class_names: list[str]
    confusion: np.ndarray
    unreadable: list[str] = field(default_factory=list)
    predicted_other: np.ndarray | None = None

    def class_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(images, correct) per dataset class, int64 arrays of length C."""
        other = np.zeros(len(self.class_names), np.int64) if self.predicted_other is None else self.predicted_other
        return self.confusion.sum(axis=1) + other, np.diag(self.confusion).copy()

    @property
    def per_class_accuracy(self) -> dict[str, float]:
        """Accuracy in percent per class name, for the classes that have images."""
        return {row["class"]: row["accuracy"] for row in self.per_class_rows() if row["images"]}

    def per_class_rows(self) -> list[dict[str, Any]]:
        """One row per class: class, images, correct, accuracy (percent; None without images)."""
        images, correct = self.class_counts()
        return [
            {"class": name, "images": int(n), "correct": int(c), "accuracy": 100.0 * int(c) / int(n) if n else None}
            for name, n, c in zip(self.class_names, images, correct)
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the metrics (None for NaN, i.e. no images), ``per_class`` rows, the confusion matrix."""
        images, _ = self.class_counts()
        metrics = {
            key: None if math.isnan(value) else value
            for key, value in (("top1", self.top1), ("top5", self.top5), ("loss", self.loss))
        }
        return {
            **metrics,
            "images": self.images,
            "seconds": self.seconds,
            "images_per_second": self.images_per_second,
            "unreadable": list(self.unreadable),
            "class_names": list(self.class_names),
            "per_class": self.per_class_rows(),
            "confusion": self.confusion.tolist(),
            "predicted_other": (images - self.confusion.sum(axis=1)).tolist(),
        }


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """This rank's share of ``range(n)``: ``rank, rank + world_size, ...`` (disjoint, no padding)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return list(range(rank, n, world_size))


def _unpack(batch: Any) -> tuple[torch.Tensor | None, torch.Tensor | None, list[str]]:
    """(pixel_values, labels, unreadable) of a :class:`swiftformer.training.data.Batch`, a tuple or a dict."""
    if isinstance(batch, dict):
        return batch.get("pixel_values"), batch.get("labels"), list(batch.get("unreadable", []))
    return batch[0], batch[1], list(getattr(batch, "unreadable", []))


def evaluate(
    model: torch.nn.Module,
    loader,
    *,
    device: str | torch.device = "cpu",
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    class_names: list[str],
    label_map: list[int] | None = None,
    progress: bool = False,
) -> EvalResult:
    """Evaluate ``model`` on the batches of ``loader`` (``(pixel_values, labels, ...)`` per batch).

    Args:
        model: Returns an object with ``.logits`` (B, K) for ``model(pixel_values)``. It is put in eval
            mode (its training mode is restored afterwards) and moved to ``device``; with
            ``channels_last`` its memory format is changed in place.
        class_names: The dataset's classes; labels index into them.
        label_map: ``label_map[i]`` is the model output of dataset class ``i`` (default: the identity).
            Top-1 predictions of model outputs no dataset class maps to count as wrong
            (``EvalResult.predicted_other``); top-5 ranks all K outputs, k = min(5, K).
        autocast_dtype: Run the forward under ``torch.autocast`` in this dtype (e.g. bfloat16);
            loss and ranking are computed in float32 either way.
        progress: A tqdm bar (on rank 0 only).

    Under an initialized process group, each process passes a loader over its own shard and all
    receive the global result; ``seconds`` is the slowest process's wall time.
    """
    import torch
    import torch.nn.functional as F

    num_classes = len(class_names)
    label_map = list(range(num_classes)) if label_map is None else [int(i) for i in label_map]
    if len(label_map) != num_classes or len(set(label_map)) != num_classes or min(label_map, default=0) < 0:
        raise ValueError(
            f"label_map must map the {num_classes} classes to distinct model outputs, got {label_map[:20]}"
        )
    device = torch.device(device)
    targets_of = torch.tensor(label_map, dtype=torch.long, device=device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    autocast = contextlib.nullcontext() if autocast_dtype is None else torch.autocast(device.type, dtype=autocast_dtype)
    counts = torch.zeros(4, dtype=torch.float64)  # correct1, correct5, loss sum, images
    confusion = torch.zeros(num_classes, num_classes + 1, dtype=torch.int64, device=device)  # last column: other
    dataset_of: torch.Tensor | None = None  # model output -> dataset class (num_classes: none)
    with torch.inference_mode(), _EvalPass(model, loader, device, progress) as run:
        for pixel_values, labels in run.batches():
            pixel_values = pixel_values.to(device, non_blocking=True)
            if channels_last:
                pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
            labels = labels.to(device=device, dtype=torch.long)
            if not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
                raise ValueError(f"labels must be in [0, {num_classes}), got {labels.unique().tolist()[:10]}")
            with autocast:
                logits = model(pixel_values).logits.float()
            if dataset_of is None:
                if max(label_map, default=-1) >= logits.shape[-1]:
                    raise ValueError(f"the model has {logits.shape[-1]} outputs; label_map uses up to {max(label_map)}")
                dataset_of = torch.full((logits.shape[-1],), num_classes, dtype=torch.long, device=device)
                dataset_of[targets_of] = torch.arange(num_classes, device=device)
            targets = targets_of[labels]
            topk = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
            hits = topk == targets[:, None]
            cells = labels * (num_classes + 1) + dataset_of[topk[:, 0]]
            confusion += torch.bincount(cells, minlength=confusion.numel()).view_as(confusion)
            loss = F.cross_entropy(logits, targets, reduction="sum")
            counts += torch.tensor(
                [hits[:, 0].sum().item(), hits.any(-1).sum().item(), loss.item(), len(labels)], dtype=torch.float64
            )
            if run.bar is not None:
                run.bar.set_postfix(top1=f"{100 * counts[0].item() / counts[3].item():.2f}")

    counts, confusion = run.totals(counts, confusion)
    counts, confusion = counts.cpu(), confusion.cpu()
    correct1, correct5, loss_sum, images = counts.tolist()
    images = int(images)
    seconds, unreadable = run.seconds, run.unreadable
    return EvalResult(
        top1=100.0 * correct1 / images if images else float("nan"),
        top5=100.0 * correct5 / images if images else float("nan"),
        loss=loss_sum / images if images else float("nan"),
        images=images,
        seconds=seconds,
        images_per_second=images / seconds if seconds > 0 else 0.0,
        class_names=list(class_names),
        confusion=confusion[:, :num_classes].numpy().astype(np.int64),
        unreadable=sorted(unreadable),
        predicted_other=confusion[:, num_classes].numpy().astype(np.int64),
    )


# ----------------------------------------------------------------------------------------- reports
def save_confusion_matrix_png(result: EvalResult, path: str | os.PathLike) -> Path:
    """Draw the row-normalized confusion matrix to a PNG (class names on the axes up to 30 classes)."""
    from .plots import plot_confusion_matrix

    return plot_confusion_matrix(result.confusion, result.class_names, path, row_totals=result.class_counts()[0])


def save_per_class_csv(result: EvalResult, path: str | os.PathLike) -> Path:
    """Write ``class,images,correct,accuracy`` (accuracy in percent, empty for a class without images)."""
    from ..io.files import atomic_write

    with atomic_write(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["class", "images", "correct", "accuracy"])
        for row in result.per_class_rows():
            accuracy = "" if row["accuracy"] is None else f"{row['accuracy']:.4f}"
            writer.writerow([row["class"], row["images"], row["correct"], accuracy])
    return Path(path)


def map_labels(class_names: list[str], config, verbose: bool = True) -> list[int]:
    """The model output index of each dataset class, matched by name against ``config.label2id``.

    A model with only default names (``LABEL_0``, ...) and as many outputs as the dataset has classes
    is taken to use the dataset's order (a note on stderr if ``verbose``). Raises ValueError for
    dataset classes the model does not know.
    """
    label2id = {str(k): int(v) for k, v in config.label2id.items()}
    unknown = [name for name in class_names if name not in label2id]
    if not unknown:
        return [label2id[name] for name in class_names]
    defaults = all(name == f"LABEL_{i}" for i, name in config.id2label.items())
    if defaults and config.num_labels == len(class_names):
        if verbose:
            print(
                "note: the model has no class names (LABEL_0, ...); assuming they follow the dataset's "
                "class order (sorted folder names)",
                file=sys.stderr,
            )
        return list(range(len(class_names)))
    known = ", ".join(repr(config.id2label[i]) for i in sorted(config.id2label)[:5])
    raise ValueError(
        f"{len(unknown)} of the dataset's {len(class_names)} classes are not labels of the model: "
        f"{', '.join(map(repr, unknown[:20]))}{' ...' if len(unknown) > 20 else ''} "
        f"(folder names must equal the model's id2label names, e.g. {known})"
    )


# ----------------------------------------------------------------------------------- segmentation
@dataclass
class SegmentationEvalResult:
    """Metrics of one segmentation evaluation, over the labelled pixels (the ignore index left out).

    ``miou``: the mean over the classes present in the labels or predictions of IoU = TP / (TP + FP + FN),
    in percent (mmseg's mIoU: classes with neither are NaN and left out); ``pixel_accuracy``: correct
    labelled pixels in percent; ``confusion[i, j]``: pixels of class ``i`` predicted as ``j``.
    """

    miou: float
    pixel_accuracy: float
    loss: float
    images: int
    seconds: float
    class_names: list[str]
    confusion: np.ndarray
    unreadable: list[str] = field(default_factory=list)

    @property
    def per_class_iou(self) -> dict[str, float | None]:
        """IoU in percent per class name; None for a class neither labelled nor predicted."""
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        return {name: (100.0 * t / u if u else None) for name, t, u in zip(self.class_names, tp, union)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the metrics (None for NaN), per-class IoU by name."""
        return {
            "miou": None if math.isnan(self.miou) else self.miou,
            "pixel_accuracy": None if math.isnan(self.pixel_accuracy) else self.pixel_accuracy,
            "loss": None if math.isnan(self.loss) else self.loss,
            "images": self.images,
            "seconds": self.seconds,
            "unreadable": list(self.unreadable),
            "class_names": list(self.class_names),
            "per_class_iou": self.per_class_iou,
        }


def evaluate_segmentation(
    model: torch.nn.Module,
    loader,
    *,
    num_classes: int,
    class_names: list[str] | None = None,
    ignore_index: int = 255,
    device: str | torch.device = "cpu",
    autocast_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> SegmentationEvalResult:
    """Evaluate a segmenter on ``(pixel_values (B, 3, h, w), labels (B, H, W), ...)`` batches: its logits
    (B, K, h, w) are bilinearly upsampled to the labels' size, then argmax'ed and counted.

    Exact under ``torchrun`` as :func:`evaluate` (per-process shards, summed counts).
    """
    import torch
    import torch.nn.functional as F

    device = torch.device(device)
    autocast = contextlib.nullcontext() if autocast_dtype is None else torch.autocast(device.type, dtype=autocast_dtype)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    counts = torch.zeros(3, dtype=torch.float64)  # loss sum, labelled pixels, images
    with torch.inference_mode(), _EvalPass(model, loader, device, progress) as run:
        for pixel_values, labels in run.batches():
            labels = labels.to(device=device, dtype=torch.long)  # (B, H, W)
            with autocast:
                logits = model(pixel_values.to(device)).logits  # (B, K, h, w)
            logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
            valid = labels != ignore_index
            loss = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
            predicted = logits.argmax(1)
            cells = labels[valid] * num_classes + predicted[valid]
            confusion += torch.bincount(cells, minlength=confusion.numel())
            counts += torch.tensor([loss.item(), valid.sum().item(), len(labels)], dtype=torch.float64)
    counts, confusion = run.totals(counts, confusion)
    seconds, unreadable = run.seconds, run.unreadable
    matrix = confusion.cpu().view(num_classes, num_classes).numpy().astype(np.int64)
    loss_sum, pixels, images = counts.cpu().tolist()
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - tp
    present = union > 0
    return SegmentationEvalResult(
        miou=float(100.0 * (tp[present] / union[present]).mean()) if present.any() else float("nan"),
        pixel_accuracy=float(100.0 * tp.sum() / pixels) if pixels else float("nan"),
        loss=loss_sum / pixels if pixels else float("nan"),
        images=int(images),
        seconds=seconds,
        class_names=list(class_names or [str(i) for i in range(num_classes)]),
        confusion=matrix,
        unreadable=sorted(unreadable),
    )


class _EvalPass:
    """One evaluation pass over ``loader``, shared by :func:`evaluate` and :func:`evaluate_segmentation`.

    Inside ``with``, the model is in eval mode and on ``device`` (its training mode restored on leaving, however
    the pass ends), rank 0 shows a progress bar, and :meth:`batches` yields the ``(pixel_values, labels)`` of each
    batch that has images while it collects the files no one could read. On leaving, ``seconds`` is the pass's
    wall time. :meth:`totals` sums the counts over the processes of a torchrun job.
    """

    def __init__(self, model: torch.nn.Module, loader: Any, device: torch.device, progress: bool) -> None:
        from . import distributed

        self.model, self.loader, self.device = model, loader, device
        self.info = distributed.current()
        self.show_progress = progress and self.info.is_main
        self.bar: Any = None  # the tqdm bar while the pass runs with one
        self.unreadable: list[str] = []
        self.seconds = 0.0

    def __enter__(self) -> _EvalPass:
        self.was_training = self.model.training
        self.model.eval().to(self.device)
        if self.show_progress:
            from tqdm.auto import tqdm

            total = len(self.loader) if hasattr(self.loader, "__len__") else None
            self.bar = tqdm(total=total, unit="batch", desc="eval")
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        if self.bar is not None:
            self.bar.close()
        self.model.train(self.was_training)

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            pixel_values, labels, bad = _unpack(batch)
            self.unreadable += bad
            if self.bar is not None:
                self.bar.update(1)
            if pixel_values is None or labels is None or not len(pixel_values):
                continue  # every file of the batch unreadable
            yield pixel_values, labels

    def totals(self, *counts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``counts`` summed over the processes of a torchrun job (as they are in one process); also makes
        ``seconds`` the slowest process's and ``unreadable`` every process's."""
        import torch

        from . import distributed

        if not self.info.enabled:
            return counts
        on = self.device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")  # NCCL: device only
        summed = tuple(distributed.all_reduce_sum(c.to(on)) for c in counts)
        gathered = distributed.all_gather_objects((self.seconds, self.unreadable))
        self.seconds = max(seconds for seconds, _ in gathered)
        self.unreadable = [path for _, paths in gathered for path in paths]
        return summed
