"""CPU detection and the "auto" precision / backend choices, on fake /proc/cpuinfo texts of four machines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

from swiftformer.hardware import (
    SMALL_BATCH_MAX,
    BackendChoice,
    CPUInfo,
    PrecisionChoice,
    SlowPrecisionWarning,
    cpu_info,
    describe_hardware,
    detect_cpu,
    hardware_line,
    resolve_backend,
    resolve_precision,
    small_batch_max,
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


SPR = detect_cpu(SAPPHIRE_RAPIDS, "AVX512", cores=8)  # the backend tests decide for an AVX-512 CPU unless stated


@pytest.fixture
def zen3() -> CPUInfo:
    return detect_cpu(EPYC_ZEN3, "AVX2", cores=2)


@pytest.fixture
def cascade() -> CPUInfo:
    return detect_cpu(CASCADE_LAKE, "AVX512", cores=4)


@pytest.fixture
def no_cpuinfo() -> CPUInfo:
    return detect_cpu(None, "AVX2", cores=3)


def _no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        return fn(*args, **kwargs)


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


# --- precision ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("calibration", [False, True])
def test_auto_on_sapphire_rapids_is_bf16_even_with_calibration(spr: CPUInfo, calibration: bool) -> None:
    choice = _no_warnings(resolve_precision, "auto", cpu=spr, calibration_given=calibration)
    assert isinstance(choice, PrecisionChoice)
    assert choice.precision == "bf16"
    assert choice.reason.startswith("bf16 on AMX")
    assert ("int8" in choice.reason) is calibration  # says why int8 was passed over only when it was an option


@pytest.mark.parametrize("calibration", [False, True])
def test_auto_on_epyc_zen3_is_fp32(zen3: CPUInfo, calibration: bool) -> None:
    choice = _no_warnings(resolve_precision, "auto", cpu=zen3, calibration_given=calibration)
    assert choice.precision == "fp32"
    assert "no native bf16" in choice.reason
    assert "avx512_bf16" in choice.reason and "amx_bf16" in choice.reason


def test_auto_on_cascade_lake_is_int8_only_with_calibration(cascade: CPUInfo) -> None:
    without = resolve_precision("auto", cpu=cascade)
    assert without.precision == "fp32"
    assert "calibration" in without.reason and "no native bf16" in without.reason
    with_cal = resolve_precision("auto", cpu=cascade, calibration_given=True)
    assert with_cal == PrecisionChoice("int8", "int8 on AVX512-VNNI with calibration data")


@pytest.mark.parametrize("calibration", [False, True])
def test_auto_without_cpuinfo_is_fp32(no_cpuinfo: CPUInfo, calibration: bool) -> None:
    assert resolve_precision("auto", cpu=no_cpuinfo, calibration_given=calibration).precision == "fp32"


def test_auto_avx512_bf16_without_amx() -> None:
    zen4 = detect_cpu(_cpuinfo("AuthenticAMD", "AMD EPYC 9654", "avx2 fma avx512f avx512_bf16 avx512_vnni"), None, 4)
    choice = resolve_precision("auto", cpu=zen4, calibration_given=True)
    assert choice.precision == "bf16"
    assert choice.reason.startswith("bf16: AVX512-BF16")


def test_auto_on_cuda_is_bf16_whatever_the_cpu(zen3: CPUInfo) -> None:
    assert resolve_precision("auto", cpu=zen3, device="cuda") == PrecisionChoice("bf16", "bf16 on CUDA")
    assert resolve_precision("auto", cpu=zen3, device="cuda:1").precision == "bf16"
    assert resolve_precision("auto", cpu=zen3, device="mps").precision == "fp32"


def test_explicit_bf16_without_native_bf16_warns_and_keeps_bf16(zen3: CPUInfo) -> None:
    with pytest.warns(SlowPrecisionWarning, match="avx512_bf16") as record:
        choice = resolve_precision("bf16", cpu=zen3)
    assert len(record) == 1
    assert issubclass(record[0].category, RuntimeWarning)
    assert "slower than fp32" in str(record[0].message)
    assert choice.precision == "bf16"
    assert "emulated" in choice.reason


def test_explicit_bf16_on_sapphire_rapids_does_not_warn(spr: CPUInfo) -> None:
    assert _no_warnings(resolve_precision, "bf16", cpu=spr) == PrecisionChoice("bf16", "bf16 (requested)")


def test_explicit_bf16_on_cuda_does_not_look_at_the_cpu(zen3: CPUInfo) -> None:
    assert _no_warnings(resolve_precision, "bf16", cpu=zen3, device="cuda").precision == "bf16"


def test_explicit_int8_without_vnni_warns_and_keeps_int8(zen3: CPUInfo) -> None:
    with pytest.warns(SlowPrecisionWarning, match="avx512_vnni"):
        choice = resolve_precision("int8", cpu=zen3, calibration_given=True)
    assert choice.precision == "int8"


def test_explicit_int8_with_vnni_does_not_warn(cascade: CPUInfo) -> None:
    assert _no_warnings(resolve_precision, "int8", cpu=cascade).reason == "int8 (requested)"


@pytest.mark.parametrize("cpu_name", ["spr", "zen3", "cascade", "no_cpuinfo"])
def test_explicit_fp32_is_kept(cpu_name: str, request: pytest.FixtureRequest) -> None:
    cpu = request.getfixturevalue(cpu_name)
    assert _no_warnings(resolve_precision, "fp32", cpu=cpu) == PrecisionChoice("fp32", "fp32 (requested)")


@pytest.mark.parametrize("bad", ["fp16", "BF16", "", "float32"])
def test_unknown_precision_raises(zen3: CPUInfo, bad: str) -> None:
    with pytest.raises(ValueError, match="auto, fp32, bf16, int8"):
        resolve_precision(bad, cpu=zen3)


# --- backend -----------------------------------------------------------------------------------------------


def _with(*installed: str):
    return lambda name: name in installed


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_auto_backend_small_batch_is_openvino_when_installed(batch_size: int, precision: str) -> None:
    choice = resolve_backend("auto", cpu=SPR, batch_size=batch_size, precision=precision, available=_with("openvino"))
    assert isinstance(choice, BackendChoice)
    assert choice.backend == "openvino"
    assert "latency" in choice.reason


def test_small_batch_max_is_four_with_avx512_and_unbounded_at_fp32_without(zen3: CPUInfo, cascade: CPUInfo) -> None:
    assert SMALL_BATCH_MAX == 4  # docs/performance.md and the docstrings say 4
    assert small_batch_max("fp32", SPR) == small_batch_max("fp32", cascade) == SMALL_BATCH_MAX
    assert small_batch_max("bf16", SPR) == SMALL_BATCH_MAX
    assert small_batch_max("fp32", zen3) is None  # AVX2 only: the runtimes were level or ahead at every batch
    assert small_batch_max("bf16", zen3) == SMALL_BATCH_MAX  # emulated bf16 was not measured that way


@pytest.mark.parametrize("batch_size", [1, 4, 5, 32, None])
def test_auto_backend_on_avx2_only_is_the_runtime_at_every_fp32_batch(zen3: CPUInfo, batch_size: int | None) -> None:
    installed = _with("openvino", "onnxruntime")
    choice = resolve_backend("auto", cpu=zen3, batch_size=batch_size, precision="fp32", available=installed)
    assert choice.backend == "onnxruntime" and "AVX-512" in choice.reason
    assert resolve_backend("auto", cpu=zen3, batch_size=batch_size, precision="fp32", available=_with()).backend == (
        "inductor"
    )
    bf16 = resolve_backend("auto", cpu=zen3, batch_size=batch_size, precision="bf16", available=installed)
    assert bf16.backend == ("openvino" if batch_size is not None and batch_size <= SMALL_BATCH_MAX else "inductor")


@pytest.mark.parametrize("batch_size", [1, 4])
def test_auto_backend_small_fp32_batch_prefers_onnxruntime(batch_size: int) -> None:
    # ONNX Runtime had the lowest fp32 batch-1 latency on the AVX2 EPYC (13.4 vs OpenVINO 17.1 ms) and tied on the Xeon
    both = resolve_backend(
        "auto", cpu=SPR, batch_size=batch_size, precision="fp32", available=_with("openvino", "onnxruntime")
    )
    assert both.backend == "onnxruntime" and "latency" in both.reason
    alone = resolve_backend("auto", cpu=SPR, batch_size=batch_size, precision="fp32", available=_with("onnxruntime"))
    assert alone.backend == "onnxruntime"


def test_auto_backend_small_bf16_batch_is_never_onnxruntime() -> None:
    # ONNX Runtime's CPU provider has no bf16 kernels
    choice = resolve_backend("auto", cpu=SPR, batch_size=1, precision="bf16", available=_with("onnxruntime"))
    assert choice.backend == "inductor"
    assert "openvino" in choice.reason and "not installed" in choice.reason


def test_auto_backend_small_batch_without_runtimes_is_inductor() -> None:
    choice = resolve_backend("auto", cpu=SPR, batch_size=1, precision="fp32", available=_with())
    assert choice.backend == "inductor"
    assert "not installed" in choice.reason


@pytest.mark.parametrize("batch_size", [1, 32, None])
def test_auto_backend_uncompiled_uses_the_runtime_at_every_batch_size(batch_size: int | None) -> None:
    installed = _with("openvino", "onnxruntime")
    fp32 = resolve_backend(
        "auto", cpu=SPR, batch_size=batch_size, precision="fp32", available=installed, compiled=False
    )
    assert fp32.backend == "onnxruntime"
    bf16 = resolve_backend(
        "auto", cpu=SPR, batch_size=batch_size, precision="bf16", available=installed, compiled=False
    )
    assert bf16.backend == "openvino"
    if batch_size != 1:
        assert "uncompiled" in fp32.reason
    none = resolve_backend("auto", cpu=SPR, batch_size=batch_size, precision="fp32", available=_with(), compiled=False)
    assert none.backend == "inductor"


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_auto_backend_off_the_cpu_is_inductor(device: str) -> None:
    installed = _with("openvino", "onnxruntime")
    choice = resolve_backend("auto", cpu=SPR, batch_size=1, precision="fp32", available=installed, device=device)
    assert choice.backend == "inductor" and device.split(":")[0] in choice.reason


@pytest.mark.parametrize("batch_size", [5, 32, None])
def test_auto_backend_large_or_unknown_batch_is_inductor(batch_size: int | None) -> None:
    installed = _with("openvino", "onnxruntime")
    choice = resolve_backend("auto", cpu=SPR, batch_size=batch_size, precision="fp32", available=installed)
    assert choice.backend == "inductor"
    assert "throughput" in choice.reason


def test_auto_backend_int8_is_inductor_even_at_batch_1() -> None:
    choice = resolve_backend(
        "auto", cpu=SPR, batch_size=1, precision="int8", available=_with("openvino", "onnxruntime")
    )
    assert choice.backend == "inductor"
    assert "int8" in choice.reason


@pytest.mark.parametrize("name", ["inductor", "openvino", "onnxruntime"])
def test_explicit_backend_passes_through(name: str) -> None:
    choice = resolve_backend(name, batch_size=64, precision="fp32", available=_with())
    assert choice == BackendChoice(name, f"{name} (requested)")


def test_bad_backend_arguments_raise() -> None:
    with pytest.raises(ValueError, match="inductor, openvino, onnxruntime"):
        resolve_backend("tensorrt", batch_size=1, precision="fp32", available=_with())
    with pytest.raises(ValueError, match="resolved"):
        resolve_backend("auto", cpu=SPR, batch_size=1, precision="auto", available=_with())
    with pytest.raises(ValueError, match="batch_size"):
        resolve_backend("auto", cpu=SPR, batch_size=0, precision="fp32", available=_with())


# --- summaries ---------------------------------------------------------------------------------------------


def test_describe_hardware_is_json_safe_and_consistent(cascade: CPUInfo) -> None:
    info = describe_hardware(cascade)
    assert json.loads(json.dumps(info)) == info
    assert info["cpu"] == cascade.model and info["vendor"] == "Intel" and info["cores"] == 4
    assert info["isa"] == ["AVX512-VNNI", "AVX-512", "AVX2"]
    assert (info["native_bf16"], info["native_int8"]) == (False, True)
    assert info["auto_precision"] == "fp32" and "no native bf16" in info["auto_precision_reason"]
    assert info["auto_precision_with_calibration"] == "int8"
    assert info["auto_backend_batch_32"] == "inductor"
    # fp32 at batch 1: a runtime if one is installed here
    assert info["auto_backend_batch_1"] in ("onnxruntime", "openvino", "inductor")
    assert info["auto_backend_batch_1_reason"]
    assert info["auto_small_batch_max"] == SMALL_BATCH_MAX  # AVX-512
    assert info["installed_backends"][0] == "inductor"
    assert set(info["installed_backends"]) <= {"inductor", "onnxruntime", "openvino"}
    assert info["torch_threads"] is None or info["torch_threads"] >= 1


def test_describe_hardware_on_this_machine() -> None:
    info = describe_hardware()
    assert info["cores"] >= 1 and info["cpu"]
    assert info["auto_precision"] in ("fp32", "bf16", "int8")


def test_hardware_line(zen3: CPUInfo, spr: CPUInfo) -> None:
    assert hardware_line(zen3) == "AMD EPYC 7B13 64-Core Processor (2 cores; AVX2, FMA)"
    assert hardware_line(spr).startswith("Intel(R) Xeon(R) Platinum 8480+ (8 cores; AMX-BF16, AMX-INT8, ")
    assert hardware_line(detect_cpu(EPYC_ZEN3, None, cores=1)).endswith("(1 core; AVX2, FMA)")
    assert hardware_line().strip()


def test_resolve_precision_stacklevel_points_at_the_caller(zen3: CPUInfo) -> None:
    def library_call() -> None:  # a library function that wants the warning to name its own caller
        resolve_precision("bf16", cpu=zen3, stacklevel=3)

    with pytest.warns(SlowPrecisionWarning) as record:
        library_call()
    assert record[0].filename == __file__
    assert record[0].lineno != library_call.__code__.co_firstlineno + 1  # not the line inside library_call
