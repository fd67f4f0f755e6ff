"""The Keras 3 models: parity with this library's PyTorch model and with transformers' TF port (golden
fixtures, and live where .venv-tfref exists), training, weights both ways, the JAX backend, import isolation."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch._dynamo  # before TensorFlow: importing triton after TensorFlow segfaults

pytest.importorskip("tensorflow")
pytest.importorskip("keras")
import keras
import tensorflow as tf
import torch
from safetensors import safe_open

from _helpers import TINY, perturb_
from swiftformer import (
    VARIANTS,
    CheckpointError,
    SwiftFormerConfig,
    SwiftFormerForImageClassification,
    SwiftFormerModel,
)
from swiftformer.keras.layers import _DropPath
from swiftformer.keras.models import TFSwiftFormerForImageClassification, TFSwiftFormerModel
from swiftformer.keras.weights import _LAYOUTS, read_reference_h5

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted((ROOT / "tests" / "fixtures").glob("tf_golden_*.safetensors"))
REF_PYTHON = ROOT / ".venv-tfref" / "bin" / "python"
SUBPROCESS_ENV = {
    **os.environ,
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT / "tests"),
}


def _script():
    spec = importlib.util.spec_from_file_location(
        "make_tf_golden_fixtures", ROOT / "scripts" / "make_tf_golden_fixtures.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_rel(actual, expected, rel: float = 1e-4, what: str = "", atol: float = 0.0) -> None:
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err, scale = np.abs(actual - expected).max(), np.abs(expected).max()
    assert err <= max(rel * scale, atol), f"{what}: max|diff| {err:.3e} > {rel:g} x max|value| {scale:.3e}"


def pair(seed: int = 0, **config_kwargs):
    """A perturbed PyTorch classifier (eval mode) and the Keras classifier with the same weights."""
    config = SwiftFormerConfig(**config_kwargs)
    torch.manual_seed(seed)
    pt = perturb_(SwiftFormerForImageClassification(config), seed).eval()
    keras_model = TFSwiftFormerForImageClassification(config)
    keras_model.load_state_dict(pt.state_dict())
    return pt, keras_model


def check_parity(pt, keras_model, shape, seed: int = 1) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = pt(x, output_hidden_states=True)
    out = keras_model(x.numpy(), output_hidden_states=True)
    assert_rel(out.logits, ref.logits, what="logits")
    assert_rel(out.cls_logits, ref.cls_logits, what="cls_logits")
    assert_rel(out.distillation_logits, ref.distillation_logits, what="distillation_logits")
    assert len(out.hidden_states) == len(ref.hidden_states)
    for i, (ours, theirs) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        assert_rel(ours, theirs, what=f"hidden_states[{i}]")


# ------------------------------------------------------------------------------------------------
# Import isolation
# ------------------------------------------------------------------------------------------------


def test_core_import_does_not_import_tensorflow():
    code = (
        "import sys, swiftformer\n"
        "swiftformer.SwiftFormerForImageClassification, swiftformer.SwiftFormerConfig\n"
        "bad = [m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=SUBPROCESS_ENV, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.parametrize("module", ["swiftformer.keras", "swiftformer.keras.ops", "swiftformer.keras.weights"])
def test_missing_tensorflow_is_one_clear_error(module):
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('ignore', DeprecationWarning)\n"
        "sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "try:\n"
        f"    import {module}\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=SUBPROCESS_ENV, check=False
    )
    assert "pip install '.[tf]'" in result.stdout, result.stdout + result.stderr[-2000:]


# ------------------------------------------------------------------------------------------------
# Golden fixtures from transformers 4.57's TF port (scripts/make_tf_golden_fixtures.py)
# ------------------------------------------------------------------------------------------------


def test_tf_golden_fixtures_exist():
    assert len(FIXTURES) >= 3


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
@pytest.mark.slow
def test_tf_golden_fixture(path: Path, tmp_path: Path):
    """Against the reference TF port's outputs: weights by PyTorch name, and the reference's own tf_model.h5."""
    with safe_open(path, "np") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable
    assert json.loads(metadata["reference"])["transformers"].startswith("4.57")
    config = SwiftFormerConfig(**json.loads(metadata["config"]))
    expected_hidden = [
        tensors[f"hidden_states.{i}"] for i in range(sum(k.startswith("hidden_states.") for k in tensors))
    ]

    by_name = TFSwiftFormerForImageClassification(config)
    by_name.load_state_dict({k.removeprefix("weights."): v for k, v in tensors.items() if k.startswith("weights.")})
    folder = _script().write_reference_h5_folder(tensors, metadata, tmp_path / "ref")
    from_h5 = TFSwiftFormerForImageClassification.from_pretrained(folder)
    for model in (by_name, from_h5):
        out = model(tensors["input"], output_hidden_states=True)
        assert_rel(out.logits, tensors["logits"], what="logits")
        assert len(out.hidden_states) == len(expected_hidden)
        for i, (ours, ref) in enumerate(zip(out.hidden_states, expected_hidden)):
            assert_rel(ours, ref, what=f"hidden_states[{i}]")

    # The same file as a base model (what TFSwiftFormerModel.save_pretrained writes: only the backbone layer).
    layers = json.loads(metadata["h5_layers"])
    base_meta = {**metadata, "h5_layers": json.dumps({"swiftformer": layers["swiftformer"]})}
    base_folder = _script().write_reference_h5_folder(tensors, base_meta, tmp_path / "base")
    base = TFSwiftFormerModel.from_pretrained(base_folder)
    assert_rel(base(tensors["input"]).last_hidden_state, expected_hidden[-1], what="base last_hidden_state")


def test_reference_h5_maps_every_weight_and_reports_missing_ones(tmp_path: Path):
    with safe_open(FIXTURES[0], "np") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable
    folder = _script().write_reference_h5_folder(tensors, metadata, tmp_path / "ref")
    state = read_reference_h5(folder / "tf_model.h5")
    pt_weights = {k.removeprefix("weights."): v for k, v in tensors.items() if k.startswith("weights.")}
    assert set(state) == {k for k in pt_weights if not k.endswith("num_batches_tracked")}
    for key, value in state.items():
        np.testing.assert_array_equal(value, pt_weights[key], err_msg=key)

    layers = json.loads(metadata["h5_layers"])
    layers["swiftformer"] = [n for n in layers["swiftformer"] if "attn/to_key/kernel" not in n]
    broken = _script().write_reference_h5_folder(
        tensors, {**metadata, "h5_layers": json.dumps(layers)}, tmp_path / "broken"
    )
    # from_pretrained loads a partial checkpoint (transformers' rule) and lists what it lacks ...
    model, info = TFSwiftFormerForImageClassification.from_pretrained(broken, output_loading_info=True)
    assert info["missing_keys"] and all(k.endswith("attn.to_key.weight") for k in info["missing_keys"])
    # ... which a strict load names in its error
    with pytest.raises(CheckpointError, match=r"missing keys .*attn\.to_key\.weight"):
        TFSwiftFormerForImageClassification(model.config).load_state_dict(read_reference_h5(broken / "tf_model.h5"))


@pytest.mark.skipif(
    not REF_PYTHON.exists(),
    reason="no .venv-tfref (transformers 4.57 + tf-keras); see scripts/make_tf_golden_fixtures.py",
)
def test_live_against_reference_tf_port():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_tf_golden_fixtures.py"), "--live"],
        capture_output=True,
        text=True,
        env=SUBPROCESS_ENV,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "all comparisons within" in result.stdout
    assert result.stdout.count("[reference tf_model.h5]") == 3


# ------------------------------------------------------------------------------------------------
# Parity with this library's PyTorch model on perturbed weights
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["xs", "s", "l1", "l3"])
@pytest.mark.slow
def test_parity_published_variants(variant):
    pt, keras_model = pair(**VARIANTS[variant], num_labels=10)
    assert keras_model.num_parameters() == keras_model.num_parameters(only_trainable=True) == pt.num_parameters()
    check_parity(pt, keras_model, (2, 3, 64, 64))


UNUSUAL = {
    "relu": ({"hidden_act": "relu"}, (2, 3, 64, 48)),
    "selu": ({"hidden_act": "selu"}, (2, 3, 64, 48)),
    "silu": ({"hidden_act": "silu"}, (2, 3, 64, 48)),
    "swish": ({"hidden_act": "swish"}, (2, 3, 64, 48)),
    "gelu_new": ({"hidden_act": "gelu_new"}, (2, 3, 64, 48)),
    "gelu_pytorch_tanh": ({"hidden_act": "gelu_pytorch_tanh"}, (2, 3, 64, 48)),
    "l2_attention": ({"attention_variant": "l2"}, (2, 3, 64, 48)),
    "no_layer_scale": ({"use_layer_scale": False}, (2, 3, 64, 48)),
    "mlp_ratio_2.5": ({"mlp_ratio": 2.5}, (2, 3, 64, 48)),
    "downsamples": ({"embed_dims": [8, 8, 16, 24], "downsamples": [False, True, False, True]}, (3, 3, 48, 48)),
    "three_downsamples": ({"downsamples": [True, False, True]}, (2, 3, 48, 48)),
    "nonsquare_batch4": ({}, (4, 3, 75, 131)),
    "two_stages": ({"depths": [2, 3], "embed_dims": [8, 16], "downsamples": [True, True]}, (2, 3, 40, 40)),
    "down_patch_5": ({"down_patch_size": 5, "down_stride": 3, "down_pad": 2}, (2, 3, 96, 80)),
    "down_patch_rect": ({"down_patch_size": [3, 1], "down_stride": [2, 1], "down_pad": [1, 0]}, (2, 3, 64, 32)),
    "one_label": ({"num_labels": 1}, (2, 3, 32, 32)),
    "no_heads": ({"num_labels": 0}, (2, 3, 32, 32)),
    "eps_1e-3": ({"batch_norm_eps": 1e-3}, (2, 3, 32, 32)),
}


@pytest.mark.parametrize("case", UNUSUAL, ids=list(UNUSUAL))
@pytest.mark.slow
def test_parity_unusual_configs(case):
    overrides, shape = UNUSUAL[case]
    pt, keras_model = pair(**{**TINY, **overrides})
    check_parity(pt, keras_model, shape)


def test_base_model_parity_nchw_outputs():
    config = SwiftFormerConfig(**TINY)
    torch.manual_seed(0)
    pt = perturb_(SwiftFormerModel(config)).eval()
    keras_model = TFSwiftFormerModel(config)
    keras_model.load_state_dict(pt.state_dict())
    x = torch.randn(2, 3, 64, 40)
    with torch.no_grad():
        ref = pt(x, output_hidden_states=True)
    out = keras_model(x, output_hidden_states=True)  # torch tensors are accepted too
    assert tuple(out.last_hidden_state.shape) == (2, 24, 2, 2)  # NCHW
    assert_rel(out.last_hidden_state, ref.last_hidden_state, what="last_hidden_state")
    for i, (ours, theirs) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        assert_rel(ours, theirs, what=f"hidden_states[{i}]")
    last, hidden = keras_model(x.numpy(), output_hidden_states=True, return_dict=False)
    assert_rel(last, ref.last_hidden_state) and len(hidden) == len(ref.hidden_states)


@pytest.mark.slow
def test_tf_function_with_dynamic_height_and_width():
    pt, keras_model = pair(**TINY)
    serve = tf.function(
        lambda x: keras_model(x, training=False).logits,
        input_signature=[tf.TensorSpec([None, 3, None, None], tf.float32)],
    )
    for shape in [(2, 3, 64, 48), (1, 3, 75, 131), (3, 3, 32, 32)]:
        x = torch.randn(shape)
        with torch.no_grad():
            expected = pt(x).logits
        assert_rel(serve(tf.constant(x.numpy())), expected, what=str(shape))
    assert serve.experimental_get_tracing_count() == 1  # one trace served every size


def test_eager_call_runs_a_graph_unless_run_eagerly():
    _, keras_model = pair(**TINY)
    x = np.random.default_rng(0).standard_normal((2, 3, 48, 40)).astype(np.float32)
    graph = keras_model(x, output_hidden_states=True)
    keras_model.run_eagerly = True
    op_by_op = keras_model(x, output_hidden_states=True)
    assert_rel(graph.logits, op_by_op.logits, rel=1e-6)
    assert len(graph.hidden_states) == len(op_by_op.hidden_states) == 8
    assert keras_model(x).hidden_states is None


@pytest.mark.slow
def test_cached_inference_graph_does_not_keep_the_model_alive():
    import gc
    import weakref

    model = TFSwiftFormerForImageClassification(SwiftFormerConfig(**TINY))
    model(np.zeros((1, 3, 32, 32), np.float32))
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


@pytest.mark.slow
def test_xla_matches_eager():
    pt, keras_model = pair(**{**TINY, "attention_variant": "l2"})
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 48)).astype(np.float32)
    xla = tf.function(lambda x: keras_model(x, training=False).logits, jit_compile=True)
    with torch.no_grad():
        expected = pt(torch.from_numpy(x)).logits
    assert_rel(xla(x), expected, what="XLA logits")


def test_return_tuple_and_output_access():
    _, keras_model = pair(**TINY)
    x = np.zeros((2, 3, 32, 32), np.float32)
    out = keras_model(x)
    assert list(out.keys()) == ["logits", "cls_logits", "distillation_logits"]
    assert out[0] is out.logits and out["logits"] is out.logits
    assert_rel(out.logits, (np.asarray(out.cls_logits) + np.asarray(out.distillation_logits)) / 2, rel=1e-6)
    tup = keras_model(x, output_hidden_states=True, return_dict=False)
    assert len(tup) == 2 and len(tup[1]) == 8
    loss, logits = keras_model(x, labels=np.array([1, 2]), return_dict=False)
    assert np.shape(loss) == (1,) and tuple(logits.shape) == (2, 5)  # transformers' TF loss shape


# ------------------------------------------------------------------------------------------------
# Training: stochastic depth, BatchNorm, gradients, losses, fit
# ------------------------------------------------------------------------------------------------


def test_drop_path_schedule_matches_pytorch_including_conv_encoders():
    pt, keras_model = pair(**{**TINY, "drop_path_rate": 0.3})  # perturbed: every branch matters
    pt_rates = [
        getattr(block.drop_path, "drop_prob", 0.0)
        for stage in pt.swiftformer.encoder.network
        if hasattr(stage, "blocks")
        for block in stage.blocks
    ]
    tf_rates = [
        block.drop_path.rate if block.drop_path is not None else 0.0
        for stage in keras_model.swiftformer.network
        if hasattr(stage, "blocks")
        for block in stage.blocks
    ]
    assert tf_rates == pytest.approx(pt_rates) and tf_rates[-1] == pytest.approx(0.3) and len(tf_rates) == 6
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    train_1, train_2 = (np.asarray(keras_model(x, training=True).logits) for _ in range(2))
    assert np.abs(train_1 - train_2).max() > 1e-3 * np.abs(train_1).max()  # stochastic in training
    np.testing.assert_array_equal(np.asarray(keras_model(x).logits), np.asarray(keras_model(x).logits))


def test_drop_path_keeps_expectation_and_drops_whole_samples():
    layer = _DropPath(0.25)
    x = np.ones((4000, 2, 2, 3), np.float32)
    y = np.asarray(layer(x, training=True))
    per_sample = y.reshape(4000, -1)
    assert (np.isclose(per_sample, 0.0) | np.isclose(per_sample, 1 / 0.75)).all()
    assert (per_sample == per_sample[:, :1]).all()  # a whole sample is kept or dropped
    assert abs(y.mean() - 1.0) < 0.05 and abs((per_sample[:, 0] == 0).mean() - 0.25) < 0.03
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)


def test_training_mode_outputs_gradients_and_running_stats_match_pytorch():
    pt, keras_model = pair(**TINY)
    pt.train()
    x = torch.randn(4, 3, 32, 48, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0, 4, 2, 1])
    ref = pt(x, labels=labels)
    ref.loss.backward()
    with tf.GradientTape() as tape:
        out = keras_model(x.numpy(), labels=labels.numpy(), training=True)
    assert_rel(out.logits, ref.logits.detach(), what="training-mode logits")
    assert_rel(out.loss[0], ref.loss.detach(), what="loss")
    items = [(name, var, kind) for name, var, kind in keras_model.state_items() if var is not None and var.trainable]
    grads = tape.gradient(out.loss, [var for _, var, _ in items])
    pt_params = dict(pt.named_parameters())
    assert len(items) == len(pt_params)
    for (name, _, kind), grad in zip(items, grads):
        expected = pt_params[name].grad
        ours = _LAYOUTS[kind][0](np.asarray(grad)) if grad is not None else np.zeros(expected.shape)
        assert_rel(ours, expected, rel=1e-3, atol=1e-6, what=f"grad {name}")  # atol: BN-cancelled biases
    pt_buffers = dict(pt.named_buffers())
    tf_state = keras_model.state_dict()
    for name in (
        "norm.running_mean",
        "swiftformer.encoder.network.0.blocks.0.norm.running_mean",
        "swiftformer.patch_embed.patch_embedding.1.running_mean",
    ):
        assert_rel(tf_state[name], pt_buffers[name], what=name)
    # running_var: updated with the unbiased batch variance, as torch does
    assert_rel(tf_state["norm.running_var"], pt_buffers["norm.running_var"], what="norm.running_var")


LOSS_CASES = {
    "regression_one_label": (1, None, lambda g: torch.randn(4, generator=g)),
    "regression_multi": (3, "regression", lambda g: torch.randn(4, 3, generator=g)),
    "single_label": (3, None, lambda g: torch.tensor([0, 2, 1, 2])),
    "single_label_ignore_index": (3, None, lambda g: torch.tensor([0, -100, 1, 2])),
    "single_label_column": (3, "single_label_classification", lambda g: torch.tensor([[0], [2], [1], [1]])),
    "multi_label": (3, None, lambda g: (torch.rand(4, 3, generator=g) > 0.5).float()),
}


@pytest.mark.parametrize("case", LOSS_CASES, ids=list(LOSS_CASES))
@pytest.mark.slow
def test_loss_matches_pytorch(case):
    num_labels, problem_type, make_labels = LOSS_CASES[case]
    pt, keras_model = pair(**{**TINY, "num_labels": num_labels, "problem_type": problem_type})
    labels = make_labels(torch.Generator().manual_seed(0))
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = pt(x, labels=labels)
    out = keras_model(x.numpy(), labels=labels.numpy())
    assert tuple(out.loss.shape) == (1,)  # transformers' TF loss shape
    assert_rel(out.loss[0], ref.loss, rel=1e-5, what="loss")


@pytest.mark.parametrize(
    "num_labels, problem_type, labels, match",
    [
        (3, None, np.array([0, 3]), r"class indices in \[0, 3\)"),
        (3, "single_label_classification", np.array([0.0, 1.0]), "integer class indices"),
        (3, None, np.zeros((2, 2), np.float32), r"multi-hot labels of shape \(2, 3\)"),
        (3, None, np.array([0, 1, 2]), "batch size 2"),
    ],
)
def test_bad_labels(num_labels, problem_type, labels, match):
    _, keras_model = pair(**{**TINY, "num_labels": num_labels, "problem_type": problem_type})
    with pytest.raises(ValueError, match=match):
        keras_model(np.zeros((2, 3, 32, 32), np.float32), labels=labels)


FIT_CONFIG = {"depths": [1, 2], "embed_dims": [8, 16], "downsamples": [True, True]}


@pytest.mark.slow
def test_fit_with_builtin_loss_lowers_the_loss():
    keras.utils.set_random_seed(0)
    model = TFSwiftFormerForImageClassification(SwiftFormerConfig(**FIT_CONFIG, num_labels=3))
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 24)
    images = (rng.standard_normal((24, 3, 16, 16)) + (labels[:, None, None, None] - 1) * 1.5).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])  # no loss: the model's own
    history = model.fit(dataset, epochs=5, verbose=0, shuffle=False).history
    assert history["loss"][-1] < 0.8 * history["loss"][0], history["loss"]
    assert history["accuracy"][-1] > history["accuracy"][0]
    predictions = model.predict(images[:5], verbose=0)
    assert sorted(predictions) == ["cls_logits", "distillation_logits", "logits"] and predictions["logits"].shape == (
        5,
        3,
    )


@pytest.mark.slow
def test_fit_multi_hot_labels_drop_path_no_layer_scale():
    keras.utils.set_random_seed(0)
    config = SwiftFormerConfig(
        **FIT_CONFIG, num_labels=2, use_layer_scale=False, drop_path_rate=0.2, attention_variant="l2"
    )
    model = TFSwiftFormerForImageClassification(config)
    rng = np.random.default_rng(0)
    labels = (rng.random((16, 2)) > 0.5).astype(np.float32)
    images = (rng.standard_normal((16, 3, 16, 16)) + labels[:, :1, None, None] * 2).astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    first = float(model.evaluate(images, labels, batch_size=16, verbose=0))
    expected = float(np.asarray(model(images, labels=labels).loss)[0])
    assert first == pytest.approx(expected, rel=1e-4)  # evaluate() used the built-in multi-label BCE
    history = model.fit(images, labels, batch_size=8, epochs=5, verbose=0).history
    assert history["loss"][-1] < history["loss"][0], history["loss"]


# ------------------------------------------------------------------------------------------------
# Weights both ways
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_save_pretrained_loads_in_pytorch_and_back(tmp_path: Path):
    pt, keras_model = pair(**TINY)
    keras_model.save_pretrained(tmp_path / "from_tf")
    with safe_open(tmp_path / "from_tf" / "model.safetensors", "np") as f:
        assert set(f.keys()) == set(pt.state_dict())  # exactly PyTorch's keys, num_batches_tracked included
        assert f.metadata() == {"format": "pt"}
    assert json.loads((tmp_path / "from_tf" / "config.json").read_text())["architectures"] == [
        "SwiftFormerForImageClassification"
    ]
    reloaded = SwiftFormerForImageClassification.from_pretrained(tmp_path / "from_tf")
    for key, value in pt.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[key], value, rtol=0, atol=0, msg=key)

    pt.save_pretrained(tmp_path / "from_pt")
    back = TFSwiftFormerForImageClassification.from_pretrained(tmp_path / "from_pt")
    check_parity(pt, back, (2, 3, 48, 32))


def test_from_pretrained_bin_base_model_and_overrides(tmp_path: Path, caplog):
    pt, _ = pair(**TINY)
    pt.save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert (tmp_path / "bin" / "pytorch_model.bin").exists()
    check_parity(pt, TFSwiftFormerForImageClassification.from_pretrained(tmp_path / "bin"), (2, 3, 32, 32))

    base = TFSwiftFormerModel.from_pretrained(tmp_path / "bin")  # classifier checkpoint → backbone
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = pt.swiftformer(torch.from_numpy(x)).last_hidden_state
    assert_rel(base(x).last_hidden_state, expected)
    base.save_pretrained(tmp_path / "base")
    with caplog.at_level("WARNING"):
        fresh_heads = TFSwiftFormerForImageClassification.from_pretrained(tmp_path / "base")  # backbone → classifier
    assert "newly initialized" in caplog.text
    assert fresh_heads.num_labels == 5

    with pytest.raises(CheckpointError, match=r"shape mismatches \(4\).*head\.weight"):
        TFSwiftFormerForImageClassification.from_pretrained(tmp_path / "bin", num_labels=3)
    relabelled = TFSwiftFormerForImageClassification.from_pretrained(
        tmp_path / "bin", num_labels=3, ignore_mismatched_sizes=True
    )
    assert tuple(relabelled(x).logits.shape) == (1, 3)


@pytest.mark.slow
def test_keras_native_saving(tmp_path: Path):
    _, keras_model = pair(**TINY)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    keras_model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(reloaded, TFSwiftFormerForImageClassification) and reloaded.config == keras_model.config
    np.testing.assert_array_equal(np.asarray(reloaded(x).logits), np.asarray(keras_model(x).logits))
    keras_model.save_weights(tmp_path / "model.weights.h5")
    fresh = TFSwiftFormerForImageClassification(keras_model.config)
    fresh.load_weights(tmp_path / "model.weights.h5")
    np.testing.assert_array_equal(np.asarray(fresh(x).logits), np.asarray(keras_model(x).logits))


def test_module_split_keeps_names_and_variable_paths():
    """keras/ is split by role (ops, layers, weights, models); the Keras names stay."""
    import swiftformer.keras.models as models

    for name in ("TFSwiftFormerForImageClassification", "TFSwiftFormerModel", "TFSwiftFormerPreTrainedModel"):
        assert name in models.__all__
    assert models.read_reference_h5 is read_reference_h5 and callable(models.read_weights_file)
    model = TFSwiftFormerModel(SwiftFormerConfig(**TINY), name="m")
    assert isinstance(model.swiftformer, models.TFSwiftFormerMainLayer) and model.swiftformer.name == "swiftformer"
    assert model.state_items()[0][0] == "patch_embed.patch_embedding.0.weight"


def test_checkpoint_errors(tmp_path: Path):
    pt, keras_model = pair(**TINY)
    state = pt.state_dict()
    state.pop("swiftformer.encoder.network.0.blocks.1.attn.w_g")
    state["swiftformer.extra.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError) as info:
        keras_model.load_state_dict(state)
    assert "missing keys (1): swiftformer.encoder.network.0.blocks.1.attn.w_g" in str(info.value)
    assert "unexpected keys (1): swiftformer.extra.weight" in str(info.value)

    pt.save_pretrained(tmp_path / "corrupt")
    weights = tmp_path / "corrupt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        TFSwiftFormerForImageClassification.from_pretrained(tmp_path / "corrupt")


def test_offline_hub_id_is_a_clear_error(offline_hub):
    with pytest.raises(OSError, match="offline"):
        TFSwiftFormerForImageClassification.from_pretrained("MBZUAI/swiftformer-xs")


@pytest.mark.parametrize(
    "make_input, error, match",
    [
        (lambda: np.zeros((1, 4, 32, 32), np.float32), ValueError, r"shape \(batch, 3, height, width\)"),
        (lambda: np.zeros((3, 32, 32), np.float32), ValueError, r"shape \(batch, 3, height, width\)"),
        (lambda: np.zeros((1, 3, 32, 32), np.uint8), ValueError, "floating-point"),
    ],
)
def test_bad_pixel_values(make_input, error, match):
    _, keras_model = pair(**TINY)
    with pytest.raises(error, match=match):
        keras_model(make_input())


def test_an_empty_batch_is_one_clear_error():
    _, keras_model = pair(**TINY)
    with pytest.raises(ValueError, match=r"pixel_values holds no images \(shape \(0, 3, 32, 32\)\)"):
        keras_model(np.zeros((0, 3, 32, 32), np.float32))


def test_unknown_input_names_are_one_clear_error():
    _, keras_model = pair(**TINY)
    for extra in (np.zeros(2), 1):  # an array, or a scalar Keras would refuse as a positional input
        with pytest.raises(ValueError, match=r"unexpected inputs \['foo'\]; it takes pixel_values, labels"):
            keras_model({"pixel_values": np.zeros((2, 3, 32, 32), np.float32), "foo": extra})


def test_the_global_image_data_format_does_not_change_the_outputs():
    """The model is NCHW outside and NHWC inside whatever keras.config.image_data_format() says."""
    pt, keras_model = pair(**TINY)
    x = torch.randn(2, 3, 32, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = pt(x).logits
    keras.config.set_image_data_format("channels_first")
    try:
        assert_rel(keras_model(x.numpy()).logits, ref, what="inference")
        assert_rel(TFSwiftFormerForImageClassification(pt.config)(x.numpy(), training=True).logits.shape, ref.shape)
    finally:
        keras.config.set_image_data_format("channels_last")


def test_torch_tensors_processor_outputs_and_bfloat16_weights_are_accepted(tmp_path: Path):
    """What a PyTorch user hands over: tensors that require grad or are bfloat16, a processor's BatchFeature with
    list labels, and a bfloat16 checkpoint (numpy has no bfloat16: read as float32, exactly)."""
    from swiftformer.image_processing import BatchFeature

    pt, keras_model = pair(**TINY)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = pt(x, labels=torch.tensor([0, 2]))
    assert_rel(keras_model(x.clone().requires_grad_()).logits, ref.logits, what="requires grad")
    assert_rel(keras_model(x.bfloat16()).logits, pt(x.bfloat16().float()).logits.detach(), what="bfloat16 input")
    out = keras_model(BatchFeature({"pixel_values": x.numpy(), "labels": [0, 2]}))
    assert_rel(out.logits, ref.logits, what="BatchFeature") and assert_rel(out.loss[0], ref.loss, what="loss")
    pt.to(torch.bfloat16).save_pretrained(tmp_path, safe_serialization=False)
    loaded = TFSwiftFormerForImageClassification.from_pretrained(tmp_path)
    expected = {k: v.float().numpy() for k, v in pt.state_dict().items()}
    assert all(np.array_equal(loaded.state_dict()[k], v) for k, v in expected.items() if v.ndim)


def test_loss_of_labels_traced_with_an_unknown_rank():
    """Keras' evaluate retraces with relaxed shapes when the labels' rank changes: (B,) then (B, 1)."""
    pt, keras_model = pair(**TINY)
    x, labels = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype("float32"), np.array([0, 2, 1, 1])
    loss = tf.function(lambda y: keras_model.loss_for(keras_model(x).logits, y), reduce_retracing=True)
    column = loss(labels[:, None])
    assert float(loss(labels)) == pytest.approx(float(column), rel=1e-6)  # traced for any rank by now
    with torch.no_grad():
        assert float(column) == pytest.approx(
            float(pt(torch.from_numpy(x), labels=torch.from_numpy(labels)).loss), 1e-5
        )


def test_from_pretrained_refuses_unknown_keywords_and_accepts_from_pt(tmp_path: Path):
    pt, _ = pair(**TINY)
    pt.save_pretrained(tmp_path)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['foo'\]"):
        TFSwiftFormerForImageClassification.from_pretrained(tmp_path, foo=1)
    loaded = TFSwiftFormerForImageClassification.from_pretrained(tmp_path, from_pt=True)  # transformers' TF idiom
    loaded.save_pretrained(tmp_path / "again")
    assert "from_pt" not in json.loads((tmp_path / "again" / "config.json").read_text())


def test_too_small_input_for_custom_downsampling():
    keras_model = TFSwiftFormerForImageClassification(
        SwiftFormerConfig(**{**TINY, "down_patch_size": 5, "down_pad": 0})
    )
    keras_model(np.zeros((1, 3, 128, 128), np.float32))
    with pytest.raises(ValueError, match="32x32 is too small"):
        keras_model(np.zeros((1, 3, 32, 32), np.float32))


# ------------------------------------------------------------------------------------------------
# The JAX backend (fixed at import, so in a subprocess)
# ------------------------------------------------------------------------------------------------

JAX_SCRIPT = r"""
import json, numpy as np, torch, keras
from _helpers import perturb_
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification
from swiftformer.keras.models import TFSwiftFormerForImageClassification
assert keras.backend.backend() == "jax"
result = {}
for name, overrides in {"l2_no_layer_scale": {"attention_variant": "l2", "use_layer_scale": False}}.items():
    config = SwiftFormerConfig(depths=[2, 1, 1, 1], embed_dims=[8, 12, 16, 24], num_labels=5, output_hidden_states=True,
                               **overrides)
    torch.manual_seed(0)
    pt = perturb_(SwiftFormerForImageClassification(config)).eval()
    model = TFSwiftFormerForImageClassification(config)
    model.load_state_dict(pt.state_dict())
    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = pt(x, output_hidden_states=True)
    out = model.predict(x.numpy(), verbose=0)  # jitted: one compilation (eager JAX compiles op by op)
    pairs = [(out["logits"], ref.logits)] + list(zip(out["hidden_states"], ref.hidden_states))
    result[name] = max(float(np.abs(np.asarray(a) - b.numpy()).max() / np.abs(b.numpy()).max()) for a, b in pairs)
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
labels = rng.integers(0, 5, 16)
images = (rng.standard_normal((16, 3, 16, 16)) + labels[:, None, None, None] - 2).astype("float32")
model = TFSwiftFormerForImageClassification(SwiftFormerConfig(depths=[1, 2], embed_dims=[8, 16], downsamples=[True, True], num_labels=5))
model.compile(optimizer=keras.optimizers.Adam(3e-3))
result["fit_loss"] = model.fit(images, labels, batch_size=8, epochs=3, verbose=0).history["loss"]
result["predict"] = sorted(model.predict(images[:2], verbose=0))
print("RESULT", json.dumps(result))
"""


@pytest.mark.slow
def test_jax_backend_parity_and_fit():
    pytest.importorskip("jax")
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT],
        capture_output=True,
        text=True,
        env={**SUBPROCESS_ENV, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"},
        timeout=600,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout[-2000:] + result.stderr[-3000:]
    found = json.loads(lines[-1].removeprefix("RESULT "))
    assert found["l2_no_layer_scale"] <= 1e-4, found
    assert found["fit_loss"][-1] < found["fit_loss"][0], found
    assert found["predict"] == ["cls_logits", "distillation_logits", "logits"]
