"""SwiftFormerBackbone (transformers' backbone API), timm-style feature extraction, gradient checkpointing,
and a Faster R-CNN + FPN trained end to end on the backbone (examples/backbone_fpn.py)."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import re
import sys
from pathlib import Path

import pytest
import torch

from _helpers import TINY, assert_close_rel, perturb_, tiny_classifier
from swiftformer import (
    BackboneOutput,
    SwiftFormerBackbone,
    SwiftFormerConfig,
    SwiftFormerForImageClassification,
    SwiftFormerModel,
    modeling_utils,
)
from swiftformer.errors import CheckpointError

ALL = ["stem", "stage1", "stage2", "stage3", "stage4"]
STAGES = ALL[1:]


def tiny_backbone(seed: int = 0, **overrides) -> SwiftFormerBackbone:
    torch.manual_seed(seed)
    return perturb_(SwiftFormerBackbone(SwiftFormerConfig(**{**TINY, **overrides})), seed).eval()


# ------------------------------------------------------------------------------------------------
# Which tensors, which shapes
# ------------------------------------------------------------------------------------------------


def test_feature_maps_are_the_stage_outputs():
    """stem = the stem's output; stage i = after stage i's blocks, before the next downsampling:
    hidden_states 0, 1, 3, 5, 7 of the base model (stem, network.0, .2, .4, .6)."""
    model = tiny_backbone(out_features=ALL)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        maps = model(x).feature_maps
        hidden = model.swiftformer(x, output_hidden_states=True).hidden_states
    assert len(maps) == 5 and len(hidden) == 8
    for fmap, index in zip(maps, [0, 1, 3, 5, 7]):
        assert torch.equal(fmap, hidden[index])


def test_stage_outputs_match_transformers_hidden_states(transformers):
    ours = SwiftFormerForImageClassification(SwiftFormerConfig(**TINY))
    weights = perturb_(ours).state_dict()
    ref = transformers.SwiftFormerForImageClassification(transformers.SwiftFormerConfig(**TINY)).eval()
    ref.load_state_dict(weights)
    backbone = SwiftFormerBackbone(SwiftFormerConfig(**TINY, out_features=ALL))
    backbone.load_checkpoint_state_dict(weights)
    x = torch.randn(2, 3, 57, 75)
    with torch.no_grad():
        maps = backbone.eval()(x).feature_maps
        hidden = ref.swiftformer(x, output_hidden_states=True).hidden_states
    for name, fmap, index in zip(ALL, maps, [0, 1, 3, 5, 7]):
        assert_close_rel(fmap, hidden[index], what=name)


@pytest.mark.parametrize("height,width", [(97, 131), (224, 224), (33, 17), (1, 1)])
def test_any_input_size_and_documented_shapes(height, width):
    model = tiny_backbone(out_features=ALL)
    with torch.no_grad():
        maps = model(torch.randn(1, 3, height, width)).feature_maps
    strides = [4, 4, 8, 16, 32]
    expected = [(-(-height // s), -(-width // s)) for s in strides]  # ⌈H/s⌉ × ⌈W/s⌉
    assert [tuple(m.shape[2:]) for m in maps] == expected
    assert expected[1:] == model.config.stage_shapes(height, width)
    assert [m.shape[1] for m in maps] == model.channels == [8, 8, 12, 16, 24]
    if (height, width) == (97, 131):
        assert expected == [(25, 33), (25, 33), (13, 17), (7, 9), (4, 5)]


@pytest.mark.parametrize(
    "variant,channels", [("xs", [48, 56, 112, 220]), ("s", [48, 64, 168, 224]), ("l1", [48, 96, 192, 384]),
                         ("l3", [64, 128, 320, 512])],
)  # fmt: skip
def test_published_variants_channels_and_strides(variant, channels):
    config = SwiftFormerConfig.from_variant(variant, out_indices=[1, 2, 3, 4])
    backbone = SwiftFormerBackbone(config)
    assert backbone.channels == channels
    assert [f["reduction"] for f in backbone.feature_info] == [4, 8, 16, 32]
    assert [f["num_chs"] for f in backbone.feature_info] == channels
    assert backbone.out_feature_channels == dict(zip(ALL, [channels[0], *channels]))
    if variant == "xs":
        with torch.no_grad():
            maps = backbone.eval()(torch.randn(1, 3, 224, 224)).feature_maps
        assert [tuple(m.shape) for m in maps] == [(1, 48, 56, 56), (1, 56, 28, 28), (1, 112, 14, 14), (1, 220, 7, 7)]


def test_default_is_last_stage_like_transformers():
    model = tiny_backbone()
    assert model.stage_names == ALL
    assert model.out_features == ["stage4"] and model.out_indices == [4] and model.channels == [24]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        last = model.swiftformer(x).last_hidden_state
    assert isinstance(out, BackboneOutput) and len(out.feature_maps) == 1 and out.hidden_states is None
    assert torch.equal(out.feature_maps[0], last)


def test_output_options_and_tuple_form():
    model = tiny_backbone(out_indices=[2, -1])
    assert model.out_features == ["stage2", "stage4"] and model.out_indices == [2, 4]
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
        plain = model(x, return_dict=False)
        plain_hidden = model(x, output_hidden_states=True, return_dict=False)
    assert (
        len(out.hidden_states) == 8
        and out[0] is out.feature_maps
        and list(out.keys()) == ["feature_maps", "hidden_states"]
    )
    assert len(plain) == 1 and all(torch.equal(a, b) for a, b in zip(plain[0], out.feature_maps))
    assert len(plain_hidden) == 2 and len(plain_hidden[1]) == 8


def test_feature_info_module_names_resolve():
    for norm in (False, True):
        model = tiny_backbone(out_features=ALL, backbone_norm=norm)
        modules = dict(model.named_modules())
        assert all(info["module"] in modules for info in model.feature_info)
    classifier = tiny_classifier()
    modules = dict(classifier.named_modules())
    assert [f["module"] for f in classifier.feature_info] == [f"swiftformer.encoder.network.{j}" for j in (0, 2, 4, 6)]
    assert all(f["module"] in modules for f in classifier.feature_info)


def test_no_downsampling_between_equal_stages():
    """With downsamples off and equal widths there is no layer between stages: indices shift, strides stay."""
    model = tiny_backbone(embed_dims=[8, 8, 16, 16], downsamples=[False, True, False, True], out_features=STAGES)
    assert model.swiftformer.encoder.stage_indices == [0, 1, 3, 4]
    assert [f["reduction"] for f in model.feature_info] == [4, 4, 8, 8]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = model(x).feature_maps
        hidden = model.swiftformer(x, output_hidden_states=True).hidden_states
    assert [tuple(m.shape[1:]) for m in maps] == [(8, 16, 16), (8, 16, 16), (16, 8, 8), (16, 8, 8)]
    assert len(hidden) == 6 and all(torch.equal(m, hidden[1 + j]) for m, j in zip(maps, [0, 1, 3, 4]))
    # Unequal widths get a (strided) projection even where downsampling is off, as in transformers.
    model = tiny_backbone(embed_dims=[8, 8, 16, 24], downsamples=[False, True, False, True], out_features=STAGES)
    assert model.swiftformer.encoder.stage_indices == [0, 1, 3, 5]
    assert [f["reduction"] for f in model.feature_info] == [4, 4, 8, 16]
    with torch.no_grad():
        maps = model(x).feature_maps
    assert (
        [tuple(m.shape[2:]) for m in maps] == model.config.stage_shapes(64, 64) == [(16, 16), (16, 16), (8, 8), (4, 4)]
    )


# ------------------------------------------------------------------------------------------------
# out_features / out_indices in the config
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"out_features": ["stage5"]}, r"out_features=\['stage5'\].*'stage5' is not a stage name; valid names are \['stem', 'stage1', 'stage2', 'stage3', 'stage4'\]"),
        ({"out_features": ["Stage1"]}, r"'Stage1' is not a stage name"),
        ({"out_features": "stage1"}, r"out_features='stage1'.*expected a non-empty list of names"),
        ({"out_features": []}, r"expected a non-empty list"),
        ({"out_features": ["stage2", "stage1"]}, r"must follow the order of"),
        ({"out_features": ["stage1", "stage1"]}, r"duplicates"),
        ({"out_indices": [5]}, r"out_indices=\[5\].*5 is not an index of stage_names .*valid indices are 0..4 \(or -5..-1\)"),
        ({"out_indices": [-6]}, r"-6 is not an index"),
        ({"out_indices": ["1"]}, r"'1' is not an index"),
        ({"out_indices": [True]}, r"True is not an index"),
        ({"out_indices": [3, 1]}, r"must be increasing"),
        ({"out_indices": [4, -1]}, r"duplicates \(as non-negative indices: \[4, 4\]\)"),
        ({"out_indices": [1], "out_features": ["stage2"]}, r"selects \['stage1'\] but out_features=\['stage2'\]"),
        ({"backbone_norm": "yes"}, r"backbone_norm='yes' is invalid: expected a boolean"),
        ({"depths": [1, 1], "embed_dims": [8, 8], "downsamples": [True, True], "out_features": ["stage3"]},
         r"valid names are \['stem', 'stage1', 'stage2'\]"),
    ],
)  # fmt: skip
def test_bad_out_features_name_the_value_and_the_valid_ones(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        SwiftFormerConfig(**{**TINY, **kwargs})


def test_out_features_and_indices_align_both_ways():
    assert SwiftFormerConfig(out_features=["stem", "stage3"]).out_indices == [0, 3]
    assert SwiftFormerConfig(out_indices=(0, -2)).out_features == ["stem", "stage3"]
    assert SwiftFormerConfig(out_indices=[1, 2], out_features=["stage1", "stage2"]).out_indices == [1, 2]
    config = SwiftFormerConfig()
    config.out_indices = [1, 2, 3, 4]  # transformers' setters re-derive the other one
    assert config.out_features == STAGES
    config.out_features = ["stage2"]
    assert config.out_indices == [2]
    with pytest.raises(ValueError, match="stage9"):
        config.out_features = ["stage9"]


def test_the_default_selection_follows_stages_edited_later(tmp_path: Path):
    """transformers builds a model after config.depths & co. change; the default (last stage) follows them, also
    for a config read back from a folder, where it is spelled out; a chosen selection stays checked."""
    config = SwiftFormerConfig()
    config.depths, config.embed_dims, config.downsamples = [2, 2], [8, 16], [True, True]
    model = SwiftFormerBackbone(config)
    assert config.out_features == ["stage2"] and len(model(torch.randn(1, 3, 64, 64)).feature_maps) == 1
    SwiftFormerConfig(depths=[1, 1], embed_dims=[8, 16], downsamples=[True, True]).save_pretrained(tmp_path)
    loaded = SwiftFormerConfig.from_pretrained(tmp_path)
    loaded.update({"depths": [1, 1, 1], "embed_dims": [8, 16, 24], "downsamples": [True, True, True]})
    assert loaded.out_features == ["stage3"] and loaded.out_indices == [3]
    chosen = SwiftFormerConfig(out_features=["stage2"])
    chosen.depths, chosen.embed_dims, chosen.downsamples = [1], [8], [True]
    with pytest.raises(ValueError, match="stage2"):
        chosen.validate()


def test_backbone_fields_round_trip_and_override(tmp_path: Path):
    config = SwiftFormerConfig(**TINY, out_features=["stem", "stage2"], backbone_norm=True)
    config.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert (
        data["out_features"] == ["stem", "stage2"] and data["out_indices"] == [0, 2] and data["backbone_norm"] is True
    )
    assert "_out_features" not in data
    loaded = SwiftFormerConfig.from_pretrained(tmp_path)
    assert loaded == config and loaded.backbone_norm
    # Overriding one of the pair replaces the stored selection instead of conflicting with it.
    assert SwiftFormerConfig.from_pretrained(tmp_path, out_indices=[1, 2, 3, 4]).out_features == STAGES
    assert SwiftFormerConfig.from_pretrained(tmp_path, out_features=["stage4"]).out_indices == [4]


def test_default_selection_follows_a_new_number_of_stages(tmp_path: Path):
    """config.json always stores the selection; the default one (the last stage) must not block a
    depths override with another number of stages, while a chosen one still gets checked."""
    SwiftFormerConfig(**TINY).save_pretrained(tmp_path)
    three = {"depths": [1, 1, 1], "embed_dims": [8, 12, 16], "downsamples": [True, True, True]}
    config = SwiftFormerConfig.from_pretrained(tmp_path, **three)
    assert config.out_features == ["stage3"] and config.out_indices == [3]
    assert SwiftFormerConfig.from_pretrained(tmp_path, **three, out_indices=[1, 2]).out_features == ["stage1", "stage2"]
    SwiftFormerConfig(**TINY, out_features=["stage4"], backbone_norm=True).save_pretrained(tmp_path)  # same as default
    assert SwiftFormerConfig.from_pretrained(tmp_path, **three).out_features == ["stage3"]
    SwiftFormerConfig(**TINY, out_features=["stage1", "stage4"]).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'stage4' is not a stage name"):
        SwiftFormerConfig.from_pretrained(tmp_path, **three)


def test_transformers_loads_folders_with_backbone_fields(tmp_path: Path, transformers):
    """Extra keys in config.json (like attention_variant) must not disturb transformers."""
    model = tiny_classifier(out_features=STAGES, backbone_norm=True)
    model.save_pretrained(tmp_path)
    ref = transformers.SwiftFormerForImageClassification.from_pretrained(tmp_path).eval()
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        assert_close_rel(ref(x).logits, model(x).logits, what="logits")


# ------------------------------------------------------------------------------------------------
# Checkpoints: classifier, base model, backbone folders
# ------------------------------------------------------------------------------------------------


def test_from_pretrained_classifier_folder(tmp_path: Path, caplog):
    classifier = tiny_classifier()
    classifier.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="swiftformer"):
        backbone = SwiftFormerBackbone.from_pretrained(tmp_path, out_indices=[1, 2, 3, 4])
    assert not caplog.records  # heads and final norm dropped silently, as for SwiftFormerModel
    assert not backbone.training and backbone.out_features == STAGES
    theirs = classifier.state_dict()
    for key, value in backbone.state_dict().items():
        assert key.startswith("swiftformer.") and torch.equal(value, theirs[key]), key
    x = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        stages = classifier.forward_intermediates(x, intermediates_only=True)
        maps = backbone(x).feature_maps
    assert all(torch.equal(a, b) for a, b in zip(maps, stages))


def test_from_pretrained_with_backbone_norm_starts_norms_fresh(tmp_path: Path, caplog):
    tiny_classifier().save_pretrained(tmp_path / "classifier")
    with caplog.at_level(logging.WARNING, logger="swiftformer"):
        backbone = SwiftFormerBackbone.from_pretrained(tmp_path / "classifier", out_features=STAGES, backbone_norm=True)
    assert "no output norms for ['stage1', 'stage2', 'stage3', 'stage4']" in caplog.text
    assert isinstance(backbone.hidden_states_norms["stage3"], torch.nn.BatchNorm2d)
    assert torch.all(backbone.hidden_states_norms["stage3"].running_var == 1)

    # A saved backbone keeps its norms: same outputs after a round trip, and no warning.
    perturb_(backbone, seed=3)
    backbone.save_pretrained(tmp_path / "backbone")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="swiftformer"):
        again = SwiftFormerBackbone.from_pretrained(tmp_path / "backbone")
    assert not caplog.records
    assert json.loads((tmp_path / "backbone" / "config.json").read_text())["architectures"] == ["SwiftFormerBackbone"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(backbone.eval()(x).feature_maps, again(x).feature_maps):
            assert torch.equal(a, b)
        raw = backbone.swiftformer.forward_intermediates(x, intermediates_only=True)
    assert not torch.allclose(backbone(x).feature_maps[0], raw[0])  # the norms are applied
    # Fewer outputs than saved: the unused norms are ignored; no norms wanted: all ignored.
    fewer = SwiftFormerBackbone.from_pretrained(tmp_path / "backbone", out_features=["stage4"])
    assert list(fewer.hidden_states_norms) == ["stage4"]
    plain = SwiftFormerBackbone.from_pretrained(tmp_path / "backbone", backbone_norm=False)
    assert not any(k.startswith("hidden_states_norms") for k in plain.state_dict())


def test_backbone_folder_with_norms_loads_into_the_other_models(tmp_path: Path):
    """A backbone's output norms have no counterpart in SwiftFormerModel or the classifier: dropped."""
    backbone = perturb_(tiny_backbone(out_features=STAGES, backbone_norm=True), seed=5)
    backbone.save_pretrained(tmp_path)
    base = SwiftFormerModel.from_pretrained(tmp_path)
    for key, value in base.state_dict().items():
        assert torch.equal(value, backbone.state_dict()["swiftformer." + key]), key
    classifier = SwiftFormerForImageClassification.from_pretrained(tmp_path)  # fresh heads, as for a base model
    assert torch.equal(classifier.state_dict()["swiftformer.encoder.network.0.blocks.0.layer_scale"],
                       backbone.state_dict()["swiftformer.encoder.network.0.blocks.0.layer_scale"])  # fmt: skip


