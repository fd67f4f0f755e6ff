"""The "auto" policy (swiftformer.inference.auto) on injected CPUs: the precision and backend picks for the four
kinds of CPU of the pool (AMX, AVX512-BF16 without AMX, AVX2 + AVX-VNNI, AVX2 only) and a few more, the reasons
given, and optimize_for_inference / AutoBackend running those picks. Nothing here depends on the CPU the tests run
on, except the one test that says so."""

from __future__ import annotations

import json
import logging
import warnings

import pytest
import torch

import swiftformer.hardware as hardware
import swiftformer.inference.auto as auto
from _helpers import assert_close_rel, tiny_classifier
from swiftformer.hardware import CPUInfo, detect_cpu
from swiftformer.inference import (
    SMALL_BATCH_MAX,
    AutoBackend,
    BackendChoice,
    MicroBatched,
    PrecisionChoice,
    SlowPrecisionWarning,
    describe_hardware,
    min_spatial_size,
    optimize_for_inference,
    resolve_backend,
    resolve_precision,
    small_batch_max,
)

# --- the CPUs ----------------------------------------------------------------------------------------------
_BASE = "fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt avx f16c"


def cpu(vendor: str, model: str, flags: str, capability: str | None, cores: int = 8) -> CPUInfo:
    """A CPUInfo from a two-processor /proc/cpuinfo text with these flags (and the base every x86-64 has)."""
    block = f"vendor_id\t: {vendor}\nmodel name\t: {model}\nflags\t\t: {_BASE} {flags}\n"
    return detect_cpu(f"processor\t: 0\n{block}\nprocessor\t: 1\n{block}", capability, cores=cores)


_AVX512 = "avx512f avx512dq avx512cd avx512bw avx512vl"
SPR = cpu(  # Sapphire Rapids: AMX
    "GenuineIntel",
    "Intel(R) Xeon(R) Platinum 8480+",
    f"fma avx2 {_AVX512} avx512_vnni avx512_bf16 avx_vnni amx_bf16 amx_tile amx_int8",
    "AVX512",
)
ZEN4 = cpu("AuthenticAMD", "AMD EPYC 9654 96-Core Processor", f"fma avx2 {_AVX512} avx512_vnni avx512_bf16", "AVX512")
SIERRA_FOREST = cpu("GenuineIntel", "Intel(R) Xeon(R) 6780E", "fma avx2 avx_vnni", "AVX2")  # AVX-VNNI, no AVX-512
ZEN3 = cpu("AuthenticAMD", "AMD EPYC 7B13 64-Core Processor", "fma avx2 bmi1 bmi2 sha_ni", "AVX2", cores=2)
CASCADE_LAKE = cpu(
    "GenuineIntel", "Intel(R) Xeon(R) Platinum 8280 CPU @ 2.70GHz", f"fma avx2 {_AVX512} avx512_vnni", "AVX512"
)
NO_CPUINFO = detect_cpu(None, "AVX2", cores=3)  # macOS, Windows: torch's dispatch level only

FOUR = {"amx": SPR, "avx512-bf16": ZEN4, "avx2-vnni": SIERRA_FOREST, "avx2": ZEN3}
# (CPU, calibration images given) -> (precision, backend at batch 1, backend at batch 32), both runtimes installed.
EXPECTED = {
    ("amx", False): ("bf16", "openvino", "inductor"),
    ("amx", True): ("bf16", "openvino", "inductor"),  # bf16 measured faster than int8 on AMX
    ("avx512-bf16", False): ("bf16", "openvino", "inductor"),
    ("avx512-bf16", True): ("bf16", "openvino", "inductor"),
    ("avx2-vnni", False): ("fp32", "onnxruntime", "onnxruntime"),  # no AVX-512: the runtime at every fp32 batch
    ("avx2-vnni", True): ("int8", "inductor", "inductor"),  # int8 runs on inductor only
    ("avx2", False): ("fp32", "onnxruntime", "onnxruntime"),
    ("avx2", True): ("fp32", "onnxruntime", "onnxruntime"),  # no int8 dot products: calibration changes nothing
}
# How the precision's reason starts, per CPU (uncalibrated, calibrated).
REASONS = {
    "amx": ("bf16 on AMX", "bf16 on AMX (preferred over int8: measured faster on AMX)"),
    "avx512-bf16": ("bf16: AVX512-BF16", "bf16: AVX512-BF16 (preferred over int8)"),
    "avx2-vnni": ("fp32: this CPU has no native bf16", "int8 on AVX-VNNI with calibration data"),
    "avx2": ("fp32: this CPU has no native bf16", "fp32: this CPU has no native bf16"),
}


