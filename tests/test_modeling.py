"""The PyTorch model: parity with transformers' SwiftFormer, golden fixtures, maths, tracing, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from _helpers import TINY, assert_close_rel, perturb_, perturb_state_dict
from _helpers import tiny_classifier as tiny_model
from swiftformer import VARIANTS, SwiftFormerConfig, SwiftFormerForImageClassification, SwiftFormerModel
from swiftformer.layers import DropPath
from swiftformer.modeling import SwiftFormerConvEncoder, SwiftFormerEfficientAdditiveAttention

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("golden_*.safetensors"))


# ------------------------------------------------------------------------------------------------
# Golden fixtures (generated from transformers by scripts/make_golden_fixtures.py): no reference needed
# ------------------------------------------------------------------------------------------------


def test_golden_fixtures_exist():
    assert len(FIXTURES) >= 3


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_golden_fixture(path: Path):
    with safe_open(path, "pt") as f:
        config = json.loads(f.metadata()["config"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    model = SwiftFormerForImageClassification(SwiftFormerConfig(**config)).eval()
    model.load_state_dict({k.removeprefix("weights."): v for k, v in tensors.items() if k.startswith("weights.")})
    with torch.no_grad():
        out = model(tensors["input"], output_hidden_states=True)
    assert_close_rel(out.logits, tensors["logits"], what="logits")
    expected_hidden = [
        tensors[f"hidden_states.{i}"] for i in range(sum(k.startswith("hidden_states.") for k in tensors))
    ]
    assert len(out.hidden_states) == len(expected_hidden)
    for i, (ours, ref) in enumerate(zip(out.hidden_states, expected_hidden)):
        assert_close_rel(ours, ref, what=f"hidden_states[{i}]")


# ------------------------------------------------------------------------------------------------
# Parity with transformers on perturbed weights
# ------------------------------------------------------------------------------------------------

PARITY_CASES = {
    "xs": ("xs", {}, (2, 3, 224, 224)),
    "s": ("s", {}, (2, 3, 128, 96)),
    "l1": ("l1", {}, (1, 3, 96, 128)),
    "l3": ("l3", {}, (2, 3, 64, 64)),
    "relu": (None, {"hidden_act": "relu"}, (2, 3, 64, 48)),
    "silu": (None, {"hidden_act": "silu"}, (2, 3, 64, 48)),
    "gelu_pytorch_tanh": (None, {"hidden_act": "gelu_pytorch_tanh"}, (2, 3, 64, 48)),
    "gelu_new": (None, {"hidden_act": "gelu_new"}, (2, 3, 64, 48)),
    "no_layer_scale": (None, {"use_layer_scale": False}, (2, 3, 64, 48)),
    "mlp_ratio_3": (None, {"mlp_ratio": 3}, (2, 3, 64, 48)),
    "downsamples": (None, {"embed_dims": [8, 8, 16, 24], "downsamples": [False, True, False, True]}, (3, 3, 48, 48)),
    "three_downsamples": (None, {"downsamples": [True, False, True]}, (2, 3, 48, 48)),
    "nonsquare_batch4": (None, {}, (4, 3, 75, 131)),
    "two_stages": (None, {"depths": [2, 3], "embed_dims": [8, 16], "downsamples": [True, True]}, (2, 3, 40, 40)),
    "down_patch_5": (None, {"down_patch_size": 5, "down_stride": 3, "down_pad": 2}, (2, 3, 96, 80)),
    "one_label": (None, {"num_labels": 1}, (2, 3, 32, 32)),
}


def _pair_of_models(variant, overrides, seed=0):
    transformers = pytest.importorskip("transformers")
    if variant is None:
        kwargs = {**TINY, **overrides}
    else:
        kwargs = {**VARIANTS[variant], "num_labels": 10, **overrides}
    ref = transformers.SwiftFormerForImageClassification(transformers.SwiftFormerConfig(**kwargs))
    weights = perturb_state_dict(ref.state_dict(), seed)
    ref.load_state_dict(weights)
    ours = SwiftFormerForImageClassification(SwiftFormerConfig(**kwargs))
    ours.load_state_dict(weights, strict=True)
    return ours, ref


def _cases(names) -> list:
    """Parity cases as parameters; the published variants (full-size models) are marked slow."""
    return [pytest.param(name, marks=pytest.mark.slow) if PARITY_CASES[name][0] else name for name in names]


@pytest.mark.parametrize("case", _cases(PARITY_CASES))
def test_parity_with_transformers_eval(case):
    variant, overrides, shape = PARITY_CASES[case]
    ours, ref = _pair_of_models(variant, overrides)
    ours.eval(), ref.eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = ours(x, output_hidden_states=True)
        b = ref(x, output_hidden_states=True)
    assert_close_rel(a.logits, b.logits, what="logits")
    assert len(a.hidden_states) == len(b.hidden_states)
    for i, (h1, h2) in enumerate(zip(a.hidden_states, b.hidden_states)):
        assert_close_rel(h1, h2, what=f"hidden_states[{i}]")
    # The base model and the tuple outputs have the reference's structure.
    with torch.no_grad():
        base_a = ours.swiftformer(x, output_hidden_states=True, return_dict=False)
        base_b = ref.swiftformer(x, output_hidden_states=True, return_dict=False)
        tuple_a, tuple_b = ours(x, return_dict=False), ref(x, return_dict=False)
    assert len(base_a) == len(base_b) == 2 and len(base_a[1]) == len(base_b[1])
    assert_close_rel(base_a[0], base_b[0], what="last_hidden_state")
    assert len(tuple_a) == len(tuple_b) == 1
    assert_close_rel(tuple_a[0], tuple_b[0], what="tuple logits")


@pytest.mark.parametrize("case", _cases(["xs", "no_layer_scale", "gelu_new", "downsamples"]))
def test_parity_gradients_train_mode(case):
    variant, overrides, shape = PARITY_CASES[case]
    shape = (2, 3, 64, 64) if variant else shape
    ours, ref = _pair_of_models(variant, overrides)
    ours.train(), ref.train()  # batch statistics in BatchNorm; every dropout rate is 0
    x = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    labels = torch.tensor([1, 3, 0][: shape[0]])
    loss_a = ours(x, labels=labels).loss
    loss_b = ref(x, labels=labels).loss
    assert_close_rel(loss_a, loss_b, what="loss")
    loss_a.backward(), loss_b.backward()
    ref_params = dict(ref.named_parameters())
    # Some gradients are zero in exact arithmetic (a conv bias right before a training-mode BatchNorm)
    # and round-off noise in practice; compare each against a floor tied to the largest gradient.
    floor = 1e-6 * max(p.grad.abs().max() for p in ref.parameters() if p.grad is not None)
    for name, param in ours.named_parameters():
        if ref_params[name].grad is None or not ref_params[name].grad.abs().max() > 0:
            # w_g gets no gradient under the softmax variant (the softmax is over a size-1 axis).
            assert param.grad is None or not param.grad.abs().max() > 0, name
            continue
        assert_close_rel(param.grad, ref_params[name].grad, rel=1e-4, atol=floor, what=f"grad {name}")
    # BatchNorm running statistics were updated identically.
    ref_buffers = dict(ref.named_buffers())
    for name, buf in ours.named_buffers():
        if buf.is_floating_point():
            assert_close_rel(buf, ref_buffers[name], what=name)


@pytest.mark.parametrize(
    "labels_kind,num_labels,problem_type",
    [
        ("long", 5, None),
        ("float_multi_hot", 5, None),
        ("float", 1, None),
        ("float", 5, "regression"),
        ("long", 5, "single_label_classification"),
    ],
)
@pytest.mark.slow
def test_loss_matches_transformers(labels_kind, num_labels, problem_type):
    ours, ref = _pair_of_models(None, {"num_labels": num_labels, "problem_type": problem_type})
    ours.eval(), ref.eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(6)
    if labels_kind == "long":
        labels = torch.randint(0, num_labels, (3,), generator=gen)
    elif labels_kind == "float_multi_hot":
        labels = torch.randint(0, 2, (3, num_labels), generator=gen).float()
    else:
        labels = torch.randn(3, num_labels, generator=gen) if num_labels > 1 else torch.randn(3, generator=gen)
    with torch.no_grad():
        a = ours(x, labels=labels)
        b = ref(x, labels=labels)
    assert_close_rel(a.loss, b.loss, what="loss")
    assert ours.config.problem_type == problem_type  # inference does not mutate our config


# ------------------------------------------------------------------------------------------------
# Maths of our own: the l2 attention variant, both heads, drop path
# ------------------------------------------------------------------------------------------------


def _additive_attention_reference(x, module, variant):
    """Independent formula (einsum), written from the paper and the original repository's July 2023 code."""
    q = x @ module.to_query.weight.T + module.to_query.bias
    k = x @ module.to_key.weight.T + module.to_key.bias
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    k = k / k.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    a = torch.einsum("bnc,c->bn", q, module.w_g[:, 0]) / q.shape[-1] ** 0.5
    if variant == "l2":
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    else:
        a = torch.ones_like(a)
    g = torch.einsum("bn,bnc->bc", a, q)
    out = (g[:, None, :] * k) @ module.proj.weight.T + module.proj.bias + q
    return out @ module.final.weight.T + module.final.bias


