"""``swiftformer predict``: classify images, print the top-k labels (or JSON lines), or write any number of
them to a file (``--output``: JSON lines, CSV or Parquet, resumable; docs/batch-inference.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .common import add_decode_argument, add_hub_arguments, as_flags, fail, hub_options

PRECISION_CHOICES = ("auto", "fp32", "bf16")
BACKEND_CHOICES = ("auto", "inductor", "openvino", "onnxruntime")
INPUTS_HELP = "image files, folders (searched recursively for images), glob patterns, or @LIST files (one path a line)"
# How the batch library's messages name what these flags set (cli.main shows them as the flags).
FLAGS = {"resume": "--resume", "overwrite": "--overwrite", "output": "--output", "logits": "--logits"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help=INPUTS_HELP)
    p.add_argument("--model", required=True, help="model folder or hub id, e.g. MBZUAI/swiftformer-xs")
    p.add_argument("--top-k", type=int, default=5, help="labels per image (default 5)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--json", action="store_true", help="one JSON object per image (without --output)")
    p.add_argument("--logits", action="store_true", help="add each image's raw logits (a `logits` column / key)")
    p.add_argument("--no-optimize", action="store_true", help="run the model as loaded, not the fused fast path")
    p.add_argument(
        "--compile",
        action="store_true",
        help="also torch.compile the inductor path (pays off for many images; with --backend auto, batches "
        "above 4 then run on it)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default="auto",
        help="auto (default): bf16 where the CPU computes it natively (AVX512-BF16, AMX), else fp32; fp32: the "
        "model's own results; bf16: logits within ~1e-2 relative, and slow (with a warning) without native bf16",
    )
    p.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="auto (default): per batch size from what is installed (ONNX Runtime or OpenVINO for small "
        "batches, and for all without --compile; inductor for large ones with --compile); inductor: the "
        "fused PyTorch model; openvino / onnxruntime: exported in memory and run there (pip install .[export])",
    )
    p.add_argument(
        "--explain",
        metavar="DIR",
        help="also write into DIR an overlay PNG of where the model looked for each image's top class (Grad-CAM "
        "on the eager model at its default stage; pip install .[explain]; docs/explain.md)",
    )
    p.add_argument(
        "--masks",
        metavar="DIR",
        help="segmentation models: write each image's classes as an index PNG DIR/NAME.png (palette colours; "
        "docs/dense.md)",
    )
    p.add_argument(
        "--overlay", action="store_true", help="with --masks: also DIR/NAME.overlay.png, colours over the image"
    )
    add_batch_arguments(p)
    add_hub_arguments(p)


def add_batch_arguments(p: argparse.ArgumentParser) -> None:
    """The options of a large job, shared by ``predict`` and ``embed``."""
    p.add_argument(
        "--output",
        help="write one row per image to this file as they are done: .jsonl, .csv or .parquet (by extension)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="with --output: skip the images the output already holds and append the rest (after a crash or kill)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="with --output: replace an existing output when done (predict --explain: also existing overlays)",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="processes decoding images (default: one per CPU, at most 8; 0 for fewer than 32 images); 0: none",
    )
    p.add_argument(
        "--chunk-rows",
        type=int,
        default=4096,
        help="Parquet: rows per part file committed during the run (default 4096; also one every 60 s)",
    )
    add_decode_argument(p)
    p.add_argument("--ray", action="store_true", help="run as a Ray Data pipeline (pip install 'swiftformer[ray]')")
    p.add_argument("--address", help="with --ray: the Ray cluster to join (default: a new local instance)")
    p.add_argument("--replicas", type=int, default=1, help="with --ray: model actors (default 1)")


def check_batch(args: argparse.Namespace) -> str | None:
    """The conflicting-options message of the large-job options, or None."""
    if args.output is None:
        for flag in ("resume", "overwrite", "ray"):
            if getattr(args, flag) and not (flag == "overwrite" and getattr(args, "explain", None)):
                return f"--{flag} needs --output"
    if not args.ray and (args.address is not None or args.replicas != 1):
        return "--address and --replicas are for --ray"
    if args.workers is not None and args.workers < 0:
        return f"--workers must be at least 0, got {args.workers}"
    if args.replicas < 1:
        return f"--replicas must be at least 1, got {args.replicas}"
    if args.chunk_rows < 1:
        return f"--chunk-rows must be at least 1, got {args.chunk_rows}"
    return None


def check(args: argparse.Namespace) -> str | None:
    """The conflicting-options message, or None."""
    if args.no_optimize and (args.precision not in ("auto", "fp32") or args.backend != "auto" or args.compile):
        return "--no-optimize runs the model as loaded (fp32, eager): drop --precision, --backend and --compile"
    if args.backend in ("openvino", "onnxruntime") and args.compile:
        return f"--compile is for the inductor backend; --backend {args.backend} compiles the model itself"
    if args.backend == "onnxruntime" and args.precision == "bf16":
        return "--backend onnxruntime runs fp32 only: use --backend openvino or inductor for bf16"
    if args.json and args.output is not None:
        return "--json prints to stdout; with --output the rows go to the file (JSON lines: --output FILE.jsonl)"
    if args.explain is not None:
        problem = check_explain(args)
        if problem:
            return problem
    return check_batch(args)


def check_explain(args: argparse.Namespace) -> str | None:
    """What stops ``--explain DIR`` before any work: a file of that name, a folder the inputs search (the
    overlays would be read back as images), or --ray (the overlays are drawn in this process, from the eager model)."""
    from ..batch.inputs import inside_inputs
    from ..io.files import display_path

    if args.ray:
        return "--explain draws the overlays in this process: drop --ray"
    if os.path.exists(args.explain) and not os.path.isdir(args.explain):
        return f"--explain {display_path(args.explain)} is a file, not a folder"
    spec = inside_inputs(args.explain, args.images)  # symbolic links resolved: a link into the inputs is inside
    if spec is not None:
        return (
            f"--explain {display_path(args.explain)} is inside the input folder {display_path(spec)}: its "
            "overlays would be read as images; choose a folder outside it"
        )
    return None


def run(args: argparse.Namespace) -> int:
    from ..detection.config import is_detector

    if is_detector(args.model):
        return run_detector(args)
    problem = check(args)
    if problem:
        return fail(problem)
    from ..modeling_segmentation import is_segmentation_folder

    if is_segmentation_folder(args.model):
        return run_masks(args)
    if args.masks is not None or args.overlay:
        return fail(f"--masks and --overlay are for segmentation models; {args.model} is a classifier")
    from ..batch import JobSpec

    spec = JobSpec(
        "predict",
        args.model,
        hub_options(args),
        top_k=args.top_k,
        logits=args.logits,
        optimize=not args.no_optimize,
        precision=args.precision,
        backend=args.backend,
        compile=args.compile,
    )
    return run_job(args, spec, print_row=None if args.output else _printer(args.json))


def run_detector(args: argparse.Namespace) -> int:
    """A detector folder: COCO-format results (bbox and RLE segmentation per detection) as one JSON list, to
    ``--output FILE.json`` (written atomically) or stdout."""
    given = [f"--{flag}" for flag in ("explain", "ray", "resume", "logits", "compile") if getattr(args, flag)]
    given += [f"--{flag} {getattr(args, flag)}" for flag in ("precision", "backend") if getattr(args, flag) != "auto"]
    if given:  # the detector runs eager, in fp32
        return fail(f"{given[0]} is for classifiers; {args.model} is a detection model (it writes COCO results)")
    if args.output is not None and not args.output.endswith(".json"):
        return fail(f"--output {args.output}: a detector writes COCO results JSON, a .json file")
    from ..batch.inputs import check_inputs, expand_inputs
    from ..detection.model import SwiftFormerForInstanceSegmentation, predict_files
    from ..io.files import atomic_write, check_target, display_path, printable

    if args.output is not None:
        check_target(args.output, "output file", args.overwrite)
    check_inputs(args.images)
    paths = list(dict.fromkeys(expand_inputs(args.images)))
    model = SwiftFormerForInstanceSegmentation.from_pretrained(args.model)
    errors: list[str] = []

    def report(path: str, message: str) -> None:  # the image is skipped, the others used: status 1
        errors.append(path)
        print(f"{display_path(path)}: error: {printable(message)}", file=sys.stderr)

    results = predict_files(model, paths, batch_size=args.batch_size, on_error=report)
    text = json.dumps(results) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 1 if errors else 0
    with atomic_write(args.output, "w") as handle:
        handle.write(text)
    print(f"{len(results)} detections in {len(paths)} images → {display_path(args.output)}", file=sys.stderr)
    return 1 if errors else 0


def run_masks(args: argparse.Namespace) -> int:
    """``predict`` on a segmentation model: index PNGs (and overlays) into ``--masks``; 1 if an image failed."""
    from ..batch.inputs import check_inputs
    from ..batch.segmentation import predict_masks
    from ..io.files import display_path, printable

    if args.masks is None:
        return fail(f"{args.model} is a semantic segmentation model: pass --masks DIR to write its masks")
    if args.output is not None or args.explain is not None or args.ray:
        return fail("a segmentation model writes --masks DIR; --output, --explain and --ray are for classifiers")
    if os.path.exists(args.masks) and not os.path.isdir(args.masks):
        return fail(f"--masks {display_path(args.masks)} is a file, not a folder")
    check_inputs(args.images)
    errors: list[str] = []

    def report(path: str, message: str) -> None:
        errors.append(path)
        print(f"{display_path(path)}: error: {printable(message)}", file=sys.stderr)

    written = predict_masks(
        args.model, args.images, args.masks, overlays=args.overlay, hub=hub_options(args), on_error=report
    )
    print(f"swiftformer predict: {len(written)} masks -> {display_path(args.masks)}", file=sys.stderr)
    return 1 if errors else 0


def _printer(as_json: bool):
    """Rows to stdout as predict has always printed them: text blocks, or one JSON object a line."""

    from ..io.files import display_path, printable

    def print_row(path: str, row: dict[str, Any]) -> None:
        if row["error"] is not None:
            if as_json:
                print(json.dumps({"image": row["image"], "error": row["error"]}, allow_nan=False))
            else:
                print(f"{display_path(path)}: error: {printable(row['error'])}", file=sys.stderr)
            return
        predictions = [
            {"label": label, "index": index, "score": score}
            for label, index, score in zip(row["labels"], row["indices"], row["scores"])
        ]
        if as_json:
            result: dict[str, Any] = {"image": row["image"], "predictions": predictions}
            if "logits" in row:
                result["logits"] = row["logits"]
            print(json.dumps(result, allow_nan=False))
        else:  # names and labels escaped: a line break or a terminal escape in them cannot fake a result line
            print(display_path(path))
            for p in predictions:
                print(f"  {p['score']:8.4f}  {printable(p['label'])} ({p['index']})")

    return print_row


def run_job(args: argparse.Namespace, spec: Any, print_row: Any) -> int:
    """Run a predict / embed job from its parsed options; notes and the summary on stderr. Exit status: 0, 1
    when some images could not be used (or, with ``--explain``, some overlays not written), 130 when
    interrupted."""
    from ..batch import check_output, run_batch
    from ..batch.inputs import check_inputs
    from ..io.files import display_path

    check_inputs(args.images)  # refusals before any work (loading the model, starting Ray)
    if args.output is not None:
        check_output(args.output, resume=args.resume, overwrite=args.overwrite, columns=spec.columns)
    overlays = None
    job = {  # what both runners take
        "output": args.output,
        "resume": args.resume,
        "overwrite": args.overwrite,
        "batch_size": args.batch_size,
        "chunk_rows": args.chunk_rows,
        "fast_decode": not args.exact_decode,
    }
    if args.ray:
        from ..batch.ray_data import run_batch_ray

        summary = run_batch_ray(
            args.images,
            spec,
            **job,
            replicas=args.replicas,
            address=args.address,
            on_note=lambda note: print(f"note: {note}", file=sys.stderr),
        )
    else:
        if getattr(args, "explain", None) is not None:
            overlays = _overlays(args, spec)
            if isinstance(overlays, int):
                return overlays
            task, processor, notes = spec.build(overlays.model)  # the fast path for the predictions
        else:
            task, processor, notes = spec.build()
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        summary = run_batch(
            args.images,
            task,
            processor,
            **job,
            workers=args.workers,
            on_row=print_row,
            on_results=overlays,
        )
    if overlays is not None:
        missing = f" ({overlays.problems} not written)" if overlays.problems else ""
        print(
            f"swiftformer {spec.kind}: {len(overlays.written)} overlays{missing} -> {display_path(args.explain)}",
            file=sys.stderr,
        )
    if summary.interrupted:
        kept = "; they are kept: continue with the same command and --resume" if args.output else ""
        print(f"swiftformer: interrupted after {summary.images} images{kept}", file=sys.stderr)
        return 130
    if args.output:
        print(f"swiftformer {spec.kind}: {summary.line()}", file=sys.stderr)
    if summary.images == 0 and summary.skipped == 0:  # an empty folder, a pattern matching no image file
        print(f"swiftformer {spec.kind}: no image files in the inputs ({' '.join(args.images)})", file=sys.stderr)
        return 1
    return 1 if summary.errors or (overlays is not None and overlays.problems) else 0


def _overlays(args: argparse.Namespace, spec: Any) -> Any:
    """``--explain``'s :class:`~swiftformer.batch.overlays.ExplainOverlays` on the eager model of ``spec``, or
    the exit status of a one-line error (the grad-cam package missing)."""
    from .. import explain as ex
    from ..batch.overlays import ExplainOverlays
    from ..io.files import display_path

    try:
        ex.check_available("gradcam")
    except ImportError as err:
        return fail(f"--explain: {err}")
    model, processor, _ = spec.load()  # its notes come again from spec.build(model)

    def problem(path: str, message: str) -> None:
        print(f"{display_path(path)}: error: {as_flags(message, {'replace': '--overwrite'})}", file=sys.stderr)

    named = [path for path in args.images if os.path.isfile(path)]  # never written over, even with --overwrite
    return ExplainOverlays(
        model, processor, args.explain, replace=args.overwrite or args.resume, protect=named, on_problem=problem
    )
