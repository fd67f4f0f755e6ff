"""SwiftFormerConfig: transformers' defaults, validation, config.json round trips in both directions,
the published variants, label overrides and corrupt files."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch

from _helpers import SMALLEST as TINY
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification
from swiftformer.errors import CheckpointError

FIELDS = [
    "image_size", "num_channels", "depths", "embed_dims", "mlp_ratio", "downsamples", "hidden_act",
    "down_patch_size", "down_stride", "down_pad", "drop_path_rate", "drop_mlp_rate", "drop_conv_encoder_rate",
    "use_layer_scale", "layer_scale_init_value", "batch_norm_eps", "num_labels", "id2label", "problem_type",
    "output_hidden_states", "return_dict",
]  # fmt: skip

# Every field away from its default, so a field that is dropped or renamed anywhere shows up.
NON_DEFAULT = dict(
    image_size=160, num_channels=4, depths=[2, 1, 3, 1], embed_dims=[16, 24, 32, 40], mlp_ratio=3,
    downsamples=[True, False, True, True], hidden_act="relu", down_patch_size=5, down_stride=3, down_pad=2,
    drop_path_rate=0.1, drop_mlp_rate=0.2, drop_conv_encoder_rate=0.3, use_layer_scale=False,
    layer_scale_init_value=1e-3, batch_norm_eps=1e-3, id2label={0: "cat", 1: "dog", 2: "bird"},
    problem_type="multi_label_classification", output_hidden_states=True, return_dict=False,
)  # fmt: skip


PUBLISHED = {  # depths, embed_dims, parameters with 1000 classes (model cards / paper Table 1)
    "xs": ([3, 3, 6, 4], [48, 56, 112, 220], 3.5e6),
    "s": ([3, 3, 9, 6], [48, 64, 168, 224], 6.1e6),
    "l1": ([4, 3, 10, 5], [48, 96, 192, 384], 12.1e6),
    "l3": ([4, 4, 12, 6], [64, 128, 320, 512], 28.5e6),
}


def normalize(value):
    """Tuples as lists and dict keys as ints, so transformers' and our values compare directly."""
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    if isinstance(value, dict):
        return {(int(k) if isinstance(k, str) and k.isdigit() else k): normalize(v) for k, v in value.items()}
    return value


def fields_of(config) -> dict:
    return {name: normalize(getattr(config, name)) for name in FIELDS}


def assert_same_fields(ours: SwiftFormerConfig, theirs) -> None:
    mine, reference = fields_of(ours), fields_of(theirs)
    diffs = {k: (mine[k], reference[k]) for k in FIELDS if mine[k] != reference[k]}
    assert not diffs, f"fields differ (ours, transformers): {diffs}"


# ------------------------------------------------------------------------------------------------
# Defaults
# ------------------------------------------------------------------------------------------------


def test_defaults_match_transformers_field_by_field(transformers):
    ours, theirs = SwiftFormerConfig(), transformers.SwiftFormerConfig()
    assert_same_fields(ours, theirs)
    # and the values themselves, so a change on both sides cannot hide
    assert ours.depths == [3, 3, 6, 4] and ours.embed_dims == [48, 56, 112, 220]
    assert ours.num_labels == 2 and ours.id2label == {0: "LABEL_0", 1: "LABEL_1"}
    assert ours.label2id == {"LABEL_0": 0, "LABEL_1": 1}
    assert ours.hidden_act == "gelu" and ours.layer_scale_init_value == 1e-5 and ours.problem_type is None


def test_attention_variant_default_is_softmax():
    assert SwiftFormerConfig().attention_variant == "softmax"
    assert SwiftFormerConfig(attention_variant="l2").attention_variant == "l2"


def test_non_default_fields_are_stored_like_transformers(transformers):
    assert_same_fields(SwiftFormerConfig(**NON_DEFAULT), transformers.SwiftFormerConfig(**NON_DEFAULT))


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------

