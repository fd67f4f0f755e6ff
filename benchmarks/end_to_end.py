"""End to end (issue 24): images per second from photo-like JPEG files to the output file, for every way this
project and its neighbours offer to classify a folder of photos, in one run.

    .venv/bin/python benchmarks/end_to_end.py                   # every size and configuration (long: see --images)
    .venv/bin/python benchmarks/end_to_end.py --quick           # a smoke run: 8 images a size, a few requests
    .venv/bin/python benchmarks/end_to_end.py --sizes 4000x3000 --configs predict predict-exact pipeline

A folder of photo-like JPEGs (``benchmarks/decode_agreement.py``'s generator, quality 85; ``--distinct``
different photos per size, repeated to ``--images`` files) is written per size: 224x224, 640x480, 1920x1080,
4000x3000 (12 MP). Configurations, each its own process over the same folder, output to a file:

* ``predict``: ``swiftformer predict FOLDER --output preds.parquet`` (fast JPEG decode, the default);
* ``predict-exact``: the same with ``--exact-decode``;
* ``embed``: ``swiftformer embed FOLDER --output emb.parquet``;
* ``pipeline``: transformers' ``pipeline("image-classification")`` on the model folder over the file paths,
  the results written as JSON lines;
* ``timm``: timm's ``swiftformer_xs`` with the same weights, timm's ``ImageDataset`` + ``create_loader``
  (the ``--workers`` of predict's default) and eval transform, as timm's inference script does, top-5 written as
  JSON lines. Only with the default model: swiftformer converts timm checkpoints into model folders (not the
  other way), so the default model is made in timm's layout with random weights and converted; every row then
  runs the same weights;
* ``ray``: ``swiftformer predict --ray --output`` (Ray Data);
* ``serve``: ``swiftformer serve`` (fast decode) and ``serve --exact-decode``, driven by
  ``benchmarks/serve_load.py`` with ``--clients`` closed-loop clients (default 1 and 32) uploading the same
  photos, one per request; the model thread's idle percentage comes from ``/metrics``.

Printed per size and configuration: images/s of the whole command (start to exit: process start and model load
included) and of the run (after loading: the ``--output`` summary line; for pipeline and timm, the timed loop
including writing the file), wall time, peak memory, CPU cores used; for the server, requests/s (one image
each), p50/p99, the model thread's idle % and the server's CPU time per request. Then the targets of issue 24
with what this run measured. The header names the CPU and the malloc setting, which every process of the run shares (``--malloc``).

The ``ray`` configuration starts a local Ray, whose services listen on every interface: run the benchmark in a
loopback-only network namespace (root), as the Ray tests do::

    unshare --net sh -c 'ip link set lo up && HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/end_to_end.py'

A configuration whose package (transformers, timm, ray, fastapi) is missing is left out, saying so.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from decode_agreement import jpeg, photo
from predict_scale import measure, pipeline_worker, run_img_s

SIZES = ("224x224", "640x480", "1920x1080", "4000x3000")
# enough that the marginal rate's denominator (the last 3/4 of the images) is tens of seconds on 2 cores
DEFAULT_IMAGES = {"224x224": 1024, "640x480": 512, "1920x1080": 512, "4000x3000": 256}
CONFIGS = ("predict", "predict-exact", "embed", "pipeline", "timm", "ray", "serve")
NEEDS = {"pipeline": "transformers", "timm": "timm", "ray": "ray", "serve": "fastapi"}
QUALITY = 85
# what swiftformer.perf.tune_malloc sets inside a process, as the environment of every process of the run
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024), "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a model folder (default: SwiftFormer-XS, random weights, made in timm's layout)")
    p.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES))
    p.add_argument("--images", type=int, help="JPEGs per size (default 1024, 512, 512, 256 from small to 12 MP)")
    p.add_argument("--distinct", type=int, default=8, help="different photos per size, repeated (default 8)")
    p.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    p.add_argument("--clients", type=int, nargs="+", default=[1, 32], help="server clients (default 1 32)")
    p.add_argument("--requests", type=int, default=256, help="timed server requests per client count (default 256)")
    p.add_argument("--warmup", type=int, default=16, help="untimed server requests first (default 16)")
    p.add_argument("--batch-size", type=int, default=32, help="batch of every batch configuration (default 32)")
    p.add_argument("--workers", type=int, help="predict/embed --workers and timm's loader workers (default: predict's)")
    p.add_argument("--precision", default="auto", help="predict/embed/serve --precision (default auto)")
    p.add_argument("--backend", default="auto", help="predict/embed/serve --backend (default auto)")
    p.add_argument("--malloc", choices=("tuned", "default"), default="tuned", help="glibc malloc of every process")
    p.add_argument("--images-dir", help="where the JPEGs are written and reused (default: a temporary folder)")
    p.add_argument("--quick", action="store_true", help="smoke run: 8 images a size, 2 distinct, 16 requests")
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    p.add_argument("--timeout", type=float, default=600, help="seconds for a server to start (default 600)")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)  # internal: pipeline|timm and their arguments
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.distinct, args.requests, args.warmup = args.images or 8, 2, 16, 2
    return args


# ------------------------------------------------------------------------------ inputs
def write_photos(folder: Path, size: str, count: int, distinct: int) -> list[Path]:
    """``count`` JPEGs of ``size`` in ``folder``: ``distinct`` photos, repeated (existing files are kept)."""
    width, height = (int(v) for v in size.split("x"))
    paths = [folder / f"photo{i:05d}.jpg" for i in range(count)]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    encoded: dict[int, bytes] = {}
    for i, path in enumerate(paths):
        if path.exists():
            continue
        seed = i % distinct
        if seed not in encoded:
            encoded[seed] = jpeg(photo(width, height, seed), QUALITY)
        path.write_bytes(encoded[seed])
    return paths


def make_model(scratch: Path) -> tuple[str, str | None]:
    """(model folder, timm checkpoint of the same weights or None): SwiftFormer-XS with random weights (seed 0),
    made by timm when it is installed and converted (``swiftformer.convert``), else made here."""
    import torch

    from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification, SwiftFormerImageProcessor

    folder = scratch / "swiftformer-xs"
    torch.manual_seed(0)
    if importlib.util.find_spec("timm") is None:
        SwiftFormerForImageClassification(SwiftFormerConfig()).save_pretrained(folder)
        SwiftFormerImageProcessor().save_pretrained(folder)
        return str(folder), None
    import timm

    from swiftformer.convert import convert_checkpoint

    checkpoint = scratch / "swiftformer_xs_timm.pth"
    torch.save(timm.create_model("swiftformer_xs", pretrained=False).state_dict(), checkpoint)
    convert_checkpoint(str(checkpoint), str(folder))
    return str(folder), str(checkpoint)


# ------------------------------------------------------------------------------ the baselines (run as --worker)
def timm_worker(checkpoint: str, folder: str, output: str, batch_size: int, workers: int) -> None:
    """timm's way: ``ImageDataset`` + ``create_loader`` with the model's eval transform, top-5 as JSON lines."""
    import timm
    import torch
    from timm.data import ImageDataset, create_loader, resolve_data_config

    model = timm.create_model("swiftformer_xs", pretrained=False)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    model.eval()
    config = resolve_data_config({}, model=model)
    dataset = ImageDataset(folder)
    loader = create_loader(
        dataset,
        input_size=config["input_size"],
        batch_size=batch_size,
        use_prefetcher=False,
        interpolation=config["interpolation"],
        mean=config["mean"],
        std=config["std"],
        crop_pct=config["crop_pct"],
        num_workers=workers,
    )
    names = dataset.filenames(basename=False)
    start, done = time.perf_counter(), 0
    with open(output, "w") as f, torch.inference_mode():
        for images, _ in loader:
            scores, indices = model(images).softmax(dim=-1).topk(5)
            for name, s, i in zip(names[done : done + len(images)], scores.tolist(), indices.tolist()):
                f.write(json.dumps({"image": name, "scores": s, "indices": i}) + "\n")
            done += len(images)
    print(json.dumps({"images": done, "img_s": done / (time.perf_counter() - start)}))


def run_worker(config: str, argv: list[str], count: int) -> dict:
    result = measure([sys.executable, os.path.abspath(__file__), "--worker", *argv])
    row = _figures(config, result, count)
    if result["returncode"] != 0:
        row["error"] = (result["stderr"].strip().splitlines() or ["failed"])[-1]
    else:
        row["run_img_s"] = json.loads(result["stdout"].strip().splitlines()[-1])["img_s"]
    return row


# ------------------------------------------------------------------------------ the configurations
def run_cli(config: str, args: argparse.Namespace, model: str, folder: Path, scratch: Path, count: int) -> dict:
    """``swiftformer predict|embed FOLDER --output FILE`` (with ``--exact-decode`` or ``--ray``)."""
    command = "embed" if config == "embed" else "predict"
    output = scratch / f"{config}.parquet"
    output.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "swiftformer", command, str(folder), "--model", model, "--output", str(output)]
    argv += ["--batch-size", str(args.batch_size)]
    if command == "predict":
        argv += ["--precision", args.precision, "--backend", args.backend]
    argv += {"predict-exact": ["--exact-decode"], "ray": ["--ray"]}.get(config, [])
    argv += ["--workers", str(args.workers)] if args.workers is not None and config != "ray" else []
    result = measure(argv)
    row = _figures(config, result, count)
    row["run_img_s"] = run_img_s(result["stderr"])
    if result["returncode"] != 0:
        row["error"] = (result["stderr"].strip().splitlines() or ["failed"])[-1]
    return row


def run_serve(args: argparse.Namespace, model: str, paths: list[Path], size: str) -> list[dict]:
    """serve_load's ``batching`` and ``exact-decode`` servers, the clients uploading this size's photos."""
    import serve_load

    argv = ["--model", model, "--configs", "batching", "exact-decode", "--clients", *map(str, args.clients)]
    argv += ["--requests", str(args.requests), "--warmup", str(args.warmup), "--timeout", str(args.timeout)]
    argv += ["--precision", args.precision, "--backend", args.backend, "--max-batch-size", str(args.batch_size)]
    bodies = [path.read_bytes() for path in paths[: args.distinct]]
    rows = serve_load.run_configs(serve_load.parse_args(argv), bodies)
    names = {"batching": "serve", "exact-decode": "serve --exact-decode"}
    return [{**row, "config": f"{names[row['config']]}, {row['clients']} clients", "size": size} for row in rows]


def run_size(
    args: argparse.Namespace, model: str, checkpoint: str | None, size: str, folders: tuple[Path, Path], scratch: Path
) -> list[dict]:
    """Every configuration on one size's folders (the small one and the full one)."""
    rows = []
    for config in args.configs:
        needed = NEEDS.get(config)
        if needed and importlib.util.find_spec(needed) is None:
            rows.append({"config": config, "error": f"left out: {needed} is not installed"})
        elif config == "serve":
            rows += run_serve(args, model, sorted(folders[1].glob("*.jpg")), size)
        elif config == "timm" and checkpoint is None:
            rows.append({"config": config, "error": "left out: runs on the default model only (made in timm's layout)"})
        else:
            small, full = (run_batch_config(config, args, model, checkpoint, folder, scratch) for folder in folders)
            if "error" not in full and "error" not in small and full["wall_s"] > small["wall_s"]:
                full["marginal_img_s"] = (full["images"] - small["images"]) / (full["wall_s"] - small["wall_s"])
            rows.append(full if "error" not in small else {**full, "error": small["error"]})
        print(f"done: {size} {config}", file=sys.stderr, flush=True)
    return [{"size": size, **row} for row in rows]