def test_base_model_checkpoint_loads_and_garbage_does_not():
    base = perturb_(SwiftFormerModel(SwiftFormerConfig(**TINY)))
    backbone = SwiftFormerBackbone(SwiftFormerConfig(**TINY))
    backbone.load_checkpoint_state_dict(base.state_dict())
    assert torch.equal(backbone.state_dict()["swiftformer.encoder.network.0.blocks.0.layer_scale"],
                       base.state_dict()["encoder.network.0.blocks.0.layer_scale"])  # fmt: skip
    broken = {**tiny_classifier().state_dict(), "foo.bar": torch.zeros(1)}
    broken.pop("swiftformer.encoder.network.0.blocks.0.norm.weight")
    with pytest.raises(
        CheckpointError, match=r"(?s)missing keys.*network\.0\.blocks\.0\.norm\.weight.*unexpected.*foo\.bar"
    ):
        backbone.load_checkpoint_state_dict(broken)
    wrong_width = tiny_classifier(embed_dims=[8, 12, 16, 32]).state_dict()
    with pytest.raises(CheckpointError, match="shape mismatches"):
        backbone.load_checkpoint_state_dict(wrong_width)


# ------------------------------------------------------------------------------------------------
# timm-style: forward_features, forward_intermediates, feature_info
# ------------------------------------------------------------------------------------------------