def _with(*installed: str):
    return lambda name: name in installed


BOTH = _with("openvino", "onnxruntime")


def _no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        return fn(*args, **kwargs)


def pretend_cpu(monkeypatch: pytest.MonkeyPatch, cpu: CPUInfo, installed=BOTH) -> None:
    """Make every default ("this machine") decision see ``cpu`` and these runtimes installed."""
    monkeypatch.setattr(hardware, "cpu_info", lambda: cpu)
    monkeypatch.setattr(auto, "_importable", installed)


# --- the four CPUs of the pool ------------------------------------------------------------------------------
@pytest.mark.parametrize("calibration", [False, True], ids=["uncalibrated", "calibrated"])
@pytest.mark.parametrize("name", FOUR)
def test_the_policy_on_the_four_cpus(name: str, calibration: bool) -> None:
    cpu = FOUR[name]
    precision, at_1, at_32 = EXPECTED[name, calibration]
    choice = _no_warnings(resolve_precision, "auto", cpu=cpu, calibration_given=calibration)  # auto never warns
    assert choice.precision == precision and choice.reason.startswith(REASONS[name][calibration])
    picks = [resolve_backend("auto", batch_size=b, precision=precision, cpu=cpu, available=BOTH) for b in (1, 32)]
    assert [p.backend for p in picks] == [at_1, at_32], [p.reason for p in picks]


@pytest.mark.parametrize("calibration", [False, True], ids=["uncalibrated", "calibrated"])
@pytest.mark.parametrize("name", FOUR)
def test_each_fake_cpu_decides_as_its_realistic_twin(name: str, calibration: bool) -> None:
    """CI runs the suite as hardware.FAKE_CPUS (--fake-cpu); those must be the CPUs this module tests, decision
    for decision, or CI would exercise another policy than the one tested here."""
    fake, real = hardware.fake_cpu(name, cores=FOUR[name].cores), FOUR[name]
    assert set(hardware.FAKE_CPUS) == set(FOUR)
    assert fake.isa_features == real.isa_features and fake.torch_capability == real.torch_capability
    for cpu in (fake, real):
        choice = resolve_precision("auto", cpu=cpu, calibration_given=calibration)
        picks = [
            resolve_backend("auto", batch_size=b, precision=choice.precision, cpu=cpu, available=BOTH) for b in (1, 32)
        ]
        assert (choice.precision, *(p.backend for p in picks)) == EXPECTED[name, calibration], cpu.model


@pytest.mark.parametrize("calibration", [False, True], ids=["uncalibrated", "calibrated"])
@pytest.mark.parametrize("name", FOUR)
def test_optimize_for_inference_on_the_four_cpus(monkeypatch, name: str, calibration: bool) -> None:
    """The same picks through optimize_for_inference with the CPU injected; nothing is built before a call,
    except int8 (quantized when it is built)."""
    precision, at_1, at_32 = EXPECTED[name, calibration]
    if precision == "int8":
        pytest.importorskip("torchao")
    pretend_cpu(monkeypatch, FOUR[name])
    calibration_images = torch.randn(4, 3, 64, 64) if calibration else None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns
        fast = optimize_for_inference(tiny_classifier(image_size=64), calibration=calibration_images, compile=False)
    assert fast.precision == precision and fast.reason.startswith(REASONS[name][calibration])
    if precision == "int8":
        assert isinstance(fast, MicroBatched) and fast.backend == "inductor"
        assert fast.reason.endswith("; inductor: int8 runs through torch.compile (OpenVINO int8 needs NNCF)")
        return
    assert isinstance(fast, AutoBackend) and fast.backend == "auto" and not fast.parts
    # uncompiled here, so the runtime takes every batch; compiled, AVX-512 CPUs send batch 32 to inductor
    assert [fast.backend_for(b) for b in (1, 32)] == [at_1, at_1]
    compiled = optimize_for_inference(tiny_classifier(image_size=64), calibration=calibration_images)
    assert [compiled.backend_for(b) for b in (1, 32)] == [at_1, at_32]
    assert not compiled.parts