def run_batch_config(
    config: str, args: argparse.Namespace, model: str, checkpoint: str | None, folder: Path, scratch: Path
) -> dict:
    """One batch configuration over one folder, from start to exit."""
    from swiftformer.batch import default_workers

    paths = sorted(folder.glob("*.jpg"))
    if config == "pipeline":
        listing = scratch / "files.txt"
        listing.write_text("".join(f"{p}\n" for p in paths))
        return run_worker(config, ["pipeline", model, str(listing), str(scratch / "pipeline.jsonl")], len(paths))
    if config == "timm":
        workers = str(args.workers if args.workers is not None else default_workers())
        argv = ["timm", str(checkpoint), str(folder), str(scratch / "timm.jsonl"), str(args.batch_size), workers]
        return run_worker(config, argv, len(paths))
    return run_cli(config, args, model, folder, scratch, len(paths))


def link_first(source: Path, target: Path, count: int) -> None:
    """``target`` holds the first ``count`` JPEGs of ``source`` (hard links, else copies)."""
    import shutil

    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.jpg"))[:count]:
        if not (target / path.name).exists():
            try:
                os.link(path, target / path.name)
            except OSError:
                shutil.copyfile(path, target / path.name)


def _figures(config: str, result: dict, count: int) -> dict:
    return {
        "config": config,
        "images": count,
        "img_s": count / result["wall_s"],
        "wall_s": result["wall_s"],
        "peak_rss_mb": result["peak_rss_mb"],
        "cpu_cores": result["cpu_cores"],
    }


