"""What CPU this process runs on, and the precision and backend that are fast on it.

``precision="auto"`` and ``backend="auto"`` must not guess from the machine the project was tuned on: bf16 is
a large win where the CPU computes it (AVX512-BF16, AMX) and a 10-80x loss where it is emulated (measured on an
AVX2-only AMD EPYC), and the exported runtimes (ONNX Runtime, OpenVINO) win batch-1 latency while compiled
inductor wins batch throughput. The decisions are pure functions of a :class:`CPUInfo` (and of which packages
are installed, injectable), so they are tested with fake ``/proc/cpuinfo`` texts, and each comes with a
one-line reason that the CLI and benchmark reports print.

Importing this module does not import torch (``swiftformer info`` and report headers stay cheap); the few
functions that need torch import it inside.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PRECISIONS = ("auto", "fp32", "bf16", "int8")
BACKENDS = ("auto", "inductor", "openvino", "onnxruntime")
# backend="auto" sends batches up to this size to an exported runtime (ONNX Runtime or OpenVINO), larger ones to
# compiled inductor, on CPUs with AVX-512 (see small_batch_max for the others). Measured on a Xeon with AMX: at
# batch 1 the runtimes were faster (7.3 / 7.1 vs 9.9 ms fp32), at batch 32 inductor was ahead (168 vs 133-147
# img/s). 4 is where inductor's own advantage starts: its first stage runs in micro-batches of 4 (fp32) while
# later stages see the whole batch, so up to 4 images it runs the same small kernels as at batch 1 and only adds
# per-call overhead. (Batches 2-16 measured on the AVX2 EPYC only: docs/performance.md.)
SMALL_BATCH_MAX = 4
# Runtimes auto considers at small batches, best first (ONNX Runtime's CPU provider has no bf16 kernels).
_RUNTIMES = {"fp32": ("onnxruntime", "openvino"), "bf16": ("openvino",)}

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")

# Notable ISA features, best first, as (/proc/cpuinfo flag, label). FMA is only listed without AVX-512
# (every AVX-512 CPU has it, so it adds nothing there).
_NOTABLE = (
    ("amx_bf16", "AMX-BF16"),
    ("amx_int8", "AMX-INT8"),
    ("avx512_bf16", "AVX512-BF16"),
    ("avx512_vnni", "AVX512-VNNI"),
    ("avx512f", "AVX-512"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx2", "AVX2"),
    ("fma", "FMA"),
)

# Without /proc/cpuinfo (macOS, Windows, some sandboxes) torch's dispatch level is the only ISA fact at hand.
# ATen picks AVX2 only with FMA, and AVX512 only with F, BW, DQ and VL (aten/src/ATen/native/DispatchStub.cpp).
_CAPABILITY_FLAGS = {
    "AVX2": frozenset({"avx2", "fma"}),
    "AVX512": frozenset({"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma"}),
}

_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon", "CentaurHauls": "Centaur"}
# ARM's "CPU implementer" codes for the server and laptop parts one is likely to meet.
_ARM_IMPLEMENTERS = {"0x41": "ARM", "0x61": "Apple", "0xc0": "Ampere", "0x48": "HiSilicon", "0x51": "Qualcomm"}


class SlowPrecisionWarning(RuntimeWarning):
    """An explicitly requested precision that this CPU has no instructions for: it runs, but slowly.

    A subclass so users who know (e.g. checking bf16 accuracy on a laptop) can silence just this one:
    ``warnings.filterwarnings("ignore", category=SlowPrecisionWarning)``.
    """


class PrecisionNotHonouredWarning(RuntimeWarning):
    """A backend computes at another precision than the one requested (e.g. OpenVINO's CPU plugin runs f32 when
    asked for bf16 on a CPU without native bf16): the result is correct, but not what was asked for."""


@dataclass(frozen=True)
class CPUInfo:
    """The facts about the CPU that decide what is fast on it.

    ``flags`` are ``/proc/cpuinfo`` flag names (``avx512_bf16``, ``amx_int8``, ...), or a few implied by
    torch's capability when ``/proc/cpuinfo`` is missing. ``cores`` is what this process may use (its
    affinity mask), not what the machine has: that is what sets the thread count worth using.
    """

    model: str
    vendor: str
    cores: int
    flags: frozenset[str]
    torch_capability: str | None

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def native_bf16(self) -> bool:
        """bf16 matmuls in hardware; without it torch emulates bf16 and it is much slower than fp32."""
        return any(flag in self.flags for flag in _BF16_FLAGS)

    @property
    def native_int8(self) -> bool:
        """int8 dot products in hardware (VNNI or AMX); without them int8 gains little over fp32."""
        return any(flag in self.flags for flag in _INT8_FLAGS)

    @property
    def amx(self) -> bool:
        return "amx_bf16" in self.flags or "amx_int8" in self.flags

    @property
    def isa_features(self) -> tuple[str, ...]:
        """Labels of the notable ISA features present, best first (e.g. ``("AVX2", "FMA")``)."""
        labels = [label for flag, label in _NOTABLE if flag in self.flags]
        if self.avx512 and "FMA" in labels:
            labels.remove("FMA")
        return tuple(labels)

    @property
    def isa_summary(self) -> str:
        """``", "``-joined :attr:`isa_features`, or a phrase saying none of them was found."""
        return ", ".join(self.isa_features) or "no AVX2/AVX-512"


@dataclass(frozen=True)
class PrecisionChoice:
    """The inference precision to use and a one-line reason a person can check against their CPU."""

    precision: str
    reason: str


@dataclass(frozen=True)
class BackendChoice:
    """The inference backend to use and a one-line reason."""

    backend: str
    reason: str


def _process_cores() -> int:
    """Logical cores this process may run on: the affinity mask (taskset, cpusets) where the OS has one."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def _fields(block: str) -> dict[str, str]:
    """``key : value`` lines of one /proc/cpuinfo processor block (keys as written, values stripped)."""
    fields: dict[str, str] = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def detect_cpu(cpuinfo_text: str | None = None, capability: str | None = None, cores: int | None = None) -> CPUInfo:
    """A :class:`CPUInfo` from the given facts, without reading the machine (except ``cores``).

    Args:
        cpuinfo_text: The text of ``/proc/cpuinfo``; ``None`` when there is none (not Linux), and the ISA
            flags then come from ``capability``.
        capability: ``torch.backends.cpu.get_cpu_capability()`` (``"AVX2"``, ``"AVX512"``, ``"DEFAULT"``,
            ...); ``None`` when unknown.
        cores: Logical cores usable; ``None`` reads this process's affinity mask (a count is always knowable,
            unlike the flags).

    Flags are those every processor block lists (their intersection), as the process may be scheduled on
    any of them; the model and vendor are the first block's.
    """
    model = vendor = ""
    flags: frozenset[str] = frozenset()
    if cpuinfo_text is not None:
        blocks = [_fields(block) for block in cpuinfo_text.split("\n\n") if block.strip()]
        flag_sets = []
        for fields in blocks:
            line = fields.get("flags", fields.get("Features"))  # x86 says "flags", ARM "Features"
            if line is not None:
                flag_sets.append(frozenset(line.split()))
        if flag_sets:
            flags = frozenset.intersection(*flag_sets)
        first = blocks[0] if blocks else {}
        model = " ".join(first.get("model name", first.get("Model name", "")).split())
        vendor_id = first.get("vendor_id", "")
        implementer = first.get("CPU implementer", "")
        vendor = _VENDORS.get(vendor_id, vendor_id) or _ARM_IMPLEMENTERS.get(implementer, implementer)
    elif capability is not None:
        flags = _CAPABILITY_FLAGS.get(capability.upper(), frozenset())
    return CPUInfo(
        model=model or platform.processor() or platform.machine() or "unknown CPU",
        vendor=vendor or "unknown",
        cores=max(1, cores) if cores is not None else _process_cores(),
        flags=flags,
        torch_capability=capability,
    )


