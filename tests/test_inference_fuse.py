"""The exact reparameterization (swiftformer.inference.fuse): BatchNorms, layer scales and heads folded, the same
logits within float32 round-off (1e-5 relative) on perturbed weights, for every config shape that changes it."""

from __future__ import annotations

import pytest
import torch

from _helpers import assert_close_rel, perturb_, tiny_classifier
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification
from swiftformer.inference import bn_scale_shift, export_dims, fuse, min_spatial_size, optimize_for_inference


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
    model = tiny_classifier(**overrides)
    fused = fuse(model)
    x = torch.randn(3, 3, 45, 37)
    with torch.no_grad():
        assert_close_rel(fused(x), model(x).logits, what="fused")


@pytest.mark.parametrize("variant", ["xs", "l3"])
@pytest.mark.slow
def test_fuse_published_variants(variant):
    model = perturb_(SwiftFormerForImageClassification(SwiftFormerConfig.from_variant(variant, num_labels=10))).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_close_rel(fuse(model)(x), model(x).logits, what=variant)


def test_fuse_has_no_batchnorm_and_one_head():
    fused = fuse(tiny_classifier())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert fused.head.out_features == 5
    assert not any(p.requires_grad for p in fused.parameters())


def test_fuse_leaves_the_model_unchanged():
    model = tiny_classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fuse(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fuse_rejects_what_it_cannot_fold():
    with pytest.raises(ValueError, match="num_labels"):
        fuse(tiny_classifier(num_labels=0))
    with pytest.raises(TypeError, match="SwiftFormerForImageClassification, got Linear"):
        fuse(torch.nn.Linear(2, 2))


def test_bn_scale_shift_is_the_eval_batchnorm():
    bn = tiny_classifier().norm  # perturbed: random running statistics and affine parameters
    x = torch.randn(2, bn.num_features, 3, 3)
    scale, shift = bn_scale_shift(bn)
    with torch.no_grad():
        assert_close_rel(x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1), bn(x), what="folded BN")


def test_a_model_cast_to_bf16_still_optimizes_to_fp32():
    model = tiny_classifier().to(torch.bfloat16)
    fast = optimize_for_inference(model, "fp32", compile=False, backend="inductor")
    assert model.dtype == torch.bfloat16  # left unchanged
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # the bf16 weights' values, computed in float32
        assert_close_rel(fast(x), model.float()(x).logits, what="fp32 from a bf16 model")


def test_export_dims_are_static_below_the_dynamic_minimum():
    config = tiny_classifier().config
    low = min_spatial_size(config)
    assert min(config.stage_shapes(low, low)[-1]) >= 2 and min(config.stage_shapes(low - 1, low - 1)[-1]) < 2
    assert sorted(export_dims(config, (low, low), spatial=True)) == [0, 2, 3]
    assert sorted(export_dims(config, (low - 1, low), spatial=True)) == [0]  # H, W static at the export size
    assert sorted(export_dims(config, (low, low), spatial=False)) == [0]