@pytest.mark.parametrize("variant", ["softmax", "l2"])
def test_additive_attention_against_independent_formula(variant):
    torch.manual_seed(0)
    config = SwiftFormerConfig(attention_variant=variant)
    module = SwiftFormerEfficientAdditiveAttention(config, dim=16)
    x = torch.randn(3, 20, 16)
    with torch.no_grad():
        assert_close_rel(module(x), _additive_attention_reference(x, module, variant), what=variant)


def test_w_g_matters_only_for_l2():
    x = torch.randn(2, 3, 48, 48)
    outputs = {}
    for variant in ("softmax", "l2"):
        model = tiny_model(attention_variant=variant)
        with torch.no_grad():
            before = model(x).logits
            for module in model.modules():
                if isinstance(module, SwiftFormerEfficientAdditiveAttention):
                    module.w_g.mul_(-3.0).add_(0.5)
            outputs[variant] = (before, model(x).logits)
    assert torch.equal(*outputs["softmax"])
    assert (outputs["l2"][0] - outputs["l2"][1]).abs().max() > 1e-3


def test_l2_and_softmax_differ_on_same_weights():
    a, b = tiny_model(attention_variant="softmax"), tiny_model(attention_variant="l2")
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        assert (a(x).logits - b(x).logits).abs().max() > 1e-3


