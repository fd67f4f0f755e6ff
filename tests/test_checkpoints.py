"""Checkpoint folders: save/load round trips, both directions with transformers, key and shape
errors, corrupt and malicious files, hub resolution offline, and atomic writes."""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

import pytest
import safetensors.torch
import torch

from _helpers import SMALLEST, perturb_
from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification, SwiftFormerModel
from swiftformer.errors import CheckpointError, CheckpointShapeError
from swiftformer.io.checkpoints import load_state_dict_file
from swiftformer.io.hub import resolve_file

TINY = {**SMALLEST, "num_labels": 3}


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    return perturb_(model, seed).eval()


def tiny_classifier(seed: int = 0, **overrides) -> SwiftFormerForImageClassification:
    return randomized(SwiftFormerForImageClassification(SwiftFormerConfig(**{**TINY, **overrides})), seed)


def reference_classifier(seed: int = 0, **overrides):
    transformers = pytest.importorskip("transformers")
    config = transformers.SwiftFormerConfig(**{**TINY, **overrides})
    return randomized(transformers.SwiftFormerForImageClassification(config), seed)


def pixels(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def assert_state_dicts_equal(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys(), set(actual) ^ set(expected)
    different = [k for k in expected if not torch.equal(actual[k], expected[k])]
    assert not different, different


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def write_folder(
    folder: Path, config: SwiftFormerConfig, state_dict: dict[str, torch.Tensor], name: str = "model.safetensors"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    if name.endswith(".safetensors"):
        safetensors.torch.save_file({k: v.contiguous() for k, v in state_dict.items()}, folder / name)
    else:
        torch.save(state_dict, folder / name)
    return folder


def logits_of(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).logits


# ------------------------------------------------------------------------------------------------
# Own round trips
# ------------------------------------------------------------------------------------------------


def test_save_pretrained_writes_config_and_safetensors(tmp_path: Path):
    model = tiny_classifier()
    assert model.save_pretrained(tmp_path / "out") == tmp_path / "out"
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["model_type"] == "swiftformer"
    assert config["architectures"] == ["SwiftFormerForImageClassification"]
    assert config["depths"] == TINY["depths"] and len(config["id2label"]) == 3
    stored = safetensors.torch.load_file(tmp_path / "out" / "model.safetensors")
    assert_state_dicts_equal(stored, model.state_dict())


def test_save_pretrained_bin_replaces_stale_safetensors_and_back(tmp_path: Path):
    first, second, third = tiny_classifier(seed=1), tiny_classifier(seed=2), tiny_classifier(seed=3)
    first.save_pretrained(tmp_path)
    second.save_pretrained(tmp_path, safe_serialization=False)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "pytorch_model.bin"]
    assert_state_dicts_equal(torch.load(tmp_path / "pytorch_model.bin", weights_only=True), second.state_dict())
    # the loader picks the new file, not the stale one
    loaded = SwiftFormerForImageClassification.from_pretrained(tmp_path)
    assert_state_dicts_equal(loaded.state_dict(), second.state_dict())
    third.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]
    loaded = SwiftFormerForImageClassification.from_pretrained(tmp_path)
    assert_state_dicts_equal(loaded.state_dict(), third.state_dict())


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
@pytest.mark.parametrize("cls", [SwiftFormerForImageClassification, SwiftFormerModel], ids=lambda c: c.__name__)
def test_round_trip_identical_weights_and_outputs(tmp_path: Path, cls, safe):
    model = randomized(cls(SwiftFormerConfig(**TINY, hidden_act="relu", attention_variant="l2")), seed=4)
    model.save_pretrained(tmp_path, safe_serialization=safe)
    loaded = cls.from_pretrained(tmp_path)
    assert type(loaded) is cls and not loaded.training
    assert loaded.config == model.config
    assert_state_dicts_equal(loaded.state_dict(), model.state_dict())
    x = pixels()
    with torch.no_grad():
        expected, actual = model(x).to_tuple()[0], loaded(x).to_tuple()[0]
    assert torch.equal(actual, expected)
    # and a differently randomized model really differs (so the equality above means something)
    other = randomized(cls(model.config), seed=5)
    with torch.no_grad():
        assert not torch.allclose(other(x).to_tuple()[0], expected)


# ------------------------------------------------------------------------------------------------
# Interoperability with transformers
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_transformers_loads_ours(tmp_path: Path, safe):
    model = tiny_classifier(seed=6)
    model.save_pretrained(tmp_path, safe_serialization=safe)
    transformers = pytest.importorskip("transformers")
    theirs, info = transformers.SwiftFormerForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    theirs.eval()
    assert theirs.config.num_labels == 3
    x = pixels(1)
    assert_close(logits_of(theirs, x), logits_of(model, x))


def test_ours_loads_transformers_safetensors(tmp_path: Path):
    theirs = reference_classifier(seed=7)
    theirs.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    ours = SwiftFormerForImageClassification.from_pretrained(tmp_path)
    assert ours.config.num_labels == 3
    x = pixels(2)
    assert_close(logits_of(ours, x), logits_of(theirs, x))


def test_ours_loads_transformers_bin(tmp_path: Path):
    """transformers 5 no longer writes ``pytorch_model.bin``; 4.x wrote ``torch.save(state_dict)``."""
    theirs = reference_classifier(seed=8)
    theirs.config.save_pretrained(tmp_path)
    torch.save(theirs.state_dict(), tmp_path / "pytorch_model.bin")
    ours = SwiftFormerForImageClassification.from_pretrained(tmp_path)
    x = pixels(3)
    assert_close(logits_of(ours, x), logits_of(theirs, x))


def test_base_model_loads_classifier_folder_dropping_heads(tmp_path: Path):
    classifier = tiny_classifier(seed=9)
    classifier.save_pretrained(tmp_path)
    base = SwiftFormerModel.from_pretrained(tmp_path)
    assert_state_dicts_equal(
        base.state_dict(),
        {k.removeprefix("swiftformer."): v for k, v in classifier.state_dict().items() if k.startswith("swiftformer.")},
    )
    x = pixels(4)
    with torch.no_grad():
        assert torch.equal(base(x).last_hidden_state, classifier.swiftformer(x).last_hidden_state)


@pytest.mark.parametrize("source", ["ours", "transformers"])
def test_classifier_loads_base_model_folder_with_fresh_heads(tmp_path: Path, caplog, source):
    config = SwiftFormerConfig(**TINY)
    if source == "ours":
        base = randomized(SwiftFormerModel(config), seed=10)
        base.save_pretrained(tmp_path)
    else:
        transformers = pytest.importorskip("transformers")
        base = randomized(transformers.SwiftFormerModel(transformers.SwiftFormerConfig(**TINY)), seed=10)
        base.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="swiftformer"):
        classifier = SwiftFormerForImageClassification.from_pretrained(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("head" in m and "newly initialized" in m for m in warnings), warnings
    assert_state_dicts_equal(classifier.swiftformer.state_dict(), base.state_dict())
    assert classifier.head.weight.shape == (3, 16) and classifier.dist_head.weight.shape == (3, 16)
    assert torch.isfinite(logits_of(classifier, pixels())).all()


# ------------------------------------------------------------------------------------------------
# Missing, unexpected and mismatched keys
# ------------------------------------------------------------------------------------------------


def test_missing_key_is_listed(tmp_path: Path, caplog):
    model = tiny_classifier()
    state = model.state_dict()
    del state["swiftformer.encoder.network.0.blocks.0.attn.w_g"]
    del state["head.bias"]
    write_folder(tmp_path, model.config, state)
    # the strict loader refuses it, naming both ...
    with pytest.raises(CheckpointError, match="missing") as info:
        SwiftFormerForImageClassification(model.config).load_checkpoint_state_dict(state)
    assert "swiftformer.encoder.network.0.blocks.0.attn.w_g" in str(info.value)
    assert "head.bias" in str(info.value)
    # ... from_pretrained loads it as a partial checkpoint (transformers' rule), naming both in a warning
    with caplog.at_level(logging.WARNING, logger="swiftformer"):
        SwiftFormerForImageClassification.from_pretrained(tmp_path)
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "swiftformer.encoder.network.0.blocks.0.attn.w_g" in warning and "head.bias" in warning


def test_unexpected_key_is_listed(tmp_path: Path):
    model = tiny_classifier()
    state = {**model.state_dict(), "swiftformer.encoder.extra.weight": torch.zeros(2), "bogus_head.bias": torch.ones(3)}
    write_folder(tmp_path, model.config, state)
    with pytest.raises(CheckpointError, match="unexpected") as info:
        SwiftFormerForImageClassification.from_pretrained(tmp_path)
    assert "swiftformer.encoder.extra.weight" in str(info.value) and "bogus_head.bias" in str(info.value)


def test_wrong_shape_is_listed(tmp_path: Path):
    model = tiny_classifier()
    key = "swiftformer.patch_embed.patch_embedding.0.weight"
    state = {**model.state_dict(), key: torch.zeros(4, 3, 5, 5)}
    write_folder(tmp_path, model.config, state)
    with pytest.raises(CheckpointError) as info:
        SwiftFormerForImageClassification.from_pretrained(tmp_path)
    message = str(info.value)
    assert key in message and "(4, 3, 5, 5)" in message and "(4, 3, 3, 3)" in message


def test_num_labels_override_requires_ignore_mismatched_sizes(tmp_path: Path):
    tiny_classifier().save_pretrained(tmp_path)
    with pytest.raises(CheckpointShapeError, match="ignore_mismatched_sizes") as info:
        SwiftFormerForImageClassification.from_pretrained(tmp_path, num_labels=7)
    assert "head.weight" in str(info.value) and "dist_head.weight" in str(info.value)
    # caught the way torch's load_state_dict and transformers' size errors are, and as a bad checkpoint
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, CheckpointError)


