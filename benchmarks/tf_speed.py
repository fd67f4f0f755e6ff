"""CPU speed of the Keras SwiftFormer against transformers 4.57's TF port, and of the TFLite export.

For each variant, batch-1 latency (ms, median) and batch-32 throughput (images/s, from the median
batch time) in three TensorFlow modes: eager (``model(x)``), ``tf.function`` (graph, grappler +
oneDNN fusions) and XLA (``tf.function(jit_compile=True)``); then the TFLite float32 export of XS at
batch 1 in the LiteRT interpreter (XNNPACK, all cores). The reference runs in ``.venv-tfref``
(transformers 4.57 + tf-keras; see scripts/make_tf_golden_fixtures.py) through this same script
with ``--impl reference``. Random weights: speed does not depend on them.

Run it alone (nothing else heavy on the machine)::

    .venv/bin/python benchmarks/tf_speed.py --json runs/tf_speed.json

It calls ``swiftformer.perf.tune_malloc()`` first (glibc keeps freed activation buffers mapped).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
REF_PYTHON = ROOT / ".venv-tfref" / "bin" / "python"
MODES = ("eager", "function", "xla")


def build(impl: str, variant: str):
    from swiftformer.configuration import VARIANTS

    if impl == "ours":
        from swiftformer import SwiftFormerConfig
        from swiftformer.keras import TFSwiftFormerForImageClassification

        return TFSwiftFormerForImageClassification(SwiftFormerConfig(**VARIANTS[variant], num_labels=1000))
    import transformers

    config = transformers.SwiftFormerConfig(**VARIANTS[variant], num_labels=1000)
    model = transformers.TFSwiftFormerForImageClassification(config)
    model(model.dummy_inputs)  # build
    return model


def timed(fn, x, warmup: int, repeats: int) -> tuple[float, float]:
    """(median seconds, first-call seconds)."""
    start = time.perf_counter()
    fn(x).numpy()
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        fn(x).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times), first


def run_impl(impl: str, variants, modes, batch_sizes, image_size: int, repeats_1: int, repeats_32: int) -> list[dict]:
    import tensorflow as tf

    results = []
    for variant in variants:
        model = build(impl, variant)

        def logits(x, model=model):
            return model(x, training=False).logits

        for mode in modes:
            fn = logits if mode == "eager" else tf.function(logits, jit_compile=(mode == "xla"))
            for batch in batch_sizes:
                x = tf.random.stateless_normal((batch, 3, image_size, image_size), seed=(0, batch))
                repeats = repeats_1 if batch == 1 else repeats_32
                row = {"impl": impl, "variant": variant, "mode": mode, "batch": batch}
                try:
                    median, first = timed(fn, x, warmup=2 if batch == 1 else 1, repeats=repeats)
                    row.update(
                        median_ms=median * 1000, images_per_s=batch / median, first_call_s=first, repeats=repeats
                    )
                except Exception as err:
                    row.update(error=f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
                results.append(row)
                print(json.dumps(row), flush=True)
        del model
    return results


def run_tflite(image_size: int, runs: int) -> dict:
    from swiftformer import SwiftFormerConfig
    from swiftformer.export.keras import export_tflite
    from swiftformer.keras import TFSwiftFormerForImageClassification

    model = TFSwiftFormerForImageClassification(SwiftFormerConfig.from_variant("xs", num_labels=1000))
    with tempfile.TemporaryDirectory() as tmp:
        report = export_tflite(model, Path(tmp) / "xs.tflite", image_size=image_size, num_verify=2, latency_runs=runs)
    row = {
        "impl": "ours",
        "variant": "xs",
        "mode": "tflite-float32",
        "batch": 1,
        "median_ms": report.latency_ms,
        "images_per_s": 1000 / report.latency_ms,
        "rel_diff": report.max_rel_diff,
        "size_mb": report.size_mb,
        "threads": os.cpu_count(),
    }
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict], variants, batch_sizes) -> str:
    def cell(impl, variant, mode, batch):
        row = next(
            (r for r in rows if (r["impl"], r["variant"], r["mode"], r["batch"]) == (impl, variant, mode, batch)), None
        )
        if row is None:
            return "–"
        if "error" in row:
            return "fails"
        return f"{row['median_ms']:.1f} ms" if batch == 1 else f"{row['images_per_s']:.1f} img/s"

    def best(impl, variant, batch):
        found = [
            r
            for r in rows
            if r["impl"] == impl
            and r["variant"] == variant
            and r["batch"] == batch
            and r["mode"] in MODES
            and "error" not in r
        ]
        return max(found, key=lambda r: r["images_per_s"]) if found else None

    lines = [
        "| variant | batch | ours eager | ours tf.function | ours XLA | ref eager | ref tf.function | ref XLA | best vs best |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in variants:
        for batch in batch_sizes:
            ours, ref = best("ours", variant, batch), best("reference", variant, batch)
            ratio = f"{ours['images_per_s'] / ref['images_per_s']:.1f}×" if ours and ref else "–"
            cells = [cell(i, variant, m, batch) for i in ("ours", "reference") for m in MODES]
            lines.append(f"| {variant.upper()} | {batch} | " + " | ".join(cells) + f" | {ratio} |")
    tflite = next((r for r in rows if r["mode"] == "tflite-float32"), None)
    if tflite:
        lines.append("")
        lines.append(
            f"TFLite float32 XS, batch 1, LiteRT + XNNPACK ({tflite['threads']} threads): "
            f"{tflite['median_ms']:.2f} ms median (max rel diff to Keras {tflite['rel_diff']:.1e})."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--impl", choices=("ours", "reference"), default="ours")
    parser.add_argument("--variants", nargs="+", default=["xs", "l3"])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats-1", type=int, default=20, help="timed runs at batch 1")
    parser.add_argument("--repeats-32", type=int, default=5, help="timed runs at larger batches")
    parser.add_argument("--tflite-runs", type=int, default=100)
    parser.add_argument("--no-reference", action="store_true", help="skip the reference (.venv-tfref)")
    parser.add_argument("--no-tflite", action="store_true")
    parser.add_argument("--json", type=Path, help="write all rows here")
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.impl == "reference":
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
    else:
        from swiftformer.perf import tune_malloc

        print(f"tune_malloc applied: {tune_malloc()}", flush=True)

    rows = run_impl(
        args.impl, args.variants, args.modes, args.batch_sizes, args.image_size, args.repeats_1, args.repeats_32
    )
    if args.impl == "ours":
        if not args.no_tflite:
            rows.append(run_tflite(args.image_size, args.tflite_runs))
        if not args.no_reference:
            if not REF_PYTHON.exists():
                print(f"(no {REF_PYTHON}: reference skipped)")
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / "ref.json"
                    cmd = [
                        str(REF_PYTHON),
                        __file__,
                        "--impl",
                        "reference",
                        "--json",
                        str(out),
                        "--variants",
                        *args.variants,
                        "--modes",
                        *args.modes,
                        "--batch-sizes",
                        *map(str, args.batch_sizes),
                        "--image-size",
                        str(args.image_size),
                        "--repeats-1",
                        str(args.repeats_1),
                        "--repeats-32",
                        str(args.repeats_32),
                    ]
                    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
                    subprocess.run(cmd, check=True, env=env)
                    rows += json.loads(out.read_text())["rows"]
    import tensorflow as tf

    meta = {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "image_size": args.image_size,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    if args.impl == "ours":
        print()
        print(table(rows, args.variants, args.batch_sizes))


if __name__ == "__main__":
    main()
