"""The fast inference path: the reparameterization is exact, the compiled modes and the runtimes agree with
eager, and precision="auto" / backend="auto" choose, say and run what the CPU is fast at."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import swiftformer.hardware as hardware
import swiftformer.inference as inference
from _helpers import assert_close_rel, perturb_
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification
from swiftformer.hardware import PrecisionNotHonouredWarning, SlowPrecisionWarning, cpu_info, detect_cpu
from swiftformer.inference import AutoBackend, MicroBatched, fuse, optimize_for_inference

TINY = {"depths": [2, 1, 2, 1], "embed_dims": [8, 12, 16, 24], "num_labels": 5}


def model_for(seed: int = 0, **overrides) -> SwiftFormerForImageClassification:
    torch.manual_seed(seed)
    return perturb_(SwiftFormerForImageClassification(SwiftFormerConfig(**{**TINY, **overrides})), seed).eval()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"attention_variant": "l2"},
        {"use_layer_scale": False},
        {"hidden_act": "relu"},
        {"hidden_act": "gelu_new"},
        {"mlp_ratio": 3, "embed_dims": [8, 8, 16, 16], "downsamples": [False, True, False, True]},
        {"down_patch_size": 5, "down_pad": 2},
    ],
    ids=["default", "l2", "no_layer_scale", "relu", "gelu_new", "mlp3_no_downsample", "patch5"],
)
def test_fuse_is_exact_on_perturbed_weights(overrides):
    model = model_for(**overrides)
    fused = fuse(model)
    x = torch.randn(3, 3, 45, 37)
    with torch.no_grad():
        assert_close_rel(fused(x), model(x).logits, what="fused")


@pytest.mark.parametrize("variant", ["xs", "l3"])
def test_fuse_published_variants(variant):
    model = perturb_(SwiftFormerForImageClassification(SwiftFormerConfig.from_variant(variant, num_labels=10))).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_close_rel(fuse(model)(x), model(x).logits, what=variant)


def test_fuse_has_no_batchnorm_and_one_head():
    fused = fuse(model_for())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert fused.head.out_features == 5
    assert not any(p.requires_grad for p in fused.parameters())


def test_fuse_leaves_the_model_unchanged():
    model = model_for()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fuse(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_model_cast_to_bf16_still_optimizes_to_fp32():
    model = model_for().to(torch.bfloat16)
    fast = optimize_for_inference(model, "fp32", compile=False, backend="inductor")
    assert model.dtype == torch.bfloat16  # left unchanged
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # the bf16 weights' values, computed in float32
        assert_close_rel(fast(x), model.float()(x).logits, what="fp32 from a bf16 model")


def test_optimize_fp32_compiled_matches_eager():
    model = model_for()
    fast = optimize_for_inference(model, "fp32", backend="inductor")
    assert (fast.precision, fast.backend, fast.reason) == ("fp32", "inductor", "fp32 (requested); inductor (requested)")
    x = torch.randn(6, 3, 32, 32)  # micro-batches of 4 and 2 through the first stage
    with torch.no_grad():
        assert_close_rel(fast(x), model(x).logits, what="compiled fp32")


@pytest.mark.parametrize("micro_batch", [3, None])
def test_micro_batching_is_exact(micro_batch):
    """The stem and first stage run 3 images at a time (10 = 3 + 3 + 3 + 1), the rest on all 10."""
    model = model_for(downsamples=[False, True, True, True], embed_dims=[8, 8, 16, 24])
    fast = optimize_for_inference(model, "fp32", compile=False, micro_batch=micro_batch, backend="inductor")
    assert fast.micro_batch == micro_batch
    x = torch.randn(10, 3, 40, 40)
    with torch.no_grad():
        assert_close_rel(fast(x), model(x).logits, what=f"micro_batch={micro_batch}")
        assert_close_rel(fast(x[:1]), model(x[:1]).logits, what="batch 1")
    with pytest.raises(ValueError, match=r"shape \(B, 3, H, W\), got \(3, 40, 40\)"):
        fast(x[0])
    with pytest.raises(ValueError, match=r"floating-point tensor, got torch\.uint8"):  # raw bytes: not normalized
        fast(torch.zeros(1, 3, 40, 40, dtype=torch.uint8))
    with torch.no_grad():  # float64 is cast to the weights' dtype
        assert_close_rel(fast(x[:2].double()), model(x[:2]).logits, what="float64 input")
    with pytest.raises(ValueError, match="micro_batch must be a positive int, None or 'auto', got 0"):
        optimize_for_inference(model, "fp32", micro_batch=0)


def test_micro_batch_auto_is_per_precision():
    model = model_for()
    assert optimize_for_inference(model, "fp32", compile=False, backend="inductor").micro_batch == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SlowPrecisionWarning)  # bf16 on a CPU without it: slow, but runs
        assert optimize_for_inference(model, "bf16", compile=False, backend="inductor").micro_batch == 8


def openvino_backend_checks() -> None:
    """The OpenVINO backend agrees with eager (dynamic batch, height, width) and rejects bad input."""
    model = model_for(image_size=64)
    fast = optimize_for_inference(model, "fp32", backend="openvino")
    assert fast.hint == "f32"  # explicit: OpenVINO would pick bf16 on AMX CPUs by itself
    assert (fast.inference_precision, fast.precision, fast.backend) == ("f32", "fp32", "openvino")
    with torch.no_grad():
        for shape in ((1, 3, 64, 64), (5, 3, 64, 64), (2, 3, 80, 96)):
            x = torch.randn(*shape)
            assert_close_rel(fast(x), model(x).logits, what=f"openvino {shape}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bf16 = optimize_for_inference(model, "bf16", backend="openvino")
        x = torch.randn(16, 3, 64, 64)
        assert_close_rel(bf16(x), model(x).logits, rel=0.1, what="openvino bf16")
    # What the compiled model says it runs, never just the hint that was passed in.
    assert bf16.hint == "bf16"
    assert bf16.precision == {"f32": "fp32", "bf16": "bf16"}[bf16.inference_precision]
    not_honoured = [w for w in caught if issubclass(w.category, PrecisionNotHonouredWarning)]
    assert (len(not_honoured) == 1) is (bf16.precision != "bf16"), [str(w.message) for w in caught]
    # OpenVINO falls back to f32, it does not emulate: no "slow bf16" warning on this backend
    assert not [w for w in caught if issubclass(w.category, SlowPrecisionWarning)]
    cpu = cpu_info()
    if cpu.native_bf16:  # AVX512-BF16 or AMX: OpenVINO runs bf16 as asked
        assert bf16.precision == "bf16" and bf16.reason.startswith("bf16 (requested)")
    elif "avx_ne_convert" not in cpu.flags:  # AVX2-only (this project's EPYC): f32, said so and warned
        assert (bf16.inference_precision, bf16.precision) == ("f32", "fp32")
        assert bf16.reason.startswith("fp32: OpenVINO's CPU plugin runs f32 although bf16 was requested")
        assert "runs f32" in str(not_honoured[0].message) and not_honoured[0].filename == __file__
    with pytest.raises(ValueError, match=r"shape \(B, 3, H, W\)"):
        fast(torch.randn(2, 1, 64, 64))
    with pytest.raises(ValueError, match="int8 is not offered with backend='openvino'"):
        optimize_for_inference(model, "int8", backend="openvino")
    with pytest.raises(ValueError, match="backend must be one of auto, inductor, openvino, onnxruntime, got 'tvm'"):
        optimize_for_inference(model, "fp32", backend="tvm")


def test_openvino_backend_matches_eager():
    """Run in a fresh process: OpenVINO's CPU plugin (TBB threads, AMX state) left in the test process
    has crashed later TensorFlow tests of the same session."""
    pytest.importorskip("openvino")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root / "tests")])}
    code = "import test_inference; test_inference.openvino_backend_checks(); print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_optimize_bf16_agrees_with_fp32():
    model = model_for()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SlowPrecisionWarning)  # bf16 on a CPU without it: slow, but runs
        fast = optimize_for_inference(model, "bf16", compile=False, backend="inductor")
    x = torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        ours, expected = fast(x), model(x).logits
    assert ours.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the original is untouched
    agreement = (ours.argmax(-1) == expected.argmax(-1)).float().mean().item()
    assert agreement >= 0.9
    assert_close_rel(ours, expected, rel=0.1, what="bf16")


@pytest.mark.filterwarnings("ignore::swiftformer.hardware.SlowPrecisionWarning")  # int8 without VNNI
def test_optimize_rejects_bad_precision_and_headless_models():
    with pytest.raises(ValueError, match="precision"):
        optimize_for_inference(model_for(), "fp8")
    with pytest.raises(ValueError, match="num_labels"):
        fuse(model_for(num_labels=0))
    with pytest.raises(ValueError, match="calibration"):
        pytest.importorskip("torchao")
        optimize_for_inference(model_for(), "int8")


@pytest.mark.filterwarnings("ignore::swiftformer.hardware.SlowPrecisionWarning")  # int8 without VNNI
def test_optimize_int8_agrees_with_fp32():
    pytest.importorskip("torchao")
    model = model_for()
    calibration = torch.randn(32, 3, 32, 32)
    fast = optimize_for_inference(model, "int8", calibration=calibration, compile=False)
    assert isinstance(fast, MicroBatched) and (fast.precision, fast.backend) == ("int8", "inductor")  # auto: inductor
    x = torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        ours, expected = fast(x), model(x).logits
    agreement = (ours.argmax(-1) == expected.argmax(-1)).float().mean().item()
    assert agreement >= 0.8
    assert fast.micro_batch == 4  # the first stage of int8 is micro-batched too ...
    whole = optimize_for_inference(model, "int8", calibration=calibration, compile=False, micro_batch=None)
    with torch.no_grad():
        assert_close_rel(ours, whole(x), rel=1e-5, what="int8 micro-batched")  # ... with the same result
    with pytest.raises(ValueError, match=r"shape \(B, 3, H, W\), got \(3, 32, 32\)"):
        optimize_for_inference(model, "int8", calibration=[calibration[0]], compile=False)
    with pytest.raises(ValueError, match="empty"):
        optimize_for_inference(model, "int8", calibration=[], compile=False)
    with pytest.raises(ValueError, match=r"calibrated and exported at 32×32; got pixel_values of 40×40"):
        fast(torch.randn(2, 3, 40, 40))
    with pytest.raises(ValueError, match="share one height × width"):
        optimize_for_inference(model, "int8", calibration=[calibration[:2], torch.randn(2, 3, 40, 40)], compile=False)


# ------------------------------------------------------------------------------ "auto", ONNX Runtime
SAPPHIRE_RAPIDS_FLAGS = "avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 amx_bf16 amx_int8"


def fake_cpu(monkeypatch, flags: str, model_name: str = "Fake CPU") -> None:
    """Make precision="auto" see a CPU with these /proc/cpuinfo flags."""
    text = f"processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: {model_name}\nflags\t\t: sse2 {flags}\n"
    monkeypatch.setattr(hardware, "cpu_info", lambda: detect_cpu(text, None, cores=2))


def only_onnxruntime(name: str) -> bool:
    return name == "onnxruntime"


@pytest.mark.parametrize(
    "flags, calibration, precision, reason",
    [
        ("avx2 fma", False, "fp32", "fp32: this CPU has no native bf16"),
        ("avx2 fma", True, "fp32", "fp32: this CPU has no native bf16"),  # no VNNI: int8 would gain nothing
        (SAPPHIRE_RAPIDS_FLAGS, False, "bf16", "bf16 on AMX"),
        (SAPPHIRE_RAPIDS_FLAGS, True, "bf16", "bf16 on AMX"),  # bf16 measured faster than int8 on AMX
        ("avx2 fma avx512f avx512_bf16", False, "bf16", "bf16: AVX512-BF16"),
    ],
)
def test_auto_precision_follows_the_cpu_flags(monkeypatch, flags, calibration, precision, reason):
    fake_cpu(monkeypatch, flags)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns
        fast = optimize_for_inference(
            model_for(), compile=False, calibration=torch.randn(4, 3, 32, 32) if calibration else None
        )
    assert isinstance(fast, AutoBackend) and fast.backend == "auto"
    assert fast.precision == precision and fast.reason.startswith(reason)
    assert not fast.parts  # nothing built before the first call


def test_auto_precision_is_int8_with_vnni_and_calibration(monkeypatch):
    pytest.importorskip("torchao")
    fake_cpu(monkeypatch, "avx2 fma avx512f avx512_vnni")
    model = model_for()
    fast = optimize_for_inference(model, compile=False, calibration=torch.randn(8, 3, 32, 32))
    assert isinstance(fast, MicroBatched)  # int8 runs on inductor only
    assert (fast.precision, fast.backend) == ("int8", "inductor")
    assert (
        fast.reason
        == "int8 on AVX512-VNNI with calibration data; inductor: int8 runs through torch.compile (OpenVINO int8 needs NNCF)"
    )


def test_explicit_bf16_without_native_bf16_warns_at_the_callers_line(monkeypatch):
    fake_cpu(monkeypatch, "avx2 fma", model_name="AMD EPYC 7B13")
    with pytest.warns(SlowPrecisionWarning, match="AMD EPYC 7B13.*avx512_bf16.*slower than fp32") as record:
        fast = optimize_for_inference(model_for(), "bf16", compile=False, backend="inductor")
    assert len(record) == 1 and record[0].filename == __file__  # points at this call, not the library
    assert fast.precision == "bf16" and "emulated" in fast.reason


def test_the_choice_is_logged_once_at_info(monkeypatch, caplog):
    fake_cpu(monkeypatch, "avx2 fma")
    with caplog.at_level(logging.INFO, logger="swiftformer.inference"):
        fast = optimize_for_inference(model_for(), compile=False)
    records = [r for r in caplog.records if r.name == "swiftformer.inference"]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert records[0].getMessage() == fast.reason and "\n" not in fast.reason


def test_auto_backend_dispatches_by_batch_size(monkeypatch):
    """With AVX-512: runtimes up to batch 4, inductor above when compiled; uncompiled, the runtime at every
    size; AVX2 only: the runtime at every fp32 batch size; inputs a runtime graph cannot take (below
    min_spatial_size) on inductor. Decided without building anything."""
    fake_cpu(monkeypatch, "avx512f avx2 fma")
    monkeypatch.setattr(hardware, "_importable", only_onnxruntime)
    compiled = optimize_for_inference(model_for(image_size=64))
    assert [compiled.backend_for(b) for b in (1, 4, 5, 32)] == ["onnxruntime"] * 2 + ["inductor"] * 2
    assert compiled.reason.endswith("onnxruntime up to batch 4 (lowest latency), inductor above (best throughput)")
    fake_cpu(monkeypatch, "avx2 fma")
    avx2 = optimize_for_inference(model_for(image_size=64))
    assert [avx2.backend_for(b) for b in (1, 4, 5, 32)] == ["onnxruntime"] * 4
    assert "onnxruntime at every batch size" in avx2.reason and "without AVX-512" in avx2.reason
    fake_cpu(monkeypatch, "avx512f avx2 fma")
    low = inference.min_spatial_size(compiled.config)
    assert compiled.backend_for(1, (low - 1, 64)) == "inductor" and compiled.backend_for(1, (low, 64)) == "onnxruntime"
    eager = optimize_for_inference(model_for(image_size=64), compile=False)
    assert [eager.backend_for(b) for b in (1, 32)] == ["onnxruntime", "onnxruntime"]
    assert "onnxruntime at every batch size" in eager.reason
    monkeypatch.setattr(hardware, "_importable", lambda name: False)
    bare = optimize_for_inference(model_for(image_size=64))
    assert bare.backend_for(1) == "inductor" and "not installed" in bare.reason
    assert not compiled.parts and not eager.parts and not bare.parts


def test_auto_backend_matches_eager_at_batch_1_and_8():
    """The default module (precision and backend "auto", compiled) on this machine's real CPU and packages."""
    pytest.importorskip("onnxruntime")
    model = model_for(image_size=64)
    fast = optimize_for_inference(model)
    assert fast.backend_for(1) == "onnxruntime" or fast.precision == "bf16"  # bf16 small batches: OpenVINO
    every_batch = hardware.small_batch_max(fast.precision) is None  # AVX2 only: the runtime takes batch 8 too
    assert fast.backend_for(8) == (fast.backend_for(1) if every_batch else "inductor")
    rel = 1e-4 if fast.precision == "fp32" else 0.1
    with torch.inference_mode():  # built lazily inside the caller's inference_mode, as predict does
        for batch in (1, 8):
            x = torch.randn(batch, 3, 64, 64)
            assert_close_rel(fast(x), model(x).logits, rel=rel, what=f"auto at batch {batch}")
    assert set(fast.parts) == {fast.backend_for(1), fast.backend_for(8)}


