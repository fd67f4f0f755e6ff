"""Large-job throughput: ``swiftformer predict FOLDER --output preds.parquet`` over N synthetic JPEGs, against
``swiftformer bench``'s offline batch-32 throughput (the model alone, on ready tensors) and a transformers
``pipeline("image-classification")`` over the same files.

Each configuration runs as its own process; printed per configuration: images/s (of the whole command, start
to exit, and of the run itself as its summary line reports it), wall time, peak resident memory (of the process
and its decoding workers: the largest), and CPU use (user + system time of the process and its workers over
the wall time, in cores).

    .venv/bin/python benchmarks/predict_scale.py --images 5000                      # SwiftFormer-XS, random weights
    .venv/bin/python benchmarks/predict_scale.py --model runs/xs/best --images 20000 --workers 2 --compile
    .venv/bin/python benchmarks/predict_scale.py --images 2000 --configs predict --workers 0 1 2 --json

``--model`` is a folder, a hub id or a variant name (random weights, saved to a temporary folder so that the
transformers baseline loads it too). The pipeline baseline needs transformers (``pip install .[reference]``)
and is left out when it is missing. The images are written once (``--images-dir`` keeps them between runs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = ("predict", "bench", "pipeline")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="xs", help="model folder, hub id or variant name (default xs)")
    p.add_argument("--images", type=int, default=2000, help="synthetic JPEGs (default 2000)")
    p.add_argument("--image-size", type=int, default=224, help="side of each JPEG (default 224)")
    p.add_argument("--images-dir", help="where the JPEGs are written and reused (default: a temporary folder)")
    p.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    p.add_argument("--batch-size", type=int, default=32, help="predict's and bench's batch (default 32)")
    p.add_argument("--workers", type=int, nargs="+", default=[None], help="predict --workers, one run each")
    p.add_argument("--precision", default="auto")
    p.add_argument("--backend", default="auto")
    p.add_argument("--compile", action="store_true", help="predict --compile (and bench's compiled mode)")
    p.add_argument("--format", default="parquet", choices=("parquet", "jsonl", "csv"), help="predict's output")
    p.add_argument("--json", action="store_true", help="one JSON object per configuration")
    p.add_argument("--pipeline-worker", nargs=2, help=argparse.SUPPRESS)  # internal: MODEL LIST_FILE
    return p.parse_args(argv)


# ------------------------------------------------------------------------------ inputs
def write_images(folder: Path, count: int, side: int) -> list[Path]:
    """``count`` JPEGs of smooth random content (JPEG sizes like photos', not like noise), 1000 per folder."""
    import numpy as np
    from PIL import Image

    paths = [folder / f"{i // 1000:04d}" / f"img{i:07d}.jpg" for i in range(count)]
    missing = [p for p in paths if not p.exists()]
    rng = np.random.default_rng(0)
    for path in missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((side, side), Image.BICUBIC)
        noise = rng.integers(-12, 13, (side, side, 3))
        pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=90)
    return paths


def model_folder(ref: str, scratch: Path) -> str:
    """A folder or hub id as it is; a variant name as a saved model with random weights (seed 0)."""
    if Path(ref).exists() or "/" in ref:
        return ref
    from swiftformer import SwiftFormerImageProcessor
    from swiftformer.inference import load_model

    folder = scratch / f"model-{ref}"
    if not folder.exists():
        load_model(ref).save_pretrained(folder)
        SwiftFormerImageProcessor().save_pretrained(folder)
    return str(folder)


