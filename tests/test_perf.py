"""swiftformer.perf's timing helpers, shared by export, bench and the benchmarks: call counts, units, the
untimed case, and a light import (no torch)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

from swiftformer.perf import median_ms, time_calls


def counter() -> tuple[list[int], Callable[[], None]]:
    """A call count and the function that increments it."""
    calls = [0]

    def fn() -> None:
        calls[0] += 1

    return calls, fn


def test_time_calls_times_each_run_after_untimed_warmup():
    calls, fn = counter()
    times = time_calls(fn, 5, warmup=2)
    assert calls == [7] and len(times) == 5 and all(t >= 0 for t in times)
    assert time_calls(fn, 0) == [] and calls == [7]


def test_median_ms_is_milliseconds_and_none_when_not_timed():
    calls, fn = counter()
    assert median_ms(fn, 0) is None and median_ms(fn, -1) is None and calls == [0]  # not even warmed up
    assert median_ms(fn, 4) >= 0 and calls == [7]  # 3 warm-up calls by default
    assert median_ms(fn, 1, warmup=0) >= 0 and calls == [8]
    assert 5 <= median_ms(lambda: time.sleep(0.005), 3, warmup=0) < 1000  # ms, not seconds


def test_importing_perf_stays_light():
    code = "import sys, swiftformer.perf; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"