def test_forward_features_and_head():
    model = tiny_classifier()
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        features = model.forward_features(x)
        out = model(x)
        cls_logits, dist_logits = model.forward_head(features)
        assert torch.equal(model.swiftformer.forward_features(x), model.swiftformer(x).last_hidden_state)
    assert torch.equal(features, model.swiftformer(x).last_hidden_state)
    assert torch.equal(cls_logits, out.cls_logits) and torch.equal(dist_logits, out.distillation_logits)


@pytest.mark.parametrize(
    "indices,taken", [(None, [0, 1, 2, 3]), (2, [2, 3]), (1, [3]), ([0, 2], [0, 2]), ([-1, 0], [0, 3]), ((1,), [1])]
)
@pytest.mark.slow
def test_forward_intermediates_indices(indices, taken):
    model = tiny_classifier()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        all_stages = model.forward_intermediates(x, intermediates_only=True)
        final, picked = model.forward_intermediates(x, indices)
        early_final, early = model.forward_intermediates(x, indices, stop_early=True)
    assert len(all_stages) == 4 and [tuple(t.shape) for t in all_stages] == [
        (2, 8, 16, 16), (2, 12, 8, 8), (2, 16, 4, 4), (2, 24, 2, 2)
    ]  # fmt: skip
    assert len(picked) == len(taken) and all(torch.equal(a, all_stages[i]) for a, i in zip(picked, taken))
    assert torch.equal(final, model.forward_features(x))
    assert all(torch.equal(a, b) for a, b in zip(early, picked))
    assert torch.equal(early_final, all_stages[taken[-1]])  # stopped right after the last selected stage