# ------------------------------------------------------------------------------ report
def _rate(rows: list[dict], size: str, config: str, key: str = "marginal_img_s") -> float | None:
    for row in rows:
        if row.get("size") == size and row["config"] == config and row.get(key) is not None and "error" not in row:
            return float(row[key])
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) of issue 24 from this run's rows (batch: marginal img/s)."""
    big, hd, small = "4000x3000", "1920x1080", "224x224"
    fast32, exact32 = "serve, 32 clients", "serve --exact-decode, 32 clients"
    checks = [
        (
            "predict --output, 12 MP: ≥ 4× transformers pipeline",
            _ratio(_rate(rows, big, "predict"), _rate(rows, big, "pipeline")),
            4.0,
        ),
        (
            "predict --output, 12 MP: ≥ 2.5× --exact-decode",
            _ratio(_rate(rows, big, "predict"), _rate(rows, big, "predict-exact")),
            2.5,
        ),
        (
            "predict --output, 224²: fast decode not slower (≥ 1×)",
            _ratio(_rate(rows, small, "predict"), _rate(rows, small, "predict-exact")),
            1.0,
        ),
        (
            "serve, 32 clients, 1920x1080: ≥ 2× exact-decode req/s",
            _ratio(_rate(rows, hd, fast32, "requests_per_s"), _rate(rows, hd, exact32, "requests_per_s")),
            2.0,
        ),
    ]
    out = [
        (name, "-" if value is None else f"{value:.2f}×", _verdict(value, low=threshold))
        for name, value, threshold in checks
    ]
    p99, p50 = _rate(rows, hd, fast32, "p99_ms"), _rate(rows, hd, fast32, "p50_ms")
    spread = _ratio(p99, p50)
    out.append(
        (
            "serve, 32 clients, 1920x1080: p99 ≤ 3× p50",
            "-" if spread is None else f"{spread:.2f}×",
            _verdict(spread, high=3.0),
        )
    )
    idle = _rate(rows, hd, fast32, "model_idle_percent")
    out.append(
        (
            "serve, 32 clients, 1920x1080: model thread idle < 20 %",
            "-" if idle is None else f"{idle:.0f} %",
            _verdict(idle, high=20.0),
        )
    )
    return out


