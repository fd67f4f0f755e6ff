"""Evaluate an image classifier on a labelled image folder: top-1/top-5, loss, confusion matrix.

    swiftformer eval --data-dir val/ --model MBZUAI/swiftformer-xs [--output report/] [--json]

:func:`evaluate` is exact under ``torchrun``: each process evaluates a disjoint shard
(:func:`shard_indices`, no padding, no duplicates) and the counts are summed over processes, so every
rank returns the same global result as one process would. torch is imported inside the functions,
so the CLI can add the ``eval`` options without loading it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .runtime import cpu_supports_bf16, tune_malloc

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
        return [{"class": name, "images": int(n), "correct": int(c), "accuracy": 100.0 * int(c) / int(n) if n else None}
                for name, n, c in zip(self.class_names, images, correct)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the metrics (None for NaN, i.e. no images), ``per_class`` rows, the confusion matrix."""
        images, _ = self.class_counts()
        metrics = {key: None if math.isnan(value) else value for key, value in
                   (("top1", self.top1), ("top5", self.top5), ("loss", self.loss))}
        return {**metrics, "images": self.images, "seconds": self.seconds, "images_per_second": self.images_per_second,
                "unreadable": list(self.unreadable), "class_names": list(self.class_names),
                "per_class": self.per_class_rows(), "confusion": self.confusion.tolist(),
                "predicted_other": (images - self.confusion.sum(axis=1)).tolist()}


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """This rank's share of ``range(n)``: ``rank, rank + world_size, ...`` (disjoint, no padding)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return list(range(rank, n, world_size))


def _unpack(batch: Any) -> tuple[torch.Tensor | None, torch.Tensor | None, list[str]]:
    """(pixel_values, labels, unreadable) of a :class:`swiftformer.data.Batch`, a tuple or a dict."""
    if isinstance(batch, dict):
        return batch.get("pixel_values"), batch.get("labels"), list(batch.get("unreadable", []))
    return batch[0], batch[1], list(getattr(batch, "unreadable", []))


def evaluate(model: torch.nn.Module, loader, *, device: str | torch.device = "cpu",
             autocast_dtype: torch.dtype | None = None, channels_last: bool = False,
             class_names: list[str], label_map: list[int] | None = None, progress: bool = False) -> EvalResult:
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

    from . import distributed

    num_classes = len(class_names)
    label_map = list(range(num_classes)) if label_map is None else [int(i) for i in label_map]
    if len(label_map) != num_classes or len(set(label_map)) != num_classes or min(label_map, default=0) < 0:
        raise ValueError(f"label_map must map the {num_classes} classes to distinct model outputs, got {label_map[:20]}")
    device = torch.device(device)
    targets_of = torch.tensor(label_map, dtype=torch.long, device=device)
    info = distributed.current()

    was_training = model.training
    model.eval().to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    autocast = contextlib.nullcontext() if autocast_dtype is None else torch.autocast(device.type, dtype=autocast_dtype)
    counts = torch.zeros(4, dtype=torch.float64)  # correct1, correct5, loss sum, images
    confusion = torch.zeros(num_classes, num_classes + 1, dtype=torch.int64, device=device)  # last column: other
    dataset_of: torch.Tensor | None = None  # model output -> dataset class (num_classes: none)
    unreadable: list[str] = []
    bar = None
    if progress and info.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(loader) if hasattr(loader, "__len__") else None, unit="batch", desc="eval")
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            for batch in loader:
                pixel_values, labels, bad = _unpack(batch)
                unreadable += bad
                if bar is not None:
                    bar.update(1)
                if pixel_values is None or not len(pixel_values):
                    continue
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
                counts += torch.tensor([hits[:, 0].sum().item(), hits.any(-1).sum().item(), loss.item(), len(labels)],
                                       dtype=torch.float64)
                if bar is not None:
                    bar.set_postfix(top1=f"{100 * counts[0].item() / counts[3].item():.2f}")
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    seconds = time.perf_counter() - start

    if info.enabled:  # NCCL reduces device tensors only, gloo takes either
        on = device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
        counts = distributed.all_reduce_sum(counts.to(on)).cpu()
        confusion = distributed.all_reduce_sum(confusion.to(on))
        gathered = distributed.all_gather_objects((seconds, unreadable))
        seconds = max(s for s, _ in gathered)
        unreadable = [path for _, paths in gathered for path in paths]
    confusion = confusion.cpu()
    correct1, correct5, loss_sum, images = counts.tolist()
    images = int(images)
    return EvalResult(
        top1=100.0 * correct1 / images if images else float("nan"),
        top5=100.0 * correct5 / images if images else float("nan"),
        loss=loss_sum / images if images else float("nan"),
        images=images, seconds=seconds, images_per_second=images / seconds if seconds > 0 else 0.0,
        class_names=list(class_names), confusion=confusion[:, :num_classes].numpy().astype(np.int64),
        unreadable=sorted(unreadable), predicted_other=confusion[:, num_classes].numpy().astype(np.int64),
    )


# ----------------------------------------------------------------------------------------- reports
def save_confusion_matrix_png(result: EvalResult, path: str | os.PathLike) -> Path:
    """Draw the row-normalized confusion matrix to a PNG (class names on the axes up to 30 classes)."""
    from .plots import plot_confusion_matrix

    return plot_confusion_matrix(result.confusion, result.class_names, path, row_totals=result.class_counts()[0])


def save_per_class_csv(result: EvalResult, path: str | os.PathLike) -> Path:
    """Write ``class,images,correct,accuracy`` (accuracy in percent, empty for a class without images)."""
    from .hub import atomic_write

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
            print("note: the model has no class names (LABEL_0, ...); assuming they follow the dataset's "
                  "class order (sorted folder names)", file=sys.stderr)
        return list(range(len(class_names)))
    known = ", ".join(repr(config.id2label[i]) for i in sorted(config.id2label)[:5])
    raise ValueError(f"{len(unknown)} of the dataset's {len(class_names)} classes are not labels of the model: "
                     f"{', '.join(map(repr, unknown[:20]))}{' ...' if len(unknown) > 20 else ''} "
                     f"(folder names must equal the model's id2label names, e.g. {known})")


# --------------------------------------------------------------------------------------------- CLI
def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``swiftformer eval``."""
    parser.add_argument("--data-dir", required=True, help="image folder: DIR/CLASS/IMAGE")
    parser.add_argument("--model", required=True, help="model folder or hub id, e.g. MBZUAI/swiftformer-xs")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="data loading processes (default min(4, CPUs))")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="auto: bf16 where the hardware computes it natively, else fp32")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    parser.add_argument("--output", help="folder for confusion_matrix.png, per_class.csv, eval.json")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    from .cli import add_hub_arguments

    add_hub_arguments(parser)