def test_forward_intermediates_norm():
    model = tiny_classifier()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = model.forward_intermediates(x, intermediates_only=True)
        normed = model.forward_intermediates(x, norm=True, intermediates_only=True)
        first_two = model.forward_intermediates(x, [0, 1], norm=True, intermediates_only=True)
    assert all(torch.equal(a, b) for a, b in zip(plain[:3], normed[:3]))
    assert torch.equal(normed[3], model.norm(plain[3]))  # the final norm, on the last stage only
    assert all(torch.equal(a, b) for a, b in zip(first_two, plain[:2]))
    with pytest.raises(ValueError, match="no final norm"):
        model.swiftformer.forward_intermediates(x, norm=True)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [({"indices": 5}, r"indices=5 .* must be in 1..4"), ({"indices": 0}, r"must be in 1..4"),
     ({"indices": [4]}, r"4 is not a stage index; valid are 0..3 \(or -4..-1\)"), ({"indices": []}, "non-empty"),
     ({"indices": "0"}, "non-empty list"), ({"output_fmt": "NHWC"}, "output_fmt must be 'NCHW'")],
)  # fmt: skip
def test_forward_intermediates_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        tiny_classifier().forward_intermediates(torch.randn(1, 3, 32, 32), **kwargs)


def _to_timm_key(key: str) -> str:
    """Our (transformers') state-dict key → timm's ``swiftformer_*`` key."""
    key = key.removeprefix("swiftformer.").replace("patch_embed.patch_embedding.", "stem.")
    key = key.replace("dist_head.", "head_dist.").replace("depth_wise_conv", "dwconv")
    key = key.replace("point_wise_conv1", "pwconv1").replace("point_wise_conv2", "pwconv2")
    key = re.sub(r"(layer_scale(_[12])?)$", r"\1.gamma", key)
    match = re.match(r"encoder\.network\.(\d+)\.(.*)", key)
    if match:
        index, rest = int(match.group(1)), match.group(2)
        key = f"stages.{index // 2}.{rest}" if index % 2 == 0 else f"stages.{index // 2 + 1}.downsample.{rest}"
    return key


