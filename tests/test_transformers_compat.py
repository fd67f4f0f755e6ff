"""A drop-in for transformers' SwiftFormer: the parts of transformers' interface its tools rely on.

torch.export (strict and non-strict) of models returning output dataclasses; from_pretrained's loading info,
state_dict=, subfolder=, partial checkpoints and the meta-device refusal; config extras kept and saved;
transformers' model API (embeddings, base_model, can_generate, legacy gradient checkpointing flag);
transformers' pipeline and Trainer driving our model; and on the Keras side dict
inputs, fit on datasets of dicts, the serving signature and SavedModel export.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo  # before TensorFlow: importing it after TensorFlow segfaults
from safetensors.torch import save_file

from _helpers import SMALLEST, perturb_
from swiftformer import (
    CheckpointError,
    SwiftFormerConfig,
    SwiftFormerForImageClassification,
    SwiftFormerImageProcessor,
    SwiftFormerModel,
)

TINY = {**SMALLEST, "num_labels": 3}


def tiny(cls=SwiftFormerForImageClassification, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return perturb_(cls(SwiftFormerConfig(**{**TINY, **overrides})), seed).eval()


def pixels(batch: int = 2, size: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------
# torch.export: the output classes are pytree nodes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "strict"),
    [(SwiftFormerForImageClassification, True), (SwiftFormerForImageClassification, False), (SwiftFormerModel, False)],
    ids=["classifier-strict", "classifier-non-strict", "base-non-strict"],
)
def test_torch_export_with_dataclass_outputs(cls, strict):
    model, x = tiny(cls), pixels()
    program = torch.export.export(model, (x,), strict=strict)
    with torch.no_grad():
        expected = model(x)
        got = program.module()(x)
    assert type(got) is type(expected)
    assert list(got.keys()) == list(expected.keys())  # in field order (views of dicts compare as sets)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key])


def test_torch_export_with_hidden_states_and_new_batch_size():
    model = tiny()
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(
        model, (pixels(2),), {"output_hidden_states": True}, dynamic_shapes=({0: batch}, None), strict=False
    )
    x = pixels(3, seed=5)
    got, expected = program.module()(x, output_hidden_states=True), model(x, output_hidden_states=True)
    assert len(got.hidden_states) == len(expected.hidden_states) == 8
    torch.testing.assert_close(got.logits, expected.logits)
    torch.testing.assert_close(got.hidden_states[-1], expected.hidden_states[-1])


def test_output_pytree_round_trip():
    from torch.utils import _pytree

    out = tiny()(pixels(), output_hidden_states=True)
    leaves, spec = _pytree.tree_flatten(out)
    assert len(leaves) == 1 + 8 + 2  # logits, hidden states, both heads (the None loss is left out)
    rebuilt = _pytree.tree_unflatten(leaves, spec)
    assert type(rebuilt) is type(out) and rebuilt.loss is None
    assert _pytree.treespec_loads(_pytree.treespec_dumps(spec)) == spec  # serializable: exported programs save


def test_exported_program_saves_and_loads(tmp_path: Path):
    model, x = tiny(), pixels()
    torch.export.save(torch.export.export(model, (x,), strict=False), tmp_path / "model.pt2")
    got = torch.export.load(tmp_path / "model.pt2").module()(x)
    torch.testing.assert_close(got.logits, model(x).logits)


# ------------------------------------------------------------------------------------------------
# from_pretrained: loading info, state_dict=, subfolder=, partial checkpoints, meta device
# ------------------------------------------------------------------------------------------------


def test_output_loading_info_of_a_complete_folder(tmp_path: Path):
    model = tiny()
    model.save_pretrained(tmp_path)
    loaded, info = SwiftFormerForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert info == {"missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set(), "error_msgs": []}
    torch.testing.assert_close(loaded(pixels()).logits, model(pixels()).logits)


def test_base_model_folder_into_classifier_lists_the_fresh_heads(tmp_path: Path):
    tiny().swiftformer.save_pretrained(tmp_path)
    _, info = SwiftFormerForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == {
        "norm.weight", "norm.bias", "norm.running_mean", "norm.running_var",
        "head.weight", "head.bias", "dist_head.weight", "dist_head.bias",
    }  # fmt: skip
    assert not info["unexpected_keys"] and not info["mismatched_keys"]


def test_from_pretrained_none_with_config_and_state_dict():
    model = tiny()
    loaded = SwiftFormerForImageClassification.from_pretrained(None, config=model.config, state_dict=model.state_dict())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    assert not loaded.training
    with pytest.raises(ValueError, match="config= and state_dict="):
        SwiftFormerForImageClassification.from_pretrained(None, config=model.config)


def test_state_dict_argument_replaces_the_folder_weights(tmp_path: Path):
    tiny(seed=1).save_pretrained(tmp_path)
    other = tiny(seed=2)
    loaded = SwiftFormerForImageClassification.from_pretrained(tmp_path, state_dict=other.state_dict())
    torch.testing.assert_close(loaded(pixels()).logits, other(pixels()).logits)


def test_subfolder(tmp_path: Path):
    model = tiny()
    model.save_pretrained(tmp_path / "weights" / "classifier")
    loaded = SwiftFormerForImageClassification.from_pretrained(tmp_path / "weights", subfolder="classifier")
    torch.testing.assert_close(loaded(pixels()).logits, model(pixels()).logits)
    assert SwiftFormerConfig.from_pretrained(tmp_path, subfolder="weights/classifier") == model.config
    with pytest.raises(FileNotFoundError, match="subfolder 'nope'"):
        SwiftFormerForImageClassification.from_pretrained(tmp_path / "weights", subfolder="nope", config=model.config)


def test_partial_checkpoint_loads_like_transformers(tmp_path: Path, caplog):
    model = tiny(seed=3)
    state = model.state_dict()
    del state["swiftformer.encoder.network.0.blocks.0.attn.w_g"], state["head.bias"]
    model.save_pretrained(tmp_path)
    save_file(state, tmp_path / "model.safetensors")
    with caplog.at_level(logging.WARNING, logger="swiftformer"):
        loaded, info = SwiftFormerForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == {"swiftformer.encoder.network.0.blocks.0.attn.w_g", "head.bias"}
    assert info["unexpected_keys"] == set() and info["mismatched_keys"] == set()
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "partial checkpoint" in warning and "head.bias" in warning and "attn.w_g" in warning
    # every weight the file has is loaded; the missing ones are initialized as in a new model
    loaded_state = loaded.state_dict()
    for key, value in state.items():
        torch.testing.assert_close(loaded_state[key], value)
    assert torch.all(loaded.head.bias == 0)  # transformers' init: zero biases


def test_weights_the_model_does_not_have_are_an_error(tmp_path: Path):
    """transformers ignores them; here they mean another architecture (a deeper variant) or layout."""
    model = tiny()
    state = {**model.state_dict(), "swiftformer.encoder.network.0.blocks.1.attn.w_g": torch.zeros(8, 1)}
    model.save_pretrained(tmp_path)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): swiftformer.encoder.network.0.blocks.1"):
        SwiftFormerForImageClassification.from_pretrained(tmp_path)


def test_a_file_with_no_weight_of_the_model_is_an_error(tmp_path: Path):
    tiny().save_pretrained(tmp_path)
    save_file({"encoder.layer.0.weight": torch.zeros(2, 2)}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="holds none of the weights"):
        SwiftFormerForImageClassification.from_pretrained(tmp_path)


def test_mismatched_shapes_are_an_error_unless_ignored(tmp_path: Path):
    tiny().save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="ignore_mismatched_sizes"):
        SwiftFormerForImageClassification.from_pretrained(tmp_path, num_labels=7)
    model, info = SwiftFormerForImageClassification.from_pretrained(
        tmp_path, num_labels=7, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert model.head.out_features == 7
    assert ("head.weight", (3, 16), (7, 16)) in info["mismatched_keys"]
    assert not info["missing_keys"]  # as in transformers, re-initialized mis-shaped weights are not "missing"


def test_from_pretrained_refuses_the_meta_device(tmp_path: Path):
    tiny().save_pretrained(tmp_path)
    with torch.device("meta"), pytest.raises(RuntimeError, match="meta device context manager"):
        SwiftFormerForImageClassification.from_pretrained(tmp_path)
    with torch.device("meta"):  # building an empty model there is fine
        assert SwiftFormerForImageClassification(SwiftFormerConfig(**TINY)).head.weight.is_meta


def test_from_pretrained_dtype_and_transformers_loading_options(tmp_path: Path):
    tiny().save_pretrained(tmp_path)
    assert SwiftFormerForImageClassification.from_pretrained(tmp_path, dtype=torch.float16).dtype == torch.float16
    assert SwiftFormerForImageClassification.from_pretrained(tmp_path, torch_dtype="bfloat16").dtype == torch.bfloat16
    assert SwiftFormerForImageClassification.from_pretrained(tmp_path, dtype="auto").dtype == torch.float32
    model = SwiftFormerForImageClassification.from_pretrained(
        tmp_path, trust_remote_code=False, low_cpu_mem_usage=True, attn_implementation="eager", device_map="cpu"
    )
    assert not hasattr(model.config, "trust_remote_code")  # loading options never land in the config
    with pytest.raises(TypeError, match="device_map='auto'"):
        SwiftFormerForImageClassification.from_pretrained(tmp_path, device_map="auto")
    with pytest.raises(TypeError, match="quantization_config"):
        SwiftFormerForImageClassification.from_pretrained(tmp_path, quantization_config={})
    with pytest.raises(ValueError, match="attn_implementation='sdpa'"):
        SwiftFormerForImageClassification.from_pretrained(tmp_path, attn_implementation="sdpa")


def test_save_pretrained_takes_transformers_arguments(tmp_path: Path):
    model = tiny()
    assert model.save_pretrained(tmp_path / "not-main", is_main_process=False) is None
    assert not (tmp_path / "not-main").exists()
    state = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    model.save_pretrained(tmp_path / "zeros", state_dict=state, max_shard_size="5GB")
    loaded = SwiftFormerForImageClassification.from_pretrained(tmp_path / "zeros")
    assert all(not v.any() for v in loaded.state_dict().values())
    with pytest.raises(TypeError, match="push_to_hub"):
        model.save_pretrained(tmp_path / "hub", push_to_hub=True)


# ------------------------------------------------------------------------------------------------
# Config: transformers' extra keys and attributes
# ------------------------------------------------------------------------------------------------


def test_unknown_config_keys_are_kept_and_saved(tmp_path: Path):
    config = SwiftFormerConfig(**TINY, hidden_size=37, num_attention_heads=12, custom={"a": [1, 2]})
    assert config.hidden_size == 37 and config.custom == {"a": [1, 2]}
    assert json.loads(config.to_json_string())["hidden_size"] == 37
    config.save_pretrained(tmp_path)
    loaded = SwiftFormerConfig.from_pretrained(tmp_path)
    assert loaded.num_attention_heads == 12 and loaded.custom == {"a": [1, 2]} and loaded == config
    # a model folder keeps them too
    SwiftFormerForImageClassification(config).save_pretrained(tmp_path / "model")
    assert SwiftFormerForImageClassification.from_pretrained(tmp_path / "model").config.hidden_size == 37


def test_transformers_common_config_kwargs_are_stored_as_given():
    common = {
        "return_dict": False, "output_hidden_states": True, "output_attentions": True, "dtype": "float16",
        "chunk_size_feed_forward": 5, "architectures": ["BertModel"], "id2label": {0: "label"},
        "label2id": {"label": "0"}, "problem_type": "regression",
    }  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # transformers' own keys: no warning
        config = SwiftFormerConfig(**common)
    for key, value in common.items():
        assert getattr(config, key) == (torch.float16 if key == "dtype" else value), key
    assert config.to_dict()["dtype"] == "float16"
    assert SwiftFormerConfig(torch_dtype=torch.bfloat16).dtype == torch.bfloat16  # the older name


def test_config_attributes_transformers_reads(tmp_path: Path):
    config = SwiftFormerConfig(**TINY)
    assert config.sub_configs == {} and SwiftFormerConfig.sub_configs == {}
    assert config.output_attentions is False and config._commit_hash is None and config.dtype is None
    assert config.get_text_config() is config and config.is_encoder_decoder is False
    assert "depths" in list(config)
    assert config.to_diff_dict() == {"depths": [1, 1, 1, 1], "embed_dims": [8, 8, 16, 16],
                                     "id2label": {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"},
                                     "label2id": {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2},
                                     "model_type": "swiftformer"}  # fmt: skip
    path = config.to_json_file(tmp_path / "c.json")
    assert SwiftFormerConfig.from_json_file(path) == config
    config.save_pretrained(tmp_path)
    assert SwiftFormerConfig.from_pretrained(tmp_path).name_or_path == str(tmp_path)
    assert "name_or_path" not in json.loads((tmp_path / "config.json").read_text())


def test_misspelled_field_and_method_names_warn():
    with pytest.warns(UserWarning, match=r"embed_dim \(did you mean embed_dims\?\)"):
        config = SwiftFormerConfig(embed_dim=[1])
    assert config.embed_dim == [1] and config.embed_dims == [48, 56, 112, 220]
    with pytest.warns(UserWarning, match="to_dict"):
        SwiftFormerConfig(to_dict=1)


def test_non_boolean_use_layer_scale_is_refused_by_the_model_too():
    config = SwiftFormerConfig(**TINY)
    config.use_layer_scale = 1e-10  # what transformers' test_initialization does to every "layer_scale" key
    with pytest.raises(ValueError, match="use_layer_scale"):
        SwiftFormerModel(config)


# ------------------------------------------------------------------------------------------------
# Model API
# ------------------------------------------------------------------------------------------------


def test_transformers_model_api():
    model = tiny()
    assert model.get_input_embeddings() is None and model.get_output_embeddings() is None
    assert model.base_model is model.swiftformer and model.swiftformer.base_model is model.swiftformer
    assert SwiftFormerForImageClassification.can_generate() is False and model.can_generate() is False
    assert model.num_parameters(exclude_embeddings=True) == model.num_parameters()
    with pytest.raises(NotImplementedError):
        model.set_input_embeddings(torch.nn.Embedding(2, 2))
    fresh = SwiftFormerForImageClassification._from_config(model.config, dtype=torch.float64)
    assert fresh.dtype == torch.float64
    with pytest.raises(ValueError, match="sdpa"):
        SwiftFormerForImageClassification._from_config(model.config, attn_implementation="sdpa")


def test_enable_input_require_grads_makes_the_stem_output_require_grad():
    model = tiny().train()
    model.swiftformer.patch_embed.requires_grad_(False)
    seen = []
    model.swiftformer.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].requires_grad))
    model.enable_input_require_grads()
    model(pixels())
    model.disable_input_require_grads()
    model(pixels())
    assert seen == [True, False]


def test_legacy_gradient_checkpointing_config_flag():
    config = SwiftFormerConfig(**TINY, gradient_checkpointing=True)
    model = SwiftFormerForImageClassification(config)
    assert model.is_gradient_checkpointing and model.is_activation_checkpointing
    assert not hasattr(config, "gradient_checkpointing")  # consumed: a saved folder does not carry it on
    model.activation_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    model.activation_checkpointing_enable()
    assert model.is_gradient_checkpointing
    assert not SwiftFormerForImageClassification(SwiftFormerConfig(**TINY)).is_gradient_checkpointing


def test_reentrant_checkpointing_is_refused():
    with pytest.raises(ValueError, match="use_reentrant=True"):
        tiny().gradient_checkpointing_enable({"use_reentrant": True})


# ------------------------------------------------------------------------------------------------
# transformers' pipeline and Trainer drive our classes
# ------------------------------------------------------------------------------------------------


def _images(count: int = 2):
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(count)]


def test_pipeline_with_our_model_and_processor(transformers):
    model = tiny(id2label={0: "cat", 1: "dog", 2: "bird"})
    processor = SwiftFormerImageProcessor()
    pipe = transformers.pipeline("image-classification", model=model, image_processor=processor)
    image = _images(1)[0]
    result = pipe(image, top_k=3)
    with torch.no_grad():
        expected = model(**processor(image, return_tensors="pt")).logits.softmax(-1)[0]
    assert {r["label"]: round(r["score"], 5) for r in result} == {
        model.config.id2label[i]: round(p, 5) for i, p in enumerate(expected.tolist())
    }
    # fp16 pipelines cast the processor's output as transformers' BatchFeature.to does
    inputs = processor(image, return_tensors="pt").to(torch.float16)
    assert inputs.pixel_values.dtype == torch.float16


def test_pipeline_with_our_model(transformers):
    """Our model in transformers' pipeline (here with transformers' own processor, set up like ours)."""
    model = tiny(id2label={0: "cat", 1: "dog", 2: "bird"})
    processor = transformers.ViTImageProcessor(size={"height": 64, "width": 64})
    pipe = transformers.pipeline("image-classification", model=model, image_processor=processor)
    images = _images(2)
    results = pipe(images, top_k=3)
    inputs = processor(images, return_tensors="pt")
    expected = model(**inputs).logits.softmax(-1)
    for result, probabilities in zip(results, expected):
        assert {r["label"]: round(r["score"], 5) for r in result} == {
            model.config.id2label[i]: round(p, 5) for i, p in enumerate(probabilities.tolist())
        }


def test_trainer_fine_tunes_saves_and_resumes(tmp_path: Path, transformers):
    pytest.importorskip("accelerate")  # transformers' Trainer needs it

    class Images(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"pixel_values": pixels(1, 32, seed=i)[0], "labels": torch.tensor(i % 3)}

    def trainer(max_steps: int):
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path), max_steps=max_steps, per_device_train_batch_size=4, learning_rate=1e-2,
            save_steps=2, logging_steps=1, use_cpu=True, report_to=[], disable_tqdm=True,
        )  # fmt: skip
        torch.manual_seed(0)
        return transformers.Trainer(
            model=SwiftFormerForImageClassification(SwiftFormerConfig(**TINY)), args=args, train_dataset=Images()
        )

    first = trainer(2)
    result = first.train()
    assert result.global_step == 2 and np.isfinite(result.training_loss)
    checkpoint = tmp_path / "checkpoint-2"
    assert (checkpoint / "model.safetensors").is_file()
    # the checkpoint holds our state dict: it loads into our model with config= (Trainer saves no config.json)
    reloaded = SwiftFormerForImageClassification.from_pretrained(checkpoint, config=first.model.config)
    for key, value in first.model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[key], value.cpu())
    resumed = trainer(4).train(resume_from_checkpoint=str(checkpoint))
    assert resumed.global_step == 4
    predicted = first.predict(Images())  # predictions are the logits alone, as compute_metrics recipes expect
    assert isinstance(predicted.predictions, np.ndarray) and predicted.predictions.shape == (8, TINY["num_labels"])


# ------------------------------------------------------------------------------------------------
# Keras
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tfk():
    pytest.importorskip("tensorflow")
    pytest.importorskip("keras")
    import keras
    import tensorflow as tf

    from swiftformer.keras import TFSwiftFormerForImageClassification, TFSwiftFormerModel

    return keras, tf, TFSwiftFormerForImageClassification, TFSwiftFormerModel


def _keras_pair(tfk, seed: int = 0):
    _, _, classifier, _ = tfk
    pt = tiny(seed=seed)
    model = classifier(pt.config)
    model.load_state_dict(pt.state_dict())
    return pt, model


def test_keras_dict_list_and_keyword_inputs(tfk):
    base = tfk[3]
    pt, model = _keras_pair(tfk)
    x, labels = pixels(4).numpy(), np.array([0, 1, 2, 1])
    expected = pt(torch.from_numpy(x)).logits.detach().numpy()
    np.testing.assert_allclose(model({"pixel_values": x}).logits, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model(pixel_values=x).logits, expected, rtol=1e-4, atol=1e-5)
    from_dict = model({"pixel_values": x, "labels": labels, "output_hidden_states": True})
    assert from_dict.loss.shape == (1,) and len(from_dict.hidden_states) == 8  # transformers' TF loss shape
    np.testing.assert_allclose(model([x, labels]).loss, from_dict.loss, rtol=1e-6)
    with pytest.raises(ValueError, match="unexpected inputs"):
        model({"pixel_values": x, "input_ids": labels})
    with pytest.raises(ValueError, match="both in the inputs dict and as arguments"):
        model({"pixel_values": x, "labels": labels}, labels=labels)
    assert base(pt.config)({"pixel_values": x}).last_hidden_state.shape == (4, 16, 2, 2)


def test_keras_fit_on_a_dataset_of_dicts(tfk):
    keras, tf, _, _ = tfk
    _, model = _keras_pair(tfk)
    x, labels = pixels(8, 32).numpy(), np.arange(8) % 3
    dataset = tf.data.Dataset.from_tensor_slices({"pixel_values": x, "labels": labels}).batch(4)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    history = model.fit(dataset, epochs=1, verbose=0)  # the labels come from the dicts
    assert np.isfinite(history.history["loss"][0])
    expected = np.mean([float(model({"pixel_values": x[i : i + 4], "labels": labels[i : i + 4]}).loss[0])
                        for i in (0, 4)])  # fmt: skip
    np.testing.assert_allclose(model.evaluate(dataset, verbose=0), expected, rtol=1e-4)
    # labels in the dict or separate: the same loss (transformers' test_keras_fit); sample weights weight it
    in_dict = model.evaluate({"pixel_values": x, "labels": labels}, batch_size=8, verbose=0)
    np.testing.assert_allclose(in_dict, model.evaluate(x, labels, batch_size=8, verbose=0), rtol=1e-5)
    weighted = model.evaluate(x, labels, sample_weight=np.full(8, 0.5, "float32"), batch_size=8, verbose=0)
    np.testing.assert_allclose(weighted, 0.5 * in_dict, rtol=1e-5)
    model.fit({"pixel_values": x}, labels, sample_weight=np.ones(8, "float32"), batch_size=4, verbose=0)


def test_keras_transformers_api(tfk):
    _, tf, classifier, _ = tfk
    _, model = _keras_pair(tfk)
    assert model.get_input_embeddings() is None and model.get_output_embeddings() is None
    assert model.can_generate() is False
    spec = model.input_signature["pixel_values"]
    assert isinstance(spec, tf.TensorSpec) and spec.shape.as_list() == [None, 3, None, None]
    dummy = model.dummy_inputs["pixel_values"]
    assert tuple(dummy.shape) == (2, 3, 224, 224)
    out = model(dummy)
    assert model.serving_output(out) is out
    assert classifier.from_config(model.config).config == model.config
    assert classifier.from_config(model.get_config()).config == model.config


def test_keras_save_pretrained_writes_a_saved_model_beside(tfk, tmp_path: Path):
    _, tf, classifier, _ = tfk
    pt, model = _keras_pair(tfk)
    model.save_pretrained(tmp_path, saved_model=True)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    loaded = tf.saved_model.load(str(tmp_path / "saved_model" / "1"))
    serve = loaded.signatures["serving_default"]
    for batch, size in ((1, 64), (3, 48)):  # any batch size and image size
        x = pixels(batch, size, seed=size)
        out = serve(pixel_values=tf.constant(x.numpy()))
        assert set(out) == {"logits", "cls_logits", "distillation_logits"}
        np.testing.assert_allclose(out["logits"].numpy(), pt(x).logits.detach().numpy(), rtol=1e-4, atol=1e-5)
    # the weights folder beside it is the usual one
    np.testing.assert_allclose(classifier.from_pretrained(tmp_path)(pixels().numpy()).logits,
                               model(pixels().numpy()).logits, rtol=1e-6)  # fmt: skip


def test_keras_from_pretrained_loading_info_subfolder_and_partial(tfk, tmp_path: Path):
    _, _, classifier, _ = tfk
    pt = tiny()
    pt.save_pretrained(tmp_path / "sub")
    model, info = classifier.from_pretrained(tmp_path, subfolder="sub", output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    np.testing.assert_allclose(
        model(pixels().numpy()).logits, pt(pixels()).logits.detach().numpy(), rtol=1e-4, atol=1e-5
    )
    pt.swiftformer.save_pretrained(tmp_path / "base")
    _, info = classifier.from_pretrained(tmp_path / "base", output_loading_info=True)
    assert {"head.weight", "dist_head.weight"} <= info["missing_keys"]


def test_keras_model_in_a_tf_keras_functional_model(tfk, tmp_path: Path):
    """transformers 4.x's TF tools build functional models with tf_keras (Keras 2) inputs: our Keras 3 model
    takes them, and the functional model predicts and saves (transformers' test_compile_tf_model)."""
    tf_keras = pytest.importorskip("tf_keras")
    pt, model = _keras_pair(tfk)
    inputs = {"pixel_values": tf_keras.Input(shape=(3, None, None), dtype="float32", name="pixel_values")}
    functional = tf_keras.Model(inputs=inputs, outputs=model(inputs)[0])
    x = pixels(2, 48).numpy()
    np.testing.assert_allclose(
        functional.predict({"pixel_values": x}, verbose=0), pt(torch.from_numpy(x)).logits.detach().numpy(),
        rtol=1e-4, atol=1e-5,
    )  # fmt: skip
    functional.save(str(tmp_path / "functional"))
    assert (tmp_path / "functional" / "saved_model.pb").is_file()


def test_keras_prepare_tf_dataset(tfk):
    datasets = pytest.importorskip("datasets")
    _, model = _keras_pair(tfk)
    x, labels = pixels(4, 32).numpy(), np.array([0, 1, 2, 1])
    dataset = datasets.Dataset.from_dict({"pixel_values": x, "labels": labels, "file": ["a", "b", "c", "d"]})
    inputs, batch_labels = next(iter(model.prepare_tf_dataset(dataset, batch_size=4, shuffle=False)))
    assert set(inputs) == {"pixel_values"} and batch_labels.numpy().tolist() == labels.tolist()
    np.testing.assert_allclose(model(inputs).logits, model(x).logits, rtol=1e-5, atol=1e-6)
    unlabelled = model.prepare_tf_dataset(dataset.remove_columns("labels"), batch_size=3, drop_remainder=True)
    assert [tuple(batch["pixel_values"].shape) for batch in unlabelled] == [(3, 3, 32, 32)]
    with pytest.raises(ValueError, match="'pixel_values' column"):
        model.prepare_tf_dataset(dataset.remove_columns("pixel_values"))
    for name in ("label", "label_ids"):  # as transformers' collator, the datasets' usual names become labels
        renamed = model.prepare_tf_dataset(dataset.rename_column("labels", name), batch_size=4, shuffle=False)
        inputs, batch_labels = next(iter(renamed))
        assert set(inputs) == {"pixel_values"} and batch_labels.numpy().tolist() == labels.tolist()