def _torch_capability() -> str | None:
    """torch's CPU dispatch level, or ``None`` without torch (or a torch too old to say)."""
    try:
        import torch  # lazily: importing this module must stay torch-free

        return str(torch.backends.cpu.get_cpu_capability())
    except (ImportError, AttributeError, RuntimeError):
        return None


@functools.cache
def cpu_info() -> CPUInfo:
    """The :class:`CPUInfo` of this machine, read once per process (imports torch for its capability).

    Cached: the CPU does not change under a process. The affinity mask could, but the thread count chosen
    from it at start-up would not follow anyway.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            text: str | None = handle.read()
    except OSError:
        text = None
    return detect_cpu(text, _torch_capability())


def _int8_label(cpu: CPUInfo) -> str:
    for flag, label in (("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI")):
        if flag in cpu.flags:
            return label
    return "none"


def resolve_precision(
    requested: str,
    *,
    cpu: CPUInfo | None = None,
    device: str = "cpu",
    calibration_given: bool = False,
    stacklevel: int = 2,
) -> PrecisionChoice:
    """The precision to run at: ``requested``, or for ``"auto"`` the fastest one this hardware computes natively.

    ``"auto"``: bf16 on CUDA or on a CPU with AVX512-BF16 / AMX (on AMX bf16 measured faster than int8 in
    this project, so it wins even with calibration data); else int8 on a CPU with VNNI / AMX-INT8 when
    calibration data was given (int8 cannot run without it); else fp32. Other devices (e.g. ``"mps"``): fp32.

    An explicit choice is kept (the user asked), but on the CPU bf16 without native bf16 and int8 without int8
    dot products emit one :class:`SlowPrecisionWarning`, since both run far below what was expected. Off the
    CPU (``"cuda:0"``, ``"mps"``) the CPU's flags are not consulted. ``stacklevel`` is the warning's, for callers
    that want it to point at their own caller.

    Raises:
        ValueError: ``requested`` is not one of :data:`PRECISIONS`.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "fp32":
        return PrecisionChoice("fp32", "fp32 (requested)")
    kind = str(device).split(":", 1)[0].lower()
    if kind != "cpu":  # the CPU's flags say nothing about an accelerator
        if requested != "auto":
            return PrecisionChoice(requested, f"{requested} (requested)")
        if kind == "cuda":
            return PrecisionChoice("bf16", "bf16 on CUDA")
        return PrecisionChoice("fp32", f"fp32 on {kind} (auto picks bf16 only on CUDA or a CPU with native bf16)")
    cpu = cpu if cpu is not None else cpu_info()
    if requested == "bf16":
        if not cpu.native_bf16:
            warnings.warn(
                f"precision='bf16' on {cpu.model}, which has no native bf16 (neither avx512_bf16 nor amx_bf16 "
                "in its CPU flags): bf16 is emulated here: measured ~10-80x slower than fp32 on an AVX2-only "
                "AMD EPYC. Use precision='fp32' or 'auto' for speed.",
                SlowPrecisionWarning,
                stacklevel=stacklevel,
            )
            return PrecisionChoice("bf16", "bf16 (requested; emulated: no avx512_bf16 / amx_bf16)")
        return PrecisionChoice("bf16", "bf16 (requested)")
    if requested == "int8":
        if not cpu.native_int8:
            warnings.warn(
                f"precision='int8' on {cpu.model}, which has no int8 dot products (none of avx512_vnni, avx_vnni, "
                "amx_int8 in its CPU flags): int8 runs but gains little over fp32 here, at a cost in accuracy.",
                SlowPrecisionWarning,
                stacklevel=stacklevel,
            )
            return PrecisionChoice("int8", "int8 (requested; no VNNI / AMX-INT8)")
        return PrecisionChoice("int8", "int8 (requested)")
    if cpu.native_bf16:
        reason = "bf16 on AMX" if "amx_bf16" in cpu.flags else "bf16: AVX512-BF16"
        if calibration_given and cpu.native_int8:
            reason += " (preferred over int8: measured faster on AMX)" if cpu.amx else " (preferred over int8)"
        return PrecisionChoice("bf16", reason)
    if cpu.native_int8 and calibration_given:
        return PrecisionChoice("int8", f"int8 on {_int8_label(cpu)} with calibration data")
    reason = "fp32: this CPU has no native bf16 (no avx512_bf16 / amx_bf16)"
    if cpu.native_int8:
        reason += f"; int8 on {_int8_label(cpu)} needs calibration data"
    return PrecisionChoice("fp32", reason)