@pytest.mark.slow
def test_forward_intermediates_and_feature_info_match_timm():
    timm = pytest.importorskip("timm")
    ref = timm.create_model("swiftformer_xs", pretrained=False, num_classes=10).eval()
    ours = SwiftFormerForImageClassification(
        SwiftFormerConfig.from_variant("xs", num_labels=10, attention_variant="l2")
    )
    weights = perturb_(ours).state_dict()
    ref.load_state_dict({_to_timm_key(k): v for k, v in weights.items()})
    ours.eval()
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        for kwargs in ({}, {"indices": 2, "norm": True}, {"indices": [0, 2], "stop_early": True}):
            final, stages = ours.forward_intermediates(x, **kwargs)
            ref_final, ref_stages = ref.forward_intermediates(x, **kwargs)
            assert len(stages) == len(ref_stages)
            for i, (a, b) in enumerate(zip(stages, ref_stages)):
                assert_close_rel(a, b, what=f"{kwargs} intermediate {i}")
            # timm's final output includes its final norm when the last stage ran; ours never does.
            ran_to_end = not kwargs.get("stop_early")
            assert_close_rel(ours.norm(final) if ran_to_end else final, ref_final, what=f"{kwargs} final")
        assert_close_rel(ours.forward_head(ours.forward_features(x))[0], ref.head(ref.forward_features(x).mean((2, 3))))
    assert [(f["num_chs"], f["reduction"]) for f in ours.feature_info] == [
        (f["num_chs"], f["reduction"]) for f in ref.feature_info
    ]


