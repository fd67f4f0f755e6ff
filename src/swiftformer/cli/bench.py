"""``swiftformer bench``: latency, throughput, memory and first-call time of every inference path.

Each mode runs in a fresh subprocess (``swiftformer bench --worker MODE``) so that peak memory, compile
caches and allocator state are its own; :mod:`swiftformer.bench` measures, this module runs and reports.
Every report names the CPU and its ISA features (figures only compare between machines with the same ones)
and the malloc setting.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from ..bench import DEFAULT_MODES, MODES, available, measure_mode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="xs", help="variant (xs, s, l1, l3; random weights) or model folder / hub id"
    )
    parser.add_argument(
        "--modes", nargs="+", choices=MODES, help=f"default: {' '.join(DEFAULT_MODES)} (those installed)"
    )
    parser.add_argument("--reference", action="store_true", help="add transformers' model and ratios against it")
    parser.add_argument("--image-size", type=int, help="default: the model's image_size")
    parser.add_argument("--batch-size", type=int, default=32, help="batch for the throughput figure (default 32)")
    parser.add_argument("--iterations", type=int, default=100, help="timed batch-1 calls (default 100)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls before timing (default 20)")
    parser.add_argument("--no-tune-malloc", action="store_true", help="keep glibc's malloc defaults")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
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