def test_missing_or_unexpected_keys_are_not_shape_errors(tmp_path: Path):
    state = tiny_classifier().state_dict()
    state["extra.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match="unexpected keys") as info:
        tiny_classifier().load_checkpoint_state_dict(state)
    assert not isinstance(info.value, RuntimeError)


def test_num_labels_override_reinitializes_heads(tmp_path: Path, caplog):
    saved = tiny_classifier(seed=11)
    saved.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="swiftformer"):
        model = SwiftFormerForImageClassification.from_pretrained(tmp_path, num_labels=7, ignore_mismatched_sizes=True)
    assert any("head.weight" in r.getMessage() for r in caplog.records)
    assert model.config.num_labels == 7 and len(model.config.id2label) == 7
    for name in ("head", "dist_head"):
        assert getattr(model, name).weight.shape == (7, 16) and getattr(model, name).bias.shape == (7,)
        assert torch.equal(getattr(model, name).bias, torch.zeros(7))  # fresh init, not leftovers
    saved_state, state = saved.state_dict(), model.state_dict()
    kept = [k for k in saved_state if not k.startswith(("head.", "dist_head."))]
    assert len(kept) == len(saved_state) - 4
    assert_state_dicts_equal({k: state[k] for k in kept}, {k: saved_state[k] for k in kept})
    assert logits_of(model, pixels()).shape == (2, 7)