# ------------------------------------------------------------------------------------------------
# Gradient checkpointing
# ------------------------------------------------------------------------------------------------


def _train_step(model, x, labels, seed=7):
    torch.manual_seed(seed)  # the same drop-path and dropout draws for both runs
    loss = model(x, labels=labels).loss
    loss.backward()
    return loss


@pytest.mark.parametrize(
    "overrides",
    [{}, {"drop_path_rate": 0.3, "drop_conv_encoder_rate": 0.1, "drop_mlp_rate": 0.1}, {"attention_variant": "l2"}],
    ids=["plain", "drop_path_and_dropout", "l2"],
)
@pytest.mark.slow
def test_gradient_checkpointing_gives_identical_training(overrides):
    plain = tiny_classifier(**overrides).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.gradient_checkpointing_enable()
    assert checkpointed.is_gradient_checkpointing and not plain.is_gradient_checkpointing
    x, labels = torch.randn(4, 3, 40, 36), torch.tensor([0, 1, 2, 3])
    loss_a, loss_b = _train_step(plain, x, labels), _train_step(checkpointed, x, labels)
    assert torch.equal(loss_a, loss_b)
    params = dict(checkpointed.named_parameters())
    for name, param in plain.named_parameters():
        if param.grad is None:
            assert params[name].grad is None, name
        else:
            assert_close_rel(params[name].grad, param.grad, rel=1e-6, what=name)
    # BatchNorm running statistics and counters were updated once, as without checkpointing.
    buffers = dict(checkpointed.named_buffers())
    for name, buf in plain.named_buffers():
        assert torch.equal(buffers[name], buf), name
    if "drop_path_rate" in overrides:  # the comparison is sensitive: another seed drops other paths
        other = copy.deepcopy(plain)
        other.zero_grad()
        loss_c = _train_step(other, x, labels, seed=8)
        assert not torch.equal(loss_a, loss_c)