def _precision(name: str, device: torch.device) -> torch.dtype | None:
    import torch

    if name == "auto":
        native = {"cuda": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
                  "cpu": cpu_supports_bf16()}.get(device.type, False)
        name = "bf16" if native else "fp32"
    return torch.bfloat16 if name == "bf16" else None


def run_eval(args: argparse.Namespace) -> int:
    """``swiftformer eval``: evaluate, print the report (rank 0), write ``--output`` files."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from . import distributed
    from .cli import _hub_options, _load_processor
    from .data import build_eval_transform, collate, open_dataset
    from .modeling import SwiftFormerForImageClassification

    if args.batch_size < 1 or args.workers < 0:
        raise ValueError("--batch-size must be at least 1 and --workers at least 0")
    tune_malloc()
    device_name = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    distributed.check_device(device_name)
    started_group = not torch.distributed.is_initialized()
    info = distributed.init(device_name)
    started_group = started_group and torch.distributed.is_initialized()
    try:
        device = torch.device(f"cuda:{info.local_rank}" if device_name == "cuda" and info.enabled else device_name)
        hub = _hub_options(args)
        model = SwiftFormerForImageClassification.from_pretrained(args.model, **hub)
        processor = _load_processor(args.model, hub)
        dataset = open_dataset(args.data_dir, None, build_eval_transform(processor))
        class_names = list(dataset.classes)
        label_map = map_labels(class_names, model.config, verbose=info.is_main)
        if info.enabled:
            dataset = Subset(dataset, shard_indices(len(dataset), info.rank, info.world_size))
        loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, num_workers=args.workers,
                            collate_fn=collate, pin_memory=device.type == "cuda")
        result = evaluate(model, loader, device=device, autocast_dtype=_precision(args.precision, device),
                          channels_last=args.channels_last, class_names=class_names, label_map=label_map,
                          progress=args.progress)
        if result.images == 0:  # the same on every rank
            raise ValueError(f"no readable images in {args.data_dir} ({len(result.unreadable)} unreadable)")
        if info.is_main:  # torchrun stops the other ranks if this fails
            _report(result, args, len(class_names))
        distributed.barrier()  # the others wait for rank 0's report before tearing the group down
        return 0
    finally:
        if started_group:
            distributed.shutdown()


def _report(result: EvalResult, args: argparse.Namespace, num_classes: int) -> None:
    """Rank 0's part of ``eval``: print, and write the ``--output`` files."""
    from .hub import atomic_write

    report = {"model": str(args.model), "data_dir": str(args.data_dir), **result.to_dict()}
    if args.output:
        out = Path(args.output)
        save_confusion_matrix_png(result, out / "confusion_matrix.png")
        save_per_class_csv(result, out / "per_class.csv")
        with atomic_write(out / "eval.json", "w") as handle:
            handle.write(json.dumps(report) + "\n")
    if args.json:
        print(json.dumps(report))
    else:
        _print_report(result, args, num_classes)


def _print_report(result: EvalResult, args: argparse.Namespace, num_classes: int, rows: int = 20) -> None:
    lines = [("model", str(args.model)), ("data", f"{args.data_dir}  ({num_classes} classes)"),
             ("top-1", f"{result.top1:.2f} %"), ("top-5", f"{result.top5:.2f} %"), ("loss", f"{result.loss:.4f}"),
             ("images", str(result.images)),
             ("throughput", f"{result.images_per_second:.1f} images/s  ({result.seconds:.1f} s)"),
             ("unreadable", str(len(result.unreadable)))]
    for name, value in lines:
        print(f"{name + ':':13s}{value}")
    for path in result.unreadable[:rows]:
        print(f"  {path}")
    if len(result.unreadable) > rows:
        print(f"  ... and {len(result.unreadable) - rows} more")
    table = sorted((r for r in result.per_class_rows() if r["images"]), key=lambda r: (r["accuracy"], r["class"]))
    print("per-class accuracy (worst first):" if len(table) <= rows else f"per-class accuracy (worst {rows} of {len(table)}):")
    for r in table[:rows]:
        print(f"  {r['accuracy']:7.2f} %  {r['correct']:>6d}/{r['images']:<6d} {r['class']}")
    if args.output:
        print(f"wrote {Path(args.output) / 'confusion_matrix.png'}, per_class.csv, eval.json")
