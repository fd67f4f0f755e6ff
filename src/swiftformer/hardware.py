"""What CPU this process runs on: the facts (model, vendor, usable cores, ISA flags) that decide what is fast on it.

:func:`detect_cpu` reads them from the given facts (a ``/proc/cpuinfo`` text, torch's dispatch level), so the
decisions built on a :class:`CPUInfo` are tested with fake CPUs; :func:`cpu_info` reads this machine's once. The
precision and backend *policy* that ``"auto"`` runs on these facts is :mod:`swiftformer.inference.auto`.

Importing this module does not import torch (``swiftformer info`` and report headers stay cheap); the few
functions that need torch import it inside.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from typing import Any

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


def process_cores() -> int:
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
        cores=max(1, cores) if cores is not None else process_cores(),
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


# The kinds of CPU the project meets, as flag sets, for ``SWIFTFORMER_FAKE_CPU``: a test suite (or a user checking
# what ``"auto"`` would pick elsewhere) runs as a CPU it does not have. Only the decisions change; torch still
# computes with this machine's instructions, so e.g. bf16 faked as native runs (slowly) where it is emulated.
_X86_BASE = "sse4_2 avx avx2 fma f16c bmi2"
_AVX512 = "avx512f avx512bw avx512dq avx512vl avx512cd"
FAKE_CPUS: dict[str, tuple[str, str, str, str]] = {  # name: (model, vendor_id, flags, torch capability)
    "amx": (
        "Intel Xeon (faked: AMX)",
        "GenuineIntel",
        f"{_X86_BASE} {_AVX512} avx512_bf16 avx512_vnni avx_vnni amx_bf16 amx_int8 amx_tile",
        "AVX512",
    ),
    "avx512-bf16": (
        "AMD EPYC (faked: AVX512-BF16)",
        "AuthenticAMD",
        f"{_X86_BASE} {_AVX512} avx512_bf16 avx512_vnni",
        "AVX512",
    ),
    "avx2-vnni": ("Intel Core (faked: AVX2 + AVX-VNNI)", "GenuineIntel", f"{_X86_BASE} avx_vnni", "AVX2"),
    "avx2": ("AMD EPYC (faked: AVX2)", "AuthenticAMD", _X86_BASE, "AVX2"),
}
FAKE_CPU_ENV = "SWIFTFORMER_FAKE_CPU"


def fake_cpu(name: str, cores: int | None = None) -> CPUInfo:
    """The :class:`CPUInfo` of one of :data:`FAKE_CPUS` (``"amx"``, ``"avx512-bf16"``, ``"avx2-vnni"``, ``"avx2"``).

    Raises:
        ValueError: ``name`` is not one of them.
    """
    if name not in FAKE_CPUS:
        raise ValueError(f"{FAKE_CPU_ENV} must be one of {', '.join(FAKE_CPUS)}, got {name!r}")
    model, vendor_id, flags, capability = FAKE_CPUS[name]
    text = f"vendor_id\t: {vendor_id}\nmodel name\t: {model}\nflags\t\t: {flags}\n"
    return detect_cpu(text, capability, cores)


@functools.cache
def cpu_info() -> CPUInfo:
    """The :class:`CPUInfo` of this machine, read once per process (imports torch for its capability).

    With ``SWIFTFORMER_FAKE_CPU`` set to a name of :data:`FAKE_CPUS`, that CPU instead (this machine's cores):
    CI runs the suite as the pool's other CPUs that way.

    Cached: the CPU does not change under a process. The affinity mask could, but the thread count chosen
    from it at start-up would not follow anyway.
    """
    faked = os.environ.get(FAKE_CPU_ENV, "").strip()
    if faked:
        return fake_cpu(faked)
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            text: str | None = handle.read()
    except OSError:
        text = None
    return detect_cpu(text, _torch_capability())


def _torch_threads() -> int | None:
    try:
        import torch  # lazily: importing this module must stay torch-free
    except ImportError:
        return None
    return int(torch.get_num_threads())


def describe_cpu(cpu: CPUInfo | None = None) -> dict[str, Any]:
    """A JSON-safe summary of the CPU (default this machine's) and of torch's view of it: the facts part of
    ``swiftformer info --hardware`` (:func:`swiftformer.inference.describe_hardware` adds what ``"auto"`` picks)."""
    cpu = cpu or cpu_info()
    return {
        "cpu": cpu.model,
        "vendor": cpu.vendor,
        "cores": cpu.cores,
        "torch_threads": _torch_threads(),
        "torch_capability": cpu.torch_capability,
        "isa": list(cpu.isa_features),
        "native_bf16": cpu.native_bf16,
        "native_int8": cpu.native_int8,
    }


def hardware_line(cpu: CPUInfo | None = None) -> str:
    """One line for benchmark report headers, e.g. ``"AMD EPYC (2 cores; AVX2, FMA)"``: numbers are only
    comparable between machines with the same ISA features."""
    cpu = cpu or cpu_info()
    return f"{cpu.model} ({cpu.cores} core{'s' if cpu.cores != 1 else ''}; {cpu.isa_summary})"