@pytest.mark.slow
def test_gradient_checkpointing_checkpoints_every_block_in_training_only(monkeypatch):
    calls = []
    original = modeling_utils.checkpoint

    def counting(function, *args, **kwargs):
        calls.append(kwargs)
        return original(function, *args, **kwargs)

    monkeypatch.setattr(modeling_utils, "checkpoint", counting)
    model = tiny_classifier()
    model.gradient_checkpointing_enable()
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    model(x).logits.sum().backward()  # eval: a no-op
    model.train()
    with torch.no_grad():
        model(x)  # no gradients: a no-op
    assert calls == []
    model(x).logits.sum().backward()
    assert len(calls) == sum(TINY["depths"])
    assert all(c["use_reentrant"] is False and c["preserve_rng_state"] is True for c in calls)
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    model(x).logits.sum().backward()
    assert len(calls) == sum(TINY["depths"])


@pytest.mark.slow
def test_batch_norm_stats_would_update_twice_without_the_guard(monkeypatch):
    """The reason for ``_checkpoint_contexts``: the recomputation runs each BatchNorm again."""
    import contextlib

    monkeypatch.setattr(
        modeling_utils, "_checkpoint_contexts", lambda block: (contextlib.nullcontext(), contextlib.nullcontext())
    )
    plain = tiny_classifier().train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.gradient_checkpointing_enable()
    x, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    _train_step(plain, x, labels), _train_step(checkpointed, x, labels)
    key = "swiftformer.encoder.network.0.blocks.0.norm.num_batches_tracked"
    assert plain.state_dict()[key] == 1 and checkpointed.state_dict()[key] == 2