def test_weights_of_another_architecture_say_what_they_hold(tmp_path: Path):
    tiny_classifier(seed=3, num_labels=0, depths=[2, 1, 1, 1]).save_pretrained(tmp_path)
    with pytest.raises(
        CheckpointError, match=r"holds depths \[2, 1, 1, 1\], widths \[.*\] and no classification heads\)"
    ):
        SwiftFormerForImageClassification.from_pretrained(tmp_path, depths=[1, 1, 1, 1])


def test_headless_classifier_to_new_classes(tmp_path: Path, caplog):
    """A num_labels=0 classifier folder (e.g. a converted timm num_classes=0 model) has a final norm but no
    heads: new classes with ignore_mismatched_sizes start fresh heads, as for mis-shaped ones."""
    saved = tiny_classifier(seed=12, num_labels=0)
    saved.save_pretrained(tmp_path)
    # without ignore_mismatched_sizes it is a partial checkpoint: the heads start fresh and are listed
    _, info = SwiftFormerForImageClassification.from_pretrained(tmp_path, num_labels=7, output_loading_info=True)
    assert {"head.weight", "head.bias", "dist_head.weight", "dist_head.bias"} == info["missing_keys"]
    with caplog.at_level(logging.WARNING, logger="swiftformer"):
        model = SwiftFormerForImageClassification.from_pretrained(tmp_path, num_labels=7, ignore_mismatched_sizes=True)
    assert any("head.weight" in r.getMessage() for r in caplog.records)
    assert model.head.weight.shape == (7, 16) and logits_of(model, pixels()).shape == (2, 7)
    saved_state, state = saved.state_dict(), model.state_dict()
    assert_state_dicts_equal({k: state[k] for k in saved_state}, saved_state)  # the norm and network kept