def test_selu_is_supported():
    # transformers documents "selu" but its ACT2CLS table has no such key, so its model raises KeyError.
    model = tiny_model(hidden_act="selu")
    assert isinstance(model.swiftformer.encoder.network[0].blocks[-1].linear.act, torch.nn.SELU)
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, 32, 32)).logits).all()


def test_logits_are_mean_of_heads():
    model = tiny_model()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(out.logits, (out.cls_logits + out.distillation_logits) / 2)
    assert not torch.allclose(out.cls_logits, out.distillation_logits)


def test_drop_path_follows_linear_schedule_and_is_stochastic_in_training():
    model = tiny_model(drop_path_rate=0.3, drop_conv_encoder_rate=0.1)
    rates = [
        m.drop_path.drop_prob if isinstance(m.drop_path, DropPath) else 0.0
        for stage in model.swiftformer.encoder.network
        if hasattr(stage, "blocks")
        for m in stage.blocks
    ]
    total = sum(TINY["depths"])
    assert rates == pytest.approx([0.3 * i / (total - 1) for i in range(total)])
    conv_encoders = [m for m in model.modules() if isinstance(m, SwiftFormerConvEncoder) and m.layer_scale.shape[0] > 0]
    assert any(isinstance(m.drop_path, DropPath) for m in conv_encoders)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        eval_a, eval_b = model(x).logits, model(x).logits
        model.train()
        train_a, train_b = model(x).logits, model(x).logits
    assert torch.equal(eval_a, eval_b)
    assert not torch.equal(train_a, train_b)


def test_drop_path_keeps_expectation():
    torch.manual_seed(0)
    drop = DropPath(0.25).train()
    x = torch.ones(20000, 1, 1, 1)
    y = drop(x)
    assert y.unique().tolist() == pytest.approx([0.0, 4 / 3])
    assert y.mean().item() == pytest.approx(1.0, abs=0.03)


# ------------------------------------------------------------------------------------------------
# Shapes, batching, init, tracing, compile
# ------------------------------------------------------------------------------------------------