@pytest.mark.slow
def test_gradient_checkpointing_under_torch_compile():
    """torch.compile refuses a context_fn of plain context managers; the compiled path must still train
    like the uncompiled model and update BatchNorm statistics once per step."""
    plain = tiny_classifier().train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.gradient_checkpointing_enable()
    compiled = torch.compile(checkpointed, backend="aot_eager", fullgraph=False)
    x, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    loss_a, loss_b = _train_step(plain, x, labels), _train_step(compiled, x, labels)
    assert_close_rel(loss_b, loss_a, rel=1e-5, what="loss")
    buffers = dict(checkpointed.named_buffers())
    for name, buf in plain.named_buffers():
        assert_close_rel(buffers[name].float(), buf.float(), rel=1e-5, what=name)
    torch._dynamo.reset()


def test_gradient_checkpointing_on_the_backbone_and_bad_kwargs():
    backbone = tiny_backbone(out_features=STAGES, backbone_norm=True).train()
    checkpointed = copy.deepcopy(backbone)
    checkpointed.gradient_checkpointing_enable({"determinism_check": "none"})
    x = torch.randn(2, 3, 48, 48)
    grads = []
    for model in (backbone, checkpointed):
        sum(m.square().mean() for m in model(x).feature_maps).backward()
        grads.append(model.swiftformer.patch_embed.patch_embedding[0].weight.grad)
    assert_close_rel(grads[1], grads[0], rel=1e-6, what="stem grad")
    with pytest.raises(ValueError, match="use_reentrant=True is not supported"):
        backbone.gradient_checkpointing_enable({"use_reentrant": True})
    with pytest.raises(ValueError, match=r"unsupported gradient_checkpointing_kwargs \['context_fn'\]"):
        backbone.gradient_checkpointing_enable({"context_fn": None})


# ------------------------------------------------------------------------------------------------
# End to end: Faster R-CNN with an FPN on the backbone (examples/backbone_fpn.py)
# ------------------------------------------------------------------------------------------------


def _load_example():
    pytest.importorskip("torchvision")
    path = Path(__file__).parents[1] / "examples" / "backbone_fpn.py"
    spec = importlib.util.spec_from_file_location("backbone_fpn", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("backbone_fpn", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("grad_checkpointing", [False, True], ids=["plain", "grad_checkpointing"])
@pytest.mark.slow
def test_faster_rcnn_fpn_trains_on_synthetic_boxes(grad_checkpointing):
    example = _load_example()
    torch.manual_seed(0)
    backbone = SwiftFormerBackbone(
        SwiftFormerConfig(depths=[1, 1, 1, 1], embed_dims=[16, 24, 32, 48], out_features=example.STAGES)
    )
    if grad_checkpointing:
        backbone.gradient_checkpointing_enable()
    model = example.faster_rcnn(
        backbone, num_classes=4, out_channels=32, min_size=128, max_size=128, rpn_pre_nms_top_n_train=200,
        rpn_post_nms_top_n_train=100, rpn_batch_size_per_image=64, box_batch_size_per_image=64,
    )  # fmt: skip
    images, targets = example.synthetic_batch(2, 128, 4, torch.Generator().manual_seed(0))

    features = model.backbone(torch.randn(2, 3, 128, 96))
    assert list(features) == ["0", "1", "2", "3", "pool"]
    assert [tuple(f.shape) for f in features.values()] == [
        (2, 32, 32, 24), (2, 32, 16, 12), (2, 32, 8, 6), (2, 32, 4, 3), (2, 32, 2, 2)
    ]  # fmt: skip

    stem = backbone.swiftformer.patch_embed.patch_embedding[0].weight
    before = stem.detach().clone()
    losses = example.train_steps(model, images, targets, steps=10, lr=1e-3)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.75 * losses[0], losses
    # Gradients reached the first layer of the backbone, and every stage's parameters.
    assert stem.grad is not None and stem.grad.abs().max() > 0 and not torch.equal(stem.detach(), before)
    for index in backbone.swiftformer.encoder.stage_indices:
        stage = backbone.swiftformer.encoder.network[index]
        assert any(p.grad is not None and p.grad.abs().max() > 0 for p in stage.parameters())

    model.eval()
    with torch.no_grad():
        detections = model(images[:1])
    assert set(detections[0]) == {"boxes", "labels", "scores"}
