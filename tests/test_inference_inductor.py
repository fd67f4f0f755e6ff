"""The torch backend (swiftformer.inference.inductor): micro-batching is exact, compiled fp32 matches eager,
bf16 and int8 agree with fp32 within the precision they state."""

from __future__ import annotations

import warnings

import pytest
import torch

from _helpers import assert_close_rel, tiny_classifier
from swiftformer.inference import MicroBatched, SlowPrecisionWarning, optimize_for_inference


@pytest.mark.slow
def test_optimize_fp32_compiled_matches_eager():
    model = tiny_classifier()
    fast = optimize_for_inference(model, "fp32", backend="inductor")
    assert (fast.precision, fast.backend, fast.reason) == ("fp32", "inductor", "fp32 (requested); inductor (requested)")
    x = torch.randn(6, 3, 32, 32)  # micro-batches of 4 and 2 through the first stage
    with torch.no_grad():
        assert_close_rel(fast(x), model(x).logits, what="compiled fp32")


@pytest.mark.parametrize("micro_batch", [3, None])
@pytest.mark.slow
def test_micro_batching_is_exact(micro_batch):
    """The stem and first stage run 3 images at a time (10 = 3 + 3 + 3 + 1), the rest on all 10."""
    model = tiny_classifier(downsamples=[False, True, True, True], embed_dims=[8, 8, 16, 24])
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
    model = tiny_classifier()
    assert optimize_for_inference(model, "fp32", compile=False, backend="inductor").micro_batch == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SlowPrecisionWarning)  # bf16 on a CPU without it: slow, but runs
        assert optimize_for_inference(model, "bf16", compile=False, backend="inductor").micro_batch == 8


def test_optimize_bf16_agrees_with_fp32():
    """bf16 weights and activations: 90 % top-1 agreement and 0.1 relative on random weights (nearly tied logits)."""
    model = tiny_classifier()
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


@pytest.mark.filterwarnings("ignore::swiftformer.inference.SlowPrecisionWarning")  # int8 without VNNI
def test_optimize_rejects_bad_precision_and_int8_without_calibration():
    with pytest.raises(ValueError, match="precision"):
        optimize_for_inference(tiny_classifier(), "fp8")
    with pytest.raises(ValueError, match="calibration"):
        pytest.importorskip("torchao")
        optimize_for_inference(tiny_classifier(), "int8")


@pytest.mark.filterwarnings("ignore::swiftformer.inference.SlowPrecisionWarning")  # int8 without VNNI
@pytest.mark.slow
def test_optimize_int8_agrees_with_fp32():
    """int8 (static, per-channel weights): 80 % top-1 agreement on random weights; micro-batching it is exact
    within float32 round-off of the dequantized values (1e-5 relative)."""
    pytest.importorskip("torchao")
    model = tiny_classifier()
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
