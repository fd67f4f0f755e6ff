"""The fast inference path: the reparameterization is exact, the compiled modes agree with eager."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _helpers import assert_close_rel, perturb_
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification
from swiftformer.inference import fuse, optimize_for_inference

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
    fast = optimize_for_inference(model, "fp32", compile=False)
    assert model.dtype == torch.bfloat16  # left unchanged
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # the bf16 weights' values, computed in float32
        assert_close_rel(fast(x), model.float()(x).logits, what="fp32 from a bf16 model")


def test_optimize_fp32_compiled_matches_eager():
    model = model_for()
    fast = optimize_for_inference(model, "fp32")
    x = torch.randn(6, 3, 32, 32)  # micro-batches of 4 and 2 through the first stage
    with torch.no_grad():
        assert_close_rel(fast(x), model(x).logits, what="compiled fp32")


@pytest.mark.parametrize("micro_batch", [3, None])
def test_micro_batching_is_exact(micro_batch):
    """The stem and first stage run 3 images at a time (10 = 3 + 3 + 3 + 1), the rest on all 10."""
    model = model_for(downsamples=[False, True, True, True], embed_dims=[8, 8, 16, 24])
    fast = optimize_for_inference(model, "fp32", compile=False, micro_batch=micro_batch)
    assert fast.micro_batch == micro_batch
    x = torch.randn(10, 3, 40, 40)
    with torch.no_grad():
        assert_close_rel(fast(x), model(x).logits, what=f"micro_batch={micro_batch}")
        assert_close_rel(fast(x[:1]), model(x[:1]).logits, what="batch 1")
    with pytest.raises(ValueError, match=r"shape \(B, 3, H, W\), got \(3, 40, 40\)"):
        fast(x[0])
    with pytest.raises(ValueError, match="floating-point tensor, got torch.uint8"):  # raw bytes: not normalized
        fast(torch.zeros(1, 3, 40, 40, dtype=torch.uint8))
    with torch.no_grad():  # float64 is cast to the weights' dtype
        assert_close_rel(fast(x[:2].double()), model(x[:2]).logits, what="float64 input")
    with pytest.raises(ValueError, match="micro_batch must be a positive int, None or 'auto', got 0"):
        optimize_for_inference(model, "fp32", micro_batch=0)


def test_micro_batch_auto_is_per_precision():
    model = model_for()
    assert optimize_for_inference(model, "fp32", compile=False).micro_batch == 4
    assert optimize_for_inference(model, "bf16", compile=False).micro_batch == 8


def openvino_backend_checks() -> None:
    """The OpenVINO backend agrees with eager (dynamic batch, height, width) and rejects bad input."""
    model = model_for(image_size=64)
    fast = optimize_for_inference(model, "fp32", backend="openvino")
    assert fast.hint == "f32"  # explicit: OpenVINO would pick bf16 on AMX CPUs by itself
    with torch.no_grad():
        for shape in ((1, 3, 64, 64), (5, 3, 64, 64), (2, 3, 80, 96)):
            x = torch.randn(*shape)
            assert_close_rel(fast(x), model(x).logits, what=f"openvino {shape}")
        bf16 = optimize_for_inference(model, "bf16", backend="openvino")
        x = torch.randn(16, 3, 64, 64)
        assert_close_rel(bf16(x), model(x).logits, rel=0.1, what="openvino bf16")
    with pytest.raises(ValueError, match=r"shape \(B, 3, H, W\)"):
        fast(torch.randn(2, 1, 64, 64))
    with pytest.raises(ValueError, match="int8 is not offered with backend='openvino'"):
        optimize_for_inference(model, "int8", backend="openvino")
    with pytest.raises(ValueError, match="backend must be one of inductor, openvino, got 'tvm'"):
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
    fast = optimize_for_inference(model, "bf16", compile=False)
    x = torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        ours, expected = fast(x), model(x).logits
    assert ours.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the original is untouched
    agreement = (ours.argmax(-1) == expected.argmax(-1)).float().mean().item()
    assert agreement >= 0.9
    assert_close_rel(ours, expected, rel=0.1, what="bf16")


def test_optimize_rejects_bad_precision_and_headless_models():
    with pytest.raises(ValueError, match="precision"):
        optimize_for_inference(model_for(), "fp8")
    with pytest.raises(ValueError, match="num_labels"):
        fuse(model_for(num_labels=0))
    with pytest.raises(ValueError, match="calibration"):
        pytest.importorskip("torchao")
        optimize_for_inference(model_for(), "int8")


def test_optimize_int8_agrees_with_fp32():
    pytest.importorskip("torchao")
    model = model_for()
    calibration = torch.randn(32, 3, 32, 32)
    fast = optimize_for_inference(model, "int8", calibration=calibration, compile=False)
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