# ------------------------------------------------------------------------------------------------
# Corrupt and malicious files
# ------------------------------------------------------------------------------------------------


def _corrupt(data: bytes, how: str) -> bytes:
    if how == "half":
        return data[: len(data) // 2]
    if how == "last-byte":
        return data[:-1]
    if how == "empty":
        return b""
    if how == "garbage":
        gen = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (4096,), generator=gen, dtype=torch.uint8).numpy().tobytes()
    if how == "text":
        return b"hello world\n"  # raises KeyError inside torch's unpickler
    if how == "pops":
        return b"R" * 8  # raises IndexError inside torch's unpickler
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["half", "last-byte", "empty", "garbage", "text"])
def test_corrupt_safetensors_is_a_checkpoint_error(tmp_path: Path, how):
    tiny_classifier().save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(_corrupt(path.read_bytes(), how))
    with pytest.raises(CheckpointError) as info:
        SwiftFormerForImageClassification.from_pretrained(tmp_path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("how", ["half", "last-byte", "empty", "garbage", "text", "pops"])
def test_corrupt_bin_is_a_checkpoint_error(tmp_path: Path, how):
    tiny_classifier().save_pretrained(tmp_path, safe_serialization=False)
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(_corrupt(path.read_bytes(), how))
    with pytest.raises(CheckpointError) as info:
        SwiftFormerForImageClassification.from_pretrained(tmp_path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [[1, 2], {"a": 1}, {1: torch.zeros(1)}], ids=["list", "no-tensors", "int-keys"])
def test_bin_that_is_not_a_state_dict_is_a_checkpoint_error(tmp_path: Path, content):
    torch.save(content, tmp_path / "x.bin")
    with pytest.raises(CheckpointError, match="state dict"):
        load_state_dict_file(tmp_path / "x.bin")


def test_training_checkpoint_wrapper_is_unwrapped(tmp_path: Path):
    model = tiny_classifier()
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    assert_state_dicts_equal(load_state_dict_file(tmp_path / "ckpt.pth"), model.state_dict())


class _Payload:
    """Unpickling this runs ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: Path) -> dict[str, _Payload]:
    return {
        "mkdir": _Payload(os.mkdir, str(marker)),
        "exec": _Payload(exec, f"open({str(marker)!r}, 'w').close()"),
    }


def _write_malicious(path: Path, payload: _Payload, fmt: str) -> None:
    state = {"head.weight": torch.zeros(3, 16), "evil": payload}
    if fmt == "torch.save":
        torch.save(state, path)
    else:  # a bare (legacy, non-zip) pickle
        path.write_bytes(pickle.dumps(state, protocol=2))


@pytest.mark.parametrize("fmt", ["torch.save", "raw-pickle"])
@pytest.mark.parametrize("kind", ["mkdir", "exec"])
def test_malicious_pickle_is_refused_without_running(tmp_path: Path, kind, fmt):
    # Sanity: the file really runs code when unpickled without protection.
    armed = tmp_path / "armed_marker"
    _write_malicious(tmp_path / "armed.bin", _payloads(armed)[kind], fmt)
    if fmt == "torch.save":
        torch.load(tmp_path / "armed.bin", weights_only=False)
    else:
        pickle.loads((tmp_path / "armed.bin").read_bytes())
    assert armed.exists()

    marker = tmp_path / "marker"
    folder = tmp_path / "model"
    SwiftFormerConfig(**TINY).save_pretrained(folder)
    _write_malicious(folder / "pytorch_model.bin", _payloads(marker)[kind], fmt)
    with pytest.raises(CheckpointError, match=r"[Rr]efused") as info:
        SwiftFormerForImageClassification.from_pretrained(folder)
    assert str(folder / "pytorch_model.bin") in str(info.value)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------
# Hub ids, offline, and the local cache
# ------------------------------------------------------------------------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = COMMIT) -> Path:
    """The layout huggingface_hub writes: models--owner--name/{refs/main, snapshots/<commit>/...}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


def folder_files(model, tmp_path: Path, safe: bool = True) -> dict[str, bytes]:
    out = tmp_path / "saved"
    model.save_pretrained(out, safe_serialization=safe)
    return {name: (out / name).read_bytes() for name in os.listdir(out)}


@pytest.mark.parametrize("local_files_only", [False, True])
def test_offline_uncached_hub_id_says_offline_and_suggests_a_folder(
    offline_hub: Path, tmp_path: Path, local_files_only
):
    empty = tmp_path / "empty_cache"
    empty.mkdir()
    for load in (SwiftFormerForImageClassification.from_pretrained, SwiftFormerConfig.from_pretrained):
        with pytest.raises(OSError) as info:
            load("MBZUAI/swiftformer-xs", cache_dir=empty, local_files_only=local_files_only)
        message = str(info.value)
        assert not isinstance(info.value, FileNotFoundError)
        assert "offline" in message.lower() and "local folder" in message
        assert "MBZUAI/swiftformer-xs" in message
    assert not [p for p in empty.rglob("*") if p.is_file()]  # nothing was downloaded


def test_mistyped_local_paths_are_named_as_such(offline_hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(OSError, match="local folder 'runs' but no 'bset' in it: if you meant a local path"):
        SwiftFormerForImageClassification.from_pretrained("runs/bset")
    with pytest.raises(FileNotFoundError, match=r"No such file: 'ckpts/xs\.pth'"):
        resolve_file("ckpts/xs.pth", "config.json")


def test_offline_uncached_hub_id_with_default_cache(offline_hub: Path):
    with pytest.raises(OSError, match="offline"):
        SwiftFormerForImageClassification.from_pretrained("MBZUAI/swiftformer-xs")


@pytest.mark.parametrize("local_files_only", [True, False])
def test_loads_from_populated_hub_cache_offline(offline_hub: Path, tmp_path: Path, local_files_only):
    model = tiny_classifier(seed=12)
    cache = tmp_path / "cache"
    make_hub_cache(cache, "owner/name", folder_files(model, tmp_path))
    loaded = SwiftFormerForImageClassification.from_pretrained(
        "owner/name", cache_dir=cache, local_files_only=local_files_only
    )
    assert_state_dicts_equal(loaded.state_dict(), model.state_dict())
    assert SwiftFormerConfig.from_pretrained("owner/name", cache_dir=cache, local_files_only=True) == model.config
    # by commit hash too
    by_commit = SwiftFormerForImageClassification.from_pretrained("owner/name", cache_dir=cache, revision=COMMIT)
    assert_state_dicts_equal(by_commit.state_dict(), model.state_dict())


def test_loads_from_default_cache_via_hf_home(offline_hub: Path, tmp_path: Path):
    model = tiny_classifier(seed=13)
    make_hub_cache(offline_hub, "owner/name", folder_files(model, tmp_path))
    loaded = SwiftFormerForImageClassification.from_pretrained("owner/name")
    assert_state_dicts_equal(loaded.state_dict(), model.state_dict())


def test_loads_bin_only_hub_cache_offline(offline_hub: Path, tmp_path: Path):
    model = tiny_classifier(seed=14)
    files = folder_files(model, tmp_path, safe=False)
    assert sorted(files) == ["config.json", "pytorch_model.bin"]
    cache = tmp_path / "cache"
    make_hub_cache(cache, "owner/name", files)
    loaded = SwiftFormerForImageClassification.from_pretrained("owner/name", cache_dir=cache, local_files_only=True)
    assert_state_dicts_equal(loaded.state_dict(), model.state_dict())


def test_hub_cache_without_weights_offline_is_an_offline_miss(offline_hub: Path, tmp_path: Path):
    """Only config.json cached: offline, nothing says the repository lacks its weights; they are not cached."""
    model = tiny_classifier()
    files = {"config.json": folder_files(model, tmp_path)["config.json"]}
    cache = tmp_path / "cache"
    make_hub_cache(cache, "owner/name", files)
    with pytest.raises(OSError, match=r"'model\.safetensors' of 'owner/name'.*not in the cache") as info:
        SwiftFormerForImageClassification.from_pretrained("owner/name", cache_dir=cache, local_files_only=True)
    assert "has neither" not in str(info.value)


@pytest.mark.parametrize("name", ["./nope", "nope/deeper/path", "/definitely/not/here"])
def test_nonexistent_local_path_is_file_not_found_naming_it(offline_hub: Path, monkeypatch, tmp_path: Path, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        SwiftFormerForImageClassification.from_pretrained(name)
    assert name in str(info.value)


def test_local_folder_without_weights_is_file_not_found(tmp_path: Path):
    SwiftFormerConfig(**TINY).save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors.*pytorch_model\.bin"):
        SwiftFormerForImageClassification.from_pretrained(tmp_path)


def test_file_instead_of_folder_is_file_not_found(tmp_path: Path):
    tiny_classifier().save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="folder"):
        SwiftFormerForImageClassification.from_pretrained(tmp_path / "model.safetensors")


# ------------------------------------------------------------------------------------------------
# Atomic writes
# ------------------------------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def test_failed_safetensors_serialization_keeps_previous_files(tmp_path: Path, monkeypatch):
    tiny_classifier(seed=1).save_pretrained(tmp_path)
    before = _snapshot(tmp_path)

    def boom(*args, **kwargs):
        raise RuntimeError("serialization failed")

    monkeypatch.setattr(safetensors.torch, "save", boom)
    with pytest.raises(RuntimeError, match="serialization failed"):
        tiny_classifier(seed=2).save_pretrained(tmp_path)
    assert _snapshot(tmp_path) == before  # same names (no *.tmp left) and same bytes


def test_weights_write_failing_midway_keeps_previous_file(tmp_path: Path, monkeypatch):
    """The new bytes reach a temporary file, then syncing it fails: the old model.safetensors stays."""
    tiny_classifier(seed=1).save_pretrained(tmp_path)
    before = _snapshot(tmp_path)
    during: list[list[str]] = []

    def failing_fsync(fd):
        during.append(sorted(os.listdir(tmp_path)))
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        tiny_classifier(seed=2).save_pretrained(tmp_path)
    monkeypatch.undo()
    assert len(during) == 1 and any(n.endswith(".tmp") for n in during[0]), during
    assert _snapshot(tmp_path) == before
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_partial_bin_write_keeps_previous_files(tmp_path: Path, monkeypatch):
    tiny_classifier(seed=1).save_pretrained(tmp_path, safe_serialization=False)
    before = _snapshot(tmp_path)
    assert sorted(before) == ["config.json", "pytorch_model.bin"]

    def half_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("interrupted")

    monkeypatch.setattr(torch, "save", half_save)
    with pytest.raises(OSError, match="interrupted"):
        tiny_classifier(seed=2, hidden_act="relu").save_pretrained(tmp_path, safe_serialization=False)
    monkeypatch.undo()
    assert _snapshot(tmp_path) == before
    assert SwiftFormerForImageClassification.from_pretrained(tmp_path).config.hidden_act == "gelu"


def test_stray_key_in_classifier_checkpoint_is_reported_by_base_model(tmp_path: Path):
    model = tiny_classifier()
    state = {**model.state_dict(), "totally_bogus": torch.zeros(1)}
    folder = write_folder(tmp_path / "m", model.config, state)
    with pytest.raises(CheckpointError, match="totally_bogus"):
        SwiftFormerModel.from_pretrained(folder)


def test_garbage_pickle_is_called_corrupt_not_refused(tmp_path: Path):
    folder = write_folder(tmp_path / "m", tiny_classifier().config, tiny_classifier().state_dict())
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"hello world\n")
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        SwiftFormerForImageClassification.from_pretrained(folder)
    assert "Refused" not in str(info.value)


def test_pickle_of_non_tensors_is_refused_naming_the_global(tmp_path: Path):
    path = tmp_path / "odd.pth"
    torch.save({"model": Path("x")}, path)  # harmless, but not a tensor: refused, never unpickled
    with pytest.raises(CheckpointError, match=r"Refused to load .*pathlib"):
        load_state_dict_file(path)


def test_bad_override_is_not_blamed_on_the_file(tmp_path: Path):
    tiny_classifier().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_labels") as info:
        SwiftFormerConfig.from_pretrained(tmp_path, num_labels=-1)
    assert not isinstance(info.value, CheckpointError)


def test_integer_weights_are_refused_not_loaded_as_whole_numbers(tmp_path):
    model = SwiftFormerForImageClassification(SwiftFormerConfig(**TINY))
    model.save_pretrained(tmp_path)
    state = load_state_dict_file(tmp_path / "model.safetensors")
    state["head.weight"] = state["head.weight"].round().to(torch.int32)
    safetensors.torch.save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"integer tensors .* head\.weight"):
        SwiftFormerForImageClassification.from_pretrained(tmp_path)