def test_output_shapes_and_any_input_size():
    model = SwiftFormerModel(SwiftFormerConfig(**{**TINY})).eval()
    for h, w in [(224, 224), (33, 17), (1, 1), (100, 250)]:
        with torch.no_grad():
            out = model(torch.randn(1, 3, h, w), output_hidden_states=True)
        expected = model.stage_shapes(h, w)[-1]
        assert out.last_hidden_state.shape == (1, 24, *expected)
        assert len(out.hidden_states) == 8
    assert model.stage_shapes(224, 224) == [(56, 56), (28, 28), (14, 14), (7, 7)]


def test_batched_equals_per_sample():
    model = tiny_model()
    x = torch.randn(5, 3, 40, 36)
    with torch.no_grad():
        batched = model(x).logits
        single = torch.cat([model(x[i : i + 1]).logits for i in range(5)])
    assert_close_rel(batched, single, rel=1e-5, what="batched vs single")


def test_output_access_patterns():
    model = tiny_model()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x, labels=torch.tensor([0, 1]), output_hidden_states=True)
    assert out["logits"] is out.logits is out[1]
    assert out[0] is out.loss
    assert list(out.keys())[:3] == ["loss", "logits", "hidden_states"]
    assert isinstance(out, dict) and list(dict(out)) == list(out.keys())  # a mapping, as transformers' outputs
    with torch.no_grad():
        plain = model(x, labels=torch.tensor([0, 1]), output_hidden_states=True, return_dict=False)
    assert len(plain) == 3 and torch.equal(plain[1], out.logits)


def test_default_init_like_reference():
    torch.manual_seed(0)
    model = SwiftFormerForImageClassification(SwiftFormerConfig.from_variant("xs", num_labels=1000))
    state = model.state_dict()
    assert state["head.bias"].abs().max() == 0
    std = state["swiftformer.encoder.network.6.blocks.3.attn.to_query.weight"].std().item()
    assert std == pytest.approx(0.02, rel=0.1)
    assert torch.all(state["swiftformer.encoder.network.6.blocks.3.layer_scale_1"] == 1e-5)
    assert torch.all(state["swiftformer.encoder.network.0.blocks.0.layer_scale"] == 1.0)
    assert torch.all(state["norm.weight"] == 1.0) and torch.all(state["norm.running_var"] == 1.0)
    w_g = torch.cat([v.flatten() for k, v in state.items() if k.endswith("attn.w_g")])
    assert w_g.std().item() == pytest.approx(1.0, rel=0.2)


def test_init_weights_resets_every_own_parameter():
    """init_weights reaches the layers' own parameters through their reset_parameters()."""
    model = tiny_model()  # perturbed: layer scales ~0.5
    model.init_weights()
    state = model.state_dict()
    assert all(torch.all(v == 1.0) for k, v in state.items() if k.endswith(".layer_scale"))
    assert all(torch.all(v == 1e-5) for k, v in state.items() if k.endswith((".layer_scale_1", ".layer_scale_2")))
    assert all(torch.all(v == 1.0) for k, v in state.items() if k.endswith("running_var"))


def test_layer_scale_off_has_no_keys_and_equals_unit_scales():
    """use_layer_scale=False: no layer_scale_1/2 parameters (transformers' keys), branches added unscaled,
    i.e. the same outputs as layer scales of exactly 1."""
    with_scale = tiny_model()
    without = SwiftFormerForImageClassification(SwiftFormerConfig(**TINY, use_layer_scale=False)).eval()
    block = without.swiftformer.encoder.network[0].blocks[-1]
    assert block.layer_scale_1 is None and block.layer_scale_2 is None
    scaled_keys = {k for k in with_scale.state_dict() if k.endswith((".layer_scale_1", ".layer_scale_2"))}
    assert len(scaled_keys) == 2 * len(TINY["depths"])
    assert set(without.state_dict()) == set(with_scale.state_dict()) - scaled_keys
    without.load_state_dict({k: v for k, v in with_scale.state_dict().items() if k not in scaled_keys})
    with torch.no_grad():
        for name, param in with_scale.named_parameters():
            if name in scaled_keys:
                param.fill_(1.0)
        x = torch.randn(2, 3, 32, 32)
        assert torch.equal(with_scale(x).logits, without(x).logits)


