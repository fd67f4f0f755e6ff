"""CPU detection on fake /proc/cpuinfo texts of four machines, and this machine's facts. The "auto" policy run on
these facts is tested in test_inference_auto.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from swiftformer.hardware import (
    FAKE_CPU_ENV,
    FAKE_CPUS,
    CPUInfo,
    cpu_info,
    describe_cpu,
    detect_cpu,
    fake_cpu,
    hardware_line,
)

_BASE = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr sse sse2 ht syscall nx lm pni ssse3 sse4_1 sse4_2 popcnt"


def _cpuinfo(vendor: str, model: str, flags: str, processors: int = 2) -> str:
    blocks = [
        f"processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: 6\nmodel\t\t: 143\nmodel name\t: {model}\n"
        f"cpu cores\t: {processors}\nflags\t\t: {_BASE} {flags}\nbugs\t\t: spectre_v1\npower management:\n"
        for i in range(processors)
    ]
    return "\n".join(blocks)  # blocks end with "\n", so they are separated by a blank line, as in the kernel's


SAPPHIRE_RAPIDS = _cpuinfo(
    "GenuineIntel",
    "Intel(R) Xeon(R) Platinum 8480+",
    "avx fma avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16 avx_vnni amx_bf16 amx_tile amx_int8",
)
EPYC_ZEN3 = _cpuinfo("AuthenticAMD", "AMD EPYC 7B13 64-Core Processor", "avx fma f16c avx2 bmi1 bmi2 sha_ni")
CASCADE_LAKE = _cpuinfo(
    "GenuineIntel",
    "Intel(R) Xeon(R) Platinum 8280 CPU @ 2.70GHz",
    "avx fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni",
)


@pytest.fixture
def spr() -> CPUInfo:
    return detect_cpu(SAPPHIRE_RAPIDS, "AVX512", cores=8)


@pytest.fixture
def zen3() -> CPUInfo:
    return detect_cpu(EPYC_ZEN3, "AVX2", cores=2)


@pytest.fixture
def cascade() -> CPUInfo:
    return detect_cpu(CASCADE_LAKE, "AVX512", cores=4)


@pytest.fixture
def no_cpuinfo() -> CPUInfo:
    return detect_cpu(None, "AVX2", cores=3)


# --- detection ---------------------------------------------------------------------------------------------


def test_detect_sapphire_rapids(spr: CPUInfo) -> None:
    assert spr.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert spr.vendor == "Intel"
    assert spr.cores == 8
    assert spr.torch_capability == "AVX512"
    assert {"amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx2"} <= spr.flags
    assert (spr.avx2, spr.avx512, spr.native_bf16, spr.native_int8, spr.amx) == (True, True, True, True, True)
    assert spr.isa_summary == "AMX-BF16, AMX-INT8, AVX512-BF16, AVX512-VNNI, AVX-512, AVX-VNNI, AVX2"


def test_detect_epyc_zen3(zen3: CPUInfo) -> None:
    assert zen3.vendor == "AMD"
    assert zen3.model == "AMD EPYC 7B13 64-Core Processor"
    assert (zen3.avx2, zen3.avx512, zen3.native_bf16, zen3.native_int8, zen3.amx) == (True, False, False, False, False)
    assert zen3.isa_summary == "AVX2, FMA"


def test_detect_cascade_lake(cascade: CPUInfo) -> None:
    assert (cascade.avx512, cascade.native_bf16, cascade.native_int8, cascade.amx) == (True, False, True, False)
    assert cascade.isa_summary == "AVX512-VNNI, AVX-512, AVX2"  # FMA is implied by AVX-512, not listed


def test_detect_without_cpuinfo_uses_torch_capability(no_cpuinfo: CPUInfo) -> None:
    assert no_cpuinfo.flags == frozenset({"avx2", "fma"})
    assert no_cpuinfo.torch_capability == "AVX2"
    assert no_cpuinfo.vendor == "unknown"
    assert no_cpuinfo.model  # platform's name for the processor, or a placeholder; never empty
    assert no_cpuinfo.cores == 3
    assert (no_cpuinfo.avx2, no_cpuinfo.native_bf16, no_cpuinfo.native_int8) == (True, False, False)


def test_detect_without_anything_has_no_flags() -> None:
    cpu = detect_cpu(None, None, cores=1)
    assert cpu.flags == frozenset()
    assert cpu.isa_summary == "no AVX2/AVX-512"
    assert detect_cpu(None, "DEFAULT", cores=1).flags == frozenset()


def test_flags_are_those_every_processor_has() -> None:
    # A process may run on any core, so a flag only some cores list must not count.
    text = EPYC_ZEN3 + "\n" + _cpuinfo("AuthenticAMD", "AMD EPYC 7B13 64-Core Processor", "avx", processors=1)
    cpu = detect_cpu(text, None, cores=3)
    assert "avx" in cpu.flags
    assert "avx2" not in cpu.flags and "fma" not in cpu.flags


def test_cores_default_to_the_affinity_mask() -> None:
    cpu = detect_cpu(EPYC_ZEN3, None)
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cpu.cores == expected


def test_cpu_info_on_this_machine() -> None:
    cpu = cpu_info()
    assert isinstance(cpu, CPUInfo)
    assert cpu.cores >= 1
    assert cpu.model.strip()
    assert cpu_info() is cpu  # cached


def test_this_machines_cpuinfo_parses() -> None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        pytest.skip("no /proc/cpuinfo here")
    cpu = detect_cpu(text, None, cores=1)
    if "flags" in text:  # x86: the flags line must come through, and with it the basics every x86-64 has
        assert {"sse2", "lm"} <= cpu.flags
        assert cpu.vendor != "unknown"
    assert cpu.model.strip()


def test_import_does_not_import_torch() -> None:
    code = "import sys, swiftformer.hardware; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- summaries ---------------------------------------------------------------------------------------------


def test_describe_cpu_is_json_safe_and_consistent(cascade: CPUInfo) -> None:
    info = describe_cpu(cascade)
    assert json.loads(json.dumps(info)) == info
    assert info["cpu"] == cascade.model and info["vendor"] == "Intel" and info["cores"] == 4
    assert info["isa"] == ["AVX512-VNNI", "AVX-512", "AVX2"]
    assert (info["native_bf16"], info["native_int8"]) == (False, True)
    assert info["torch_capability"] == "AVX512"
    assert info["torch_threads"] is None or info["torch_threads"] >= 1
    assert not any(key.startswith("auto") for key in info)  # facts only: the policy adds its picks


def test_describe_cpu_on_this_machine() -> None:
    info = describe_cpu()
    assert info["cores"] >= 1 and info["cpu"] == cpu_info().model


def test_hardware_line(zen3: CPUInfo, spr: CPUInfo) -> None:
    assert hardware_line(zen3) == "AMD EPYC 7B13 64-Core Processor (2 cores; AVX2, FMA)"
    assert hardware_line(spr).startswith("Intel(R) Xeon(R) Platinum 8480+ (8 cores; AMX-BF16, AMX-INT8, ")
    assert hardware_line(detect_cpu(EPYC_ZEN3, None, cores=1)).endswith("(1 core; AVX2, FMA)")
    assert hardware_line().strip()


@pytest.mark.parametrize(
    "name, bf16, int8, amx, avx512",
    [
        ("amx", True, True, True, True),
        ("avx512-bf16", True, True, False, True),
        ("avx2-vnni", False, True, False, False),
        ("avx2", False, False, False, False),
    ],
)
def test_fake_cpus_have_the_facts_of_their_kind(name: str, bf16: bool, int8: bool, amx: bool, avx512: bool) -> None:
    cpu = fake_cpu(name, cores=2)
    assert (cpu.native_bf16, cpu.native_int8, cpu.amx, cpu.avx512) == (bf16, int8, amx, avx512)
    assert cpu.avx2 and "faked" in cpu.model and cpu.cores == 2


def test_fake_cpu_environment_variable_replaces_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``--fake-cpu`` and CI rely on: cpu_info() answers as the named CPU, and an unknown name is refused."""
    real = os.environ.get(FAKE_CPU_ENV)
    try:
        for name in FAKE_CPUS:
            monkeypatch.setenv(FAKE_CPU_ENV, name)
            cpu_info.cache_clear()
            assert cpu_info() == fake_cpu(name)
        monkeypatch.setenv(FAKE_CPU_ENV, "z80")
        cpu_info.cache_clear()
        with pytest.raises(ValueError, match=f"{FAKE_CPU_ENV} must be one of amx, avx512-bf16, avx2-vnni, avx2"):
            cpu_info()
    finally:
        monkeypatch.undo()
        assert os.environ.get(FAKE_CPU_ENV) == real
        cpu_info.cache_clear()