def test_save_pretrained_refuses_a_folder_holding_another_model(tmp_path):
    first = SwiftFormerForImageClassification(SwiftFormerConfig(**TINY))
    first.save_pretrained(tmp_path)
    first.save_pretrained(tmp_path)  # the same model again (another epoch): replaced in place
    before = (tmp_path / "model.safetensors").read_bytes()
    other = SwiftFormerForImageClassification(SwiftFormerConfig(**{**TINY, "num_labels": 7}))
    with pytest.raises(FileExistsError, match=r"already holds another model \(num_labels 3\).*overwrite=True"):
        other.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before  # untouched
    other.save_pretrained(tmp_path, overwrite=True)
    assert SwiftFormerForImageClassification.from_pretrained(tmp_path).config.num_labels == 7


def test_save_pretrained_refuses_a_folder_holding_another_class(tmp_path):
    """A base model saved over a classifier's folder would drop its trained heads: another model."""
    tiny_classifier().save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    base = SwiftFormerModel(SwiftFormerConfig(**TINY))
    with pytest.raises(FileExistsError, match=r"another model \(architectures \['SwiftFormerForImageClassification'\]"):
        base.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before


def test_a_config_that_cannot_be_saved_leaves_the_folder_untouched(tmp_path):
    model = tiny_classifier()
    model.save_pretrained(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    model.config.note = object()  # an extra key that JSON cannot hold
    with pytest.raises(ValueError, match=r"cannot be saved as JSON .*nothing was written"):
        model.save_pretrained(tmp_path, safe_serialization=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no .bin, the .safetensors kept


def test_saved_config_records_the_weights_dtype(tmp_path):
    """As transformers: config.json's dtype is the saved weights' dtype, not a stale one loaded earlier."""
    tiny_classifier().half().save_pretrained(tmp_path / "half")
    assert json.loads((tmp_path / "half" / "config.json").read_text())["dtype"] == "float16"
    model = SwiftFormerForImageClassification.from_pretrained(tmp_path / "half", dtype=torch.float32)
    assert model.config.dtype == torch.float16  # loaded as recorded ...
    model.save_pretrained(tmp_path / "float")
    assert json.loads((tmp_path / "float" / "config.json").read_text())["dtype"] == "float32"  # ... saved as it is
    assert SwiftFormerForImageClassification.from_pretrained(tmp_path / "float", dtype="auto").dtype == torch.float32


@pytest.mark.parametrize("keyword", ["foo", "ignore_mismatch_sizes", "use_auth_token"])
def test_unknown_from_pretrained_keywords_are_refused_not_saved(tmp_path, keyword):
    """transformers' rule (its model constructor refuses them): a typo or a removed option is an error, never a key
    saved into the next config.json (use_auth_token would be a token written to disk)."""
    tiny_classifier().save_pretrained(tmp_path)
    with pytest.raises(TypeError, match=rf"unexpected keyword argument\(s\) \['{keyword}'\]"):
        SwiftFormerForImageClassification.from_pretrained(tmp_path, **{keyword: "hf_secret"})
    loaded = SwiftFormerForImageClassification.from_pretrained(tmp_path, trust_remote_code=True, num_labels=3)
    assert loaded.config.num_labels == 3  # loading options ignored, config fields applied


def test_a_pickle_with_a_flipped_opcode_is_called_corrupt_not_refused(tmp_path):
    path = tmp_path / "model.bin"
    torch.save(tiny_classifier().state_dict(), path)
    data = bytearray(path.read_bytes())
    start = data.find(b"\x80\x02", data.find(b"data.pkl"))  # the pickle inside the zip: protocol 2
    data[start + 2] ^= 0xFF  # its first opcode, now one no pickle has
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        load_state_dict_file(path)
    assert "Refused" not in str(info.value)


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda v: v.to("meta"), "a meta tensor, with no data"),
        (lambda v: v.to_sparse(), "layout torch.sparse_coo"),
        (lambda v: v.to(torch.complex64), "complex"),
    ],
)
def test_tensors_that_are_no_weights_are_one_checkpoint_error(tmp_path, make, why):
    state = {k: make(v) if v.is_floating_point() else v for k, v in tiny_classifier().state_dict().items()}
    torch.save(state, tmp_path / "odd.bin")
    with pytest.raises(CheckpointError, match=rf"odd\.bin holds tensors that are no weights: \S+ \({why}\)"):
        load_state_dict_file(tmp_path / "odd.bin")


def test_num_labels_0_drops_the_heads_as_transformers_does(tmp_path, caplog):
    tiny_classifier().save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="swiftformer"):
        model, info = SwiftFormerForImageClassification.from_pretrained(
            tmp_path, num_labels=0, output_loading_info=True
        )
    assert isinstance(model.head, torch.nn.Identity) and "classification heads are dropped" in caplog.text
    assert info["unexpected_keys"] == {"head.weight", "head.bias", "dist_head.weight", "dist_head.bias"}
    assert model(pixels()).logits.shape == (2, TINY["embed_dims"][-1])  # the pooled features
    with pytest.raises(CheckpointError, match="totally_bogus"):  # anything else unexpected is still an error
        state = {**tiny_classifier().state_dict(), "totally_bogus": torch.zeros(1)}
        SwiftFormerForImageClassification.from_pretrained(None, config=SwiftFormerConfig(**{**TINY, "num_labels": 0}),
                                                          state_dict=state)  # fmt: skip