# ------------------------------------------------------------------------------ measuring
def measure(argv: list[str]) -> dict:
    """Run ``argv``; wall time, peak RSS (its own or a waited-for child's, whichever is larger), CPU time."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # wait4 gives the resources of the process and of the children it waited for (the decoding workers)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    out, err = process.stdout.read(), process.stderr.read()
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "returncode": process.returncode,
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "cpu_s": cpu,
        "cpu_cores": cpu / wall if wall > 0 else 0.0,
        "stdout": out,
        "stderr": err,
    }


def run_predict(args: argparse.Namespace, model: str, folder: Path, scratch: Path, workers: int | None) -> dict:
    output = scratch / f"preds-{workers}.{args.format}"
    output.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "swiftformer", "predict", str(folder), "--model", model, "--output", str(output)]
    argv += ["--batch-size", str(args.batch_size), "--precision", args.precision, "--backend", args.backend]
    argv += ["--compile"] if args.compile else []
    argv += ["--workers", str(workers)] if workers is not None else []
    result = measure(argv)
    row = {"config": f"predict --workers {'default' if workers is None else workers}", **_figures(result, args)}
    run = run_img_s(result["stderr"])
    if run is not None:
        row["run_img_s"] = run  # without the process start and the model load
    if result["returncode"] not in (0, 1):
        row["error"] = (result["stderr"].strip().splitlines() or ["failed"])[-1]
    return row


def run_img_s(stderr: str) -> float | None:
    """The img/s of a predict / embed ``--output`` summary line (the run, after the model is loaded)."""
    match = re.search(r"(\d+) images \(.*\) in ([\d.]+) s, ([\d.]+) img/s", stderr)
    return float(match.group(3)) if match else None


def run_bench(args: argparse.Namespace, model: str) -> dict:
    mode = "auto" if args.precision == "auto" and args.backend == "auto" else args.precision
    argv = [sys.executable, "-m", "swiftformer", "bench", "--model", model, "--modes", mode, "--json"]
    argv += ["--batch-size", str(args.batch_size), "--iterations", "20", "--warmup", "5"]
    result = measure(argv)
    row = {"config": f"bench --modes {mode} (model only, batch {args.batch_size})"}
    if result["returncode"] != 0:
        return {**row, "error": (result["stderr"].strip().splitlines() or ["failed"])[-1]}
    report = json.loads(result["stdout"])["rows"][0]
    if "error" in report:
        return {**row, "error": report["error"]}
    return {**row, "img_s": report["throughput_img_s"], "peak_rss_mb": report["peak_rss_mb"]}


def run_pipeline(args: argparse.Namespace, model: str, paths: list[Path], scratch: Path) -> dict:
    listing = scratch / "files.txt"
    listing.write_text("".join(f"{p}\n" for p in paths))
    result = measure([sys.executable, __file__, "--pipeline-worker", model, str(listing)])
    row = {"config": f"transformers pipeline (batch {args.batch_size})", **_figures(result, args)}
    if result["returncode"] != 0:
        row["error"] = (result["stderr"].strip().splitlines() or ["failed"])[-1]
    else:
        row["run_img_s"] = json.loads(result["stdout"].strip().splitlines()[-1])["img_s"]
    return row


def pipeline_worker(model: str, listing: str, batch_size: int, output: str | None = None) -> None:
    """transformers' image-classification pipeline over every file, results kept as a list (what a user
    would write to a file afterwards) or, with ``output``, written there as JSON lines (timed too)."""
    from transformers import pipeline

    paths = Path(listing).read_text().splitlines()
    classify = pipeline("image-classification", model=model, device="cpu")
    start = time.perf_counter()
    results = classify(paths, batch_size=batch_size, top_k=5)
    if output is not None:
        with open(output, "w") as f:
            f.writelines(json.dumps({"image": path, "predictions": row}) + "\n" for path, row in zip(paths, results))
    seconds = time.perf_counter() - start
    print(json.dumps({"images": len(results), "img_s": len(results) / seconds}))


def _figures(result: dict, args: argparse.Namespace) -> dict:
    return {
        "img_s": args.images / result["wall_s"],
        "wall_s": result["wall_s"],
        "peak_rss_mb": result["peak_rss_mb"],
        "cpu_cores": result["cpu_cores"],
    }


def _cell(row: dict, key: str, fmt: str, width: int) -> str:
    return f"{row[key]:{width}{fmt}}" if key in row else " " * (width - 1) + "-"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.pipeline_worker:
        pipeline_worker(*args.pipeline_worker, batch_size=parse_args([]).batch_size)
        return 0
    import importlib.util

    with tempfile.TemporaryDirectory(prefix="predict-scale-") as tmp:
        scratch = Path(tmp)
        folder = Path(args.images_dir) if args.images_dir else scratch / "images"
        started = time.perf_counter()
        paths = write_images(folder, args.images, args.image_size)
        print(
            f"{len(paths)} JPEGs of {args.image_size}² in {folder} ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
        )
        model = model_folder(args.model, scratch)
        rows = []
        for config in args.configs:
            if config == "predict":
                for workers in args.workers:
                    rows.append(run_predict(args, model, folder, scratch, workers))
            elif config == "bench":
                rows.append(run_bench(args, model))
            elif importlib.util.find_spec("transformers") is None:
                rows.append({"config": "transformers pipeline", "error": "transformers is not installed"})
            else:
                rows.append(run_pipeline(args, model, paths, scratch))
            if not args.json:
                print(f"done: {rows[-1]['config']}", file=sys.stderr)
    if args.json:
        for row in rows:
            print(json.dumps({"model": args.model, "images": args.images, "cpus": os.cpu_count(), **row}))
        return 0
    print(f"model {args.model}, {args.images} JPEGs of {args.image_size}², {os.cpu_count()} CPUs")
    print(f"{'configuration':46s} {'img/s':>8s} {'run img/s':>10s} {'wall s':>8s} {'peak MB':>8s} {'CPU cores':>10s}")
    for row in rows:
        if "error" in row:
            print(f"{row['config']:46s} error: {row['error']}")
            continue
        print(
            f"{row['config']:46s} {_cell(row, 'img_s', '.1f', 8)} {_cell(row, 'run_img_s', '.1f', 10)} "
            f"{_cell(row, 'wall_s', '.1f', 8)} {_cell(row, 'peak_rss_mb', '.0f', 8)} {_cell(row, 'cpu_cores', '.2f', 10)}"
        )
    print("img/s: start to exit (bench: the model alone on ready tensors); run img/s: after loading (summary line)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