@pytest.mark.parametrize("name", FOUR)
def test_describe_hardware_on_the_four_cpus(monkeypatch, name: str) -> None:
    monkeypatch.setattr(auto, "_importable", BOTH)
    info = describe_hardware(FOUR[name])
    assert json.loads(json.dumps(info)) == info
    precision, at_1, at_32 = EXPECTED[name, False]
    assert (info["auto_precision"], info["auto_backend_batch_1"], info["auto_backend_batch_32"]) == (
        precision,
        at_1,
        at_32,
    )
    assert info["auto_precision_with_calibration"] == EXPECTED[name, True][0]
    assert info["auto_small_batch_max"] == (None if at_32 == "onnxruntime" else SMALL_BATCH_MAX)
    assert info["installed_backends"] == ["inductor", "onnxruntime", "openvino"]
    assert info["cpu"] == FOUR[name].model and info["isa"] == list(FOUR[name].isa_features)


# --- precision ---------------------------------------------------------------------------------------------
@pytest.fixture
def spr() -> CPUInfo:
    return SPR


@pytest.fixture
def zen3() -> CPUInfo:
    return ZEN3


@pytest.fixture
def cascade() -> CPUInfo:
    return CASCADE_LAKE


@pytest.fixture
def no_cpuinfo() -> CPUInfo:
    return NO_CPUINFO


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
    choice = resolve_precision("auto", cpu=ZEN4, calibration_given=True)
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
    assert info["cpu"] == cascade.model and info["vendor"] == "Intel" and info["cores"] == 8
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
    assert list(info)[: len(hardware.describe_cpu(cascade))] == list(hardware.describe_cpu(cascade))  # facts first


def test_describe_hardware_on_this_machine() -> None:
    info = describe_hardware()
    assert info["cores"] >= 1 and info["cpu"]
    assert info["auto_precision"] in ("fp32", "bf16", "int8")


def test_resolve_precision_stacklevel_points_at_the_caller(zen3: CPUInfo) -> None:
    def library_call() -> None:  # a library function that wants the warning to name its own caller
        resolve_precision("bf16", cpu=zen3, stacklevel=3)

    with pytest.warns(SlowPrecisionWarning) as record:
        library_call()
    assert record[0].filename == __file__
    assert record[0].lineno != library_call.__code__.co_firstlineno + 1  # not the line inside library_call


# --- optimize_for_inference and AutoBackend -------------------------------------------------------------
def pretend_flags(monkeypatch, flags: str, model_name: str = "Fake CPU") -> None:
    """Make precision="auto" see a CPU with these /proc/cpuinfo flags (the runtimes as installed here)."""
    monkeypatch.setattr(hardware, "cpu_info", lambda: cpu("GenuineIntel", model_name, flags, None, cores=2))


def only_onnxruntime(name: str) -> bool:
    return name == "onnxruntime"


def test_explicit_bf16_without_native_bf16_warns_at_the_callers_line(monkeypatch):
    pretend_flags(monkeypatch, "avx2 fma", model_name="AMD EPYC 7B13")
    with pytest.warns(SlowPrecisionWarning, match="AMD EPYC 7B13.*avx512_bf16.*slower than fp32") as record:
        fast = optimize_for_inference(tiny_classifier(), "bf16", compile=False, backend="inductor")
    assert len(record) == 1 and record[0].filename == __file__  # points at this call, not the library
    assert fast.precision == "bf16" and "emulated" in fast.reason


def test_the_choice_is_logged_once_at_info(monkeypatch, caplog):
    pretend_flags(monkeypatch, "avx2 fma")
    with caplog.at_level(logging.INFO, logger="swiftformer.inference"):
        fast = optimize_for_inference(tiny_classifier(), compile=False)
    records = [r for r in caplog.records if r.name == "swiftformer.inference"]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert records[0].getMessage() == fast.reason and "\n" not in fast.reason