BAD = [  # (overrides, field named in the message, bad value shown in the message)
    (dict(depths=[1, 1, 1], embed_dims=[8, 8, 16, 16]), "embed_dims", "[8, 8, 16, 16]"),
    (dict(embed_dims=[48, 56, 112]), "embed_dims", "[48, 56, 112]"),
    (dict(depths=[3, 0, 6, 4]), "depths", "[3, 0, 6, 4]"),
    (dict(depths=[3, -1, 6, 4]), "depths", "[3, -1, 6, 4]"),
    (dict(embed_dims=[48, 0, 112, 220]), "embed_dims", "[48, 0, 112, 220]"),
    (dict(embed_dims=[48, -56, 112, 220]), "embed_dims", "[48, -56, 112, 220]"),
    (dict(image_size=0), "image_size", "0"),
    (dict(image_size=-224), "image_size", "-224"),
    (dict(num_channels=0), "num_channels", "0"),
    (dict(down_stride=0), "down_stride", "0"),
    (dict(down_patch_size=-3), "down_patch_size", "-3"),
    (dict(down_pad=-1), "down_pad", "-1"),
    (dict(mlp_ratio=0), "mlp_ratio", "0"),
    (dict(mlp_ratio=-4.0), "mlp_ratio", "-4.0"),
    (dict(hidden_act="tanhh"), "hidden_act", "tanhh"),
    (dict(drop_path_rate=1.0), "drop_path_rate", "1.0"),
    (dict(drop_path_rate=-0.1), "drop_path_rate", "-0.1"),
    (dict(drop_mlp_rate=1.0), "drop_mlp_rate", "1.0"),
    (dict(drop_mlp_rate=-0.1), "drop_mlp_rate", "-0.1"),
    (dict(drop_conv_encoder_rate=1.0), "drop_conv_encoder_rate", "1.0"),
    (dict(drop_conv_encoder_rate=-0.1), "drop_conv_encoder_rate", "-0.1"),
    (dict(batch_norm_eps=0), "batch_norm_eps", "0"),
    (dict(batch_norm_eps=-1e-5), "batch_norm_eps", "-1e-05"),
    (dict(attention_variant="l3"), "attention_variant", "l3"),
    (dict(downsamples=[True, True]), "downsamples", "[True, True]"),
    (dict(downsamples=[True] * 5), "downsamples", "[True, True, True, True, True]"),
    (dict(num_labels=3, id2label={0: "a", 1: "b"}), "num_labels", "3"),
    (dict(num_labels=-1), "num_labels", "-1"),
    (dict(problem_type="bad"), "problem_type", "bad"),
    (dict(problem_type="single_label_classification", num_labels=1), "problem_type", "single_label_classification"),
]


@pytest.mark.parametrize(("overrides", "field", "shown"), BAD, ids=lambda x: x if isinstance(x, str) else None)
def test_invalid_value_raises_value_error_naming_field_and_value(overrides, field, shown):
    with pytest.raises(ValueError) as info:
        SwiftFormerConfig(**overrides)
    message = str(info.value)
    assert field in message, message
    assert shown in message, message


def test_num_labels_id2label_disagreement_names_both():
    with pytest.raises(ValueError, match=r"num_labels=3.*id2label.*2"):
        SwiftFormerConfig(num_labels=3, id2label={0: "a", 1: "b"})


def test_validation_also_applies_to_loaded_files(tmp_path: Path):
    data = SwiftFormerConfig(**TINY).to_dict()
    data["hidden_act"] = "tanhh"
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"hidden_act.*tanhh"):
        SwiftFormerConfig.from_pretrained(tmp_path)


# ------------------------------------------------------------------------------------------------
# Serialization round trips
# ------------------------------------------------------------------------------------------------


def test_equality_is_not_trivial():
    assert SwiftFormerConfig(**TINY) == SwiftFormerConfig(**TINY)
    assert SwiftFormerConfig(**TINY) != SwiftFormerConfig(**TINY, hidden_act="relu")
    assert SwiftFormerConfig(**TINY) != SwiftFormerConfig(**TINY, attention_variant="l2")
    assert SwiftFormerConfig(**TINY) != SwiftFormerConfig(**TINY, id2label={0: "a", 1: "b"})


@pytest.mark.parametrize(
    "kwargs", [{}, NON_DEFAULT, {**NON_DEFAULT, "attention_variant": "l2"}], ids=["default", "custom", "l2"]
)
def test_to_dict_json_and_folder_round_trips(tmp_path: Path, kwargs):
    config = SwiftFormerConfig(**kwargs)
    data = config.to_dict()
    assert data["model_type"] == "swiftformer"
    assert SwiftFormerConfig.from_dict(data) == config
    assert json.loads(config.to_json_string()) == json.loads(json.dumps(data))
    assert SwiftFormerConfig.from_dict(json.loads(config.to_json_string())) == config

    path = config.save_pretrained(tmp_path / "new" / "folder")  # creates missing folders
    assert path == tmp_path / "new" / "folder" / "config.json" and path.is_file()
    loaded = SwiftFormerConfig.from_pretrained(path.parent)
    assert loaded == config
    assert fields_of(loaded) == fields_of(config)
    assert loaded.attention_variant == config.attention_variant
    assert loaded.id2label == config.id2label and loaded.label2id == config.label2id
    assert SwiftFormerConfig.from_json_file(path) == config


