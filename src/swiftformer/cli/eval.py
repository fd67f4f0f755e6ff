"""``swiftformer eval``: top-1/top-5, loss, per-class accuracy and a confusion matrix on an image folder; with
``--task detection``, COCO box and mask AP of a detector on a COCO-format split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..hardware import process_cores
from ..training.config import TASKS
from .common import add_decode_argument, add_hub_arguments, hub_options

# How the library's messages name what these flags set (cli.main shows them as the flags).
FLAGS = {"overwrite": "--overwrite", "device": "--device"}

if TYPE_CHECKING:
    import torch

    from ..training.evaluate import EvalResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``swiftformer eval``."""
    parser.add_argument(
        "--task",
        choices=TASKS,
        default="classification",
        help="classification (top-1/top-5 on an image folder), detection (a detector folder on COCO-format data: box "
        "and mask AP through pycocotools) or segmentation (mIoU, pixel accuracy, per-class IoU) (docs/dense.md)",
    )
    parser.add_argument(
        "--data-dir",
        required=True,
        help="image folder DIR/CLASS/IMAGE; --task detection: DIR/annotations/instances_*.json; --task "
        "segmentation: an ADE20K-layout folder (its validation split)",
    )
    parser.add_argument(
        "--split", default="val", help="--task detection: the split, annotations/instances_SPLIT*.json (default val)"
    )
    parser.add_argument(
        "--reduce-zero-label",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--task segmentation: mask index 0 is 'other' (ignored), 1..K are the classes (ADE20K; default on)",
    )
    parser.add_argument("--model", required=True, help="model folder or hub id, e.g. MBZUAI/swiftformer-xs")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, process_cores()),
        help="data loading processes (default min(4, the cores this process may run on))",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="auto: bf16 where the hardware computes it natively, else fp32",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    parser.add_argument(
        "--output", help="folder for confusion_matrix.png, per_class.csv, eval.json (must be new or empty)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    add_decode_argument(parser)
    add_hub_arguments(parser)


def _precision(name: str, device: torch.device) -> torch.dtype | None:
    import torch

    from ..hardware import cpu_info

    if name == "auto":
        native = {
            "cuda": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
            "cpu": cpu_info().native_bf16,
        }.get(device.type, False)
        name = "bf16" if native else "fp32"
    return torch.bfloat16 if name == "bf16" else None


def run(args: argparse.Namespace) -> int:
    """``swiftformer eval``: evaluate, print the report (rank 0), write ``--output`` files."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from ..image_processing import load_processor
    from ..io.files import check_target
    from ..modeling import SwiftFormerForImageClassification
    from ..perf import tune_malloc
    from ..training import distributed
    from ..training.data import build_eval_transform, collate, open_dataset
    from ..training.evaluate import evaluate, map_labels, shard_indices

    if args.batch_size < 1 or args.workers < 0:
        raise ValueError("--batch-size must be at least 1 and --workers at least 0")
    if args.output:  # before any work: refuse to replace an earlier report
        check_target(args.output, "output folder", args.overwrite)
    if args.task == "classification":
        from ..detection.config import is_detector

        if is_detector(args.model):
            raise ValueError(f"{args.model} is a detection model: evaluate it with --task detection")
    tune_malloc()
    device_name = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    distributed.check_device(device_name)
    started_group = not torch.distributed.is_initialized()
    info = distributed.init(device_name)
    started_group = started_group and torch.distributed.is_initialized()
    try:
        device = torch.device(f"cuda:{info.local_rank}" if device_name == "cuda" and info.enabled else device_name)
        if args.task == "detection":
            return _evaluate_detection(args, device, info.is_main)
        hub = hub_options(args)
        if args.task == "segmentation":
            return _run_segmentation(args, device, hub, info.is_main)
        model = SwiftFormerForImageClassification.from_pretrained(args.model, **hub)
        processor, note = load_processor(args.model, **hub)
        if note:
            print(f"note: {note}", file=sys.stderr)
        dataset = open_dataset(args.data_dir, None, build_eval_transform(processor, fast_decode=not args.exact_decode))
        class_names = list(dataset.classes)
        label_map = map_labels(class_names, model.config, verbose=info.is_main)
        shard = Subset(dataset, shard_indices(len(dataset), info.rank, info.world_size)) if info.enabled else dataset
        loader = DataLoader(
            shard,
            batch_size=args.batch_size,
            shuffle=False,
            num_workers=args.workers,
            collate_fn=collate,
            pin_memory=device.type == "cuda",
        )
        result = evaluate(
            model,
            loader,
            device=device,
            autocast_dtype=_precision(args.precision, device),
            channels_last=args.channels_last,
            class_names=class_names,
            label_map=label_map,
            progress=args.progress,
        )
        if result.images == 0:  # the same on every rank
            raise ValueError(f"no readable images in {args.data_dir} ({len(result.unreadable)} unreadable)")
        if info.is_main:  # torchrun stops the other ranks if this fails
            _report(result, args, len(class_names))
            if result.unreadable:  # as predict: the others were evaluated, but the figures miss images
                print(
                    f"swiftformer: {len(result.unreadable)} image(s) could not be read and were left out "
                    "(listed in the report)",
                    file=sys.stderr,
                )
        distributed.barrier()  # the others wait for rank 0's report before tearing the group down
        return 1 if result.unreadable else 0
    finally:
        if started_group:
            distributed.shutdown()


def _evaluate_detection(args: argparse.Namespace, device: torch.device, main: bool) -> int:
    """``--task detection``: COCO box and mask AP (pycocotools' COCOeval) of a detector folder on one split."""
    from ..detection.model import SwiftFormerForInstanceSegmentation
    from ..io.files import atomic_write, display_path, staging
    from ..training import distributed
    from ..training.coco import coco_metrics, open_coco, predict_coco

    model = SwiftFormerForInstanceSegmentation.from_pretrained(args.model).to(device)
    dataset = open_coco(args.data_dir, args.split, category_ids=model.config.category_ids)
    results = predict_coco(
        model,
        dataset,
        device=device,
        batch_size=args.batch_size,
        workers=args.workers,
        autocast_dtype=_precision(args.precision, device),
    )
    metrics = coco_metrics(dataset, results)
    if main:
        report = {
            "model": str(args.model),
            "data_dir": str(args.data_dir),
            "task": "detection",
            "annotations": dataset.annotation_file.name,
            "images": len(dataset),
            "detections": len(results),
            **metrics,
        }
        if args.output:  # the report and the detections (COCO results JSON), moved in whole
            with staging(args.output) as out:
                for name, data in (("eval.json", report), ("detections.json", results)):
                    with atomic_write(out / name, "w") as handle:
                        handle.write(json.dumps(data) + "\n")
        if args.json:
            print(json.dumps(report))
        else:
            print(f"{'model:':13s}{display_path(args.model)}")
            print(
                f"{'data:':13s}{display_path(args.data_dir)}  ({dataset.annotation_file.name}, {len(dataset)} images)"
            )
            for kind, name in (("bbox", "box"), ("segm", "mask")):
                figures = "  ".join(
                    f"{m} {metrics[f'{kind}_{m}']:.2f}" for m in ("AP", "AP50", "AP75", "APs", "APm", "APl")
                )
                print(f"{name + ':':13s}{figures}")
            if args.output:
                print(f"wrote {display_path(Path(args.output) / 'eval.json')}, detections.json")
    distributed.barrier()
    return 0


def _run_segmentation(args: argparse.Namespace, device: torch.device, hub: dict, main: bool) -> int:
    """``eval --task segmentation``: mIoU, pixel accuracy and per-class IoU on the folder's validation split."""
    from torch.utils.data import DataLoader, Subset

    from ..image_processing import load_processor
    from ..modeling_segmentation import SwiftFormerForSemanticSegmentation
    from ..training import distributed
    from ..training.evaluate import evaluate_segmentation, shard_indices
    from ..training.segmentation_data import ADE20KDataset, SegmentationEvalTransform, collate_segmentation

    model = SwiftFormerForSemanticSegmentation.from_pretrained(args.model, **hub)
    processor, note = load_processor(args.model, **hub)
    if note and main:
        print(f"note: {note}", file=sys.stderr)
    dataset = ADE20KDataset(
        args.data_dir, "val", SegmentationEvalTransform(processor), reduce_zero_label=args.reduce_zero_label
    )
    if len(dataset.classes) != model.num_labels:
        raise ValueError(
            f"{args.data_dir} has {len(dataset.classes)} classes, the model {model.num_labels}: "
            "evaluate it on the data it was trained for"
        )
    info = distributed.current()
    shard = Subset(dataset, shard_indices(len(dataset), info.rank, info.world_size)) if info.enabled else dataset
    loader = DataLoader(shard, batch_size=1, num_workers=args.workers, collate_fn=collate_segmentation)
    result = evaluate_segmentation(
        model,
        loader,
        num_classes=model.num_labels,
        class_names=[model.config.id2label[i] for i in range(model.num_labels)],
        ignore_index=model.config.semantic_loss_ignore_index,
        device=device,
        autocast_dtype=_precision(args.precision, device),
        progress=args.progress,
    )
    if main:
        report = {"model": str(args.model), "data_dir": str(args.data_dir), "task": "segmentation", **result.to_dict()}
        if args.output:
            from ..io.files import atomic_write, staging

            with staging(args.output) as out, atomic_write(out / "eval.json", "w") as handle:
                handle.write(json.dumps(report) + "\n")
        if args.json:
            print(json.dumps(report))
        else:
            print(f"{'mIoU:':13s}{result.miou:.2f} %")
            print(f"{'pixel acc:':13s}{result.pixel_accuracy:.2f} %")
            print(f"{'loss:':13s}{result.loss:.4f}")
            print(f"{'images:':13s}{result.images}  ({result.seconds:.1f} s)")
            for name, iou in result.per_class_iou.items():
                print(f"  {'-' if iou is None else f'{iou:6.2f}'}  {name}")
    distributed.barrier()
    return 1 if result.unreadable else 0


def _report(result: EvalResult, args: argparse.Namespace, num_classes: int) -> None:
    """Rank 0's part of ``eval``: print, and write the ``--output`` files."""
    from ..io.files import atomic_write, staging
    from ..training.evaluate import save_confusion_matrix_png, save_per_class_csv

    decode = "exact" if args.exact_decode else "fast"
    report = {"model": str(args.model), "data_dir": str(args.data_dir), "decode": decode, **result.to_dict()}
    if args.output:  # written beside, then moved in whole: an earlier report (--overwrite) goes only then
        with staging(args.output) as out:
            save_confusion_matrix_png(result, out / "confusion_matrix.png")
            save_per_class_csv(result, out / "per_class.csv")
            with atomic_write(out / "eval.json", "w") as handle:
                handle.write(json.dumps(report) + "\n")
    if args.json:
        print(json.dumps(report))
    else:
        _print_report(result, args, num_classes)


def _print_report(result: EvalResult, args: argparse.Namespace, num_classes: int, rows: int = 20) -> None:
    from ..io.files import display_path

    lines = [
        ("model", display_path(args.model)),
        ("data", f"{display_path(args.data_dir)}  ({num_classes} classes)"),
        ("top-1", f"{result.top1:.2f} %"),
        ("top-5", f"{result.top5:.2f} %"),
        ("loss", f"{result.loss:.4f}"),
        ("images", str(result.images)),
        ("throughput", f"{result.images_per_second:.1f} images/s  ({result.seconds:.1f} s)"),
        ("unreadable", str(len(result.unreadable))),
        ("decode", "exact" if args.exact_decode else "fast JPEG"),
    ]
    for name, value in lines:
        print(f"{name + ':':13s}{value}")
    for path in result.unreadable[:rows]:
        print(f"  {display_path(path)}")
    if len(result.unreadable) > rows:
        print(f"  ... and {len(result.unreadable) - rows} more")
    table = sorted((r for r in result.per_class_rows() if r["images"]), key=lambda r: (r["accuracy"], r["class"]))
    print(
        "per-class accuracy (worst first):"
        if len(table) <= rows
        else f"per-class accuracy (worst {rows} of {len(table)}):"
    )
    for r in table[:rows]:
        print(f"  {r['accuracy']:7.2f} %  {r['correct']:>6d}/{r['images']:<6d} {display_path(r['class'])}")
    if args.output:
        print(f"wrote {display_path(Path(args.output) / 'confusion_matrix.png')}, per_class.csv, eval.json")
