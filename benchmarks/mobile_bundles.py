"""Mobile bundles, measured: export SwiftFormer bundles in every format and precision that runs here, then time
each one in its own runtime at 1, 2 and 4 threads (batch 1, uint8 image in, probabilities out), as a phone CPU
runs it. The table of docs/mobile.md.

    python benchmarks/mobile_bundles.py                        # XS and L1, every bundle, 1/2/4 threads
    python benchmarks/mobile_bundles.py --variants xs --formats onnx tflite --runs 30

Perturbed random weights (the named variant's config, tests/_helpers.py's perturb_: every branch matters, unlike
the default init, whose near-uniform probabilities an int8 artifact cannot be checked against): latency does not
depend on the weights. Each export is verified as usual before it is timed (the JSON lines on stderr hold its
figures); on perturbed weights at 224² the softmax saturates, so they only show that the artifact computes the
model — agreement is measured by the tests on non-saturated models (docs/export.md, Bundles).
Core ML bundles are exported and their spec checked but not timed (Core ML predicts only on macOS).

One benchmark at a time on a shared machine: the script is the only load it should see. The CPU and the malloc
setting are printed with the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

from swiftformer.bench import bench_artifact
from swiftformer.export import export
from swiftformer.export.formats import FORMATS
from swiftformer.hardware import hardware_line
from swiftformer.inference import load_model
from swiftformer.perf import tune_malloc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _helpers import perturb_

ARTIFACT = {"onnx": "swiftformer.onnx", "tflite": "swiftformer.tflite", "executorch": "swiftformer.pte"}
TIMED = {"onnx", "tflite", "executorch"}


def bundles(formats: list[str]) -> list[tuple[str, str]]:
    """(format, precision) of every bundle the format records allow, in ``formats``' order."""
    return [(name, precision) for name in formats for precision in FORMATS[name].bundle]


def measure(args: argparse.Namespace, root: Path) -> list[dict]:
    """Export every (variant, format, precision) bundle under ``root`` and time the runnable ones."""
    rows = []
    for variant in args.variants:
        model = perturb_(load_model(variant))
        for fmt, precision in bundles(args.formats):
            folder = root / f"{variant}-{fmt}-{precision}"
            name = ARTIFACT.get(fmt, "SwiftFormer.mlpackage")
            start = time.perf_counter()
            report = export(model, folder / name, fmt, precision=precision, bundle=True, latency_runs=0)
            row = {
                "variant": variant,
                "format": fmt,
                "precision": precision,
                "size_mb": round(report.size_mb, 2),
                "export_s": round(time.perf_counter() - start, 1),
                "max_abs_diff": report.max_abs_diff,
                "top1": report.top1_agreement,
            }
            paths = [folder / name] + ([folder / "swiftformer.ort"] if fmt == "onnx" else [])
            for path in paths if fmt in TIMED else []:
                timed = bench_artifact(path, args.threads, runs=args.runs, warmup=args.warmup)
                key = "ort" if path.suffix == ".ort" else "ms"
                row[key] = {t.threads: round(t.latency_ms_median, 2) for t in timed.rows}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["xs", "l1"])
    parser.add_argument("--formats", nargs="+", default=["tflite", "onnx", "executorch", "coreml"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--output-dir", type=Path, help="keep the bundles here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    unknown = [f for f in args.formats if f not in FORMATS or not FORMATS[f].bundle]
    if unknown:
        parser.error(f"not a bundle format: {', '.join(unknown)}")
    tuned = tune_malloc()
    with contextlib.ExitStack() as stack:
        root = args.output_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mobile-bundles-")))
        rows = measure(args, root)
    print(f"CPU: {hardware_line()}; malloc: {'tuned (swiftformer.perf.tune_malloc)' if tuned else 'glibc default'}")
    print(f"median batch-1 latency in ms over {args.runs} runs (uint8 image in, probabilities out)\n")
    threads = " | ".join(f"{t} thr" for t in args.threads)
    print(f"| variant | format | precision | MB | {threads} |")
    print("|---" * (4 + len(args.threads)) + "|")
    for row in rows:
        for key, label in (("ms", row["format"]), ("ort", "onnx (.ort)")):
            if key not in row and not (key == "ms" and row["format"] not in TIMED):
                continue
            cells = " | ".join(str(row[key].get(t, "")) if key in row else "not timed" for t in args.threads)
            print(f"| {row['variant']} | {label} | {row['precision']} | {row['size_mb']} | {cells} |")
    if args.json:
        args.json.write_text(json.dumps({"cpu": hardware_line(), "malloc_tuned": tuned, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