def test_saved_files_get_the_usual_permissions(tmp_path: Path):
    """Atomic writes go through mkstemp (0600); the result must be readable like any saved file."""
    old = os.umask(0o022)
    try:
        SwiftFormerConfig(**TINY).save_pretrained(tmp_path)
    finally:
        os.umask(old)
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o644


def _only_config_json(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_save_is_atomic_when_serialization_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    SwiftFormerConfig(**TINY).save_pretrained(tmp_path)
    before = (tmp_path / "config.json").read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(json, "dumps", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        SwiftFormerConfig(**TINY, hidden_act="relu").save_pretrained(tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "config.json").read_bytes() == before
    assert _only_config_json(tmp_path) == ["config.json"]
    assert SwiftFormerConfig.from_pretrained(tmp_path).hidden_act == "gelu"


def test_save_is_atomic_when_the_write_fails_midway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The new content is fully written to a temporary file, then the sync fails: the old file stays."""
    SwiftFormerConfig(**TINY).save_pretrained(tmp_path)
    before = (tmp_path / "config.json").read_bytes()
    seen_during_write: list[list[str]] = []

    def failing_fsync(fd):
        seen_during_write.append(sorted(os.listdir(tmp_path)))
        raise OSError("no space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="no space left"):
        SwiftFormerConfig(**TINY, hidden_act="relu").save_pretrained(tmp_path)
    monkeypatch.undo()
    # the failure really happened mid-write, with a temporary file beside config.json ...
    assert len(seen_during_write) == 1 and len(seen_during_write[0]) == 2, seen_during_write
    # ... which is gone, and config.json is untouched
    assert (tmp_path / "config.json").read_bytes() == before
    assert _only_config_json(tmp_path) == ["config.json"]


# ------------------------------------------------------------------------------------------------
# Interoperability with transformers' config.json
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{"num_labels": 3}, NON_DEFAULT], ids=["num_labels3", "custom"])
def test_reads_transformers_config_without_warnings(tmp_path: Path, kwargs, transformers):
    theirs = transformers.SwiftFormerConfig(**kwargs)
    theirs.save_pretrained(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = SwiftFormerConfig.from_pretrained(tmp_path)
    assert not caught, [str(w.message) for w in caught]
    assert_same_fields(ours, theirs)
    assert ours.num_labels == theirs.num_labels
    assert ours.attention_variant == "softmax"  # transformers' files imply the softmax variant


def test_reads_transformers_in_memory_dict_without_warnings(transformers):
    """``to_dict()`` of a transformers config carries all its bookkeeping keys (dtype, _name_or_path ...)."""
    theirs = transformers.SwiftFormerConfig(num_labels=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        ours = SwiftFormerConfig.from_dict(theirs.to_dict())
    assert_same_fields(ours, theirs)


def test_unknown_keys_are_kept_like_transformers(tmp_path: Path, transformers):
    """transformers keeps a config.json's unknown keys as attributes and saves them again; so do we (and
    transformers reads them back). Only a key that looks like a misspelled field warns."""
    transformers.SwiftFormerConfig(num_labels=3).save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    data = json.loads(path.read_text())
    data["foo"] = 1
    data["bar_baz"] = [1, 2]
    path.write_text(json.dumps(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = SwiftFormerConfig.from_pretrained(tmp_path)
    assert ours.num_labels == 3 and ours.foo == 1 and ours.bar_baz == [1, 2]
    ours.save_pretrained(tmp_path / "again")
    theirs = transformers.SwiftFormerConfig.from_pretrained(tmp_path / "again")
    assert theirs.foo == 1 and theirs.bar_baz == [1, 2]
    data["hiden_act"] = "relu"
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"hiden_act \(did you mean hidden_act\?\)"):
        assert SwiftFormerConfig.from_pretrained(tmp_path).hidden_act == "gelu"


def test_wrong_model_type_is_an_error(tmp_path: Path):
    data = SwiftFormerConfig(**TINY).to_dict()
    data["model_type"] = "vit"
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="vit"):
        SwiftFormerConfig.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="vit"):
        SwiftFormerConfig.from_dict(data)


@pytest.mark.parametrize("kwargs", [{"num_labels": 3}, NON_DEFAULT], ids=["num_labels3", "custom"])
def test_transformers_reads_our_config(tmp_path: Path, kwargs, transformers):
    ours = SwiftFormerConfig(**kwargs)
    ours.save_pretrained(tmp_path)
    theirs = transformers.SwiftFormerConfig.from_pretrained(tmp_path)
    assert isinstance(theirs, transformers.SwiftFormerConfig)
    assert_same_fields(ours, theirs)
    assert theirs.num_labels == ours.num_labels
    assert normalize(theirs.label2id) == ours.label2id


# ------------------------------------------------------------------------------------------------
# Published variants
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(PUBLISHED))
def test_from_variant_published_shapes(variant):
    depths, dims, _ = PUBLISHED[variant]
    config = SwiftFormerConfig.from_variant(variant)
    assert config.depths == depths and config.embed_dims == dims
    assert SwiftFormerConfig.from_variant(variant.upper()) == config
    # other fields keep their defaults; overrides are applied
    assert config.num_labels == 2 and config.hidden_act == "gelu"
    custom = SwiftFormerConfig.from_variant(variant, num_labels=1000, attention_variant="l2")
    assert custom.num_labels == 1000 and custom.attention_variant == "l2" and custom.depths == depths


@pytest.mark.parametrize(
    ("alias", "variant"),
    [
        ("SwiftFormer-L1", "l1"),
        ("swiftformer_xs", "xs"),
        ("swiftformer-s", "s"),
        ("SwiftFormer_L3", "l3"),
        ("XS", "xs"),
    ],
)
def test_from_variant_aliases(alias, variant):
    config = SwiftFormerConfig.from_variant(alias)
    assert config.depths == PUBLISHED[variant][0] and config.embed_dims == PUBLISHED[variant][1]


@pytest.mark.parametrize("name", ["m", "l2", "swiftformer-xl", "", "vit-base"])
def test_from_variant_unknown_raises(name):
    with pytest.raises(ValueError, match="variant"):
        SwiftFormerConfig.from_variant(name)


@pytest.mark.parametrize("variant", list(PUBLISHED))
def test_variant_parameter_count_matches_transformers_and_publication(variant, transformers):
    depths, dims, published = PUBLISHED[variant]
    config = SwiftFormerConfig.from_variant(variant, num_labels=1000)
    reference_config = transformers.SwiftFormerConfig(depths=depths, embed_dims=dims, num_labels=1000)
    with torch.device("meta"):  # shapes only: no memory, no init time
        ours = SwiftFormerForImageClassification(config)
        theirs = transformers.SwiftFormerForImageClassification(reference_config)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in theirs.parameters())
    assert count == ours.num_parameters()
    assert abs(count - published) <= 0.03 * published, f"{variant}: {count / 1e6:.2f}M vs {published / 1e6}M"


# ------------------------------------------------------------------------------------------------
# Label overrides and corrupt files
# ------------------------------------------------------------------------------------------------


def test_num_labels_override_replaces_id2label(tmp_path: Path):
    SwiftFormerConfig(**TINY, id2label={0: "cat", 1: "dog", 2: "bird"}).save_pretrained(tmp_path)
    config = SwiftFormerConfig.from_pretrained(tmp_path, num_labels=7)
    assert config.num_labels == 7
    assert config.id2label == {i: f"LABEL_{i}" for i in range(7)}
    assert config.label2id == {f"LABEL_{i}": i for i in range(7)}
    assert config.depths == TINY["depths"]  # everything else is read from the file
    # the same number of labels keeps the stored names
    same = SwiftFormerConfig.from_pretrained(tmp_path, num_labels=3)
    assert same.id2label == {0: "cat", 1: "dog", 2: "bird"}
    # an explicit id2label override wins
    named = SwiftFormerConfig.from_pretrained(tmp_path, id2label={0: "x", 1: "y"})
    assert named.num_labels == 2 and named.label2id == {"x": 0, "y": 1}


def test_num_labels_override_of_transformers_config(tmp_path: Path, transformers):
    transformers.SwiftFormerConfig(num_labels=3).save_pretrained(tmp_path)
    config = SwiftFormerConfig.from_pretrained(tmp_path, num_labels=7)
    assert config.num_labels == 7 and sorted(config.id2label) == list(range(7))
    assert len(config.label2id) == 7


def test_truncated_config_json_is_a_checkpoint_error_naming_the_file(tmp_path: Path):
    SwiftFormerConfig(**TINY).save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError) as info:
        SwiftFormerConfig.from_pretrained(tmp_path)
    assert str(path) in str(info.value)
    assert "corrupt" in str(info.value) or "truncated" in str(info.value)


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage", b"[1, 2, 3]"], ids=["empty", "binary", "not-object"])
def test_other_corrupt_config_json_is_a_checkpoint_error(tmp_path: Path, content: bytes):
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(CheckpointError, match=r"config\.json"):
        SwiftFormerConfig.from_pretrained(tmp_path)


def test_missing_config_json_is_file_not_found(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        SwiftFormerConfig.from_pretrained(tmp_path)
