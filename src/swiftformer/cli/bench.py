"""``swiftformer bench``: latency, throughput, memory and first-call time of every inference path; with
``--artifact PATH --threads 1 2 4``, an exported file's batch-1 latency in its own runtime at each thread count.

Each mode runs in a fresh subprocess (``swiftformer bench --worker MODE``) so that peak memory, compile
caches and allocator state are its own; :mod:`swiftformer.bench` measures, this module runs and reports.
An artifact is timed in this process (:func:`swiftformer.bench.bench_artifact`), loaded afresh per thread
count. Every report names the CPU and its ISA features (figures only compare between machines with the same
ones) and the malloc setting.

``--artifact`` is a mode of ``bench`` rather than a command of its own: it shares the timing flags
(``--iterations``, ``--warmup``, ``--image-size``, ``--json``, ``--no-tune-malloc``) and the report's header;
the flags that pick and feed a model (``--model``, ``--modes``, ``--reference``, ``--batch-size``) are refused
with it in one line, and ``--threads`` without it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from ..bench import ARTIFACT_RUNTIMES, DEFAULT_MODES, DEFAULT_THREADS, MODES, available, measure_mode
from .common import fail

FLAGS = {"image_size": "--image-size"}
MODEL_ONLY = ("model", "modes", "reference", "batch_size")  # the options --artifact refuses


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="variant (xs, s, l1, l3; random weights) or model folder / hub id (default xs)")
    parser.add_argument(
        "--modes", nargs="+", choices=MODES, help=f"default: {' '.join(DEFAULT_MODES)} (those installed)"
    )
    parser.add_argument("--reference", action="store_true", help="add transformers' model and ratios against it")
    parser.add_argument("--image-size", type=int, help="default: the model's image_size")
    parser.add_argument("--batch-size", type=int, help="batch for the throughput figure (default 32)")
    parser.add_argument("--iterations", type=int, default=100, help="timed batch-1 calls (default 100)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls before timing (default 20)")
    parser.add_argument("--no-tune-malloc", action="store_true", help="keep glibc's malloc defaults")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument(
        "--artifact",
        metavar="PATH",
        help=f"time this exported file in its own runtime at batch 1 ({', '.join(ARTIFACT_RUNTIMES)})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        metavar="N",
        help=f"with --artifact: the runtime's thread counts to time (default {' '.join(map(str, DEFAULT_THREADS))})",
    )
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.artifact is not None:
        return _run_artifact(args)
    if args.threads is not None:
        return fail("--threads applies to --artifact only (the model modes run with torch's thread count)")
    if args.iterations < 1 or args.warmup < 0:
        return fail(f"--iterations must be at least 1 and --warmup at least 0, got {args.iterations}, {args.warmup}")
    args.model = args.model or "xs"
    args.batch_size = args.batch_size or 32
    if args.worker:  # inside the subprocess of one mode
        print(json.dumps(measure_mode(args)))
        return 0
    rows = [_measure(mode, args) for mode in _modes(args)]
    base = next((r for r in rows if r["mode"] == "reference" and "error" not in r), None)
    if base is not None:
        _add_speedups(rows, base)
    malloc = _malloc_setting(args, rows)
    if args.json:
        _print_json(args, rows, malloc)
    else:
        _print_table(args, rows, malloc, speedups=base is not None)
    return 0


def _modes(args: argparse.Namespace) -> list[str]:
    """The modes asked for (default: those installed), with ``reference`` first when ``--reference``."""
    modes = list(args.modes or [m for m in DEFAULT_MODES if available(m)])
    if args.reference and "reference" not in modes:
        modes.insert(0, "reference")
    return modes


def _measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """One mode's row, measured in a fresh ``swiftformer bench --worker MODE`` process; ``{"mode", "error"}``
    when it is not installed or the process fails (the last line of its stderr)."""
    if not available(mode):
        return {"mode": mode, "error": "not installed (pip install .[export] / .[reference])"}
    command = [
        sys.executable,
        "-m",
        "swiftformer",
        "bench",
        "--worker",
        mode,
        "--model",
        args.model,
        "--batch-size",
        str(args.batch_size),
        "--iterations",
        str(args.iterations),
        "--warmup",
        str(args.warmup),
    ]
    command += ["--image-size", str(args.image_size)] if args.image_size else []
    command += ["--no-tune-malloc"] if args.no_tune_malloc else []
    if not args.json:
        print(f"running {mode} ...", file=sys.stderr, flush=True)
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["failed"])[-1]
        return {"mode": mode, "error": tail}
    return json.loads(result.stdout.strip().splitlines()[-1])


def _add_speedups(rows: list[dict[str, Any]], base: dict[str, Any]) -> None:
    """Latency and throughput ratios against ``base`` (transformers' model) on every row that ran."""
    for r in rows:
        if "error" not in r:
            r["latency_speedup"] = base["latency_ms_median"] / r["latency_ms_median"]
            r["throughput_speedup"] = r["throughput_img_s"] / base["throughput_img_s"]


def _malloc_setting(args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    """How the modes' allocator was set, in words (each worker reports whether it tuned glibc's malloc)."""
    tuned = {r["malloc_tuned"] for r in rows if "error" not in r}
    if args.no_tune_malloc:
        return "glibc defaults (--no-tune-malloc)"
    if tuned == {True}:
        return "tuned (no trimming, mmap threshold 32 MB)"
    if tuned == {False}:
        return "defaults (not glibc: nothing to tune)"
    return "unknown (no mode ran)" if not tuned else "mixed"


def _print_json(args: argparse.Namespace, rows: list[dict[str, Any]], malloc: str) -> None:
    from ..hardware import hardware_line
    from ..inference import describe_hardware

    report = {"model": args.model, "cpu": hardware_line(), "hardware": describe_hardware(), "malloc": malloc}
    print(json.dumps({**report, "rows": rows}, indent=2))


def _print_table(args: argparse.Namespace, rows: list[dict[str, Any]], malloc: str, *, speedups: bool) -> None:
    """A header naming the CPU, malloc and the measurement, then one line per mode (with the ratios against
    transformers' model when ``speedups``)."""
    from ..hardware import hardware_line

    print(f"CPU: {hardware_line()}; malloc: {malloc}")
    ok = [r for r in rows if "error" not in r]
    if ok:
        r0 = ok[0]
        print(
            f"model {args.model}, {r0['image_size']}x{r0['image_size']}, {r0['threads']} threads; "
            f"batch-1 latency over {args.iterations} calls, throughput at batch {args.batch_size}"
        )
    print(
        f"{'mode':13s} {'lat ms':>8s} {'p90 ms':>8s} {'img/s':>8s} {'first s':>8s} {'peak MB':>8s} {'rel diff':>9s} {'top1':>6s}"
        + (f" {'lat x':>6s} {'thr x':>6s}" if speedups else "")
        + "  ran as"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['mode']:13s} error: {r['error']}")
            continue
        line = (
            f"{r['mode']:13s} {r['latency_ms_median']:8.2f} {r['latency_ms_p90']:8.2f} {r['throughput_img_s']:8.1f} "
            f"{r['first_call_s']:8.1f} {r['peak_rss_mb']:8.0f} {r['max_rel_diff']:9.1e} {100 * r['top1_agreement']:5.1f}%"
        )
        if speedups:
            line += f" {r['latency_speedup']:5.2f}x {r['throughput_speedup']:5.2f}x"
        backend = r["backend"]
        if "backend_batch_1" in r:  # backend="auto": latency and throughput may come from different backends
            backend = f"{r['backend_batch_1']} (batch 1) / {r['backend_batch_n']} (batch {r['batch_size']})"
        print(f"{line}  {r['precision']} {backend}")


def _run_artifact(args: argparse.Namespace) -> int:
    """``--artifact PATH``: the file's batch-1 latency in its runtime at each ``--threads`` count."""
    given = [f"--{name.replace('_', '-')}" for name in MODEL_ONLY if getattr(args, name) not in (None, False)]
    if given:
        return fail(f"--artifact times the file alone: {', '.join(given)} cannot be combined with it")
    threads = args.threads or list(DEFAULT_THREADS)
    bad = next((n for n in threads if n < 1), None)
    if bad is not None:
        return fail(f"--threads must each be at least 1, got {bad}")
    if args.iterations < 1 or args.warmup < 0:
        return fail(f"--iterations must be at least 1 and --warmup at least 0, got {args.iterations}, {args.warmup}")
    from ..bench import bench_artifact
    from ..perf import tune_malloc

    tuned = tune_malloc() if not args.no_tune_malloc else False
    malloc = _malloc_setting(args, [{"malloc_tuned": tuned}])
    report = bench_artifact(
        args.artifact, threads, runs=args.iterations, warmup=args.warmup, image_size=args.image_size
    ).to_dict()
    if args.json:
        from ..inference import describe_hardware

        rows = report.pop("rows")
        print(json.dumps({**report, "hardware": describe_hardware(), "malloc": malloc, "rows": rows}, indent=2))
    else:
        _print_artifact_table(args, report, malloc)
    return 0


def _print_artifact_table(args: argparse.Namespace, report: dict[str, Any], malloc: str) -> None:
    """The CPU and malloc line, what ran on what input, then one line per thread count and the notes."""
    print(f"CPU: {report['cpu']}; malloc: {malloc}")
    kind = "bundle" if report["bundle"] else "plain export"
    print(
        f"artifact {report['artifact']} ({report['size_mb']:.2f} MB, {kind}): {report['runtime']} "
        f"{report['runtime_version']}; {report['execution']}"
    )
    inp, out = report["input"], report["output"]
    print(
        f"input: {inp['name']} {tuple(inp['shape'])} {inp['dtype']}; output: {out['name']} {tuple(out['shape'])} "
        f"{out['dtype']}; batch-1 latency over {args.iterations} calls after {args.warmup} untimed ones"
    )
    print(f"{'threads':>7s} {'ran with':>8s} {'lat ms':>8s} {'p90 ms':>8s} {'img/s':>9s} {'first ms':>9s}")
    for r in report["rows"]:
        applied = "?" if r["threads_applied"] is None else str(r["threads_applied"])
        print(
            f"{r['threads']:7d} {applied:>8s} {r['latency_ms_median']:8.3f} {r['latency_ms_p90']:8.3f} "
            f"{r['throughput_img_s']:9.1f} {r['first_call_ms']:9.2f}"
        )
    for note in report["notes"]:
        print(f"note: {note}")