def _verdict(value: float | None, low: float | None = None, high: float | None = None) -> str:
    if value is None:
        return "not measured"
    met = (low is None or value >= low) and (high is None or value <= high)
    return "met" if met else "not met"


def _cell(row: dict, key: str, fmt: str, width: int) -> str:
    return f"{row[key]:{width}{fmt}}" if row.get(key) is not None else " " * (width - 1) + "-"


def print_report(rows: list[dict], header: str) -> None:
    print(header)
    batch = [r for r in rows if "requests_per_s" not in r]
    print(
        f"{'size':>9s}  {'configuration':24s} {'marginal img/s':>15s} {'img/s':>8s} {'run img/s':>10s} {'wall s':>8s} "
        f"{'peak MB':>8s} {'CPU cores':>10s}"
    )
    for r in batch:
        if "error" in r:
            print(f"{r['size']:>9s}  {r['config']:24s} {r['error']}")
            continue
        print(
            f"{r['size']:>9s}  {r['config']:24s} {_cell(r, 'marginal_img_s', '.1f', 15)} {_cell(r, 'img_s', '.1f', 8)} "
            f"{_cell(r, 'run_img_s', '.1f', 10)} "
            f"{_cell(r, 'wall_s', '.1f', 8)} {_cell(r, 'peak_rss_mb', '.0f', 8)} {_cell(r, 'cpu_cores', '.2f', 10)}"
        )
    print(
        "marginal img/s: (N - N/4) / (wall(N) - wall(N/4)), every fixed cost (start, load, compile, Ray) cancelled;\n"
        "img/s: N / wall, start to exit; run img/s: after loading (predict/embed summary line: first-batch compile\n"
        "included; pipeline/timm: the timed loop); all to the output file"
    )
    served = [r for r in rows if "requests_per_s" in r]
    if served:
        print(
            f"\n{'size':>9s}  {'server':36s} {'img/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'batch':>6s} {'idle %':>7s} {'CPU ms':>7s} {'errors':>7s}"
        )
        for r in served:
            errors = r["errors"] + r["overloaded_503"]
            print(
                f"{r['size']:>9s}  {r['config']:36s} {r['requests_per_s']:8.1f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} "
                f"{_cell(r, 'mean_batch_size', '.2f', 6)} {_cell(r, 'model_idle_percent', '.0f', 7)} {_cell(r, 'server_cpu_ms_per_request', '.1f', 7)} {errors:7d}"
            )
        print(
            "one image per request; idle %: the model thread's, from swiftformer_model_busy_seconds_total; "
            "CPU ms: the server's CPU time per request"
        )
    print("\nissue 24 targets (batch: ratios of marginal img/s):")
    for name, measured, verdict in targets(rows):
        print(f"  {name:58s} {measured:>8s}  {verdict}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        kind, *rest = args.worker
        if kind == "pipeline":
            pipeline_worker(rest[0], rest[1], batch_size=parse_args([]).batch_size, output=rest[2])
        else:
            timm_worker(rest[0], rest[1], rest[2], int(rest[3]), int(rest[4]))
        return 0
    from swiftformer.hardware import hardware_line
    from swiftformer.perf import tune_malloc

    if args.malloc == "tuned":
        os.environ.update(MALLOC_ENV)  # inherited by every process of the run
        tune_malloc()
    import torch

    header = (
        f"# {hardware_line()}; malloc: {args.malloc} in every process"
        f"{' (MALLOC_MMAP_THRESHOLD_=32 MB, MALLOC_TRIM_THRESHOLD_=2 GB: swiftformer.perf.tune_malloc)' if args.malloc == 'tuned' else ''}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.2f}"
    )
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="end-to-end-") as tmp:
        scratch = Path(tmp)
        images = Path(args.images_dir) if args.images_dir else scratch / "images"
        model, checkpoint = (args.model, None) if args.model else make_model(scratch)
        for size in args.sizes:
            started = time.perf_counter()
            count = args.images or DEFAULT_IMAGES[size]
            full, small = images / f"{size}-{count}", images / f"{size}-{count // 4}"
            write_photos(full, size, count, min(args.distinct, count))
            link_first(full, small, max(1, count // 4))
            print(f"{count} JPEGs of {size} in {full} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
            for row in run_size(args, model, checkpoint, size, (small, full), scratch):
                rows.append(row)
                if args.json:
                    print(json.dumps({"hardware": header, **row}), flush=True)
    if not args.json:
        print_report(rows, header)
        if args.quick:
            print("--quick: a smoke run; its figures (marginal img/s above all) are not measurements")
    return 0


if __name__ == "__main__":
    sys.exit(main())
