"""Performance helpers: the process setting that makes SwiftFormer fast on a CPU (malloc tuning) and how
to time it. What the CPU can do is in :mod:`swiftformer.hardware`; the ONNX Runtime and OpenVINO runtimes are
in :mod:`swiftformer.inference`."""

from __future__ import annotations

import ctypes
import ctypes.util
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any


def tune_malloc() -> bool:
    """Keep freed memory in the heap instead of returning it to the kernel (glibc only).

    Training and batched inference free and re-allocate the same large activation buffers every step.
    With glibc's defaults, buffers above the (adaptive) mmap threshold are unmapped on free and
    faulted in again, page by page, on the next step, which makes steps randomly and many times slower in
    a VM (measured in docs/training.md, "Execution"). The same effect as ``MALLOC_MMAP_THRESHOLD_`` and
    ``MALLOC_TRIM_THRESHOLD_`` in the environment, set from inside the process. Returns whether it
    applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    largest_mmap_threshold = 32 * 1024 * 1024  # glibc's cap (HEAP_MAX_SIZE / 2 on 64-bit)
    ok_trim = mallopt(m_trim_threshold, ctypes.c_int(2**31 - 1))
    ok_mmap = mallopt(m_mmap_threshold, ctypes.c_int(largest_mmap_threshold))
    return bool(ok_trim and ok_mmap)


def time_calls(fn: Callable[[], Any], runs: int, warmup: int = 0) -> list[float]:
    """Seconds taken by each of ``runs`` calls of ``fn``, after ``warmup`` untimed calls.

    The raw times, in call order, for callers that need more than the median (e.g. a p90).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_ms(fn: Callable[[], Any], runs: int, warmup: int = 3) -> float | None:
    """Median milliseconds of ``runs`` calls of ``fn`` after ``warmup`` untimed ones (first calls
    allocate, compile or load); ``None`` (nothing run) for ``runs <= 0``."""
    if runs <= 0:
        return None
    return 1e3 * statistics.median(time_calls(fn, runs, warmup))


def latency_ms(times: Sequence[float]) -> tuple[float, float]:
    """(median, p90) in milliseconds of the seconds in ``times`` (:func:`time_calls`' list); the p90 is the
    sorted value at index ``int(0.9 * (n - 1))``."""
    ordered = sorted(times)
    return 1e3 * statistics.median(ordered), 1e3 * ordered[int(0.9 * (len(ordered) - 1))]