def test_auto_backend_dispatches_by_batch_size(monkeypatch):
    """With AVX-512: runtimes up to batch 4, inductor above when compiled; uncompiled, the runtime at every
    size; AVX2 only: the runtime at every fp32 batch size; inputs a runtime graph cannot take (below
    min_spatial_size) on inductor. Decided without building anything."""
    pretend_flags(monkeypatch, "avx512f avx2 fma")
    monkeypatch.setattr(auto, "_importable", only_onnxruntime)
    compiled = optimize_for_inference(tiny_classifier(image_size=64))
    assert [compiled.backend_for(b) for b in (1, 4, 5, 32)] == ["onnxruntime"] * 2 + ["inductor"] * 2
    assert compiled.reason.endswith("onnxruntime up to batch 4 (lowest latency), inductor above (best throughput)")
    pretend_flags(monkeypatch, "avx2 fma")
    avx2 = optimize_for_inference(tiny_classifier(image_size=64))
    assert [avx2.backend_for(b) for b in (1, 4, 5, 32)] == ["onnxruntime"] * 4
    assert "onnxruntime at every batch size" in avx2.reason and "without AVX-512" in avx2.reason
    pretend_flags(monkeypatch, "avx512f avx2 fma")
    low = min_spatial_size(compiled.config)
    assert compiled.backend_for(1, (low - 1, 64)) == "inductor" and compiled.backend_for(1, (low, 64)) == "onnxruntime"
    eager = optimize_for_inference(tiny_classifier(image_size=64), compile=False)
    assert [eager.backend_for(b) for b in (1, 32)] == ["onnxruntime", "onnxruntime"]
    assert "onnxruntime at every batch size" in eager.reason
    monkeypatch.setattr(auto, "_importable", lambda name: False)
    bare = optimize_for_inference(tiny_classifier(image_size=64))
    assert bare.backend_for(1) == "inductor" and "not installed" in bare.reason
    assert not compiled.parts and not eager.parts and not bare.parts


@pytest.mark.slow  # compiles at batch 8 where the CPU has AVX-512
def test_auto_backend_matches_eager_at_batch_1_and_8():
    """The default module (precision and backend "auto", compiled) on this machine's real CPU and packages."""
    pytest.importorskip("onnxruntime")
    model = tiny_classifier(image_size=64)
    fast = optimize_for_inference(model)
    assert fast.backend_for(1) == "onnxruntime" or fast.precision == "bf16"  # bf16 small batches: OpenVINO
    every_batch = small_batch_max(fast.precision) is None  # AVX2 only: the runtime takes batch 8 too
    assert fast.backend_for(8) == (fast.backend_for(1) if every_batch else "inductor")
    rel = 1e-4 if fast.precision == "fp32" else 0.1
    with torch.inference_mode():  # built lazily inside the caller's inference_mode, as predict does
        for batch in (1, 8):
            x = torch.randn(batch, 3, 64, 64)
            assert_close_rel(fast(x), model(x).logits, rel=rel, what=f"auto at batch {batch}")
    assert set(fast.parts) == {fast.backend_for(1), fast.backend_for(8)}


def test_auto_backend_falls_back_to_inductor_when_a_runtime_fails(monkeypatch):
    pretend_flags(monkeypatch, "avx2 fma")
    monkeypatch.setattr(auto, "_importable", only_onnxruntime)

    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(auto, "ONNXRuntimeClassifier", broken)
    model = tiny_classifier(image_size=64)
    fast = optimize_for_inference(model, compile=False)
    x = torch.randn(2, 3, 64, 64)
    with pytest.warns(RuntimeWarning, match="could not build onnxruntime .*exporter exploded"), torch.no_grad():
        out = fast(x)
    assert_close_rel(out, model(x).logits, what="fallback")
    assert fast.backend_for(1) == "inductor" and list(fast.parts) == ["inductor"]


def test_onnxruntime_backend_with_auto_precision_is_fp32_even_on_amx(monkeypatch):
    """precision="auto" picks what the chosen backend can run: bf16 on AMX, but ONNX Runtime has no bf16."""
    pytest.importorskip("onnxruntime")
    pretend_cpu(monkeypatch, SPR)
    monkeypatch.setattr(auto, "ONNXRuntimeClassifier", lambda fused, config: torch.nn.Identity())
    fast = optimize_for_inference(tiny_classifier(), backend="onnxruntime")
    assert fast.reason == "fp32: onnxruntime runs fp32 only; onnxruntime (requested)"
