"""The output classes: mappings as transformers' ``ModelOutput`` (keys, order, access, mutation, rebuilding)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections import OrderedDict

import pytest
import torch

from swiftformer.outputs import BackboneOutput, BaseModelOutputWithNoAttention, ImageClassifierOutputWithNoAttention


def classifier_output() -> ImageClassifierOutputWithNoAttention:
    logits = torch.randn(2, 5)
    return ImageClassifierOutputWithNoAttention(logits=logits, cls_logits=logits + 1, distillation_logits=logits - 1)


def test_an_output_is_a_dict_of_its_fields_that_are_not_none():
    out = classifier_output()
    assert isinstance(out, dict) and isinstance(out, OrderedDict) and dataclasses.is_dataclass(out)
    assert list(out.keys()) == ["logits", "cls_logits", "distillation_logits"] and len(out) == 3
    assert list(out) == list(out.keys()) and "loss" not in out and "logits" in out
    plain = dict(out)
    assert type(plain) is dict and list(plain) == list(out) and plain["logits"] is out.logits
    assert {**out}.keys() == plain.keys()
    assert [v is getattr(out, k) for k, v in out.items()] == [True] * 3
    assert out["logits"] is out.logits is out[0] and out[-1] is out.distillation_logits
    assert out.to_tuple() == tuple(out.values()) and len(out[1:]) == 2
    with pytest.raises(KeyError):
        out["loss"]  # a None field is not a key
    assert out.get("loss") is None


def test_setting_a_field_updates_attribute_and_key_in_field_order():
    out = classifier_output()
    loss = torch.tensor(0.5)
    out.loss = loss  # the first field, set last: still the first key
    assert list(out.keys()) == ["loss", "logits", "cls_logits", "distillation_logits"] and out[0] is loss
    hidden = (torch.randn(2, 3, 4, 4),)
    out["hidden_states"] = hidden
    assert out.hidden_states is hidden and list(out)[2] == "hidden_states"
    replaced = torch.zeros(2, 5)
    out["logits"] = replaced
    assert out.logits is replaced and out[1] is replaced and list(out)[1] == "logits"
    out.cls_logits = None
    assert "cls_logits" not in out and out.cls_logits is None and len(out) == 4


def test_keys_are_fields_and_removing_keys_is_refused():
    out = classifier_output()
    with pytest.raises(KeyError, match="no field 'scores'"):
        out["scores"] = torch.zeros(1)
    for call in (
        lambda: out.pop("logits"),
        out.popitem,
        lambda: out.setdefault("loss", torch.zeros(())),
        lambda: out.update(loss=torch.zeros(())),
        out.clear,
        lambda: out.__delitem__("logits"),
    ):
        with pytest.raises(TypeError, match="set a field instead"):
            call()
    assert list(out) == ["logits", "cls_logits", "distillation_logits"]


def test_rebuilt_as_a_dict_is_from_a_mapping_or_pairs():
    """``copy()``, accelerate (``type(out)(mapping)``), tf.nest and dm-tree (``type(out)(pairs)``) rebuild outputs."""
    out = classifier_output()
    for rebuilt in (out.copy(), type(out)(dict(out)), type(out)((k, v) for k, v in out.items())):
        assert type(rebuilt) is type(out) and list(rebuilt) == list(out)
        assert all(rebuilt[k] is out[k] and getattr(rebuilt, k) is out[k] for k in out)
    with pytest.raises(KeyError, match="no field"):
        type(out)({"scores": 1})
    with pytest.raises(TypeError, match="pairs"):
        type(out)(iter([1, 2]))
    # a first field that is a tuple of maps (the backbone's) stays a value
    maps = (torch.randn(1, 8, 4, 4), torch.randn(1, 16, 2, 2))
    assert BackboneOutput(maps).feature_maps is maps and BackboneOutput(feature_maps=maps)[0] is maps


def test_copy_pickle_replace_and_equality_keep_fields_and_keys():
    out = classifier_output()
    for other in (copy.copy(out), copy.deepcopy(out), pickle.loads(pickle.dumps(out))):
        assert type(other) is type(out) and list(other) == list(out)
        assert all(torch.equal(other[k], out[k]) and getattr(other, k) is other[k] for k in out)
    replaced = dataclasses.replace(out, cls_logits=None, loss=torch.tensor(1.0))
    assert list(replaced) == ["loss", "logits", "distillation_logits"]
    empty = BaseModelOutputWithNoAttention()
    assert empty == BaseModelOutputWithNoAttention() and len(empty) == 0 and empty.to_tuple() == ()


def test_pytree_flattens_by_field_and_rebuilds_the_class():
    from torch.utils import _pytree

    import swiftformer.modeling_utils  # noqa: F401 (registers the classes, as importing a model does)

    out = classifier_output()
    leaves, spec = _pytree.tree_flatten(out)
    assert len(leaves) == 3 and leaves[0] is out.logits
    rebuilt = _pytree.tree_unflatten([leaf * 2 for leaf in leaves], spec)
    assert type(rebuilt) is type(out) and list(rebuilt) == list(out) and torch.equal(rebuilt.logits, out.logits * 2)


def test_built_and_set_inside_a_compiled_function():
    def fn(x: torch.Tensor) -> ImageClassifierOutputWithNoAttention:
        out = ImageClassifierOutputWithNoAttention(logits=x * 2)
        out.loss = x.sum()
        return out

    x = torch.randn(2, 5)
    got = torch.compile(fn, fullgraph=True, backend="eager")(x)
    assert type(got) is ImageClassifierOutputWithNoAttention and list(got) == ["loss", "logits"]
    torch.testing.assert_close(got["logits"], x * 2)


def test_accelerate_moves_outputs_and_keeps_their_class():
    accelerate_utils = pytest.importorskip("accelerate.utils")
    out = classifier_output()
    moved = accelerate_utils.send_to_device(out, "cpu")
    doubled = accelerate_utils.recursively_apply(lambda t: t * 2, out)
    assert type(moved) is type(doubled) is type(out) and list(moved) == list(doubled) == list(out)
    torch.testing.assert_close(doubled.logits, out.logits * 2)