def test_pretrained_base_class_has_one_home():
    import swiftformer
    from swiftformer import modeling, modeling_utils

    assert swiftformer.SwiftFormerPreTrainedModel is modeling.SwiftFormerPreTrainedModel
    assert modeling.SwiftFormerPreTrainedModel is modeling_utils.SwiftFormerPreTrainedModel
    assert modeling.require_floating_pixels is modeling_utils.require_floating_pixels


def test_jit_trace():
    # As with transformers (torchscript=True), tracing needs tuple outputs: config.return_dict=False.
    model = tiny_model(return_dict=False)
    x = torch.randn(2, 3, 32, 32)
    traced = torch.jit.trace(model, x)
    other = torch.randn(3, 3, 48, 40)
    with torch.no_grad():
        assert_close_rel(traced(other)[0], model(other)[0], what="traced")


def test_torch_compile_fullgraph():
    model = tiny_model()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        assert_close_rel(compiled(x).logits, model(x).logits, what="compiled")


@pytest.mark.slow
def test_torch_compile_inductor_base_model():
    model = SwiftFormerModel(SwiftFormerConfig(**TINY)).eval()
    perturb_(model)
    x = torch.randn(1, 3, 32, 32)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        assert_close_rel(compiled(x).last_hidden_state, model(x).last_hidden_state, rel=1e-4, what="inductor")


# ------------------------------------------------------------------------------------------------
# Bad input: clear errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_input,error,match",
    [
        (lambda: torch.randn(3, 32, 32), ValueError, r"shape \(batch, 3, height, width\), got \(3, 32, 32\)"),
        (lambda: torch.randn(1, 4, 32, 32), ValueError, r"got \(1, 4, 32, 32\)"),
        (lambda: torch.zeros(1, 3, 32, 32, dtype=torch.uint8), ValueError, "floating-point"),
        (lambda: [[1.0]], TypeError, "must be a torch.Tensor"),
        (
            lambda: torch.zeros(1, 3, 32, 32, dtype=torch.float64),
            ValueError,
            r"torch.float64 but the model's weights are torch.float32",
        ),
    ],
)
def test_bad_pixel_values(make_input, error, match):
    model = tiny_model()
    with pytest.raises(error, match=match):
        model(make_input())


def test_dtype_device_and_autocast_input():
    model = tiny_model().eval()
    assert model.dtype == torch.float32 and model.device == torch.device("cpu")
    model = model.to(torch.bfloat16)
    assert model.dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"pass pixel_values.to\(model.dtype\)"):
        model(torch.randn(1, 3, 32, 32))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts the inputs itself: allowed
        assert model(torch.randn(1, 3, 32, 32)).logits.shape[0] == 1


def test_too_small_input_for_custom_downsampling():
    model = tiny_model(down_patch_size=5, down_pad=0)
    with pytest.raises(ValueError, match="too small"):
        model(torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize(
    "labels,match",
    [
        (torch.tensor([0, 1, 2]), "batch size 2"),
        (torch.tensor([0, 7]), r"class indices in \[0, 5\)"),
        (torch.ones(2, 3), "multi-hot labels of shape"),
    ],
)
def test_bad_labels(labels, match):
    model = tiny_model()
    with pytest.raises(ValueError, match=match):
        model(torch.randn(2, 3, 32, 32), labels=labels)


def test_single_label_loss_over_one_class_is_refused():
    """Cross-entropy over one class is 0 whatever the weights: an edited config must not train on it silently."""
    model = tiny_model(num_labels=2, problem_type="single_label_classification")
    model.config.num_labels = 1
    model = SwiftFormerForImageClassification(model.config)
    with pytest.raises(ValueError, match=r"needs num_labels > 1 .* got num_labels=1"):
        model(torch.randn(2, 3, 32, 32), labels=torch.tensor([0, 0]))


def test_transformers_generic_forward_keywords_are_ignored_typos_are_not():
    model = tiny_model().eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x).logits
    ignored = dict(output_attentions=False, head_mask=None, interpolate_pos_encoding=False)
    assert torch.equal(model(x, **ignored).logits, expected)
    assert torch.equal(model.swiftformer(x, **ignored).last_hidden_state, model.swiftformer(x).last_hidden_state)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['output_hidden_state'\]"):
        model(x, output_hidden_state=True)


def test_ignore_index_labels_allowed():
    model = tiny_model()
    out = model(torch.randn(2, 3, 32, 32), labels=torch.tensor([-100, 2]))
    assert torch.isfinite(out.loss)
