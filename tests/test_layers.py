"""swiftformer.layers: the additive attention and the ConvEncoder as standalone blocks (all in float32)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

from _helpers import TINY, perturb_, tiny_classifier
from swiftformer.configuration import ATTENTION_VARIANTS as CONFIG_ATTENTION_VARIANTS
from swiftformer.layers import ATTENTION_VARIANTS, ConvEncoder, EfficientAdditiveAttention
from swiftformer.modeling import SwiftFormerConvEncoder, SwiftFormerEfficientAdditiveAttention, SwiftFormerEncoderBlock


def _perturbed(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    return perturb_(module, seed).eval()


@pytest.mark.parametrize("variant", ATTENTION_VARIANTS)
def test_attention_layouts_give_the_same_result_on_odd_sizes(variant: str):
    torch.manual_seed(0)
    tokens_layer = _perturbed(EfficientAdditiveAttention(12, key_dim=20, out_dim=7, variant=variant))
    map_layer = EfficientAdditiveAttention(12, key_dim=20, out_dim=7, variant=variant, layout="BCHW").eval()
    map_layer.load_state_dict(tokens_layer.state_dict())
    feature_map = torch.randn(3, 12, 5, 3)  # (B, C, H, W), odd sizes
    tokens = feature_map.flatten(2).transpose(1, 2)  # (B, 15, C)

    out_tokens = tokens_layer(tokens)
    out_map = map_layer(feature_map)

    assert out_tokens.shape == (3, 15, 7) and out_map.shape == (3, 7, 5, 3)
    torch.testing.assert_close(out_map.flatten(2).transpose(1, 2), out_tokens, rtol=0, atol=0)
    single = tokens_layer(tokens[:, :1])  # one token is a valid sequence
    assert single.shape == (3, 1, 7) and torch.isfinite(single).all()


def test_attention_is_independent_of_token_order_except_for_the_permutation():
    layer = _perturbed(EfficientAdditiveAttention(8, variant="l2"))
    tokens = torch.randn(2, 9, 8)
    order = torch.randperm(9)
    # No positions: the global query is a sum over tokens, so permuting the input permutes the output.
    torch.testing.assert_close(layer(tokens[:, order]), layer(tokens)[:, order], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", ATTENTION_VARIANTS)
def test_attention_equals_the_models_block(variant: str):
    model = tiny_classifier(seed=1, attention_variant=variant).eval()
    blocks = [m for m in model.modules() if isinstance(m, SwiftFormerEncoderBlock)]
    assert blocks and all(isinstance(b.attn, EfficientAdditiveAttention) for b in blocks)
    for block in blocks:
        inner = block.attn
        layer = EfficientAdditiveAttention(inner.dim, variant=variant).eval()
        layer.load_state_dict(_perturbed(inner, seed=inner.dim).state_dict())  # same keys, strict
        tokens = torch.randn(2, 11, inner.dim)
        torch.testing.assert_close(layer(tokens), inner(tokens), rtol=0, atol=0)


def test_conv_encoder_equals_the_models_blocks_and_keeps_odd_sizes():
    model = _perturbed(tiny_classifier(seed=2))
    encoders = [m for m in model.modules() if isinstance(m, SwiftFormerConvEncoder)]
    assert len(encoders) == sum(TINY["depths"])  # the conv blocks and every encoder block's local representation
    for block in encoders:
        dim, hidden = block.depth_wise_conv.in_channels, block.point_wise_conv1.out_channels
        layer = ConvEncoder(dim, hidden).eval()
        layer.load_state_dict(block.state_dict())  # same keys, strict
        x = torch.randn(2, dim, 7, 5)
        out = layer(x)
        assert out.shape == x.shape
        torch.testing.assert_close(out, block(x), rtol=0, atol=0)


def test_gradients_reach_every_parameter_that_matters():
    x = torch.randn(2, 6, 4, 3, requires_grad=True)
    for layer in (EfficientAdditiveAttention(6, layout="BCHW", variant="l2"), ConvEncoder(6, 10)):
        layer.zero_grad()
        x.grad = None
        layer.train()(x).square().sum().backward()
        missing = [n for n, p in layer.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert missing == [], f"{type(layer).__name__}: no gradient for {missing}"
        assert x.grad is not None and x.grad.abs().sum() > 0
    # With the softmax variant every token weight is 1: w_g gets an exactly zero gradient (the hub checkpoints').
    softmax = EfficientAdditiveAttention(6, variant="softmax")
    softmax(torch.randn(2, 5, 6)).square().sum().backward()
    assert softmax.w_g.grad is not None and softmax.w_g.grad.abs().max() == 0


def test_bad_input_is_one_clear_error():
    with pytest.raises(ValueError, match=r"expects \(B, N, C\) with C=8, got a tensor of shape \(2, 8, 4, 4\)"):
        EfficientAdditiveAttention(8)(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r"expects \(B, C, H, W\) with C=8, got a tensor of shape \(2, 16, 8\)"):
        EfficientAdditiveAttention(8, layout="BCHW")(torch.randn(2, 16, 8))
    with pytest.raises(ValueError, match=r"ConvEncoder expects \(B, C, H, W\) with C=8"):
        ConvEncoder(8)(torch.randn(2, 16, 8))
    with pytest.raises(ValueError, match="variant must be one of softmax, l2, got 'cosine'"):
        EfficientAdditiveAttention(8, variant="cosine")
    with pytest.raises(ValueError, match="layout must be one of BNC, BCHW"):
        EfficientAdditiveAttention(8, layout="NHWC")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        ConvEncoder(8, kernel_size=4)


def test_variants_are_the_configs():
    assert set(ATTENTION_VARIANTS) == set(CONFIG_ATTENTION_VARIANTS)
    assert SwiftFormerEfficientAdditiveAttention.__mro__[1] is EfficientAdditiveAttention


def test_onnx_export_with_dynamic_sizes_matches():
    ort = pytest.importorskip("onnxruntime")  # the export extra
    from swiftformer.inference.runtimes import export_onnx_graph

    block = torch.nn.Sequential(
        ConvEncoder(8, 16), EfficientAdditiveAttention(8, layout="BCHW", variant="l2")
    )  # a drop-in pair on a feature map
    block = _perturbed(block)
    dims = {0: torch.export.Dim("batch", min=1, max=64), 2: torch.export.Dim("h", min=2, max=64)}
    proto = export_onnx_graph(block, torch.randn(2, 8, 6, 5), dims)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 8, 9, 5)  # another batch and height than exported with
    (out,) = session.run(None, {"pixel_values": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), block(x), rtol=1e-4, atol=1e-5)


def test_lazy_exports():
    import swiftformer

    assert swiftformer.EfficientAdditiveAttention is EfficientAdditiveAttention
    assert swiftformer.ConvEncoder is ConvEncoder


def test_the_example_networks_run(capsys):
    path = Path(__file__).parents[1] / "examples" / "layers_in_other_networks.py"
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert "(2, 3, 36, 52) → (2, 2, 36, 52)" in out  # the UNet keeps odd-by-4 sizes
    assert "[(2, 32, 40, 40), (2, 32, 20, 20), (2, 32, 10, 10)]" in out  # the neck: one map per level
    assert "(4, 77, 24) → (4, 5)" in out  # the token classifier


@pytest.mark.slow
def test_torch_compile_with_dynamic_token_counts():
    layer = _perturbed(EfficientAdditiveAttention(8, variant="l2"))
    compiled = torch.compile(layer, dynamic=True)
    for tokens in (torch.randn(2, 9, 8), torch.randn(3, 20, 8)):
        torch.testing.assert_close(compiled(tokens), layer(tokens), rtol=1e-5, atol=1e-6)