def _importable(name: str) -> bool:
    """Whether ``name`` could be imported, without importing it (OpenVINO's import takes seconds)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def small_batch_max(precision: str = "fp32", cpu: CPUInfo | None = None) -> int | None:
    """The largest batch ``backend="auto"`` sends to an exported runtime at ``precision``; ``None``: every batch.

    :data:`SMALL_BATCH_MAX` on CPUs with AVX-512, where inductor has the best batch throughput. On AVX2-only
    CPUs (no AVX-512) ONNX Runtime and OpenVINO were as fast as or faster than compiled inductor at every batch
    size measured, in fp32: batch 2-32 on a Zen 1 EPYC (e.g. 43.5 vs 33.3 img/s at batch 2, 39.4-41.5 vs
    26.9-40.4 at 32), batch 32 on a Zen 3 EPYC (62 vs 59), and they need no compile: so the runtime takes every
    fp32 batch there. bf16 on such a CPU is emulated (and OpenVINO runs f32), so it keeps the threshold.
    """
    cpu = cpu if cpu is not None else cpu_info()
    return None if precision == "fp32" and not cpu.avx512 else SMALL_BATCH_MAX


def resolve_backend(
    requested: str,
    *,
    batch_size: int | None,
    precision: str,
    available: Callable[[str], bool] | None = None,
    compiled: bool = True,
    device: str = "cpu",
    cpu: CPUInfo | None = None,
) -> BackendChoice:
    """The backend to run on: ``requested``, or for ``"auto"`` the one measured fastest for this batch size.

    ``"auto"``, on the CPU: an exported runtime for small batches (``batch_size <= small_batch_max(...)``, see
    :func:`small_batch_max`: every fp32 batch on AVX2-only CPUs): ONNX Runtime, else OpenVINO, at fp32; OpenVINO at
    bf16 (ONNX Runtime's CPU provider has no bf16 kernels); whichever is installed. Larger batches (and an unknown
    batch size) run on inductor, the best batch throughput, when it is ``compiled``; uncompiled, the fused eager
    module was slower than both runtimes at batch 32 too (90 vs 133-147 img/s on the Xeon), so the runtime is used
    at every batch size. int8 and other devices than the CPU always run on inductor. Without an installed runtime:
    inductor.

    Args:
        precision: The resolved precision (``"fp32"``, ``"bf16"`` or ``"int8"``), not ``"auto"``.
        available: Whether a package can be imported; defaults to :func:`importlib.util.find_spec`. Injected
            by tests.
        compiled: Whether the inductor path would be ``torch.compile``-d.
        device: Where the model is (``"cpu"``, ``"cuda:0"``, ...); the runtimes here run on the CPU only.
        cpu: The CPU to decide for; default this machine's (:func:`cpu_info`).

    Raises:
        ValueError: an unknown backend or precision, or a batch size below 1.
    """
    if requested not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    if precision not in ("fp32", "bf16", "int8"):
        raise ValueError(f"precision must be a resolved one of fp32, bf16, int8, got {precision!r}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if requested != "auto":
        return BackendChoice(requested, f"{requested} (requested)")
    kind = str(device).split(":", 1)[0].lower()
    if kind != "cpu":
        return BackendChoice("inductor", f"inductor: on {kind} (onnxruntime and openvino run here on the CPU only)")
    if precision == "int8":
        return BackendChoice("inductor", "inductor: int8 runs through torch.compile (OpenVINO int8 needs NNCF)")
    limit = small_batch_max(precision, cpu)
    small = limit is None or (batch_size is not None and batch_size <= limit)
    size = "unknown batch size" if batch_size is None else f"batch {batch_size}"
    if compiled and not small:
        reason = f"inductor: best throughput at {size} (runtimes only up to batch {limit})"
        return BackendChoice("inductor", reason)
    is_available = available or _importable
    for runtime in _RUNTIMES[precision]:
        if is_available(runtime):
            if limit is None:
                why = f"level with inductor or faster at every {precision} batch without AVX-512 (no compile)"
            elif small:
                why = f"lowest {precision} latency at {size}"
            else:
                why = f"faster than the uncompiled inductor path at {size}"
            return BackendChoice(runtime, f"{runtime}: {why}")
    missing = " / ".join(_RUNTIMES[precision])
    return BackendChoice("inductor", f"inductor: {missing} (faster at {size}) not installed")


def _torch_threads() -> int | None:
    try:
        import torch  # lazily: importing this module must stay torch-free
    except ImportError:
        return None
    return int(torch.get_num_threads())


def describe_hardware(cpu: CPUInfo | None = None) -> dict[str, Any]:
    """A JSON-safe summary of the CPU and of what ``"auto"`` picks on it, for ``swiftformer info --hardware``.

    Shows the reasons as well as the picks, so a surprising choice can be traced to a missing CPU flag.
    """
    cpu = cpu or cpu_info()
    auto = resolve_precision("auto", cpu=cpu)
    auto_calibrated = resolve_precision("auto", cpu=cpu, calibration_given=True)
    backends = {b: resolve_backend("auto", batch_size=b, precision=auto.precision, cpu=cpu) for b in (1, 32)}
    return {
        "cpu": cpu.model,
        "vendor": cpu.vendor,
        "cores": cpu.cores,
        "torch_threads": _torch_threads(),
        "torch_capability": cpu.torch_capability,
        "isa": list(cpu.isa_features),
        "native_bf16": cpu.native_bf16,
        "native_int8": cpu.native_int8,
        "auto_precision": auto.precision,
        "auto_precision_reason": auto.reason,
        "auto_precision_with_calibration": auto_calibrated.precision,
        "auto_precision_with_calibration_reason": auto_calibrated.reason,
        "auto_backend_batch_1": backends[1].backend,
        "auto_backend_batch_1_reason": backends[1].reason,
        "auto_backend_batch_32": backends[32].backend,
        "auto_backend_batch_32_reason": backends[32].reason,
        "auto_small_batch_max": small_batch_max(auto.precision, cpu),  # None: the runtime takes every batch
        "installed_backends": ["inductor", *(name for name in ("onnxruntime", "openvino") if _importable(name))],
    }


def hardware_line(cpu: CPUInfo | None = None) -> str:
    """One line for benchmark report headers, e.g. ``"AMD EPYC (2 cores; AVX2, FMA)"``: numbers are only
    comparable between machines with the same ISA features."""
    cpu = cpu or cpu_info()
    return f"{cpu.model} ({cpu.cores} core{'s' if cpu.cores != 1 else ''}; {cpu.isa_summary})"