def test_auto_backend_falls_back_to_inductor_when_a_runtime_fails(monkeypatch):
    fake_cpu(monkeypatch, "avx2 fma")
    monkeypatch.setattr(hardware, "_importable", only_onnxruntime)

    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(inference, "ONNXRuntimeClassifier", broken)
    model = model_for(image_size=64)
    fast = optimize_for_inference(model, compile=False)
    x = torch.randn(2, 3, 64, 64)
    with pytest.warns(RuntimeWarning, match="could not build onnxruntime .*exporter exploded"), torch.no_grad():
        out = fast(x)
    assert_close_rel(out, model(x).logits, what="fallback")
    assert fast.backend_for(1) == "inductor" and list(fast.parts) == ["inductor"]


def test_onnxruntime_backend_matches_eager():
    pytest.importorskip("onnxruntime")
    model = model_for(image_size=64)
    fast = optimize_for_inference(model, "fp32", backend="onnxruntime")
    assert (fast.precision, fast.backend) == ("fp32", "onnxruntime")
    assert fast.threads == torch.get_num_threads()
    with torch.no_grad():
        for shape in ((1, 3, 64, 64), (5, 3, 64, 64), (2, 3, 80, 96)):  # dynamic batch, height and width
            x = torch.randn(*shape)
            assert_close_rel(fast(x), model(x).logits, rel=1e-5, what=f"onnxruntime {shape}")
    with pytest.raises(ValueError, match=r"shape \(B, 3, H, W\)"):
        fast(torch.randn(2, 1, 64, 64))
    for precision in ("bf16", "int8"):
        with pytest.raises(ValueError, match=f"{precision} is not offered with backend='onnxruntime'"):
            optimize_for_inference(model, precision, backend="onnxruntime")


def test_onnxruntime_backend_with_auto_precision_is_fp32_even_on_amx(monkeypatch):
    """precision="auto" picks what the chosen backend can run: bf16 on AMX, but ONNX Runtime has no bf16."""
    pytest.importorskip("onnxruntime")
    fake_cpu(monkeypatch, SAPPHIRE_RAPIDS_FLAGS)
    monkeypatch.setattr(inference, "ONNXRuntimeClassifier", lambda fused, config: torch.nn.Identity())
    fast = optimize_for_inference(model_for(), backend="onnxruntime")
    assert fast.reason == "fp32: onnxruntime runs fp32 only; onnxruntime (requested)"
